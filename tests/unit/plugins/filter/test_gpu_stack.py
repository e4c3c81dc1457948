"""plugins/filter/gpu_stack.py: the tensor_parallel_size and model_fits filters."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(ROOT / "collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.filter import gpu_stack as gpu_stack_filters
from ansible_collections.llmops.gpu_stack.plugins.filter.gpu_stack import FilterModule

FILTERS = FilterModule().filters()
GPU_INFO = {"gpu_count": 2, "gpus": [{"index": 0, "memory_total_mib": 81559}, {"index": 1, "memory_total_mib": 24564}]}


def test_both_filters_are_exported():
    assert set(FILTERS) == {"tensor_parallel_size", "model_fits", "kv_bytes_per_token"}


def test_tensor_parallel_size_filter():
    assert FILTERS["tensor_parallel_size"](6) == 4
    assert FILTERS["tensor_parallel_size"](8, num_attention_heads=20) == 4


@pytest.mark.parametrize("count", [0, "none"])
def test_tensor_parallel_size_filter_errors(count):
    with pytest.raises(AnsibleFilterError, match="tensor_parallel_size: gpu_count"):
        FILTERS["tensor_parallel_size"](count)


def test_model_fits_filter_takes_a_number_or_the_module_result():
    fits = FILTERS["model_fits"]
    assert fits(81559, 16_400_000_000, kv_bytes_per_token=147456, max_model_len=32768) is True
    # the smallest GPU of the result counts: 24564 MiB x 0.92 cannot hold 16.4 GB + 5.6 GiB of KV cache + 2 GiB
    assert fits(GPU_INFO, 16_400_000_000, kv_bytes_per_token=147456, max_model_len=40960) is False
    estimate = fits(GPU_INFO, 16_400_000_000, kv_bytes_per_token=147456, max_model_len=40960, tensor_parallel_size=2, details=True)
    assert estimate["fits"] is True and estimate["available_bytes"] == int(24564 * 1024**2 * 0.92 * 2)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ({"gpus": []}, {}, "lists no GPU memory"),
        (81559, {"gpu_memory_utilization": 2}, "gpu_memory_utilization"),
        ("big", {}, "gpu_memory_mib"),
    ],
)
def test_model_fits_filter_errors(value, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["model_fits"](value, 16_400_000_000, **kwargs)


def ansible_cli():
    """The ansible CLI of the Python running the tests, else the first on PATH (None if none)."""
    sibling = pathlib.Path(sys.executable).with_name("ansible")
    return str(sibling) if sibling.exists() else shutil.which("ansible")


def test_filters_in_a_real_template(tmp_path):
    """Through ansible itself: the filters resolve by FQCN from the collection these tests import."""
    ansible = ansible_cli()
    if not ansible:
        pytest.skip("no ansible CLI here (ansible-test units runs without one)")
    # the directory that holds ansible_collections/ (collections/ in the checkout)
    collections_root = pathlib.Path(gpu_stack_filters.__file__).parents[5]
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    expr = ("{{ {'tp': 6 | llmops.gpu_stack.tensor_parallel_size, "
            "'fits': 24564 | llmops.gpu_stack.model_fits(16400000000, kv_bytes_per_token=147456, max_model_len=32768)} | to_json }}")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_CONFIG=str(config))
    proc = subprocess.run([ansible, "localhost", "-m", "ansible.builtin.debug", "-a", f"msg={expr}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    msg = json.loads(proc.stdout.split("=>", 1)[1])["msg"]
    assert (json.loads(msg) if isinstance(msg, str) else msg) == {"tp": 4, "fits": True}
