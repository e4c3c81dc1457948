# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""A host's place in the fleet and the address other hosts reach it at.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

Groups (``gpu_stack_inference_group``, ``gpu_stack_gateway_group``): a host in the inference group
runs engines, a host in the gateway group runs the gateway (LiteLLM, Redis, Prometheus, the guard)
for every engine of the inference group; a host in both runs both; a host in neither runs
everything for its own engines only (all-in-one, the single-host case).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def url_host(address: str) -> str:
    """An address as it goes into a URL (IPv6 in brackets)."""
    return "[%s]" % address if ":" in address and not address.startswith("[") else address


def members(groups: Mapping, name) -> list:
    value = groups.get(str(name), []) if isinstance(groups, Mapping) else []
    return list(value or [])


class Place:
    """Where a host stands: engines, gateway, both, or all-in-one."""

    def __init__(self, host: str, groups: Mapping, inference_group: str, gateway_group: str):
        self.host = host
        self.inference_members = members(groups, inference_group)
        self.gateway_members = members(groups, gateway_group)
        in_inference = host in self.inference_members
        in_gateway = host in self.gateway_members
        self.fleet = in_inference or in_gateway
        self.is_inference = in_inference or not in_gateway
        self.is_gateway = in_gateway or not in_inference

    @property
    def backends(self) -> list:
        """The hosts whose engines this host's gateway routes to."""
        if self.host in self.gateway_members:
            return list(self.inference_members)
        return [self.host]

    @property
    def remote_gateways(self) -> list:
        """Gateways on other hosts that call this host's engines."""
        if self.host not in self.inference_members:
            return []
        return [h for h in self.gateway_members if h != self.host]

    @property
    def first_gateway(self) -> str:
        return self.gateway_members[0] if self.gateway_members else self.host


def host_address(settings) -> tuple[str, str]:
    """(address, how it was found) for a host's settings (plugin_utils._settings.HostSettings).

    ``gpu_stack_address`` when set; else ``ansible_host`` when it is an IP address; else the
    default IPv4 address of the gathered facts; else ``ansible_host`` (a name); else the inventory name.
    """
    explicit = str(settings.get("gpu_stack_address") or "").strip()
    if explicit:
        return explicit, "gpu_stack_address"
    ansible_host = str(settings.get("ansible_host") or "").strip()
    if ansible_host and is_ip(ansible_host):
        return ansible_host, "ansible_host"
    default_ipv4 = settings.fact("default_ipv4") or settings.get("ansible_default_ipv4") or {}
    if isinstance(default_ipv4, Mapping) and default_ipv4.get("address"):
        return str(default_ipv4["address"]), "facts (default_ipv4)"
    if ansible_host:
        return ansible_host, "ansible_host (a name)"
    return settings.host, "inventory name"
