# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Image tarballs (``gpu_stack_image_tarballs``) and their checksums (``gpu_stack_image_tarball_sha256``).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

A host with no registry loads ``docker save`` tarballs copied from the controller. ``docker save`` keeps
no registry digest, so the lock of such a host is the tarball's own SHA-256, given in the inventory
(reviewed and committed like ``gpu_stack_image_lock``): the validation phase hashes each tarball on the
controller before anything changes, and the roles check the copy on the host again before loading it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping

SHA256 = re.compile(r"^[0-9a-f]{64}$")
TARBALLS = "gpu_stack_image_tarballs"
CHECKSUMS = "gpu_stack_image_tarball_sha256"
_CHUNK = 1 << 20
_cache: dict = {}


def checksum_problems(tarballs, checksums, lock_required: bool) -> list:
    """(variable, value, expected) of the checksums' form, without reading any file (the plan's checks)."""
    found = []
    tarballs = [str(t) for t in tarballs or []]
    if checksums is None:
        checksums = {}
    if not isinstance(checksums, Mapping):
        return [(CHECKSUMS, checksums, "a mapping of a tarball of gpu_stack_image_tarballs to its SHA-256 (64 hex digits)")]
    for path, value in checksums.items():
        if str(path) not in tarballs:
            found.append(("%s[%s]" % (CHECKSUMS, path), value,
                          "a key that is one of gpu_stack_image_tarballs (%s)" % (", ".join(tarballs) or "none given")))
        elif not isinstance(value, str) or not SHA256.match(value.strip().lower()):
            found.append(("%s[%s]" % (CHECKSUMS, path), value, "a SHA-256 of 64 hex digits (sha256sum's first column)"))
    if lock_required:
        for path in tarballs:
            if path not in {str(k) for k in checksums}:
                found.append((CHECKSUMS, dict(checksums),
                              "an entry for %s (gpu_stack_image_lock_required: a tarball is locked by its SHA-256; "
                              "sha256sum %s)" % (path, path)))
    return found


def sha256_of(path: str) -> str:
    """The file's SHA-256, computed once per path, size and modification time within a run."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def file_problems(tarballs, checksums) -> list:
    """(variable, value, expected) of the tarballs on the controller: each an absolute path to a readable
    file, with the SHA-256 the inventory gives for it, if any (read before anything changes)."""
    found = []
    checksums = checksums if isinstance(checksums, Mapping) else {}
    for index, given in enumerate(tarballs or []):
        path = str(given)
        variable = "%s[%d]" % (TARBALLS, index)
        if not os.path.isabs(path):
            found.append((variable, path, "an absolute path on the controller (a relative one would be looked for "
                                          "in the role's files/)"))
            continue
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            found.append((variable, path, "a readable file on the controller (docker save -o %s IMAGE...)" % path))
            continue
        want = checksums.get(path)
        if isinstance(want, str) and SHA256.match(want.strip().lower()):
            have = sha256_of(path)
            if have != want.strip().lower():
                found.append(("%s[%s]" % (CHECKSUMS, path), want,
                              "the tarball's SHA-256, but the file on the controller has %s: it is not the tarball "
                              "the inventory locked (replaced or damaged); nothing was copied or loaded" % have))
    return found


def copy_mismatch(result: Mapping, checksums: Mapping) -> str:
    """"" when the host's copy (``result``: a stat result of a loop over the copy results, ``item.item`` the
    tarball as given) has the SHA-256 ``checksums`` gives for its tarball, else a sentence naming both."""
    stat = result.get("stat") or {}
    tarball = str(((result.get("item") or {}).get("item")) or "")
    want = str(checksums.get(tarball, "")).strip().lower()
    have = stat.get("checksum")
    if want and have == want:
        return ""
    return "%s on the host has SHA-256 %s, not %s[%s] = %s" % (
        stat.get("path", "the copy of " + tarball), have or "(missing)", CHECKSUMS, tarball, want or "(none)")
