# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The image filters: ``stack_images``, ``image_lock``, ``image_lock_changes``, ``image_pull_ref``, ``missing_images``,
``image_signature_checks``, ``tarball_mismatch``.

Their documentation is in the .yml files of the same names beside this file; the rules are in
``plugins/plugin_utils/_image_refs.py`` (references, pins, the lock) and ``_plan.py`` (which images a host runs).
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _image_refs, _plan, _tarballs

_IMAGE_VARIABLES = ("gpu_stack_registry", "gpu_stack_image_lock", "inference_engine_image", "inference_engine_version",
                    "inference_engine_cuda_suffix", "gateway_litellm_image", "gateway_litellm_version", "gateway_redis_image",
                    "monitoring_prometheus_image", "moderation_image")


def _stack_hosts(hostvars, groups):
    """The hosts of the inventory in one of the stack's groups (as playbooks/validate.yml keeps them)."""
    members = set()
    for host in (groups or {}).get("all", []):
        try:
            own = hostvars[host]
        except (KeyError, TypeError):
            own = {}
        names = {"gpu_hosts", own.get("gpu_stack_inference_group", "inference_hosts"), own.get("gpu_stack_gateway_group", "gateway_hosts")}
        if any(host in (groups.get(name) or []) for name in names):
            members.add(host)
    return sorted(members)


def stack_images_filter(hostvars, groups):
    """Every image the stack's hosts run: [{ref, variables, hosts}], ``ref`` as pulled (registry applied, no lock)."""
    found, problems = {}, []
    for host in _stack_hosts(hostvars, groups):
        try:
            plan, host_problems = _plan.stack_plan(host, hostvars, groups, own={"gpu_stack_image_lock_required": False})
        except (TypeError, ValueError, KeyError) as err:
            raise AnsibleFilterError("stack_images: cannot plan %s: %s" % (host, err)) from err
        problems += ["%s: %s" % (host, p.line()) for p in host_problems if p.variable.split("[")[0] in _IMAGE_VARIABLES]
        for entry in plan["image_refs"].values():
            item = found.setdefault(entry["ref"], {"ref": entry["ref"], "variables": [], "hosts": []})
            if entry["variable"] not in item["variables"]:
                item["variables"].append(entry["variable"])
            if host not in item["hosts"]:
                item["hosts"].append(host)
    if problems:
        raise AnsibleFilterError("stack_images: %d problem(s) with the image settings:\n  - %s" % (len(problems), "\n  - ".join(problems)))
    return [found[ref] for ref in sorted(found)]


def image_lock_filter(refs, images):
    """{lock, problems}: each of ``refs`` to the registry digest of the pulled image in ``images``."""
    if not isinstance(refs, list) or not isinstance(images, list):
        raise AnsibleFilterError("image_lock: the input must be a list of references and the images of docker_image_info")
    lock, problems = _image_refs.lock_from(refs, images)
    return {"lock": lock, "problems": problems}


def image_lock_changes_filter(old, new):
    """Sentences for what ``new`` changes in the lock ``old``: moved tags, dropped and new images."""
    if not isinstance(new, Mapping):
        raise AnsibleFilterError("image_lock_changes: the argument must be the new lock (a mapping)")
    return _image_refs.lock_changes(old if isinstance(old, Mapping) else {}, dict(new))


def image_pull_ref_filter(ref):
    """``name@digest`` for a pinned reference, else the reference."""
    return _image_refs.pull_ref(str(ref))


def missing_images_filter(refs, images, variables=None):
    """One sentence per reference of ``refs`` the host lacks (a pinned one by its digest)."""
    if not isinstance(images, list):
        raise AnsibleFilterError("missing_images: the argument must be the images list of docker_image_info")
    return _image_refs.missing(list(refs or []), images, variables)


def image_signature_checks_filter(lock, keys):
    """{checks, problems}: the cosign checks of the locked digests whose repository has a key in ``keys``."""
    if not isinstance(lock, Mapping):
        raise AnsibleFilterError("image_signature_checks: the input must be an image lock (a mapping)")
    checks, problems = _image_refs.signature_checks(dict(lock), keys)
    return {"checks": checks, "problems": problems}


def tarball_mismatch_filter(result, checksums):
    """A sentence when the copied tarball of ``result`` (a stat loop item) is not the one ``checksums`` locks, else ""."""
    if not isinstance(result, Mapping) or not isinstance(checksums, Mapping):
        raise AnsibleFilterError("tarball_mismatch: the input must be a stat result of a tarball loop, the argument a mapping")
    return _tarballs.copy_mismatch(result, checksums)


class FilterModule(object):
    """llmops.gpu_stack image filters."""

    def filters(self):
        return {
            "stack_images": stack_images_filter,
            "image_lock": image_lock_filter,
            "image_lock_changes": image_lock_changes_filter,
            "image_pull_ref": image_pull_ref_filter,
            "missing_images": missing_images_filter,
            "image_signature_checks": image_signature_checks_filter,
            "tarball_mismatch": tarball_mismatch_filter,
        }
