# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""GPU sizing filters: ``tensor_parallel_size`` and ``model_fits``.

Their documentation is in ``tensor_parallel_size.yml`` and ``model_fits.yml`` beside this file;
the arithmetic is in ``plugins/module_utils/nvidia_smi.py``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.module_utils import nvidia_smi


def tensor_parallel_size_filter(gpu_count, num_attention_heads=None):
    """Largest power of two <= gpu_count (dividing num_attention_heads when given)."""
    try:
        return nvidia_smi.tensor_parallel_size(gpu_count, num_attention_heads)
    except ValueError as err:
        raise AnsibleFilterError("tensor_parallel_size: %s" % err) from err


def _gpu_memory_mib(value):
    """Per-GPU memory in MiB from a number or from nvidia_gpu_info's result (smallest GPU)."""
    if isinstance(value, dict):
        sizes = [gpu.get("memory_total_mib") for gpu in value.get("gpus") or [] if isinstance(gpu, dict)]
        sizes = [size for size in sizes if size is not None]
        if not sizes:
            raise AnsibleFilterError("model_fits: the nvidia_gpu_info result lists no GPU memory")
        return min(sizes)
    return value


def model_fits_filter(gpu_memory, weights_bytes, *, kv_bytes_per_token=0, max_model_len=None,
                      gpu_memory_utilization=nvidia_smi.DEFAULT_GPU_MEMORY_UTILIZATION, tensor_parallel_size=1,
                      overhead_bytes=nvidia_smi.DEFAULT_OVERHEAD_BYTES, details=False):
    """True when the model fits (or the whole estimate with details=true)."""
    try:
        estimate = nvidia_smi.model_memory_estimate(
            _gpu_memory_mib(gpu_memory), weights_bytes, kv_bytes_per_token=kv_bytes_per_token,
            max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size, overhead_bytes=overhead_bytes,
        )
    except ValueError as err:
        raise AnsibleFilterError("model_fits: %s" % err) from err
    return estimate if details else estimate["fits"]


class FilterModule(object):
    """llmops.gpu_stack GPU sizing filters."""

    def filters(self):
        return {
            "tensor_parallel_size": tensor_parallel_size_filter,
            "model_fits": model_fits_filter,
        }
