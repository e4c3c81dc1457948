# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The vLLM engines of a host: which model, which GPUs, tensor parallel, port, memory share.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

A host runs one engine by default (``inference-engine``, the seed's service, serving
``inference_engine_model`` with the role-wide settings). ``inference_engine_engines`` lists
several instead, e.g. four tensor-parallel-2 replicas of one model on an 8-GPU server (the
gateway balances them as deployments of one alias) or different models side by side. Each entry
takes the role-wide value of any key it does not set (the port: the role's port + its index).
GPUs given to two engines (or an engine and the guard) are refused unless their memory shares
sum below 1.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _rules, _sizing
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils._problems import Problems

FIRST_ENGINE = "inference-engine"
ENTRY_KEYS = ("name", "model", "gpus", "tensor_parallel_size", "port", "gpu_memory_utilization", "max_model_len",
              "dtype", "extra_args", "env")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# vLLM flags that no longer exist (the engine refuses to start with them).
REMOVED_FLAGS = {"--disable-log-requests": "it was removed from vLLM (request logging is off by default)"}
# Flags the role renders from its own settings: a second copy in extra_args would contradict them.
OWNED_FLAGS = ("--served-model-name", "--port", "--api-key", "--tensor-parallel-size", "-tp", "--gpu-memory-utilization",
               "--max-model-len", "--dtype", "--host")


def gpu_set(gpus):
    """('all', None) | ('count', n) | ('ids', [str, ...]) | (None, None) when the value is none of them."""
    if isinstance(gpus, str) and gpus.strip() == "all":
        return "all", None
    if _rules.is_int(gpus) and int(gpus) > 0:
        return "count", int(gpus)
    if isinstance(gpus, (list, tuple)) and gpus and all(
            (_rules.is_int(g) or (isinstance(g, str) and g.strip())) and not isinstance(g, bool) for g in gpus):
        return "ids", [str(g).strip() for g in gpus]
    return None, None


def gpu_ids_used(gpus, gpu_count=None, uuids=None):
    """The host GPU ids a reservation takes ('*' for every GPU when the host's count is unknown).

    ``uuids``: UUID -> index of the host's GPUs (nvidia_gpu_info) where known, so that one GPU named
    by its UUID and by its index is one GPU.
    """
    kind, value = gpu_set(gpus)
    if kind == "ids":
        return {(uuids or {}).get(v, v) for v in value}
    if kind == "count":
        return {str(i) for i in range(value)}
    if kind == "all":
        return {str(i) for i in range(gpu_count)} if gpu_count else {"*"}
    return set()


class _Entry:
    """One engine entry with the role-wide values filled in; ``var(key)`` names where a value came from."""

    def __init__(self, settings, given: Mapping, index: int, listed: bool):
        self.given = given
        self.index = index
        self.listed = listed

        def role(key):
            return settings.get("inference_engine_" + key)

        self.values = {key: given[key] if key in given else role(key) for key in ENTRY_KEYS if key not in ("name",)}
        self.values["model"] = self.values.get("model") or ""
        if listed and "port" not in given and _rules.is_int(role("port")):
            self.values["port"] = int(role("port")) + index
        self.values["name"] = given.get("name") or (FIRST_ENGINE if index == 0 else "%s-%d" % (FIRST_ENGINE, index + 1))

    def var(self, key):
        if self.listed and key in self.given:
            return "inference_engine_engines[%d].%s" % (self.index, key)
        if key == "name":
            return "inference_engine_engines[%d].name" % self.index
        return "inference_engine_" + key

    def __getitem__(self, key):
        return self.values[key]


def _check(problems, entry: _Entry, accelerator, aliases, models_listed=True):
    # With gpu_stack_models not a list at all, the models' own check has said so: no second line here.
    if entry["model"] not in aliases and (aliases or models_listed):
        problems.add("gpu_stack_models" if not aliases else entry.var("model"), entry["model"] if aliases else [],
                     "the alias of an entry of gpu_stack_models (%s)" % (", ".join(aliases) or "none is defined"))
    problems.check(entry.var("port"), entry["port"], _rules.port)
    if accelerator == "gpu":
        if gpu_set(entry["gpus"])[0] is None:
            problems.add(entry.var("gpus"), entry["gpus"],
                         "all, a GPU count (e.g. 2) or a non-empty list of device ids or UUIDs (e.g. [0, 1])")
        problems.check(entry.var("gpu_memory_utilization"), entry["gpu_memory_utilization"], _rules.fraction)
    tp = entry["tensor_parallel_size"]
    if tp != "auto" and _rules.positive_int(tp):
        problems.add(entry.var("tensor_parallel_size"), tp, "auto or a whole number of 1 or more")
    elif accelerator == "cpu" and tp != "auto" and int(tp) != 1:
        problems.add(entry.var("tensor_parallel_size"), tp, "auto or 1 on the CPU profile (gpu_stack_accelerator: cpu)")
    mml = entry["max_model_len"]
    if mml != "auto" and _rules.positive_int(mml):
        problems.add(entry.var("max_model_len"), mml, "auto or a whole number of tokens of 1 or more")
    if entry["dtype"] not in DTYPES:
        problems.add(entry.var("dtype"), entry["dtype"], "one of " + ", ".join(DTYPES))
    args = entry["extra_args"]
    if not isinstance(args, (list, tuple)) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in args):
        problems.add(entry.var("extra_args"), args,
                     'a list of arguments, one item each (e.g. ["--max-num-seqs", "64"]); a string would become one '
                     "argument per character")
    else:
        for arg in args:
            flag = str(arg).split("=", 1)[0]
            if flag in REMOVED_FLAGS:
                problems.add(entry.var("extra_args"), args, "no %s: %s" % (flag, REMOVED_FLAGS[flag]))
            elif flag in OWNED_FLAGS:
                problems.add(entry.var("extra_args"), args, "no %s: the role renders it from its own variable" % flag)
    env = entry["env"]
    if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, (str, int, float)) and not isinstance(v, bool) for k, v in env.items()):
        problems.add(entry.var("env"), env, 'a mapping of environment variable names to string values, e.g. {HF_HUB_OFFLINE: "1"}')


def _tensor_parallel(problems, entry: _Entry, accelerator, gpu_count, config):
    """GPU reservation and tensor-parallel size of one engine (None while 'auto' cannot be resolved)."""
    if accelerator != "gpu":
        return {"gpu_kind": None, "device_ids": None, "gpu_count": None, "gpus_given": None, "tensor_parallel_size": 1}
    kind, value = gpu_set(entry["gpus"])
    given = {"ids": len(value) if kind == "ids" else None, "count": value, "all": gpu_count}.get(kind)
    heads = None
    if isinstance(config, Mapping) and _rules.is_int(config.get("num_attention_heads")):
        heads = int(config["num_attention_heads"])
    tp = entry["tensor_parallel_size"]
    resolved = None
    if tp == "auto":
        if given:
            resolved = _sizing.tensor_parallel_size(given, heads)
    elif _rules.positive_int(tp) is None:
        resolved = int(tp)
        if given is not None and resolved > given:
            problems.add(entry.var("tensor_parallel_size"), tp,
                         "at most the %d GPU(s) given to this engine (%s)" % (given, entry.var("gpus")))
        if heads and heads % resolved:
            problems.add(entry.var("tensor_parallel_size"), tp,
                         "a size that divides the model's %d attention heads (vLLM refuses others)" % heads)
    return {"gpu_kind": kind, "device_ids": value if kind == "ids" else None, "gpu_count": value if kind == "count" else None,
            "gpus_given": given, "tensor_parallel_size": resolved}


def host_engines(settings, entries: Mapping, *, accelerator: str, host: str, gpu_info=None, model_configs=None):
    """(engines, problems) of one host.

    ``entries``: alias -> normalised model entry (plugin_utils._models). ``gpu_info``: the host's
    nvidia_gpu_info result (gpu_count, gpus) when known; ``model_configs``: alias -> the model's
    config.json as a dict, when read on the host. Without them a tensor-parallel size ``auto``
    over ``gpus: all`` stays None until the host's preflight has looked.
    """
    problems = Problems()
    listed = settings.get("inference_engine_engines")
    if listed is None:
        listed = []
    if not isinstance(listed, (list, tuple)) or not all(isinstance(e, Mapping) for e in listed):
        problems.add("inference_engine_engines", listed, "a list of engine entries (dicts with model, gpus, port, ...)")
        return [], problems
    aliases = list(entries)
    gpu_count = gpu_info.get("gpu_count") if isinstance(gpu_info, Mapping) else None
    engines, names, ports = [], {}, {}
    for index, given in enumerate(listed or [{}]):
        entry = _Entry(settings, given, index, bool(listed))
        unknown = sorted(set(given) - set(ENTRY_KEYS))
        if unknown:
            problems.add("inference_engine_engines[%d]" % index, sorted(given), "only the keys " + ", ".join(ENTRY_KEYS),
                         note="unknown: " + ", ".join(unknown))
        if not entry["model"] and aliases:
            entry.values["model"] = aliases[0]
        _check(problems, entry, accelerator, aliases, isinstance(settings.get("gpu_stack_models"), (list, tuple)))
        if problems.check(entry.var("name"), entry["name"], _rules.service_name):
            if entry["name"] in names:
                problems.add(entry.var("name"), entry["name"], "a name of its own (engine %d has it)" % names[entry["name"]])
            names.setdefault(entry["name"], index)
        port = entry["port"]
        if _rules.port(port) is None:
            port = int(port)
            if port in ports:
                problems.add(entry.var("port"), entry["port"], "a port of its own (%s uses %d)" % (ports[port], port))
            ports.setdefault(port, entry["name"])
        else:
            port = 0  # refused by _check above; a plan with problems is never rendered
        model = entries.get(entry["model"])
        if model is not None and not model.get("target_dir"):
            model = None  # an entry its own problems refuse (no directory to serve)
        engine = {
            "index": index,
            "name": entry["name"],
            "alias": entry["model"],
            "model_dir": model["target_dir"] if model else None,
            "container_path": ("/models/%s" % model["target_dir"].rstrip("/").rsplit("/", 1)[-1]) if model else None,
            "port": port,
            "gpus": entry["gpus"] if accelerator == "gpu" else None,
            "gpu_memory_utilization": _float(entry["gpu_memory_utilization"]) if accelerator == "gpu" else None,
            "max_model_len": entry["max_model_len"],
            "dtype": ("bfloat16" if accelerator == "cpu" else "auto") if entry["dtype"] == "auto" else entry["dtype"],
            "extra_args": [str(a) for a in entry["extra_args"]] if isinstance(entry["extra_args"], (list, tuple)) else [],
            "env": {str(k): str(v) for k, v in entry["env"].items()} if isinstance(entry["env"], Mapping) else {},
            "deployment_id": "%s/%s" % (host, entry["name"]),
            "variables": {key: entry.var(key) for key in ENTRY_KEYS},
        }
        engine.update(_tensor_parallel(problems, entry, accelerator, gpu_count, (model_configs or {}).get(entry["model"])))
        engines.append(engine)
    return engines, problems


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_gpu_shares(users, gpu_count=None, gpu_info=None):
    """Problems for GPUs shared by services whose memory shares sum to 1 or more.

    ``users``: dicts with ``variable`` (named in the report), ``name``, ``gpus``, ``share``. A
    reservation of every GPU with an unknown count shares a GPU with every other reservation.
    """
    problems = Problems()
    by_gpu: dict = {}
    listed = gpu_info.get("gpus") if isinstance(gpu_info, Mapping) else None
    uuids = {str(g["uuid"]): str(g["index"]) for g in listed or [] if isinstance(g, Mapping) and g.get("uuid") is not None
             and g.get("index") is not None}
    for user in users:
        for gpu in gpu_ids_used(user["gpus"], gpu_count, uuids):
            by_gpu.setdefault(gpu, []).append(user)
    wildcard = by_gpu.pop("*", [])
    order = {id(u): i for i, u in enumerate(users)}
    groups = [sorted(group + [u for u in wildcard if u not in group], key=lambda u: order[id(u)]) for group in by_gpu.values()]
    groups = groups or ([wildcard] if wildcard else [])
    reported = set()
    for group in groups:
        names = tuple(sorted(u["name"] for u in group))
        if len(group) < 2 or names in reported:
            continue
        total = round(sum(u["share"] for u in group if u["share"] is not None), 6)
        if total >= 1:
            reported.add(names)
            detail = " + ".join("%s %s" % (u["name"], u["share"]) for u in group)
            problems.add(group[-1]["variable"], group[-1]["share"],
                         "memory shares of the services sharing a GPU to sum below 1 (%s = %s)" % (detail, total))
    return problems
