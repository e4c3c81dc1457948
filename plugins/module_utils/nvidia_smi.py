# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Parsing of ``nvidia-smi`` output and GPU sizing arithmetic (pure functions, no I/O).

Used by the ``nvidia_gpu_info`` module (on the managed host) and by the ``gpu_stack`` filter
plugin (on the controller). Python 3.8+ syntax: module_utils run with the host's Python.
"""

from __future__ import annotations

import csv
import re

# The columns nvidia_gpu_info asks for, in order. ``cuda_version`` is not a --query-gpu field
# (driver 580.159 answers 'Field "cuda_version" is not a valid field to query.'), so the CUDA
# version comes from ``nvidia-smi --version`` or the plain ``nvidia-smi`` header instead.
QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "driver_version",
    "mig.mode.current",
    "pci.bus_id",
)
QUERY_FORMAT = "csv,noheader,nounits"

# Values nvidia-smi prints where a field has no value on this GPU.
NOT_AVAILABLE = ("[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", "[Insufficient Permissions]", "")

# nvidia-smi's answer when the kernel driver is missing or not loaded (exit code 9).
NO_DRIVER_MARKERS = (
    "couldn't communicate with the NVIDIA driver",
    "NVIDIA driver is not loaded",
    "Failed to initialize NVML",
    "Driver/library version mismatch",
)
NO_DEVICES_MARKER = "No devices were found"

CUDA_VERSION_RE = re.compile(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)")

GIB = 1024 ** 3
MIB = 1024 ** 2
DEFAULT_OVERHEAD_BYTES = 2 * GIB
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # vLLM's current default for --gpu-memory-utilization


class NvidiaSmiParseError(ValueError):
    """nvidia-smi printed something this parser does not understand."""


def query_gpu_args(nvidia_smi):
    """argv for the --query-gpu call."""
    return [nvidia_smi, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=" + QUERY_FORMAT]


def _optional(value):
    value = value.strip()
    return None if value in NOT_AVAILABLE else value


def _mib(value, field, line_no):
    """A memory column (MiB, 'nounits'); None when nvidia-smi says N/A or Not Supported."""
    value = value.strip()
    if value in NOT_AVAILABLE:
        return None
    if value.endswith("MiB"):  # tolerate output without 'nounits'
        value = value[:-3].strip()
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            raise NvidiaSmiParseError("line %d: %s is not a number: %r" % (line_no, field, value)) from None


def parse_query_gpu(text):
    """Parse ``--query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`` output.

    Returns a list of dicts (index, name, uuid, memory_total_mib, memory_used_mib,
    driver_version, mig_mode, pci_bus_id) sorted by index. Blank lines are skipped. Raises
    NvidiaSmiParseError on a wrong column count, a non-numeric index or memory figure, or a
    duplicate index.
    """
    gpus = []
    seen = set()
    lines = [(no, line) for no, line in enumerate(text.splitlines(), 1) if line.strip()]
    for line_no, line in lines:
        row = next(csv.reader([line], skipinitialspace=True))
        if len(row) != len(QUERY_FIELDS):
            raise NvidiaSmiParseError(
                "line %d: expected %d comma-separated columns (%s), got %d: %r"
                % (line_no, len(QUERY_FIELDS), ",".join(QUERY_FIELDS), len(row), line.strip())
            )
        index_text = row[0].strip()
        if not index_text.isdigit():
            raise NvidiaSmiParseError("line %d: GPU index is not a number: %r" % (line_no, index_text))
        index = int(index_text)
        if index in seen:
            raise NvidiaSmiParseError("line %d: GPU index %d appears twice" % (line_no, index))
        seen.add(index)
        gpus.append({
            "index": index,
            "name": _optional(row[1]) or "unknown",
            "uuid": _optional(row[2]),
            "memory_total_mib": _mib(row[3], "memory.total", line_no),
            "memory_used_mib": _mib(row[4], "memory.used", line_no),
            "driver_version": _optional(row[5]),
            "mig_mode": _optional(row[6]),
            "pci_bus_id": _optional(row[7]),
        })
    gpus.sort(key=lambda gpu: gpu["index"])
    return gpus


def parse_cuda_version(text):
    """The CUDA version the driver supports, from ``nvidia-smi --version`` ('CUDA Version : 13.0'),
    ``nvidia-smi -q`` or the plain ``nvidia-smi`` header ('CUDA Version: 13.0'); None when absent."""
    match = CUDA_VERSION_RE.search(text or "")
    return match.group(1) if match else None


def is_no_driver_error(text):
    """True when nvidia-smi's output says the kernel driver cannot be reached."""
    return any(marker in (text or "") for marker in NO_DRIVER_MARKERS)


def summarize(gpus, cuda_version=None):
    """The module's facts from parsed GPUs."""
    drivers = [gpu["driver_version"] for gpu in gpus if gpu.get("driver_version")]
    public = [
        {key: gpu[key] for key in ("index", "name", "uuid", "memory_total_mib", "memory_used_mib", "mig_mode", "pci_bus_id")}
        for gpu in gpus
    ]
    return {
        "available": True,
        "gpu_count": len(gpus),
        "gpus": public,
        "driver_version": drivers[0] if drivers else None,
        "cuda_version": cuda_version,
        "total_memory_mib": sum(gpu["memory_total_mib"] or 0 for gpu in gpus),
        "names": [gpu["name"] for gpu in gpus],
    }


def unavailable(msg=None):
    """The module's facts when no driver/GPU is there (``required: false``)."""
    facts = {
        "available": False,
        "gpu_count": 0,
        "gpus": [],
        "driver_version": None,
        "cuda_version": None,
        "total_memory_mib": 0,
        "names": [],
    }
    if msg:
        facts["reason"] = msg
    return facts


def _positive_int(value, name, minimum=1):
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


def tensor_parallel_size(gpu_count, num_attention_heads=None):
    """The largest power of two <= gpu_count (and dividing ``num_attention_heads`` when given).

    vLLM splits every attention layer across the tensor-parallel ranks, so it refuses a
    ``--tensor-parallel-size`` that does not divide the model's number of attention heads (for
    Qwen3-8B: 32 heads, 8 KV heads). Powers of two divide the head counts of common models
    (32, 40, 64, 128 ...), so 6 GPUs give 4 and 3 GPUs give 2; the spare GPUs stay idle.
    Raises ValueError when gpu_count < 1.
    """
    count = _positive_int(gpu_count, "gpu_count")
    heads = None if num_attention_heads is None else _positive_int(num_attention_heads, "num_attention_heads")
    size = 1
    while size * 2 <= count:
        size *= 2
    if heads is not None:
        while size > 1 and heads % size:
            size //= 2
    return size


def _non_negative(value, name):
    if isinstance(value, bool):
        raise ValueError("%s must be a number, got %r" % (name, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("%s must be a number, got %r" % (name, value)) from None
    if number < 0:
        raise ValueError("%s must be >= 0, got %r" % (name, value))
    return number


def model_memory_estimate(gpu_memory_mib, weights_bytes, *, kv_bytes_per_token=0, max_model_len=None,
                          gpu_memory_utilization=DEFAULT_GPU_MEMORY_UTILIZATION, tensor_parallel_size=1,
                          overhead_bytes=DEFAULT_OVERHEAD_BYTES):
    """Whether a model fits, with the figures behind the answer (all bytes).

    required  = weights + KV cache per token x max_model_len + overhead x tensor_parallel_size
    available = GPU memory per GPU x gpu_memory_utilization x tensor_parallel_size

    Weights and the KV cache are split across the tensor-parallel GPUs; the overhead (CUDA
    context, activations, CUDA graphs: about 2 GiB) is paid on each GPU. ``max_model_len`` None
    (vLLM's ``auto``) counts no KV cache: vLLM then sizes the context to what is left, which
    this estimate does not predict. Qwen3-8B BF16: weights about 16.4e9 bytes, KV cache 147456
    bytes (144 KiB) per token. An estimate, not vLLM's own profiling run.
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


def model_fits(gpu_memory_mib, weights_bytes, *, kv_bytes_per_token=0, max_model_len=None,
               gpu_memory_utilization=DEFAULT_GPU_MEMORY_UTILIZATION, tensor_parallel_size=1,
               overhead_bytes=DEFAULT_OVERHEAD_BYTES):
    """True when :func:`model_memory_estimate` says the model fits."""
    return model_memory_estimate(gpu_memory_mib, weights_bytes, kv_bytes_per_token=kv_bytes_per_token, max_model_len=max_model_len,
                                 gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                                 overhead_bytes=overhead_bytes)["fits"]
