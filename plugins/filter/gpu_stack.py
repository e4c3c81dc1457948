# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""GPU sizing filters: ``tensor_parallel_size``, ``model_fits`` and ``kv_bytes_per_token``.

Their documentation is in ``tensor_parallel_size.yml``, ``model_fits.yml`` and ``kv_bytes_per_token.yml`` beside this file;
the arithmetic is in ``plugins/plugin_utils/_sizing.py``.
"""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _sizing


def _filter(name, func):
    """``func`` as a filter: its ValueError becomes AnsibleFilterError('<name>: <reason>')."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as err:
            raise AnsibleFilterError("%s: %s" % (name, err)) from err

    return wrapper


# Largest power of two <= the GPU count (dividing num_attention_heads when given).
tensor_parallel_size_filter = _filter("tensor_parallel_size", _sizing.tensor_parallel_size)
# True when the model fits (or the whole estimate with details=true).
model_fits_filter = _filter("model_fits", _sizing.model_fits)
# KV-cache bytes per token of a model's config.json.
kv_bytes_per_token_filter = _filter("kv_bytes_per_token", _sizing.kv_bytes_per_token)


class FilterModule(object):
    """llmops.gpu_stack GPU sizing filters."""

    def filters(self):
        return {
            "tensor_parallel_size": tensor_parallel_size_filter,
            "model_fits": model_fits_filter,
            "kv_bytes_per_token": kv_bytes_per_token_filter,
        }
