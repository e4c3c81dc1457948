# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Check every input of every host of a run, before anything changes: one report of all problems.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Three kinds of checks, for every host:

1. the roles' argument specs (types, element types, choices, sub-options) on every variable the
   host sets (its inventory, group_vars, host_vars, extra vars);
2. the rules a spec cannot express (ranges, formats, cross-variable and fleet rules): the stack
   plan's problems (plugin_utils._plan) and the value rules below;
3. (second stage, ``validate_hosts``, once the inputs passed) the host's prerequisites: OS family and
   version, systemd, the NVIDIA driver where GPUs are required, free space for the models still to
   download, the ports the stack publishes free (plugin_utils._prerequisites).

Each problem names the variable, the value given (never a secret's), where it came from when the
value says so (an inventory file and line, or the environment variable an inventory reads), and
what would be accepted.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

try:  # ansible-core 2.19's data tags: where a value came from
    from ansible._internal._datatag._tags import Origin
except ImportError:  # other cores: no origin, no harm
    Origin = None

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _pip_lock, _rules, _tarballs
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._plan import stack_plan
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._prerequisites import host_problems
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._problems import Problem, Problems
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._settings import SECRETS, HostSettings, role_defaults, roles_dir

# Roles and their variable prefixes (every role of the collection).
ROLE_PREFIXES = {
    "_common": "gpu_stack_",
    "docker_engine": "docker_engine_",
    "nvidia_container_toolkit": "nvidia_container_toolkit_",
    "model_store": "model_store_",
    "inference_engine": "inference_engine_",
    "gateway": "gateway_",
    "monitoring": "monitoring_",
    "moderation": "moderation_",
}
# Facts and internal variables that carry a prefix but are not settings.
NOT_SETTINGS = re.compile(r"^(gpu_stack_plan|gpu_stack_validation|gpu_stack_host_info|gpu_stack_gpu_info)$")
# Value rules of variables of the roles outside the plan (ranges a spec cannot express).
VALUE_RULES = {
    "model_store_download_timeout": _rules.positive_int,
    "model_store_progress_interval": _rules.positive_int,
    "model_store_download_workers": _rules.positive_int,
    "docker_engine_wait_timeout": _rules.positive_int,
}
# What each playbook uses: the roles whose specs are checked (plus those the plan gives a host).
PURPOSES = {
    "deploy": ("_common", "docker_engine", "model_store"),
    "rolling_update": ("_common", "docker_engine", "model_store"),
    "verify": ("_common",),
    "teardown": ("_common",),
}
_ENV = re.compile(r"lookup\(\s*['\"](?:ansible\.builtin\.)?env['\"]\s*,\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]")
_specs_cache: dict = {}


def role_specs(role: str) -> dict:
    """{entry point: options} of a role (empty when it has no argument specs)."""
    if role not in _specs_cache:
        path = os.path.join(roles_dir(), role, "meta", "argument_specs.yml")
        try:
            with open(path, encoding="utf-8") as handle:
                data = (yaml.safe_load(handle) or {}).get("argument_specs") or {}
        except FileNotFoundError:
            data = {}
        _specs_cache[role] = {entry: (spec or {}).get("options") or {} for entry, spec in data.items()}
    return _specs_cache[role]


def known_variables() -> set:
    names = set()
    for role in ROLE_PREFIXES:
        for options in role_specs(role).values():
            names.update(options)
    return names


def _strip_spec(options):
    """An argument spec ArgumentSpecValidator takes (no defaults: only given values are checked)."""
    out = {}
    for name, given in options.items():
        spec = {k: v for k, v in given.items() if k not in ("description", "default", "version_added")}
        if "options" in spec:
            spec["options"] = _strip_spec(spec["options"])
        out[name] = spec
    return out


def spec_problems(role: str, given: Mapping) -> Problems:
    """Problems of the values ``given`` (name -> value) against the role's main argument spec."""
    problems = Problems()
    options = role_specs(role).get("main") or {}
    params = {name: given[name] for name in options if name in given}
    if not params:
        return problems
    # A string given for a list would be split on commas (or become one item) without a word: refuse it.
    for name in list(params):
        if options[name].get("type") == "list" and isinstance(params[name], str):
            problems.add(name, params[name], "a list (YAML [a, b] or one item per line); a string is not split into "
                         "arguments", secret=bool(options[name].get("no_log")))
            del params[name]
    if not params:
        return problems
    spec = _strip_spec({name: options[name] for name in params})
    for option in spec.values():
        option.pop("required", None)
    result = ArgumentSpecValidator(spec).validate(params)
    secrets = [str(v) for k, v in params.items() if options[k].get("no_log") and v]
    for error in result.errors:
        text = str(error)
        for secret in secrets:
            text = text.replace(secret, "********")
        name = next((n for n in sorted(params, key=len, reverse=True) if "'%s'" % n in text or n in text), None)
        problem = Problem(name or role, params.get(name), "", secret=bool(name and options[name].get("no_log")))
        problem.text = "%s (argument spec of %s)" % (text, role)
        problems.append(problem)
    return problems


def origin(raw_value) -> str:
    """Where a value came from: the environment variable an inventory reads, or its file and line."""
    if isinstance(raw_value, str):
        match = _ENV.search(raw_value)
        if match:
            return "environment variable %s" % match.group(1)
    try:
        tag = Origin.get_tag(raw_value) if Origin is not None else None
    except Exception:  # noqa: BLE001 - no origin, no harm
        tag = None
    if tag is not None and getattr(tag, "path", None):
        return "%s:%s" % (tag.path, tag.line_num) if getattr(tag, "line_num", None) else str(tag.path)
    return ""


def _variable_root(variable: str) -> str:
    return re.split(r"[\[.]", variable, maxsplit=1)[0]


def client_lock_problems(given: Mapping, plan: Mapping) -> list:
    """(variable, value, expected) for model_store's hash lock of the host's download clients: it must
    exist and pin the client versions with hashes (roles/model_store/files/pip, tools/pip_locks.sh)."""
    defaults = {**role_defaults("_common"), **role_defaults("model_store")}

    def value(name):
        return given[name] if name in given else defaults.get(name)

    aliases = value("model_store_aliases") or plan.get("models") or []
    if not value("model_store_download") or not value("model_store_pip_require_hashes") or not aliases:
        return []
    models = value("gpu_stack_models") if isinstance(value("gpu_stack_models"), list) else []
    huggingface = any(isinstance(m, Mapping) and m.get("alias") in aliases and m.get("source") == "huggingface" for m in models)
    wanted = {"modelscope": ["model_store_modelscope_version", value("model_store_modelscope_version")],
              "modelscope-hub": ["model_store_modelscope_hub_version", value("model_store_modelscope_hub_version")]}
    if huggingface:
        wanted["huggingface_hub"] = ["model_store_huggingface_hub_version", value("model_store_huggingface_hub_version")]
    own = value("model_store_pip_requirements") or ""
    if own and not os.path.isabs(str(own)):
        return [("model_store_pip_requirements", own, "an absolute path on the controller")]
    source = str(own) if own else _pip_lock.lock_file(os.path.join(roles_dir(), "model_store", "files"), huggingface)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        text = None
    return _pip_lock.problems(text, wanted, source, own=bool(own))


def validate(hosts, hostvars, groups, *, purpose="deploy", gather_warnings=True):
    """(plans, problems, warnings) for every host of ``hosts``."""
    problems = Problems()
    warnings = []
    plans = {}
    known = known_variables()
    try:
        raw_all = {host: hostvars.raw_get(host) for host in hosts} if hasattr(hostvars, "raw_get") else {}
    except Exception:  # noqa: BLE001 - raw values only feed the "from" hints
        raw_all = {}
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        found = Problems()
        given = {}
        for name in list(host_vars.keys()) if hasattr(host_vars, "keys") else []:
            if not isinstance(name, str) or NOT_SETTINGS.match(name):
                continue
            prefix = next((p for p in ROLE_PREFIXES.values() if name.startswith(p)), None)
            if prefix is None:
                continue
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                warnings.append("%s: %s is not a variable of any role of llmops.gpu_stack%s" % (
                    host, name, (" (did you mean %s?)" % close[0]) if close else ""))
                continue
            try:
                given[name] = host_vars[name]
            except Exception as err:  # noqa: BLE001 - an undefined or failing template is itself a problem
                found.add(name, None, "a value that can be templated (%s)" % err, given=False)
        roles = list(PURPOSES.get(purpose, PURPOSES["deploy"]))
        try:
            plan, plan_problems = stack_plan(host, hostvars, groups)
        except Exception as err:  # noqa: BLE001 - report, never crash the check
            # A wrongly typed input the argument specs name below can make the plan fail: then the
            # specs' lines explain it, and this one is dropped (see below).
            plan, plan_problems = None, Problems([Problem("(plan)", text="cannot plan %s: %s" % (host, err))])
        if purpose == "teardown":
            plan_problems = Problems(p for p in plan_problems if _variable_root(p.variable).startswith("gpu_stack_")
                                     and p.variable not in SECRETS)
        plans[host] = plan
        if plan and purpose != "teardown":
            roles += [r for r in plan["roles"] if r not in roles]
        elif plan is None and purpose != "teardown":
            # No plan to say which roles the host runs: every stack role's spec names what it can.
            roles += [r for r in ("inference_engine", "gateway", "monitoring", "moderation") if r not in roles]
        specs = Problems()
        for role in roles:
            specs.extend(spec_problems(role, given))
        # One report line per problem: the plan's words where it has some for a variable (they say what
        # would be accepted), the argument spec's otherwise; a plan that failed on an input the specs
        # name is not reported on top of them.
        if specs:
            plan_problems = Problems(p for p in plan_problems if p.variable != "(plan)")
        explained = {_variable_root(p.variable) for p in plan_problems}
        found.extend(p for p in specs if _variable_root(p.variable) not in explained)
        for name, rule in VALUE_RULES.items():
            if name in given:
                found.check(name, given[name], rule)
        if plan and purpose in ("deploy", "rolling_update"):
            for variable, value, expected in client_lock_problems(given, plan):
                found.add(variable, value, expected)
            for variable, value, expected in _tarballs.file_problems(plan["image_tarballs"], plan["image_tarball_sha256"]):
                found.add(variable, value, expected)
        found.extend(plan_problems)
        raw = raw_all.get(host) or {}
        seen = set()
        for problem in found:
            problem.host = host
            root = _variable_root(problem.variable)
            if not problem.source and root in raw:
                try:
                    problem.source = origin(raw[root])
                except Exception:  # noqa: BLE001
                    problem.source = ""
            key = (problem.variable, problem.line())
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return plans, problems, warnings


def validate_hosts(hosts, hostvars, groups=None, *, purpose="deploy"):
    """Problems of the host prerequisites (second stage): what each host's facts and read-only answers show.

    Reads, per host, ``ansible_facts``, the fact ``gpu_stack_plan`` and the registered results
    ``gpu_stack_host_info`` (stack_host_info) and ``gpu_stack_gpu_info`` (nvidia_gpu_info) of playbooks/validate.yml.
    """
    problems = Problems()
    if purpose not in ("deploy", "rolling_update"):
        return problems
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        settings = HostSettings(host, host_vars)
        if not settings.get("gpu_stack_host_checks"):
            continue

        def var(name, _vars=host_vars):
            try:
                return _vars[name] if name in _vars else None
            except Exception:  # noqa: BLE001 - an answer that is not there checks nothing
                return None

        gpu_info = var("gpu_stack_gpu_info")
        found = host_problems(var("ansible_facts") or {}, var("gpu_stack_plan") or {}, settings,
                              var("gpu_stack_host_info"), gpu_info)
        if isinstance(gpu_info, Mapping) and gpu_info.get("available") and groups is not None:
            # The inputs passed without the GPU count; with it, the plan also checks tensor-parallel sizes
            # and GPU memory shares against the GPUs this host has.
            try:
                found.extend(stack_plan(host, hostvars, groups, gpu_info=dict(gpu_info))[1])
            except Exception:  # noqa: BLE001 - the first stage planned this host; the roles plan it again
                pass
        for problem in found:
            problem.host = host
            problems.append(problem)
    return problems


def report(problems, hosts, *, what="the inputs") -> str:
    """One message: every problem of every host, grouped by host."""
    by_host: dict = {}
    for problem in problems:
        by_host.setdefault(problem.host, []).append(problem)
    lines = ["%d problem(s) with %s of %d of %d host(s); nothing was changed on any host:"
             % (len(problems), what, len(by_host), len(hosts))]
    for host in hosts:
        if host in by_host:
            lines.append("%s:" % host)
            lines += ["  - %s" % p.line() for p in by_host[host]]
    return "\n".join(lines)
