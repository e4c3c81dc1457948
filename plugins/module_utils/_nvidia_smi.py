# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Parsing of ``nvidia-smi`` output into the ``nvidia_gpu_info`` module's facts (pure functions, no I/O).

Used by the ``nvidia_gpu_info`` module on the managed host; the controller-side GPU sizing
arithmetic is in ``plugins/plugin_utils/_sizing.py``. Python 3.8+ syntax: module_utils run with
the host's Python.
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
