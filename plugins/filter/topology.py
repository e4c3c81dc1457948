# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Fleet topology filters: ``gateway_model_list``, ``gateway_engine_keys`` and ``stack_addresses``.

The inventory says which hosts run engines (``inference_hosts``) and which run the gateway
(``gateway_hosts``); these filters turn it into what LiteLLM and Prometheus need: one LiteLLM
deployment per (engine host, alias), addressed by the host's reachable address and published
port, so that LiteLLM's router load-balances an alias over every host that serves it.

Their documentation is in ``gateway_model_list.yml``, ``gateway_engine_keys.yml`` and
``stack_addresses.yml`` beside this file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# The Compose service an engine on the gateway's own host is reached by (stack network).
LOCAL_ENGINE_SERVICE = "inference-engine"
SHARED_KEY_ENV = "VLLM_API_KEY"
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_MISSING = object()


def _vars_of(hostvars, host, filter_name):
    try:
        host_vars = hostvars[host]
    except KeyError as err:
        raise AnsibleFilterError("%s: %s is not in the inventory (hostvars)" % (filter_name, host)) from err
    if not isinstance(host_vars, Mapping):
        raise AnsibleFilterError("%s: the variables of %s are not a mapping" % (filter_name, host))
    return host_vars


class _Layered(Mapping):
    """A host's variables with some of them overridden (the play's own values for the gateway host)."""

    def __init__(self, top, bottom):
        self._top = top
        self._bottom = bottom

    def __getitem__(self, key):
        if key in self._top:
            return self._top[key]
        return self._bottom[key]

    def __iter__(self):
        seen = set(self._top)
        yield from self._top
        for key in self._bottom:
            if key not in seen:
                yield key

    def __len__(self):
        return len(set(self._top) | set(self._bottom))

    def get(self, key, default=None):
        if key in self._top:
            return self._top[key]
        return self._bottom.get(key, default)


def _get(host_vars, name, default=None):
    """A host's variable; an unset, None or empty-string value gives ``default``."""
    value = host_vars.get(name, _MISSING)
    if value is _MISSING or value is None or (isinstance(value, str) and value.strip() == ""):
        return default
    return value


def _is_ip(value):
    value = str(value)
    return bool(_IPV4.match(value)) or (":" in value and all(c in "0123456789abcdefABCDEF:." for c in value))


def host_address(host_vars, host):
    """The address other hosts of the stack reach ``host`` at.

    ``llm_stack_address`` when set; else ``ansible_host`` when it is an IP address; else the
    default IPv4 address from gathered facts; else ``ansible_host`` (a name); else the inventory name.
    """
    explicit = _get(host_vars, "llm_stack_address")
    if explicit is not None:
        return str(explicit).strip()
    ansible_host = _get(host_vars, "ansible_host")
    if ansible_host is not None and _is_ip(ansible_host):
        return str(ansible_host)
    facts = _get(host_vars, "ansible_facts", {}) or {}
    default_ipv4 = (facts.get("default_ipv4") if isinstance(facts, Mapping) else None) or _get(host_vars, "ansible_default_ipv4", {}) or {}
    if isinstance(default_ipv4, Mapping) and default_ipv4.get("address"):
        return str(default_ipv4["address"])
    if ansible_host is not None:
        return str(ansible_host)
    return str(host)


def _url_host(address):
    return "[%s]" % address if ":" in address and not address.startswith("[") else address


def key_env_name(host):
    """Name of the gateway's environment variable holding ``host``'s own engine key."""
    return "%s_%s" % (SHARED_KEY_ENV, re.sub(r"[^A-Z0-9]", "_", str(host).upper()))


def _as_list(value, name, filter_name):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s: %s must be a list of inventory host names" % (filter_name, name))
    return list(value)


def _served_model(host_vars, host, models, filter_name):
    """(alias, model entry) the host's engine serves, or (None, None) when it serves nothing."""
    models = _get(host_vars, "model_store_models", models)
    if models is None:
        models = []
    if not isinstance(models, (list, tuple)):
        raise AnsibleFilterError("%s: model_store_models of %s must be a list" % (filter_name, host))
    alias = _get(host_vars, "llm_stack_engine_model")
    if alias is None:
        if not models:
            return None, None
        first = models[0]
        if not isinstance(first, Mapping) or not first.get("alias"):
            raise AnsibleFilterError("%s: the first model_store_models entry of %s has no alias" % (filter_name, host))
        return str(first["alias"]), first
    alias = str(alias)
    for entry in models:
        if isinstance(entry, Mapping) and str(entry.get("alias")) == alias:
            return alias, entry
    raise AnsibleFilterError(
        "%s: %s serves llm_stack_engine_model %s, which is not an alias of its model_store_models (%s)"
        % (filter_name, host, alias, ", ".join(str(m.get("alias")) for m in models if isinstance(m, Mapping))))


def _port(value, host, filter_name):
    try:
        port = int(value)
    except (TypeError, ValueError) as err:
        raise AnsibleFilterError("%s: the port of %s is not a number: %r" % (filter_name, host, value)) from err
    if not 0 < port < 65536:
        raise AnsibleFilterError("%s: the port of %s is out of range: %d" % (filter_name, host, port))
    return port


def _different_key(host_vars, api_key):
    own = _get(host_vars, "llm_stack_engine_api_key")
    return own is not None and api_key is not None and str(own) != str(api_key)


def gateway_model_list(hostvars, inference_hosts, gateway_host=None, *, models=None, port=8001, max_model_len=None,
                       api_key=None, allowed_fails=None, overrides=None):
    """LiteLLM ``model_list`` entries: one deployment per inference host and the alias it serves."""
    name = "gateway_model_list"
    hosts = _as_list(inference_hosts, "inference_hosts", name)
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("%s: the input must be hostvars (a mapping of host name to variables)" % name)
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping) or not all(isinstance(v, Mapping) for v in overrides.values()):
        raise AnsibleFilterError("%s: overrides must map host names to dictionaries of variables" % name)
    deployments = []
    seen = set()
    for host in hosts:
        if host in seen:
            continue
        seen.add(host)
        host_vars = _vars_of(hostvars, host, name)
        if host in overrides:
            host_vars = _Layered(overrides[host], host_vars)
        alias, entry = _served_model(host_vars, host, models, name)
        if alias is None:
            continue
        host_port = _port(_get(host_vars, "llm_stack_engine_port", port), host, name)
        if gateway_host is not None and host == gateway_host:
            where = LOCAL_ENGINE_SERVICE
        else:
            where = _url_host(host_address(host_vars, host))
        key_env = key_env_name(host) if _different_key(host_vars, api_key) else SHARED_KEY_ENV
        context = _get(host_vars, "llm_stack_engine_max_model_len", max_model_len)
        engine = entry.get("engine") if isinstance(entry.get("engine"), Mapping) else {}
        if engine.get("max_model_len") is not None:
            context = engine["max_model_len"]
        model_info = {"id": "%s/%s" % (host, alias), "mode": "chat"}
        if isinstance(context, int) and not isinstance(context, bool):
            model_info["max_input_tokens"] = context
        extra_info = entry.get("litellm_model_info")
        if isinstance(extra_info, Mapping):
            model_info.update(extra_info)
        deployments.append({
            "model_name": alias,
            "litellm_params": {
                "model": "hosted_vllm/%s" % alias,
                "api_base": "http://%s:%d/v1" % (where, host_port),
                "api_key": "os.environ/%s" % key_env,
            },
            "model_info": model_info,
        })
    if allowed_fails is not None:
        counts = {}
        for deployment in deployments:
            counts[deployment["model_name"]] = counts.get(deployment["model_name"], 0) + 1
        for deployment in deployments:
            if counts[deployment["model_name"]] > 1:
                deployment["model_info"]["allowed_fails"] = int(allowed_fails)
    # Grouped by alias (first appearance), inventory order within an alias: a stable file.
    order = []
    for deployment in deployments:
        if deployment["model_name"] not in order:
            order.append(deployment["model_name"])
    return [d for alias in order for d in deployments if d["model_name"] == alias]


def gateway_engine_keys(hostvars, inference_hosts, api_key=None):
    """{env name: key} for inference hosts whose engine key differs from the shared one."""
    name = "gateway_engine_keys"
    hosts = _as_list(inference_hosts, "inference_hosts", name)
    keys = {}
    for host in hosts:
        host_vars = _vars_of(hostvars, host, name)
        if _different_key(host_vars, api_key):
            keys[key_env_name(host)] = str(_get(host_vars, "llm_stack_engine_api_key"))
    return keys


def stack_addresses(hostvars, hosts, port_variable=None, port=None):
    """The addresses other stack hosts reach ``hosts`` at (``address:port`` with a port), in order, without duplicates."""
    name = "stack_addresses"
    result = []
    for host in _as_list(hosts, "hosts", name):
        host_vars = _vars_of(hostvars, host, name)
        address = host_address(host_vars, host)
        if port_variable is not None or port is not None:
            value = _get(host_vars, port_variable, port) if port_variable else port
            if value is None:
                raise AnsibleFilterError("%s: %s sets no %s and no default port was given" % (name, host, port_variable))
            address = "%s:%d" % (_url_host(address), _port(value, host, name))
        if address not in result:
            result.append(address)
    return result


class FilterModule(object):
    """llmops.gpu_stack fleet topology filters."""

    def filters(self):
        return {
            "gateway_model_list": gateway_model_list,
            "gateway_engine_keys": gateway_engine_keys,
            "stack_addresses": stack_addresses,
        }
