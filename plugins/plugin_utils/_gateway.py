# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""What a gateway routes to and how: LiteLLM's model_list, engine keys, the Redis endpoint, litellm.yaml.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

One LiteLLM deployment per engine of every host the gateway routes to, so LiteLLM's router
balances an alias over every engine that serves it: an engine on the gateway's own host by its
Compose service name on the stack network, an engine on another host at that host's address
and published port.
"""

from __future__ import annotations

import re

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._topology import url_host

SHARED_KEY_ENV = "VLLM_API_KEY"
GUARDRAIL_NAME = "llmops-moderation"
GUARDRAIL_FILES = ("llmops_guard.py", "guard_parser.py")
ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing", "usage-based-routing-v2",
                      "latency-based-routing", "cost-based-routing")


def key_env_name(host: str) -> str:
    """The gateway's environment variable holding ``host``'s own engine key."""
    return "%s_%s" % (SHARED_KEY_ENV, re.sub(r"[^A-Z0-9]", "_", str(host).upper()))


def deployments(backends, *, gateway_host, shared_key, allowed_fails):
    """LiteLLM model_list entries.

    ``backends``: [(host, address, engines, key)] in inventory order; ``key`` is the host's engine key
    (compared with ``shared_key``, the gateway host's own, to pick the environment variable).
    Returns (model_list, key_envs) where key_envs maps an environment variable to the host whose
    inference_engine_api_key it holds.
    """
    out, key_envs = [], {}
    for host, address, engines, key in backends:
        env = SHARED_KEY_ENV if (shared_key is not None and key == shared_key) else key_env_name(host)
        if engines:
            key_envs[env] = gateway_host if env == SHARED_KEY_ENV else host
        for engine in engines:
            where = engine["name"] if host == gateway_host else url_host(address)
            info = {"id": engine["deployment_id"], "mode": "chat"}
            if isinstance(engine.get("max_model_len"), int) and not isinstance(engine.get("max_model_len"), bool):
                info["max_input_tokens"] = engine["max_model_len"]
            extra = engine.get("litellm_model_info")
            if isinstance(extra, dict):
                info.update(extra)
            out.append({
                "model_name": engine["alias"],
                "litellm_params": {"model": "hosted_vllm/%s" % engine["alias"],
                                   "api_base": "http://%s:%d/v1" % (where, engine["port"]),
                                   "api_key": "os.environ/%s" % env},
                "model_info": info,
            })
    counts: dict = {}
    for deployment in out:
        counts[deployment["model_name"]] = counts.get(deployment["model_name"], 0) + 1
    for deployment in out:
        if counts[deployment["model_name"]] > 1:
            deployment["model_info"]["allowed_fails"] = int(allowed_fails)
    order = []
    for deployment in out:
        if deployment["model_name"] not in order:
            order.append(deployment["model_name"])
    return [d for alias in order for d in out if d["model_name"] == alias], key_envs


def _merge(base: dict, extra) -> dict:
    result = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _general_settings(settings, database) -> dict:
    general = {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    if database:
        # The URL is built by LiteLLM from DATABASE_HOST/USERNAME/PASSWORD/NAME (the container's
        # environment). With the database unreachable, keys verified within the key cache's lifetime
        # keep working and others are refused (docs/gateway-keys.md); true lets every request through.
        general["allow_requests_on_db_unavailable"] = bool(settings["gateway_database_allow_requests_when_down"])
    return general


def litellm_config(settings, *, model_list, redis, guard=None, database=False) -> dict:
    """litellm.yaml: secrets are os.environ/ references to the container's environment, never values."""
    litellm_settings = {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False}
    if settings["gateway_cache_enabled"]:
        litellm_settings.update({"cache": True, "cache_params": {
            "type": "redis", "host": redis["host"], "port": int(redis["port"]),
            "password": "os.environ/REDIS_PASSWORD", "ttl": int(settings["gateway_cache_ttl"])}})
    router = {
        "routing_strategy": settings["gateway_routing_strategy"],
        "num_retries": int(settings["gateway_num_retries"]),
        "timeout": settings["gateway_timeout"],
        "allowed_fails": int(settings["gateway_allowed_fails"]),
        "cooldown_time": settings["gateway_cooldown_time"],
        "redis_host": redis["host"],
        "redis_port": int(redis["port"]),
        "redis_password": "os.environ/REDIS_PASSWORD",
    }
    if settings["gateway_fallbacks"]:
        router["fallbacks"] = list(settings["gateway_fallbacks"])
    config = {
        "model_list": list(model_list) + list(settings["gateway_extra_models"] or []),
        "litellm_settings": _merge(litellm_settings, settings["gateway_litellm_settings"]),
        "router_settings": _merge(router, settings["gateway_router_settings"]),
        "general_settings": _merge(_general_settings(settings, database), settings["gateway_general_settings"]),
    }
    if guard:
        # The seed's input_moderation/output_moderation keys do not exist in LiteLLM: moderation is a
        # custom guardrail. Its own settings are named moderation_action etc.: LiteLLM validates a key
        # named `action` as block|mask and silently skips the whole guardrail on other values.
        config["guardrails"] = [{
            "guardrail_name": GUARDRAIL_NAME,
            "litellm_params": {
                "guardrail": "llmops_guard.LlmopsGuard",
                "mode": ["pre_call", "post_call"],
                "default_on": True,
                "api_base": "http://%s:%d/v1" % (guard["name"], guard["port"]),
                "api_key": "os.environ/MODERATION_API_KEY",
                "guard_model": guard["alias"],
                "moderation_action": settings["moderation_action"],
                "screen_input": bool(settings["moderation_screen_input"]),
                "screen_output": bool(settings["moderation_screen_output"]),
                "screen_stream": bool(settings["moderation_screen_stream"]),
                "on_error": settings["moderation_on_error"],
                "controversial": settings["moderation_controversial"],
                "timeout": int(settings["moderation_timeout"]),
            },
        }]
    return config
