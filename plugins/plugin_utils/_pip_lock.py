# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Hash locks of the virtualenvs the roles create (roles/model_store/files/pip/*.txt, tools/pip_locks.sh).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# "name==version ; marker \" at the start of a line of a requirements file
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
_HASHED = re.compile(r"^[A-Za-z0-9][^\n]*\\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n?)+", re.MULTILINE)


def normal(name: str) -> str:
    """A project name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def pins(text: str) -> dict[str, set[str]]:
    """Project -> the versions a requirements file pins (several where environment markers differ)."""
    found: dict[str, set[str]] = {}
    for name, version in _PIN.findall(str(text or "")):
        found.setdefault(normal(name), set()).add(version)
    return found


def problems(text, wanted, source: str, *, own: bool = False) -> list[tuple[str, object, str]]:
    """(variable, value, expected) for each project of ``wanted`` (project -> [variable, version]) that
    the lock ``text`` (read from ``source``; ``own``: the user's model_store_pip_requirements, else the
    collection's) does not pin at that version, and for a lock that is missing or has no hashes."""
    have = pins(text) if isinstance(text, str) else {}
    variable = "model_store_pip_requirements" if own else "model_store_pip_require_hashes"
    value = source if own else True
    if not have:
        return [(variable, value, "a requirements file with hashes on the controller (%s is missing or pins no package)"
                 % source)]
    found = []
    if len(_HASHED.findall(text)) < sum(1 for line in text.splitlines() if _PIN.match(line)):
        found.append((variable, value, "a lock with --hash=sha256: lines for every requirement (pip --require-hashes "
                      "refuses %s)" % source))
    for project, (name, version) in wanted.items() if isinstance(wanted, Mapping) else []:
        versions = have.get(normal(project), set())
        if str(version) not in versions:
            found.append((name, version, "the version the hash lock %s pins (%s %s), or model_store_pip_requirements: your "
                          "own lock with hashes for these versions (tools/pip_locks.sh makes one)"
                          % (source, project, " or ".join(sorted(versions)) or "not at all")))
    return found


def lock_file(role_files: str, huggingface: bool) -> str:
    """The collection's lock for the clients of a host (with huggingface_hub or without)."""
    return "%s/pip/%s.txt" % (role_files.rstrip("/"), "modelscope-huggingface" if huggingface else "modelscope")
