# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""GPU sizing for vLLM engines, on the controller: tensor-parallel size, KV-cache bytes per token,
and whether a model fits the GPUs it gets (pure functions, no I/O).

Used by the ``tensor_parallel_size`` and ``model_fits`` filters (``plugins/filter/gpu_stack.py``)
and by the stack's plan (``_engines.py``). Every function raises ``ValueError`` naming the input
that is wrong; the filters turn that into ``AnsibleFilterError``. The GPU facts come from the
``nvidia_gpu_info`` module (``plugins/module_utils/_nvidia_smi.py`` on the managed host).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GIB = 1024 ** 3
MIB = 1024 ** 2
DEFAULT_OVERHEAD_BYTES = 2 * GIB
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # vLLM's current default for --gpu-memory-utilization
KV_BYTES_PER_VALUE = 2  # BF16 / FP16, vLLM's default KV-cache dtype for such models


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool):
        raise ValueError("%s must be an integer, got %r" % (name, value))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("%s must be an integer, got %r" % (name, value)) from None
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("%s must be a whole number, got %r" % (name, value))
    if number < minimum:
        raise ValueError("%s must be >= %d, got %r" % (name, minimum, value))
    return number


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError("%s must be a number, got %r" % (name, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("%s must be a number, got %r" % (name, value)) from None
    if number < 0:
        raise ValueError("%s must be >= 0, got %r" % (name, value))
    return number


def tensor_parallel_size(gpus: int, num_attention_heads: int | None = None) -> int:
    """The tensor-parallel size for ``gpus`` GPUs: the largest power of two <= ``gpus`` that
    also divides ``num_attention_heads`` when that is given.

    vLLM splits every attention layer across the tensor-parallel ranks, so it refuses a
    ``--tensor-parallel-size`` that does not divide the model's number of attention heads (for
    Qwen3-8B: 32 heads, 8 KV heads). Powers of two divide the head counts of common models
    (32, 40, 64, 128 ...), so 6 GPUs give 4 and 3 GPUs give 2; the spare GPUs stay idle.
    With 20 heads, 8 GPUs give 4.

    ``gpus`` and ``num_attention_heads`` may be integers, integral floats or digit strings.
    Raises ValueError (naming ``gpu_count`` or ``num_attention_heads``) for anything below 1
    or not a whole number.
    """
    count = _positive_int(gpus, "gpu_count")
    heads = None if num_attention_heads is None else _positive_int(num_attention_heads, "num_attention_heads")
    size = 1
    while size * 2 <= count:
        size *= 2
    if heads is not None:
        while size > 1 and heads % size:
            size //= 2
    return size


def _config_count(config: Mapping[str, Any], key: str, default: int) -> int:
    """A count from a model's config.json: ``default`` when absent or null, else an integer >= 0."""
    value = config.get(key)
    if value is None:
        return default
    return _positive_int(value, "config.json %s" % key, minimum=0)


def kv_bytes_per_token(config: Mapping[str, Any], *, bytes_per_value: int = KV_BYTES_PER_VALUE) -> int:
    """KV-cache bytes one token takes in vLLM, from a model's ``config.json`` (a mapping):

        2 (key and value) x num_hidden_layers x num_key_value_heads x head_dim x bytes_per_value

    ``num_key_value_heads`` defaults to ``num_attention_heads`` (no grouped-query attention), and
    ``head_dim`` to ``hidden_size // num_attention_heads``. A multimodal config that keeps the
    language model's figures under ``text_config`` (no ``num_hidden_layers`` at the top) is read
    from there. A count that is absent or null counts as 0, so an empty config (no
    ``config.json``) gives 0: the fit check then counts no KV cache. ``bytes_per_value`` is 2 for
    a BF16/FP16 KV cache.

    Qwen3-8B (36 layers, 8 KV heads, head_dim 128): 2 x 36 x 8 x 128 x 2 = 147456 (144 KiB).
    Raises ValueError when ``config`` is not a mapping or a count is not a whole number >= 0.
    """
    if not isinstance(config, Mapping):
        raise ValueError("config must be a mapping (the model's config.json), got %s" % type(config).__name__)
    text_config = config.get("text_config")
    if config.get("num_hidden_layers") is None and isinstance(text_config, Mapping):
        config = text_config
    width = _positive_int(bytes_per_value, "bytes_per_value")
    heads = _config_count(config, "num_attention_heads", 0)
    layers = _config_count(config, "num_hidden_layers", 0)
    kv_heads = _config_count(config, "num_key_value_heads", heads)
    hidden_size = _config_count(config, "hidden_size", 0)
    head_dim = _config_count(config, "head_dim", hidden_size // heads if heads else 0)
    return 2 * layers * kv_heads * head_dim * width


def per_gpu_memory_mib(gpu_info: Any) -> Any:
    """Memory of one GPU in MiB: ``gpu_info`` itself when it is a number, or the smallest
    ``memory_total_mib`` of an ``nvidia_gpu_info`` result (a mapping with ``gpus``).

    A number is returned as given (:func:`model_memory_estimate` checks it). Raises ValueError
    when the result lists no GPU memory.
    """
    if not isinstance(gpu_info, Mapping):
        return gpu_info
    sizes = [gpu.get("memory_total_mib") for gpu in gpu_info.get("gpus") or [] if isinstance(gpu, Mapping)]
    sizes = [size for size in sizes if size is not None]
    if not sizes:
        raise ValueError("the nvidia_gpu_info result lists no GPU memory")
    return min(sizes)


def model_memory_estimate(gpu_memory_mib: Any, weights_bytes: Any, *, kv_bytes_per_token: Any = 0, max_model_len: Any = None,
                          gpu_memory_utilization: Any = DEFAULT_GPU_MEMORY_UTILIZATION, tensor_parallel_size: Any = 1,
                          overhead_bytes: Any = DEFAULT_OVERHEAD_BYTES) -> dict[str, Any]:
    """Whether a model fits, with the figures behind the answer (all bytes).

    required  = weights + KV cache per token x max_model_len + overhead x tensor_parallel_size
    available = GPU memory per GPU x gpu_memory_utilization x tensor_parallel_size

    Weights and the KV cache are split across the tensor-parallel GPUs; the overhead (CUDA
    context, activations, CUDA graphs: about 2 GiB) is paid on each GPU. ``max_model_len`` None
    (vLLM's ``auto``) counts no KV cache: vLLM then sizes the context to what is left, which
    this estimate does not predict. Qwen3-8B BF16: weights about 16.4e9 bytes, KV cache 147456
    bytes (144 KiB) per token. An estimate, not vLLM's own profiling run.

    Returns ``{fits, required_bytes, available_bytes, weights_bytes, kv_cache_bytes,
    overhead_bytes, required_gib, available_gib}``. Raises ValueError naming the bad input.
    """
    memory = _non_negative(gpu_memory_mib, "gpu_memory_mib")
    weights = _non_negative(weights_bytes, "weights_bytes")
    kv = _non_negative(kv_bytes_per_token, "kv_bytes_per_token")
    overhead = _non_negative(overhead_bytes, "overhead_bytes")
    tokens = 0 if max_model_len in (None, "", "auto") else _positive_int(max_model_len, "max_model_len")
    utilization = _non_negative(gpu_memory_utilization, "gpu_memory_utilization")
    if not 0 < utilization <= 1:
        raise ValueError("gpu_memory_utilization must be in (0, 1], got %r" % (gpu_memory_utilization,))
    tp = _positive_int(tensor_parallel_size, "tensor_parallel_size")
    kv_cache = kv * tokens
    required = weights + kv_cache + overhead * tp
    available = memory * MIB * utilization * tp
    return {
        "fits": required <= available,
        "required_bytes": int(required),
        "available_bytes": int(available),
        "weights_bytes": int(weights),
        "kv_cache_bytes": int(kv_cache),
        "overhead_bytes": int(overhead * tp),
        "required_gib": round(required / GIB, 2),
        "available_gib": round(available / GIB, 2),
    }


def model_fits(gpu_info: Any, weights_bytes: Any, *, kv_bytes_per_token: Any = 0, max_model_len: Any = None,
               gpu_memory_utilization: Any = DEFAULT_GPU_MEMORY_UTILIZATION, tensor_parallel_size: Any = 1,
               overhead_bytes: Any = DEFAULT_OVERHEAD_BYTES, details: bool = False) -> bool | dict[str, Any]:
    """Whether a model of ``weights_bytes`` fits the GPUs vLLM gets (what the ``model_fits`` filter does).

    ``gpu_info`` is the memory of one GPU in MiB (as nvidia-smi reports it) or the whole
    ``nvidia_gpu_info`` result, whose smallest GPU counts (:func:`per_gpu_memory_mib`).
    ``kv_bytes_per_token`` comes from :func:`kv_bytes_per_token`; ``max_model_len`` is vLLM's
    ``--max-model-len`` (None, '' or 'auto': no KV cache counted); ``gpu_memory_utilization`` its
    ``--gpu-memory-utilization`` (0 < x <= 1); ``tensor_parallel_size`` the GPUs the model is split
    across; ``overhead_bytes`` what each GPU needs beyond weights and KV cache.

    Returns True/False, or with ``details`` the whole :func:`model_memory_estimate` (``fits``,
    ``required_bytes``, ``available_bytes``, ``weights_bytes``, ``kv_cache_bytes``,
    ``overhead_bytes``, ``required_gib``, ``available_gib``). Raises ValueError naming the bad input.
    """
    estimate = model_memory_estimate(per_gpu_memory_mib(gpu_info), weights_bytes, kv_bytes_per_token=kv_bytes_per_token,
                                     max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                                     tensor_parallel_size=tensor_parallel_size, overhead_bytes=overhead_bytes)
    return estimate if details else estimate["fits"]
