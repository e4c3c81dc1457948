# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The stack plan of one host: what it runs, its Compose project, its config files, its firewall.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

``stack_plan(host, hostvars, groups, own=...)`` reads every host's settings (plugin_utils._settings)
and returns ``(plan, problems)``. The plan holds no secret value: secrets are named by host and
variable (``plan["secrets"]``) and resolved by the task that writes the 0600 env files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _gateway, _image_refs, _models, _monitoring, _rules, _services, _tarballs
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._engines import check_gpu_shares, gpu_set, host_engines
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._problems import Problem, Problems
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._settings import HostSettings, all_defaults
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._topology import Place, host_address, is_ip

GUARD_SERVICE = "moderation-engine"
DATABASE_SERVICE = "litellm-db"
ENGINE_ENV_FILE = "engine"
# The secrets each role needs (checked when the host runs the role).
MIN_SECRET_LENGTH = 16
_REGISTRY = re.compile(r"^(localhost(:[0-9]+)?|[^/]*[.:][^/]*)/")


def with_registry(image: str, registry: str) -> str:
    """``image`` from ``registry`` (a registry host already in the name is replaced)."""
    if not registry:
        return image
    return registry.rstrip("/") + "/" + _REGISTRY.sub("", image)


class _Fleet:
    """Settings of every host, looked up once."""

    def __init__(self, host, hostvars, groups, own, defaults):
        self.host = host
        self.hostvars = hostvars if isinstance(hostvars, Mapping) else {}
        self.groups = groups if isinstance(groups, Mapping) else {}
        self.own = own
        self.defaults = all_defaults() if defaults is None else defaults
        self._cache = {}

    def settings(self, name) -> HostSettings:
        if name not in self._cache:
            try:
                host_vars = self.hostvars[name]
            except (KeyError, TypeError):
                host_vars = {}
            layers = ([self.own] if (name == self.host and self.own is not None) else []) + [host_vars]
            self._cache[name] = HostSettings(name, *layers, defaults=self.defaults)
        return self._cache[name]


def _entries(settings, problems=None):
    models_root = settings.get("gpu_stack_models_root")
    entries, found = _models.model_entries(settings.get("gpu_stack_models"), models_root,
                                           stack_root=settings.get("gpu_stack_root"))
    if problems is not None:
        for text in found:
            problems.append(Problem("gpu_stack_models", text=text))
    return {e["alias"]: e for e in entries}


def _engines_of(fleet, name, problems=None, gpu_info=None, model_configs=None):
    settings = fleet.settings(name)
    entries = _entries(settings, problems)
    engines, found = host_engines(settings, entries, accelerator=settings.get("gpu_stack_accelerator"), host=name,
                                  gpu_info=gpu_info, model_configs=model_configs)
    if problems is not None:
        problems.extend(found)
    for engine in engines:
        info = (entries.get(engine["alias"]) or {}).get("litellm_model_info")
        if isinstance(info, Mapping):
            engine["litellm_model_info"] = dict(info)
    return engines


def _images(settings):
    accelerator = settings.get("gpu_stack_accelerator")
    version = settings.get("inference_engine_version")
    if settings.get("inference_engine_image"):
        engine = settings["inference_engine_image"]
    elif accelerator == "cpu":
        engine = "vllm/vllm-openai-cpu:v%s-x86_64" % version
    else:
        engine = "vllm/vllm-openai:v%s%s" % (version, settings.get("inference_engine_cuda_suffix") or "")
    images = {
        "engine": engine,
        "litellm": settings.get("gateway_litellm_image") or "ghcr.io/berriai/litellm:v%s" % settings.get("gateway_litellm_version"),
        "redis": settings.get("gateway_redis_image"),
        "postgres": settings.get("gateway_database_image"),
        "prometheus": settings.get("monitoring_prometheus_image"),
        "guard": settings.get("moderation_image") or engine,
    }
    return images


def _image_variables(settings):
    """The variable each image comes from (its version where the image is left to the default)."""
    return {
        "engine": "inference_engine_image" if settings.get("inference_engine_image") else "inference_engine_version",
        "litellm": "gateway_litellm_image" if settings.get("gateway_litellm_image") else "gateway_litellm_version",
        "redis": "gateway_redis_image",
        "postgres": "gateway_database_image",
        "prometheus": "monitoring_prometheus_image",
        "guard": "moderation_image" if settings.get("moderation_image") else
                 ("inference_engine_image" if settings.get("inference_engine_image") else "inference_engine_version"),
    }


def _guard(settings, entries, problems, engines):
    alias = settings.get("moderation_alias")
    model = entries.get(alias) if isinstance(alias, str) else None
    if model is not None and not model.get("target_dir"):
        model = None  # the entry's own problems (gpu_stack_models[...]) say why
    elif model is None:
        problems.add("moderation_alias", alias, "the alias of a gpu_stack_models entry (the guard model, downloaded like any "
                     "model): one of %s" % (", ".join(entries) or "none is defined"))
    elif alias in {e["alias"] for e in engines}:
        problems.add("moderation_alias", alias, "a guard model other than the models the engines serve (%s)"
                     % ", ".join(sorted({e["alias"] for e in engines})))
    accelerator = settings.get("gpu_stack_accelerator")
    problems.check("moderation_port", settings.get("moderation_port"), _rules.port)
    problems.check("moderation_max_model_len", settings.get("moderation_max_model_len"), _rules.positive_int)
    problems.check("moderation_health_start_period", settings.get("moderation_health_start_period"), _rules.non_negative_int)
    problems.check("moderation_timeout", settings.get("moderation_timeout"), _rules.positive_int)
    gpus = settings.get("moderation_gpus")
    if accelerator == "gpu":
        kind, value = gpu_set(gpus)
        if kind != "ids":
            problems.add("moderation_gpus", gpus, "a non-empty list of GPU device ids or UUIDs, e.g. [\"0\"]")
        problems.check("moderation_gpu_memory_utilization", settings.get("moderation_gpu_memory_utilization"), _rules.fraction)
    else:
        kind, value = None, None
    for name in ("moderation_extra_args",):
        args = settings.get(name)
        if not isinstance(args, (list, tuple)):
            problems.add(name, args, "a list of arguments, one item each")
    env = settings.get("moderation_env")
    if not isinstance(env, Mapping):
        problems.add("moderation_env", env, "a mapping of environment variable names to string values")
    if model is None:
        return None
    port = int(settings.get("moderation_port")) if _rules.port(settings.get("moderation_port")) is None else 8001
    base_env = settings.get("inference_engine_env") if isinstance(settings.get("inference_engine_env"), Mapping) else {}
    return {
        "name": GUARD_SERVICE, "alias": alias, "model_dir": model["target_dir"],
        "container_path": "/models/%s" % model["target_dir"].rstrip("/").rsplit("/", 1)[-1],
        "port": port, "gpus": gpus if accelerator == "gpu" else None,
        "gpu_kind": kind, "device_ids": value if kind == "ids" else None, "gpu_count": None,
        "gpu_memory_utilization": _float(settings.get("moderation_gpu_memory_utilization")) if accelerator == "gpu" else None,
        "tensor_parallel_size": 1, "max_model_len": settings.get("moderation_max_model_len"),
        "dtype": "bfloat16" if accelerator == "cpu" else "auto",
        "extra_args": [str(a) for a in settings.get("moderation_extra_args") or []] if isinstance(settings.get("moderation_extra_args"), (list, tuple)) else [],
        "env": {str(k): str(v) for k, v in {**base_env, **(env if isinstance(env, Mapping) else {})}.items()},
        "deployment_id": None,
    }


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_common(settings, problems):
    problems.check("gpu_stack_root", settings.get("gpu_stack_root"), _rules.absolute_path)
    if settings.get("gpu_stack_root") and settings.get("gpu_stack_root") == settings.get("gpu_stack_models_root"):
        problems.add("gpu_stack_root", settings.get("gpu_stack_root"), "a directory other than gpu_stack_models_root")
    project = settings.get("gpu_stack_project_name")
    if not isinstance(project, str) or not re.match(r"^[a-z0-9][a-z0-9_-]*$", project):
        problems.add("gpu_stack_project_name", project, "a Compose project name: lower-case letters, digits, - and _")
    for name in ("gpu_stack_wait_timeout", "gpu_stack_verify_timeout"):
        problems.check(name, settings.get(name), _rules.positive_int)
    registry = settings.get("gpu_stack_registry") or ""
    if registry and not re.match(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$", str(registry)):
        problems.add("gpu_stack_registry", registry, "a registry host[:port] with an optional path, e.g. registry.internal:5000")
    for variable, value, expected in _image_refs.lock_problems(settings.get("gpu_stack_image_lock")):
        problems.add(variable, value, expected)


def _secret(problems, settings, name, *, prefix=None):
    value = settings.get(name)
    if value is None or str(value) == "":
        problems.add(name, None, "a secret of at least %d characters (it has no default: Ansible Vault, -e, or an environment "
                     "variable the inventory reads)" % MIN_SECRET_LENGTH, secret=True, given=False)
        return
    text = str(value)
    if len(text) < MIN_SECRET_LENGTH:
        problems.add(name, text, "at least %d characters" % MIN_SECRET_LENGTH, secret=True)
    if re.search(r"['\"\r\n\\$]", text):
        problems.add(name, text, "no quote, backslash, $ or line break", secret=True)
    if prefix and not text.startswith(prefix):
        problems.add(name, text, "a key starting with %s (LiteLLM refuses other master keys)" % prefix, secret=True)


def stack_plan(host, hostvars, groups, *, own=None, gpu_info=None, model_configs=None, defaults=None):
    """(plan, problems) of ``host``."""
    fleet = _Fleet(host, hostvars, groups, own, defaults)
    settings = fleet.settings(host)
    problems = Problems()
    _check_common(settings, problems)
    accelerator = settings.get("gpu_stack_accelerator")
    root = str(settings.get("gpu_stack_root") or "").rstrip("/") or "/"
    place = Place(host, fleet.groups, settings.get("gpu_stack_inference_group"), settings.get("gpu_stack_gateway_group"))
    address, address_from = host_address(settings)
    entries = _entries(settings, problems)
    images = _images(settings)
    image_variables = _image_variables(settings)
    lock = settings.get("gpu_stack_image_lock") if isinstance(settings.get("gpu_stack_image_lock"), Mapping) else {}
    registry = settings.get("gpu_stack_registry") or ""
    moderation = place.is_gateway and bool(settings.get("moderation_enabled"))
    monitoring = place.is_gateway and bool(settings.get("monitoring_enabled"))

    engines = _engines_of(fleet, host, problems, gpu_info, model_configs) if place.is_inference else []
    guard = _guard(settings, entries, problems, engines) if moderation else None

    # vLLM on CPU binds its OpenMP threads to the host's cores ("auto"): two engines on one host would
    # bind to the same cores, and one starves the other (seen: a restarted engine's worker got no CPU
    # for minutes beside a busy one). Several CPU engines on a host leave the binding to the kernel.
    if accelerator == "cpu" and len(engines) + (1 if guard else 0) > 1:
        for vllm in engines + ([guard] if guard else []):
            vllm["env"].setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

    # GPUs shared by this host's engines and guard.
    if accelerator == "gpu":
        users = [{"variable": e["variables"]["gpu_memory_utilization"], "name": e["name"], "gpus": e["gpus"],
                  "share": e["gpu_memory_utilization"]} for e in engines]
        if guard:
            users.append({"variable": "moderation_gpu_memory_utilization", "name": GUARD_SERVICE, "gpus": guard["gpus"],
                          "share": guard["gpu_memory_utilization"]})
        problems.extend(check_gpu_shares(users, (gpu_info or {}).get("gpu_count") if isinstance(gpu_info, Mapping) else None,
                                         gpu_info if isinstance(gpu_info, Mapping) else None))

    # Ports this host publishes, and for whom.
    remote_gateways = place.remote_gateways
    gateway_addresses = []
    for name in place.gateway_members:
        if name != host:
            gateway_addresses.append(host_address(fleet.settings(name))[0])
    bind = str(settings.get("inference_engine_bind_address") or "").strip() or address
    allowed = settings.get("inference_engine_allowed_sources") or []
    sources = list(allowed) if allowed else gateway_addresses
    firewall = {"engine": [], "redis": [], "database": []}
    published = {}

    port_variables = {}

    def publish(port, what, variable):
        if port in published:
            problems.add(variable, port, "a host port of its own (%s already publishes %d)" % (published[port], port))
        published.setdefault(port, what)
        port_variables.setdefault(port, variable)

    engine_ports = {}
    for engine in engines:
        ports = []
        if remote_gateways:
            ports.append("%s:%d:%d" % (bind, engine["port"], engine["port"]))
            firewall["engine"].append({"port": engine["port"], "address": bind, "sources": sources, "what": engine["name"]})
            publish(engine["port"], engine["name"], engine["variables"]["port"])
        if settings.get("inference_engine_publish"):
            mapping = "%s:%d:%d" % (settings.get("inference_engine_publish_address"), engine["port"], engine["port"])
            if mapping not in ports:
                ports.append(mapping)
                if not remote_gateways:
                    publish(engine["port"], engine["name"], engine["variables"]["port"])
        engine_ports[engine["name"]] = ports
    if remote_gateways:
        if not is_ip(bind):
            problems.add("inference_engine_bind_address" if settings.get("inference_engine_bind_address") else "gpu_stack_address",
                         bind, "this host's IP address on the network between gateways and engines (the engines are published "
                         "there for the gateways; found from %s)" % address_from)
        if not sources:
            problems.add("inference_engine_allowed_sources", allowed, "at least one source (the gateways' addresses)")
    if place.is_inference and place.fleet and not place.gateway_members:
        problems.add("gpu_stack_gateway_group", settings.get("gpu_stack_gateway_group"),
                     "a group with at least one gateway host: %s is in %s, but nothing would route to its engines"
                     % (host, settings.get("gpu_stack_inference_group")))

    tarball_sha256 = settings.get("gpu_stack_image_tarball_sha256")
    tarballs = settings.get("gpu_stack_image_tarballs") or []
    plan = {
        "host": host,
        "address": address,
        "address_from": address_from,
        "accelerator": accelerator,
        "root": root,
        "project": settings.get("gpu_stack_project_name"),
        "models_root": settings.get("gpu_stack_models_root"),
        "validate": bool(settings.get("gpu_stack_validate")),
        "start": bool(settings.get("gpu_stack_start")),
        "wait_timeout": _int(settings.get("gpu_stack_wait_timeout"), 1800),
        "verify_timeout": _int(settings.get("gpu_stack_verify_timeout"), 120),
        "pull": settings.get("gpu_stack_pull"),
        # a string is refused by the argument spec; it is not split into one-letter "paths" here
        "image_tarballs": [str(t) for t in tarballs] if isinstance(tarballs, (list, tuple)) else [],
        "image_tarball_sha256": {str(k): str(v).strip().lower() for k, v in (tarball_sha256 or {}).items()}
        if isinstance(tarball_sha256, Mapping) else {},
        "firewall_enabled": bool(settings.get("gpu_stack_firewall")),
        "teardown": {"purge": bool(settings.get("gpu_stack_teardown_purge")),
                     "purge_models": bool(settings.get("gpu_stack_teardown_purge_models")),
                     "model_dirs": sorted(e["target_dir"] for e in entries.values() if e.get("target_dir"))},
        "fleet": place.fleet,
        "is_inference": place.is_inference,
        "is_gateway": place.is_gateway,
        "first_gateway": place.first_gateway if place.gateway_members else None,
        "first_gateway_port": _int(fleet.settings(place.first_gateway).get("gateway_port"), 4000) if place.gateway_members else None,
        "roles": [],
        "models": [],
        "engines": engines,
        "guard": guard,
        "gateway": None,
        "monitoring": None,
        "services": {},
        "service_roles": {},
        "images": {},
        "image_refs": {},
        "image_variables": {},
        "secrets": {},
        "firewall": firewall,
        "published_ports": published,
        "port_variables": port_variables,
    }

    def add(role, name, service, kind):
        if role not in plan["roles"]:
            plan["roles"].append(role)
        # compose.yaml runs the image the roles pull or load: the one from gpu_stack_registry, with its
        # digest from gpu_stack_image_lock where the lock has it (plugin_utils/_image_refs.py).
        ref = with_registry(images[kind], registry)
        variable = image_variables[kind]
        plan["image_refs"][name] = {"ref": ref, "variable": variable}
        plan["images"][name] = _image_refs.pin(ref, lock)
        plan["image_variables"][plan["images"][name]] = variable
        plan["services"][name] = _services.escape(dict(service, image=plan["images"][name]))
        plan["service_roles"][name] = role
        if settings.get("gpu_stack_image_lock_required") and not plan["image_tarballs"] \
                and not _image_refs.split(plan["images"][name])[2]:
            problems.add(variable, settings.get(variable) or ref,
                         "an image pinned by digest (gpu_stack_image_lock_required): %s is in no gpu_stack_image_lock "
                         "entry; run playbooks/lock_images.yml, or give name:tag@sha256:<digest>" % ref)

    for engine in engines:
        engine["start_period"] = _start_period(settings.get("inference_engine_health_start_period"), accelerator)
        add("inference_engine", engine["name"], _services.vllm_service(
            engine, image=images["engine"], accelerator=accelerator, root=root,
            env_file=root + "/secrets/engine.env", shm_size=settings.get("inference_engine_shm_size"),
            ipc_host=bool(settings.get("inference_engine_ipc_host")), cpu_kvcache_space=settings.get("inference_engine_cpu_kvcache_space"),
            health_start_period=_start_period(settings.get("inference_engine_health_start_period"), accelerator), logging_config=True,
            ports=engine_ports[engine["name"]]), "engine")
    if engines:
        plan["secrets"]["engine"] = {"VLLM_API_KEY": [host, "inference_engine_api_key"]}
    _check_engine_settings(settings, problems, accelerator, engines)

    if guard:
        add("moderation", GUARD_SERVICE, _services.vllm_service(
            guard, image=images["guard"], accelerator=accelerator, root=root, env_file=root + "/secrets/moderation-engine.env",
            shm_size="2g" if accelerator == "gpu" else settings.get("inference_engine_shm_size"), ipc_host=False,
            cpu_kvcache_space=settings.get("inference_engine_cpu_kvcache_space"),
            health_start_period=_int(settings.get("moderation_health_start_period"), 600), logging_config=False,
            # Two vLLM instances may share a GPU: the guard starts after the main engine has taken its share.
            depends_on=[e["name"] for e in engines]), "guard")
        plan["secrets"]["moderation-engine"] = {"VLLM_API_KEY": [host, "moderation_api_key"]}

    if place.is_gateway:
        plan["gateway"] = _gateway_part(fleet, settings, place, host, problems=problems, plan=plan, add=add, images=images,
                                        root=root, guard=guard, publish=publish, own_engines=engines)
    if monitoring:
        plan["monitoring"] = _monitoring_part(fleet, settings, place, host, problems=problems, plan=plan, add=add, images=images,
                                              root=root, guard=guard)

    plan["uses_gpus"] = accelerator == "gpu" and bool(engines or guard)
    toolkit = settings.get("nvidia_container_toolkit_enabled")
    if toolkit not in ("auto", True, False, "true", "false"):
        problems.add("nvidia_container_toolkit_enabled", toolkit, "auto, true or false")
    if toolkit in (True, "true") or (toolkit == "auto" and plan["uses_gpus"]):
        plan["roles"].insert(0, "nvidia_container_toolkit")
    plan["models"] = sorted({e["alias"] for e in engines} | ({guard["alias"]} if guard else set()))
    plan["model_dirs"] = {alias: entries[alias]["target_dir"] for alias in plan["models"] if entries.get(alias, {}).get("target_dir")}
    plan["model_sizes"] = {alias: entries[alias]["size_gb"] for alias in plan["model_dirs"] if entries[alias].get("size_gb")}
    # What the validation phase's second stage asks the host (playbooks/validate.yml; plugin_utils._prerequisites).
    smi = str(settings.get("nvidia_container_toolkit_nvidia_smi") or "")
    plan["host_checks"] = {
        "paths": sorted({p for p in [plan["models_root"], root, *plan["model_dirs"].values()] if isinstance(p, str) and p.startswith("/")}),
        "ports": sorted(int(p) for p in plan["published_ports"]),
        "model_dirs": sorted(set(plan["model_dirs"].values())),
        "needs_driver": "nvidia_container_toolkit" in plan["roles"] and bool(settings.get("nvidia_container_toolkit_require_gpu")),
        "nvidia_smi_path": smi if "/" in smi else None,
    } if settings.get("gpu_stack_host_checks") else None
    if settings.get("gpu_stack_firewall"):
        refused = set()
        for entry in firewall["engine"] + firewall["redis"] + firewall["database"]:
            # iptables-restore refuses an IPv6 destination in the IPv4 rules (the unit would fail at start).
            if is_ip(entry["address"]) and _rules.ipv4_source(entry["address"]) and entry["address"] not in refused:
                refused.add(entry["address"])
                problems.add("inference_engine_bind_address" if entry in firewall["engine"] and settings.get("inference_engine_bind_address")
                             else "gpu_stack_address", entry["address"],
                             "an IPv4 address while gpu_stack_firewall is on (it manages IPv4 only; switch it off where a "
                             "firewall of the site guards %s)" % entry["what"])
            for source in entry["sources"]:
                if _rules.ipv4_source(source):
                    problems.add("inference_engine_allowed_sources" if entry in firewall["engine"] else "gpu_stack_address",
                                 source, _rules.ipv4_source(source))
    pinned = sorted(ref for ref in plan["images"].values() if _image_refs.split(ref)[2])
    # A loaded image keeps no registry digest: a tarball host's lock is each tarball's own SHA-256.
    for variable, value, expected in _tarballs.checksum_problems(
            plan["image_tarballs"], settings.get("gpu_stack_image_tarball_sha256"),
            bool(settings.get("gpu_stack_image_lock_required")) and bool(plan["images"])):
        problems.add(variable, value, expected)
    if pinned and plan["image_tarballs"]:
        problems.add("gpu_stack_image_tarballs", plan["image_tarballs"],
                     "no tarballs on a host whose images are pinned by digest (%s): Docker keeps no registry digest for a "
                     "loaded image, so a pinned one cannot be found or checked; pull these hosts from a registry, or leave "
                     "their images unpinned" % ", ".join(pinned))
    _check_secrets(settings, problems, plan)
    for problem in problems:
        problem.host = problem.host or host
    return plan, problems


def _int(value, default):
    return int(value) if _rules.is_int(value) else default


# Healthcheck start periods of "auto" (seconds): GPUs load large weights and capture CUDA graphs;
# the CPU profile's small models answered after 74-291 s on 2 busy cores (docs/engine-cpu.md).
START_PERIOD = {"gpu": 900, "cpu": 300}


def _start_period(value, accelerator):
    return START_PERIOD.get(accelerator, 900) if value in (None, "", "auto") else _int(value, 900)


def _check_engine_settings(settings, problems, accelerator, engines):
    if not engines:
        return
    start = settings.get("inference_engine_health_start_period")
    if start != "auto":
        problems.check("inference_engine_health_start_period", start, _rules.non_negative_int)
    problems.check("inference_engine_shm_size", settings.get("inference_engine_shm_size"), _rules.docker_size)
    if accelerator == "cpu":
        if _rules.docker_size(settings.get("inference_engine_shm_size")) is None and \
                _rules.docker_size_bytes(settings.get("inference_engine_shm_size")) < 4 * 1024**3:
            problems.add("inference_engine_shm_size", settings.get("inference_engine_shm_size"),
                         "at least 4g on the CPU profile (vLLM's CPU image needs it)")
        problems.check("inference_engine_cpu_kvcache_space", settings.get("inference_engine_cpu_kvcache_space"), _rules.positive_int)
    problems.check("inference_engine_image", settings.get("inference_engine_image") or _images(settings)["engine"], _rules.image_ref)
    if settings.get("inference_engine_publish"):
        problems.check("inference_engine_publish_address", settings.get("inference_engine_publish_address"), _rules.ip_address)
    for name in ("inference_engine_drain_seconds", "inference_engine_drain_timeout", "inference_engine_resume_timeout"):
        problems.check(name, settings.get(name), _rules.positive_int)


def _gateway_part(fleet, settings, place, host, *, problems, plan, add, images, root, guard, publish, own_engines):
    for name in ("gateway_port",):
        problems.check(name, settings.get(name), _rules.port)
    for name in ("gateway_num_workers", "gateway_timeout", "gateway_cache_ttl"):
        problems.check(name, settings.get(name), _rules.positive_int)
    for name in ("gateway_num_retries", "gateway_allowed_fails", "gateway_deployment_allowed_fails",
                 "gateway_max_requests_before_restart", "gateway_cooldown_time"):
        problems.check(name, settings.get(name), _rules.non_negative_int)
    if settings.get("gateway_routing_strategy") not in _gateway.ROUTING_STRATEGIES:
        problems.add("gateway_routing_strategy", settings.get("gateway_routing_strategy"),
                     "one of " + ", ".join(_gateway.ROUTING_STRATEGIES) + " (LiteLLM refuses the config otherwise)")
    fallbacks = settings.get("gateway_fallbacks")
    if not isinstance(fallbacks, (list, tuple)) or not all(isinstance(f, Mapping) and len(f) == 1 for f in fallbacks):
        problems.add("gateway_fallbacks", fallbacks, 'a list of single-key mappings, e.g. [{"qwen3-8b": ["qwen3-8b-backup"]}]')
        fallbacks = []
    extra_models = settings.get("gateway_extra_models")
    if not isinstance(extra_models, (list, tuple)) or not all(isinstance(m, Mapping) and m.get("model_name") for m in extra_models):
        problems.add("gateway_extra_models", extra_models, "a list of LiteLLM model_list entries (each with model_name and litellm_params)")
    for name in ("gateway_litellm_settings", "gateway_router_settings", "gateway_general_settings"):
        if not isinstance(settings.get(name), Mapping):
            problems.add(name, settings.get(name), "a mapping (merged into the section of litellm.yaml)")
    problems.check("gateway_litellm_image", settings.get("gateway_litellm_image") or images["litellm"], _rules.image_ref)
    problems.check("gateway_bind_address", settings.get("gateway_bind_address"), _rules.ip_address)

    backends = []
    own_key = settings.get("inference_engine_api_key")
    for name in place.backends:
        engines = own_engines if name == host else _engines_of(fleet, name)
        other = fleet.settings(name)
        backends.append((name, host_address(other)[0], engines, other.get("inference_engine_api_key")))
    model_list, key_envs = _gateway.deployments(backends, gateway_host=host, shared_key=own_key,
                                                allowed_fails=_int(settings.get("gateway_deployment_allowed_fails"), 0))
    if not model_list:
        problems.add("gpu_stack_inference_group", settings.get("gpu_stack_inference_group"),
                     "at least one host whose engines the gateway on %s routes to (%s serve nothing)"
                     % (host, ", ".join(place.backends) or "no host"))
    aliases = {d["model_name"] for d in model_list} | {m.get("model_name") for m in extra_models or [] if isinstance(m, Mapping)}
    for fallback in fallbacks:
        for alias, targets in fallback.items():
            for name in [alias] + list(targets if isinstance(targets, (list, tuple)) else [targets]):
                if name not in aliases:
                    problems.add("gateway_fallbacks", fallbacks, "aliases the gateway serves (%s); %s is not one"
                                 % (", ".join(sorted(a for a in aliases if a)), name))

    # Redis for the router state: an external one, this host's redis-cache, or the first gateway's.
    external = str(settings.get("gateway_redis_host") or "").strip()
    first = place.first_gateway
    runs_redis = not external and (host not in place.gateway_members or host == first)
    shared = runs_redis and host in place.gateway_members and len(place.gateway_members) > 1
    problems.check("gateway_redis_port", settings.get("gateway_redis_port"), _rules.port)
    if external:
        redis = {"host": external, "port": _int(settings.get("gateway_redis_port"), 6379)}
    elif runs_redis:
        redis = {"host": "redis-cache", "port": 6379}
    else:
        first_settings = fleet.settings(first)
        redis = {"host": host_address(first_settings)[0], "port": _int(first_settings.get("gateway_redis_port"), 6379)}
        if first_settings.get("gateway_redis_password") != settings.get("gateway_redis_password"):
            problems.add("gateway_redis_password", settings.get("gateway_redis_password"),
                         "the same password as %s, whose Redis this gateway shares" % first, secret=True)
    redis_ports = []
    redis_sources = [host_address(fleet.settings(g))[0] for g in place.gateway_members if g != host]
    if shared:
        if not is_ip(plan["address"]):
            problems.add("gpu_stack_address", plan["address"], "this host's IP address: the other gateways share its Redis (found "
                         "from %s); or set gateway_redis_host to an external Redis" % plan["address_from"])
        redis_ports.append("%s:%d:6379" % (plan["address"], _int(settings.get("gateway_redis_port"), 6379)))
        plan["firewall"]["redis"].append({"port": _int(settings.get("gateway_redis_port"), 6379), "address": plan["address"],
                                          "sources": redis_sources, "what": "redis-cache"})
        publish(_int(settings.get("gateway_redis_port"), 6379), "redis-cache", "gateway_redis_port")
    if runs_redis and settings.get("gateway_redis_publish"):
        mapping = "%s:6379:6379" % settings.get("gateway_redis_publish_address")
        if mapping not in redis_ports:
            redis_ports.append(mapping)
    if _rules.port(settings.get("gateway_port")) is None:
        publish(int(settings.get("gateway_port")), "litellm-proxy", "gateway_port")

    database = _database_part(fleet, settings, place, host, problems=problems, plan=plan, publish=publish)

    guard_files = _gateway.GUARDRAIL_FILES if guard else ()
    depends = ([e["name"] for e in own_engines] + (["redis-cache"] if runs_redis else [])
               + ([DATABASE_SERVICE] if database and database["runs"] else []) + ([GUARD_SERVICE] if guard else []))
    add("gateway", "litellm-proxy", _services.litellm_service(
        image=images["litellm"], root=root, env_file=root + "/secrets/litellm-proxy.env",
        workers=_int(settings.get("gateway_num_workers"), 1),
        max_requests_before_restart=_int(settings.get("gateway_max_requests_before_restart"), 0),
        bind_address=settings.get("gateway_bind_address"), port=_int(settings.get("gateway_port"), 4000),
        guardrail_files=guard_files, depends_on=depends,
        database=database and {"host": "%s:%d" % (database["host"], database["port"]), "user": database["user"],
                               "name": database["name"]}), "litellm")
    if database and database["runs"]:
        problems.check("gateway_database_image", settings.get("gateway_database_image"), _rules.image_ref)
        add("gateway", DATABASE_SERVICE, _services.postgres_service(
            image=images["postgres"], root=root, env_file=root + "/secrets/%s.env" % DATABASE_SERVICE,
            user=database["user"], name=database["name"], ports=database["ports"]), "postgres")
        plan["secrets"][DATABASE_SERVICE] = {"POSTGRES_PASSWORD": [host, "gateway_database_password"]}
    if runs_redis:
        problems.check("gateway_redis_image", settings.get("gateway_redis_image"), _rules.image_ref)
        add("gateway", "redis-cache", _services.redis_service(image=images["redis"], root=root,
                                                              env_file=root + "/secrets/redis-cache.env", ports=redis_ports),
            "redis")
        plan["secrets"]["redis-cache"] = {"REDIS_PASSWORD": [host, "gateway_redis_password"]}
    secrets = {"LITELLM_MASTER_KEY": [host, "gateway_master_key"],
               "REDIS_PASSWORD": [first if (not external and not runs_redis) else host, "gateway_redis_password"]}
    for env, owner in key_envs.items():
        secrets[env] = [owner, "inference_engine_api_key"]
    if database:
        secrets["DATABASE_PASSWORD"] = [database["owner"], "gateway_database_password"]
        secrets["LITELLM_SALT_KEY"] = [host, "gateway_salt_key"]
    if guard:
        secrets["MODERATION_API_KEY"] = [host, "moderation_api_key"]
    plan["secrets"]["litellm-proxy"] = secrets
    for name, value in (("moderation_action", ("block", "log")), ("moderation_on_error", ("closed", "open")),
                        ("moderation_controversial", ("strict", "loose"))):
        if guard and settings.get(name) not in value:
            problems.add(name, settings.get(name), "one of " + ", ".join(value))
    return {
        "model_list": model_list,
        "key_envs": key_envs,
        "redis": redis,
        "runs_redis": runs_redis,
        "redis_shared": shared,
        "database": database and {k: database[k] for k in ("host", "port", "name", "user", "runs", "shared")},
        "port": _int(settings.get("gateway_port"), 4000),
        "deployment_ids": [d["model_info"]["id"] for d in model_list],
        "aliases": sorted({d["model_name"] for d in model_list}),
        "litellm_config": _gateway.litellm_config(settings, model_list=model_list, redis=redis, guard=guard,
                                                  database=bool(database)),
        "guardrail_files": list(guard_files),
    }


def _database_part(fleet, settings, place, host, *, problems, plan, publish):
    """Postgres for LiteLLM's keys, teams, budgets and spend: an external one (gateway_database_host),
    this host's litellm-db, or, on a fleet, the first gateway's (published on its address for the
    other gateways only, like the shared Redis). None when gateway_database is off."""
    enabled = settings.get("gateway_database")
    if not isinstance(enabled, bool):
        problems.add("gateway_database", enabled, "true or false")
    if not enabled:
        return None
    for name in ("gateway_database_name", "gateway_database_user"):
        problems.check(name, settings.get(name), _rules.sql_identifier)
    problems.check("gateway_database_port", settings.get("gateway_database_port"), _rules.port)
    external = str(settings.get("gateway_database_host") or "").strip()
    first = place.first_gateway
    runs = not external and (host not in place.gateway_members or host == first)
    shared = runs and host in place.gateway_members and len(place.gateway_members) > 1
    port = _int(settings.get("gateway_database_port"), 5432)
    database = {"name": settings.get("gateway_database_name"), "user": settings.get("gateway_database_user"),
                "runs": runs, "shared": shared, "ports": [], "owner": host}
    if external:
        database.update(host=external, port=port)
    elif runs:
        database.update(host=DATABASE_SERVICE, port=5432)
    else:
        other = fleet.settings(first)
        database.update(host=host_address(other)[0], port=_int(other.get("gateway_database_port"), 5432), owner=first,
                        name=other.get("gateway_database_name"), user=other.get("gateway_database_user"))
        for name in ("gateway_database_password", "gateway_salt_key"):
            if other.get(name) != settings.get(name):
                problems.add(name, settings.get(name), "the same value as on %s, whose database this gateway shares" % first,
                             secret=True)
        if other.get("gateway_database") is not True:
            problems.add("gateway_database", enabled, "the same as on %s (the first gateway, which would run the database)"
                         % first)
    if shared:
        if not is_ip(plan["address"]):
            problems.add("gpu_stack_address", plan["address"], "this host's IP address: the other gateways share its database "
                         "(found from %s); or set gateway_database_host to an external Postgres" % plan["address_from"])
        database["ports"].append("%s:%d:5432" % (plan["address"], port))
        plan["firewall"]["database"].append({"port": port, "address": plan["address"], "what": DATABASE_SERVICE,
                                             "sources": [host_address(fleet.settings(g))[0] for g in place.gateway_members
                                                         if g != host]})
        publish(port, DATABASE_SERVICE, "gateway_database_port")
    return database


def _monitoring_part(fleet, settings, place, host, *, problems, plan, add, images, root, guard):
    problems.check("monitoring_port", settings.get("monitoring_port"), _rules.port)
    problems.check("monitoring_bind_address", settings.get("monitoring_bind_address"), _rules.ip_address)
    problems.check("monitoring_retention", settings.get("monitoring_retention"), _rules.prometheus_duration)
    problems.check("monitoring_scrape_interval", settings.get("monitoring_scrape_interval"), _rules.prometheus_duration)
    problems.check("monitoring_prometheus_image", settings.get("monitoring_prometheus_image"), _rules.image_ref)
    for name in ("monitoring_uid", "monitoring_gid", "monitoring_alert_queue_waiting_threshold"):
        problems.check(name, settings.get(name), _rules.non_negative_int)
    for name in ("monitoring_alert_kv_cache_threshold", "monitoring_alert_gateway_error_ratio"):
        problems.check(name, settings.get(name), _rules.fraction)
    problems.check("monitoring_alert_ttft_p95_seconds", settings.get("monitoring_alert_ttft_p95_seconds"), _rules.positive_number)
    if _rules.port(settings.get("monitoring_port")) is None:
        port = int(settings.get("monitoring_port"))
        if port in plan["published_ports"]:
            problems.add("monitoring_port", port, "a host port of its own (%s already publishes %d)" % (plan["published_ports"][port], port))
        plan["published_ports"].setdefault(port, "prometheus")
        plan["port_variables"].setdefault(port, "monitoring_port")
    gateways = [(host, "litellm-proxy:4000")]
    if host in place.gateway_members:
        for name in place.gateway_members:
            if name != host:
                other = fleet.settings(name)
                gateways.append((name, _monitoring.target(host_address(other)[0], _int(other.get("gateway_port"), 4000))))
    engines = []
    for deployment in (plan["gateway"] or {}).get("model_list", []):
        owner, engine = deployment["model_info"]["id"].split("/", 1)
        target = deployment["litellm_params"]["api_base"].split("://", 1)[1].rsplit("/v1", 1)[0]
        engines.append((owner, engine, target))
    config = _monitoring.prometheus_config(host=host, scrape_interval=settings.get("monitoring_scrape_interval"),
                                           gateways=gateways, engines=engines, guard=guard)
    add("monitoring", "prometheus", _services.prometheus_service(
        image=images["prometheus"], root=root, uid=settings.get("monitoring_uid"), gid=settings.get("monitoring_gid"),
        retention=settings.get("monitoring_retention"), bind_address=settings.get("monitoring_bind_address"),
        port=_int(settings.get("monitoring_port"), 9090)), "prometheus")
    jobs = ["litellm-proxy", "inference-engine"] + (["moderation-engine"] if guard else [])
    return {"prometheus_config": config, "jobs": jobs}


def _check_secrets(settings, problems, plan):
    roles = plan["roles"]
    if "inference_engine" in roles:
        _secret(problems, settings, "inference_engine_api_key")
    if "gateway" in roles:
        _secret(problems, settings, "gateway_master_key", prefix="sk-")
        _secret(problems, settings, "gateway_redis_password")
        if settings.get("gateway_database") is True:
            _secret(problems, settings, "gateway_database_password")
            # LiteLLM escapes it with quote_plus into its URL: a space becomes "+", which Prisma reads as "+"
            if " " in str(settings.get("gateway_database_password") or ""):
                problems.add("gateway_database_password", settings.get("gateway_database_password"),
                             "no space (LiteLLM puts it in the database URL as '+', and the login fails)", secret=True)
            _secret(problems, settings, "gateway_salt_key")
    if "moderation" in roles:
        _secret(problems, settings, "moderation_api_key")


def compose_project(plan) -> dict:
    """The host's compose.yaml as data."""
    return {"name": plan["project"], "services": plan["services"]}
