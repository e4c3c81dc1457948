# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Image references, digest pins and the image lock (``gpu_stack_image_lock``).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

A reference is ``[registry[:port]/]path[:tag][@sha256:<64 hex>]``. The lock maps a reference as the
hosts pull it (``gpu_stack_registry`` applied, no digest) to the digest its registry served when
``playbooks/lock_images.yml`` ran; the plan then runs ``name:tag@digest``. Docker pulls such a
reference by its digest alone and checks the content against it, so a tag moved in the registry
afterwards is never run. Docker records what it pulled in ``RepoDigests`` as ``name@digest``
(no tag), which is what the pull and the presence checks look for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HUB = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def split(ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of ``ref``; name keeps its registry."""
    text = str(ref)
    digest = None
    if "@" in text:
        text, digest = text.rsplit("@", 1)
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
    return text, tag, digest


def docker_name(name: str) -> str:
    """``name`` as Docker lists it in RepoTags/RepoDigests (Docker Hub's host and library/ left out)."""
    for prefix in _HUB:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    return name


def unpinned(ref: str) -> str:
    """``ref`` without its digest (the key of the lock)."""
    name, tag, _digest = split(ref)
    return name + (":" + tag if tag else "")


def pin(ref: str, lock) -> str:
    """``ref`` with its digest from ``lock`` (a reference that carries its own digest keeps it)."""
    if split(ref)[2] or not isinstance(lock, Mapping):
        return ref
    digest = lock.get(ref)
    return "%s@%s" % (ref, digest) if isinstance(digest, str) and DIGEST.match(digest) else ref


def pull_ref(ref: str) -> str:
    """What to pull and look for: ``name@digest`` for a pinned reference (Docker ignores its tag), else ``ref``."""
    name, _tag, digest = split(ref)
    return "%s@%s" % (name, digest) if digest else ref


def lock_problems(lock) -> list[tuple[str, object, str]]:
    """(variable, value, expected) for each malformed part of ``gpu_stack_image_lock``."""
    if lock is None or lock == "":
        return []
    if not isinstance(lock, Mapping):
        return [("gpu_stack_image_lock", lock, "a mapping of image reference to sha256 digest (playbooks/lock_images.yml writes it)")]
    found = []
    for ref, digest in lock.items():
        variable = 'gpu_stack_image_lock["%s"]' % ref
        if not isinstance(ref, str) or split(ref)[2] or not split(ref)[1]:
            found.append((variable, digest, "a key that is an image reference with a tag and no digest, e.g. redis:7.2.11-alpine"))
        elif not isinstance(digest, str) or not DIGEST.match(digest):
            found.append((variable, digest, "a digest sha256:<64 lower-case hex>"))
    return found


def _repo_digests(image: Mapping) -> list[str]:
    return [str(d) for d in (image.get("RepoDigests") or [])]


def _repo_tags(image: Mapping) -> list[str]:
    return [str(t) for t in (image.get("RepoTags") or [])]


def _normal(ref: str) -> str:
    name, tag, digest = split(ref)
    return docker_name(name) + (":" + tag if tag else "") + ("@" + digest if digest else "")


def present(ref: str, images) -> bool:
    """Whether ``ref`` is among ``images`` (docker_image_info's list): a pinned one by its digest."""
    name, _tag, digest = split(ref)
    for image in images or []:
        if digest:
            if "%s@%s" % (docker_name(name), digest) in {_normal(d) for d in _repo_digests(image)}:
                return True
        elif _normal(ref) in {_normal(t) for t in _repo_tags(image)}:
            return True
    return False


def missing(refs, images, variables=None) -> list[str]:
    """One sentence per reference of ``refs`` that ``images`` lacks, naming its variable where known
    (``variables``: ref -> variable) and, for a pinned one, what the host has under its tag instead."""
    variables = variables if isinstance(variables, Mapping) else {}
    lines = []
    for ref in refs or []:
        if present(ref, images):
            continue
        name, tag, digest = split(ref)
        line = "%s%s is not on the host" % (ref, " (%s)" % variables[ref] if variables.get(ref) else "")
        if digest and tag:
            tagged = "%s:%s" % (docker_name(name), tag)
            others = [i for i in images or [] if tagged in {_normal(t) for t in _repo_tags(i)}]
            if others:
                other = others[0]
                seen = sorted({d.rsplit("@", 1)[-1] for d in _repo_digests(other)}) or ["no registry digest (loaded or built here)"]
                line += ("; the host has %s as image %s with %s, not the pinned %s (the tag moved, or another image was "
                         "loaded under it)" % (tagged, str(other.get("Id", "?"))[:19], ", ".join(seen), digest))
        lines.append(line)
    return lines


def registry_digest(ref: str, image: Mapping) -> str | None:
    """The digest the registry of ``ref`` gave ``image`` (from its RepoDigests), or None."""
    name = docker_name(split(ref)[0])
    for entry in _repo_digests(image):
        entry_name, _tag, digest = split(entry)
        if docker_name(entry_name) == name and digest:
            return digest
    return None


def lock_from(refs, images) -> tuple[dict, list[str]]:
    """(lock, problems): each reference of ``refs`` (without digest) to the digest of the pulled image
    in ``images`` (docker_image_info's list, in the order of ``refs``)."""
    lock, problems = {}, []
    for ref in refs or []:
        key = unpinned(ref)
        candidates = [i for i in images or [] if present(ref, [i])]
        if not candidates:
            problems.append("%s: not on the lock host after the pull" % ref)
            continue
        own = split(ref)[2]
        digest = own or registry_digest(ref, candidates[0])
        if not digest:
            problems.append("%s: Docker knows no registry digest for it (built or loaded here, never pulled from a registry)"
                            % ref)
            continue
        lock[key] = digest
    return dict(sorted(lock.items())), problems


def lock_changes(old, new) -> list[str]:
    """Sentences for each entry of ``old`` that ``new`` gives another digest (a tag that moved) or drops."""
    old = old if isinstance(old, Mapping) else {}
    lines = []
    for ref in sorted(old):
        if ref not in new:
            lines.append("%s: in the lock, no host of the inventory runs it now" % ref)
        elif new[ref] != old[ref]:
            lines.append("%s: the lock has %s, the registry serves %s now (the tag moved)" % (ref, old[ref], new[ref]))
    for ref in sorted(set(new) - set(old)):
        lines.append("%s: not in the lock yet (%s)" % (ref, new[ref]))
    return lines


def signature_checks(lock, keys) -> tuple[list[dict], list[str]]:
    """(checks, problems) of the signatures playbooks/lock_images.yml verifies: one check
    {image, ref, key} per locked reference whose repository (as pulled, no tag) has a public key in
    ``keys``, ``ref`` being ``name@digest`` (what the signature must cover); a key naming no locked
    repository is a problem (a typo would otherwise check nothing)."""
    if not isinstance(keys, Mapping):
        return [], ["lock_images_cosign_keys must be a mapping of an image's repository (as the hosts pull it, "
                    "no tag) to a cosign public key file, got %r" % (keys,)]
    checks, problems, used = [], [], set()
    for ref in sorted(lock or {}):
        name = split(ref)[0]
        key = keys.get(name)
        if key is None:
            continue
        used.add(name)
        if not isinstance(key, str) or not key:
            problems.append("lock_images_cosign_keys[%s] must be the path of a cosign public key file, got %r" % (name, key))
            continue
        checks.append({"image": ref, "ref": "%s@%s" % (name, lock[ref]), "key": key})
    repositories = sorted({split(ref)[0] for ref in lock or {}})
    for name in sorted(set(keys) - used):
        problems.append("lock_images_cosign_keys[%s]: no image of the inventory is from that repository (they are: %s)"
                        % (name, ", ".join(repositories) or "none"))
    return checks, problems
