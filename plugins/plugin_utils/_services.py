# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The Compose service definitions of the stack, as Python data.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

``vllm_service`` is written once and used for every engine and for the guard engine. Secrets
reach the containers through per-service env files under ``<gpu_stack_root>/secrets/`` (mode
0600): never in compose.yaml, never on a command line. Every ``$`` in a value is doubled, so
Compose interpolates nothing (the shell in the Redis command expands ``$REDIS_PASSWORD`` from the
container's own environment).
"""

from __future__ import annotations

LOGGING = {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}
# The GPU request goes through Docker's device requests (`--gpus`, Compose's
# deploy.resources.reservations.devices) with the runc runtime, not through the nvidia runtime
# and NVIDIA_VISIBLE_DEVICES: vLLM's images on driver 580 failed CUDA init (error 803) under the
# nvidia runtime and worked with --gpus and runc (docs/gpu.md). Every service names its runtime,
# so a host whose default-runtime is nvidia gives no GPU to a service that asked for none.
RUNTIME = "runc"


def _python_probe(port, path):
    """A healthcheck with the image's own Python (curl may be absent): 200 from 127.0.0.1:<port><path>."""
    code = ("import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', %d, timeout=5); c.request('GET', %r); "
            "sys.exit(0 if c.getresponse().status == 200 else 1)" % (port, path))
    return ["CMD", "python3", "-c", code]


def escape(value):
    """Double every ``$`` of every string (Compose would interpolate it otherwise)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [escape(v) for v in value]
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    return value


def vllm_service(engine: dict, *, image: str, accelerator: str, root: str, env_file: str, shm_size: str,
                 ipc_host: bool, cpu_kvcache_space, health_start_period: int, logging_config: bool,
                 ports=(), depends_on=None) -> dict:
    """A vLLM OpenAI server (the image's entrypoint is `vllm serve`: the command starts with the model)."""
    command = [engine["container_path"], "--served-model-name", engine["alias"], "--port", str(engine["port"])]
    gpu = accelerator == "gpu"
    tp = engine.get("tensor_parallel_size") or 1
    if gpu or tp > 1:
        command += ["--tensor-parallel-size", str(tp)]
    if gpu:
        command += ["--gpu-memory-utilization", str(engine["gpu_memory_utilization"])]
    if engine.get("max_model_len") not in (None, ""):
        command += ["--max-model-len", str(engine["max_model_len"])]
    if engine.get("dtype") and engine["dtype"] != "auto":
        command += ["--dtype", engine["dtype"]]
    command += list(engine.get("extra_args") or [])
    environment = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    volumes = [{"type": "bind", "source": engine["model_dir"], "target": engine["container_path"], "read_only": True,
                "bind": {"create_host_path": False}}]
    if logging_config:
        environment["VLLM_LOGGING_CONFIG_PATH"] = "/etc/vllm/logging.json"
        volumes += [{"type": "bind", "source": root + "/config/vllm-logging.json", "target": "/etc/vllm/logging.json",
                     "read_only": True},
                    {"type": "bind", "source": root + "/logs/vllm", "target": "/var/log/vllm"}]
    if not gpu:
        environment["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kvcache_space)
        environment["NVIDIA_VISIBLE_DEVICES"] = "void"
    environment.update(engine.get("env") or {})
    service = {
        "image": image,
        "container_name": engine["name"],
        "restart": "unless-stopped",
        "runtime": RUNTIME,
        "command": command,
        "env_file": [env_file],
        "environment": environment,
        "volumes": volumes,
    }
    if gpu:
        device = {"driver": "nvidia", "capabilities": ["gpu"]}
        if engine["gpu_kind"] == "ids":
            device["device_ids"] = list(engine["device_ids"])
        elif engine["gpu_kind"] == "count":
            device["count"] = engine["gpu_count"]
        else:
            device["count"] = "all"
        service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
        if ipc_host:
            service["ipc"] = "host"
        else:
            service["shm_size"] = shm_size
    else:
        # vLLM's CPU image: shared memory for its workers, SYS_NICE for NUMA/thread binding,
        # seccomp off for the get_mempolicy/set_mempolicy calls it makes (upstream's docs).
        service["shm_size"] = shm_size
        service["cap_add"] = ["SYS_NICE"]
        service["security_opt"] = ["seccomp=unconfined"]
    if ports:
        service["ports"] = list(ports)
    if depends_on:
        service["depends_on"] = {name: {"condition": "service_healthy"} for name in depends_on}
    service["healthcheck"] = {
        # /health is open (no key) and 200 once the engine serves; the port opens only after the
        # weights are loaded (and on GPUs the CUDA graphs captured), hence the long start period.
        "test": _python_probe(engine["port"], "/health"),
        "interval": "15s", "timeout": "10s", "retries": 3, "start_period": "%ds" % int(health_start_period),
    }
    service["logging"] = LOGGING
    return service


def litellm_service(*, image: str, root: str, env_file: str, workers: int, max_requests_before_restart: int,
                    bind_address: str, port: int, guardrail_files=(), depends_on=(), database=None) -> dict:
    command = ["--config", "/app/config.yaml", "--port", "4000", "--num_workers", str(workers)]
    if max_requests_before_restart > 0:
        command += ["--max_requests_before_restart", str(max_requests_before_restart)]
    environment = {
        # The cost map shipped in the image, instead of a fetch from the internet at start.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
    if database:
        # LiteLLM builds DATABASE_URL from these (escaping the password, which the env file holds as
        # DATABASE_PASSWORD) and runs its migrations at start.
        environment.update({"DATABASE_HOST": database["host"], "DATABASE_USERNAME": database["user"],
                            "DATABASE_NAME": database["name"]})
    service = {"image": image, "container_name": "litellm-proxy", "restart": "unless-stopped", "runtime": RUNTIME,
               "command": command, "env_file": [env_file], "environment": environment}
    if workers > 1:
        environment["PROMETHEUS_MULTIPROC_DIR"] = "/tmp/prometheus_multiproc"
        service["tmpfs"] = ["/tmp/prometheus_multiproc"]
    volumes = [{"type": "bind", "source": root + "/config/litellm.yaml", "target": "/app/config.yaml", "read_only": True},
               # The rolling update's drain/resume helper (LiteLLM's own cooldown keys).
               {"type": "bind", "source": root + "/config/llmops_router_cooldown.py", "target": "/app/llmops_router_cooldown.py",
                "read_only": True}]
    # A guardrail is imported relative to the config file's directory (/app).
    volumes += [{"type": "bind", "source": "%s/config/guardrails/%s" % (root, name), "target": "/app/" + name, "read_only": True}
                for name in guardrail_files]
    service["volumes"] = volumes
    service["ports"] = ["%s:%d:4000" % (bind_address, port)]
    if depends_on:
        service["depends_on"] = {name: {"condition": "service_healthy"} for name in depends_on}
    service["healthcheck"] = {
        # /health/liveliness needs no key (/health would call every deployment).
        "test": _python_probe(4000, "/health/liveliness"),
        "interval": "15s", "timeout": "10s", "retries": 3, "start_period": "60s",
    }
    service["logging"] = LOGGING
    return service


def redis_service(*, image: str, root: str, env_file: str, ports=()) -> dict:
    service = {
        "image": image, "container_name": "redis-cache", "restart": "unless-stopped", "runtime": RUNTIME,
        # The password reaches redis-server from the environment; the official entrypoint still
        # drops to the redis user, and redis-server rewrites its process title (no password in ps).
        "command": ["sh", "-c", 'exec docker-entrypoint.sh redis-server --requirepass "${REDIS_PASSWORD}" --appendonly yes --dir /data'],
        "env_file": [env_file],
        "environment": {"NVIDIA_VISIBLE_DEVICES": "void"},
        "volumes": [{"type": "bind", "source": root + "/data/redis", "target": "/data"}],
    }
    if ports:
        service["ports"] = list(ports)
    service["healthcheck"] = {"test": ["CMD-SHELL", 'REDISCLI_AUTH="${REDIS_PASSWORD}" redis-cli ping | grep -q PONG'],
                              "interval": "10s", "timeout": "5s", "retries": 5, "start_period": "10s"}
    service["logging"] = LOGGING
    return service


def postgres_service(*, image: str, root: str, env_file: str, user: str, name: str, ports=()) -> dict:
    """litellm-db: the official postgres image; the password only in the env file (POSTGRES_PASSWORD),
    data in data/postgres (the official 18 image keeps PGDATA in /var/lib/postgresql/18/docker)."""
    service = {
        "image": image, "container_name": "litellm-db", "restart": "unless-stopped", "runtime": RUNTIME,
        "env_file": [env_file],
        "environment": {"POSTGRES_USER": user, "POSTGRES_DB": name, "NVIDIA_VISIBLE_DEVICES": "void"},
        "volumes": [{"type": "bind", "source": root + "/data/postgres", "target": "/var/lib/postgresql"}],
        # A fast shutdown (the image's STOPSIGNAL is SIGINT) with time to write its checkpoint.
        "stop_grace_period": "60s",
    }
    if ports:
        service["ports"] = list(ports)
    service["healthcheck"] = {"test": ["CMD-SHELL", 'pg_isready -q -h 127.0.0.1 -U "${POSTGRES_USER}" -d "${POSTGRES_DB}"'],
                              "interval": "10s", "timeout": "5s", "retries": 5, "start_period": "30s"}
    service["logging"] = LOGGING
    return service


def prometheus_service(*, image: str, root: str, uid, gid, retention: str, bind_address: str, port: int) -> dict:
    return {
        "image": image, "container_name": "prometheus", "restart": "unless-stopped", "runtime": RUNTIME,
        "user": "%s:%s" % (uid, gid),
        "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=%s" % retention],
        "environment": {"NVIDIA_VISIBLE_DEVICES": "void"},
        "volumes": [
            # The folder, not single files: a reload (SIGHUP) then sees files Ansible replaced.
            {"type": "bind", "source": root + "/config/prometheus", "target": "/etc/prometheus", "read_only": True},
            {"type": "bind", "source": root + "/data/prometheus", "target": "/prometheus"},
        ],
        "ports": ["%s:%d:9090" % (bind_address, port)],
        "healthcheck": {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"],
                        "interval": "15s", "timeout": "5s", "retries": 3, "start_period": "30s"},
        "logging": LOGGING,
    }
