# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The host prerequisites of a run, checked before any change (second stage of the validation phase).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Input: a host's gathered facts, its stack plan, the read-only answers of ``stack_host_info`` (free
space, listeners, model directories) and of ``nvidia_gpu_info`` (when the host needs a GPU driver).
Output: Problems, each naming the setting it concerns (or the fact) and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _rules
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._problems import Problems

GB = 10 ** 9
SUPPORTED_OS = {
    "Debian": {"Debian": (12, 13), "Ubuntu": (22, 24)},
    "RedHat": {"RedHat": (8, 9), "Rocky": (8, 9), "AlmaLinux": (8, 9)},
}
# Our own containers hold their published ports through Docker's userland proxy: a re-run finds them busy.
OWN_HOLDERS = frozenset(("docker-proxy",))
NOTE = "host prerequisite"


def os_problems(facts: Mapping) -> Problems:
    """OS family and version, and the service manager (skipped when the host's facts are not there)."""
    problems = Problems()
    if not isinstance(facts, Mapping) or not facts:
        return problems
    family = facts.get("os_family")
    distribution = facts.get("distribution")
    major = facts.get("distribution_major_version")
    supported = SUPPORTED_OS.get(family, {}).get(distribution)
    label = "%s %s" % (distribution, facts.get("distribution_version"))
    if supported is None or not _rules.is_int(major) or int(major) not in supported:
        problems.add("ansible_facts.distribution", label,
                     "Debian 12/13, Ubuntu 22.04/24.04 (RHEL 8/9 for the toolkit role)", note=NOTE)
    if facts.get("service_mgr") and facts.get("service_mgr") != "systemd":
        problems.add("ansible_facts.service_mgr", facts.get("service_mgr"),
                     "systemd (Docker, the firewall unit and the model hub jobs run under it)", note=NOTE)
    return problems


def needs_driver(plan: Mapping) -> bool:
    """Whether the run installs the toolkit on this host with a GPU required (its preflight would stop later)."""
    return bool((plan.get("host_checks") or {}).get("needs_driver"))


def driver_problems(gpu_info, smi_setting) -> Problems:
    """The NVIDIA driver answers and lists a GPU (``gpu_info``: nvidia_gpu_info's result, required false)."""
    problems = Problems()
    if not isinstance(gpu_info, Mapping) or gpu_info.get("skipped"):
        return problems
    if gpu_info.get("available"):
        return problems
    reason = gpu_info.get("reason") or gpu_info.get("msg") or "nvidia_gpu_info did not answer"
    problems.add("nvidia_container_toolkit_require_gpu", True,
                 "an NVIDIA driver that lists the host's GPUs before the run installs the toolkit (%s; nvidia-smi looked "
                 "for: %s). Install the driver and reboot, or on a CPU-only host set gpu_stack_accelerator: cpu "
                 "(test hosts: nvidia_container_toolkit_require_gpu: false)" % (reason, smi_setting), note=NOTE)
    return problems


def _model_bytes_needed(plan: Mapping, models: Mapping):
    """[(alias, target_dir, bytes still to download)] for the models with a size_gb that are not complete."""
    needed = []
    for alias, size in sorted((plan.get("model_sizes") or {}).items()):
        target = (plan.get("model_dirs") or {}).get(alias)
        state = models.get(target) if isinstance(models, Mapping) else None
        if not target or not isinstance(state, Mapping):
            continue
        if state.get("complete"):
            continue
        left = int(float(size) * GB) - int(state.get("bytes") or 0)
        if left > 0:
            needed.append((alias, target, left))
    return needed


def _space_of(path, filesystems: Mapping):
    """The filesystems entry that holds ``path`` (the longest path of ``filesystems`` above it)."""
    best = None
    for given, state in filesystems.items():
        if not isinstance(state, Mapping):
            continue
        if path == given or path.startswith(given.rstrip("/") + "/"):
            if best is None or len(given) > len(best[0]):
                best = (given, state)
    return best


def disk_problems(plan: Mapping, host_info: Mapping) -> Problems:
    """Free space for the models still to download, per file system (models with size_gb only)."""
    problems = Problems()
    filesystems = host_info.get("filesystems") or {}
    by_device: dict = {}
    for alias, target, left in _model_bytes_needed(plan, host_info.get("models") or {}):
        found = _space_of(target, filesystems)
        if found is None:
            continue
        _given, state = found
        key = (state.get("device"), state.get("checked"))
        entry = by_device.setdefault(key, {"free": int(state.get("free_bytes") or 0), "checked": state.get("checked"),
                                           "models": []})
        entry["models"].append((alias, left))
    for entry in by_device.values():
        total = sum(left for _alias, left in entry["models"])
        if total > entry["free"]:
            each = ", ".join("%s %.1f GB" % (alias, left / GB) for alias, left in entry["models"])
            problems.add("gpu_stack_models_root", plan.get("models_root"),
                         "room for the models still to download: %.1f GB (%s, from their size_gb) on the file system of "
                         "%s, which has %.1f GB free; free some space or set gpu_stack_models_root (or a model's "
                         "target_dir) to a larger disk" % (total / GB, each, entry["checked"], entry["free"] / GB), note=NOTE)
    return problems


def port_problems(plan: Mapping, host_info: Mapping) -> Problems:
    """Every port the stack publishes on this host is free, or held by Docker's proxy (our own containers)."""
    problems = Problems()
    listeners = host_info.get("listeners") or {}
    variables = plan.get("port_variables") or {}
    for port, what in sorted((plan.get("published_ports") or {}).items(), key=lambda item: int(item[0])):
        sockets = listeners.get(str(port)) or listeners.get(port) or []
        others = [s for s in sockets if isinstance(s, Mapping) and s.get("process") and s.get("process") not in OWN_HOLDERS]
        if not others:
            continue  # free, ours, or held by a process /proc does not show us (not guessed at)
        held = ", ".join("%s (pid %s) on %s" % (s.get("process"), s.get("pid"), s.get("address")) for s in others)
        problems.add(variables.get(port) or variables.get(str(port)) or "published port", int(port),
                     "a port free on the host for %s: it is held by %s; stop that service or choose another port"
                     % (what, held), note=NOTE)
    return problems


def host_problems(facts: Mapping, plan, settings, host_info=None, gpu_info=None) -> Problems:
    """Every prerequisite problem of one host (what the answers given show; missing answers check nothing)."""
    problems = os_problems(facts)
    plan = plan if isinstance(plan, Mapping) else {}
    if needs_driver(plan):
        problems.extend(driver_problems(gpu_info, settings.get("nvidia_container_toolkit_nvidia_smi")))
    if isinstance(host_info, Mapping) and not host_info.get("skipped") and not host_info.get("failed"):
        problems.extend(disk_problems(plan, host_info))
        problems.extend(port_problems(plan, host_info))
    return problems
