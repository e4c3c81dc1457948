# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""A host's settings as the stack plan reads them.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Every setting of the stack roles is found in one of three places, first match wins:

1. for the host the play runs on: its own scope (what ``lookup('vars', ...)`` sees: inventory,
   extra vars, play and role vars, and the defaults of the roles in the play);
2. for any other host: its variables as ``hostvars`` holds them (inventory, extra vars, facts);
3. the role's ``defaults/main.yml``, read from the collection's own files. The defaults of the
   roles the plan reads hold literal values only (a test keeps it so), so a gateway knows an
   engine host's port even when that host's play never loaded the engine role.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml

# The roles whose settings the plan reads, and their variable prefixes.
PLAN_ROLES = {
    "_common": "gpu_stack_",
    "inference_engine": "inference_engine_",
    "gateway": "gateway_",
    "monitoring": "monitoring_",
    "moderation": "moderation_",
    "nvidia_container_toolkit": "nvidia_container_toolkit_",
}
# Secrets of those roles: they have no default; the plan never copies their values.
SECRETS = ("inference_engine_api_key", "gateway_master_key", "gateway_redis_password", "gateway_database_password",
           "gateway_salt_key", "moderation_api_key")
# The variable-name pattern of everything the plan reads (for lookup('varnames', ...)).
VARNAMES_PATTERN = "^(%s)" % "|".join(sorted(PLAN_ROLES.values()))

_ROLES_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles"))
_MISSING = object()
_defaults_cache: dict[str, dict] = {}


def roles_dir() -> str:
    """The collection's roles/ folder."""
    return _ROLES_DIR


def role_defaults(role: str, base: str | None = None) -> dict:
    """The literal values of ``roles/<role>/defaults/main.yml`` (cached)."""
    path = os.path.join(base or _ROLES_DIR, role, "defaults", "main.yml")
    if path not in _defaults_cache:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError("%s is not a mapping of variables" % path)
        _defaults_cache[path] = dict(data)
    return _defaults_cache[path]


def all_defaults(base: str | None = None) -> dict:
    """The defaults of every role the plan reads, in one mapping."""
    merged: dict = {}
    for role in PLAN_ROLES:
        merged.update(role_defaults(role, base))
    return merged


class HostSettings(Mapping):
    """The settings of one host: ``layers`` first (own scope or hostvars), then the role defaults."""

    def __init__(self, host: str, *layers: Mapping, defaults: Mapping | None = None):
        self.host = host
        self._layers = [layer for layer in layers if layer is not None]
        self._defaults = all_defaults() if defaults is None else defaults

    def _lookup(self, name):
        for layer in self._layers:
            try:
                if name in layer:
                    return layer[name]
            except TypeError:
                continue
        return self._defaults.get(name, _MISSING)

    def __getitem__(self, name):
        value = self._lookup(name)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return self._lookup(name) is not _MISSING

    def __iter__(self):
        seen = set()
        for layer in self._layers + [self._defaults]:
            for name in layer:
                if name not in seen:
                    seen.add(name)
                    yield name

    def __len__(self):
        return sum(1 for _name in self)

    def get(self, key, default=None):
        value = self._lookup(key)
        return default if value is _MISSING else value

    def given(self, name) -> bool:
        """Whether the host sets ``name`` itself (not only the role default)."""
        for layer in self._layers:
            try:
                if name in layer:
                    return True
            except TypeError:
                continue
        return False

    def fact(self, name, default=None):
        """A gathered fact of the host (``ansible_facts`` in hostvars), or ``default``."""
        for layer in self._layers:
            try:
                facts = layer.get("ansible_facts") if hasattr(layer, "get") else None
            except Exception:  # noqa: BLE001 - an undefined fact is simply absent
                facts = None
            if isinstance(facts, Mapping) and name in facts:
                return facts[name]
        return default
