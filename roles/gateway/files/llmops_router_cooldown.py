"""Drain or resume LiteLLM deployments through the router state the gateways share in Redis.

Run inside a gateway's litellm-proxy container (its Python has LiteLLM, redis and PyYAML):

    python3 -c "$(cat llmops_router_cooldown.py)" drain SECONDS ID [ID...]
    python3 -c "$(cat llmops_router_cooldown.py)" resume 0 ID [ID...]

``drain`` puts each deployment (``model_info.id``) into LiteLLM's own cooldown for SECONDS: the
same Redis entry the router writes when a deployment fails, read by every worker of every gateway
that shares this Redis (they re-read cooldowns from Redis about once a second), so no gateway sends
it new requests. ``resume`` removes the entries; a gateway that copied one into memory drops it
within a minute at most. The key and the value come from LiteLLM's CooldownCache, so they follow
the installed LiteLLM. The Redis host, port and password are the router's own, read from the
proxy's config (/app/config.yaml, ``os.environ/`` references resolved). Prints one JSON line.
"""

import json
import os
import sys
import time

import redis
import yaml
from litellm.router_utils.cooldown_cache import CooldownCache, CooldownCacheValue

CONFIG = os.environ.get("LLMOPS_LITELLM_CONFIG", "/app/config.yaml")


def resolve(value):
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value.split("/", 1)[1])
    return value


def main(argv):
    if len(argv) < 3 or argv[0] not in ("drain", "resume"):
        print(json.dumps({"failed": True, "msg": "usage: drain|resume SECONDS ID [ID...]"}))
        return 2
    action, seconds, ids = argv[0], float(argv[1]), argv[2:]
    with open(CONFIG, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    known = {str((entry.get("model_info") or {}).get("id")) for entry in config.get("model_list") or []}
    unknown = [ident for ident in ids if ident not in known]
    if unknown:
        print(json.dumps({"failed": True, "msg": "not deployments of this gateway: " + ", ".join(unknown)}))
        return 3
    router = config.get("router_settings") or {}
    if not router.get("redis_host"):
        print(json.dumps({"failed": True, "msg": "the router has no Redis (router_settings.redis_host)"}))
        return 4
    client = redis.Redis(host=resolve(router["redis_host"]), port=int(resolve(router.get("redis_port", 6379))),
                         password=resolve(router.get("redis_password")), socket_timeout=5, socket_connect_timeout=5)
    done = []
    for ident in ids:
        key = CooldownCache.get_cooldown_cache_key(ident)
        if action == "drain":
            value = CooldownCacheValue(exception_received="drained by llmops.gpu_stack rolling_update", status_code="503",
                                       timestamp=time.time(), cooldown_time=seconds)
            client.set(key, json.dumps(value), ex=max(1, int(seconds)))
        else:
            client.delete(key)
        done.append({"id": ident, "key": key})
    print(json.dumps({"changed": True, "action": action, "deployments": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
