"""plugins/module_utils/nvidia_smi.py: nvidia-smi parsing and GPU sizing (pure functions)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import nvidia_smi as ns

# Captured on an H100 machine (driver 580.159.04); the UUID is made up.
H100 = "0, NVIDIA H100 80GB HBM3, GPU-5f0c3b2a-9d41-4e6b-8a17-2c6e0d9b4f31, 81559, 0, 580.159.04, Disabled, 00000000:00:06.0\n"
VERSION = "NVIDIA-SMI version  : 580.159.04\nNVML version        : 580.159\nDRIVER version      : 580.159.04\nCUDA Version        : 13.0\n"
PLAIN_HEADER = (
    "Wed Nov 25 03:54:02 2026       \n"
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |\n"
)
QUERY_HEADER = "Driver Version                                         : 580.159.04\nCUDA Version                                           : 13.0\n"
QWEN3_8B_WEIGHTS = 16_400_000_000
QWEN3_8B_KV = 2 * 36 * 8 * 128 * 2  # 147456 bytes = 144 KiB per token


def test_query_args_name_every_field():
    args = ns.query_gpu_args("/usr/bin/nvidia-smi")
    assert args == [
        "/usr/bin/nvidia-smi",
        "--query-gpu=index,name,uuid,memory.total,memory.used,driver_version,mig.mode.current,pci.bus_id",
        "--format=csv,noheader,nounits",
    ]


def test_parse_real_h100_line():
    assert ns.parse_query_gpu(H100) == [{
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-5f0c3b2a-9d41-4e6b-8a17-2c6e0d9b4f31",
        "memory_total_mib": 81559,
        "memory_used_mib": 0,
        "driver_version": "580.159.04",
        "mig_mode": "Disabled",
        "pci_bus_id": "00000000:00:06.0",
    }]


def test_parse_several_gpus_sorted_and_blank_lines_skipped():
    text = (
        "\n"
        "1, NVIDIA H200, GPU-b, 143771, 10, 580.159.04, Enabled, 00000000:3B:00.0\n"
        "   \n"
        "0, NVIDIA H200, GPU-a, 143771, 0, 580.159.04, Disabled, 00000000:19:00.0\r\n"
        "\n"
    )
    gpus = ns.parse_query_gpu(text)
    assert [g["index"] for g in gpus] == [0, 1]
    assert [g["mig_mode"] for g in gpus] == ["Disabled", "Enabled"]
    assert gpus[0]["pci_bus_id"] == "00000000:19:00.0"


@pytest.mark.parametrize("marker", ["[N/A]", "[Not Supported]", "N/A", "[Unknown Error]"])
def test_not_available_values_become_none(marker):
    line = f"0, NVIDIA GeForce RTX 4090, {marker}, 24564, {marker}, 550.54.14, {marker}, 00000000:01:00.0\n"
    gpu = ns.parse_query_gpu(line)[0]
    assert gpu["uuid"] is None and gpu["memory_used_mib"] is None and gpu["mig_mode"] is None
    assert gpu["memory_total_mib"] == 24564


def test_memory_with_units_and_decimals_is_tolerated():
    line = "0, NVIDIA A100, GPU-x, 40536 MiB, 12.0, 470.256.02, Disabled, 00000000:07:00.0\n"
    gpu = ns.parse_query_gpu(line)[0]
    assert gpu["memory_total_mib"] == 40536 and gpu["memory_used_mib"] == 12


def test_quoted_name_with_comma():
    line = '0, "NVIDIA Odd, Name", GPU-x, 1024, 0, 580.1, Disabled, 00000000:07:00.0\n'
    assert ns.parse_query_gpu(line)[0]["name"] == "NVIDIA Odd, Name"


def test_empty_output_is_no_gpu():
    assert ns.parse_query_gpu("") == []
    assert ns.parse_query_gpu("\n \n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0, NVIDIA H100 80GB HBM3, GPU-x, 81559, 0, 580.159.04, Disabled\n", "expected 8 comma-separated columns"),
        (H100.strip() + ", extra\n", "got 9"),
        ("0, NVIDIA H100, GPU-x, eighty, 0, 580.159.04, Disabled, 00000000:00:06.0\n", "memory.total is not a number"),
        ("0, NVIDIA H100, GPU-x, 81559, lots, 580.159.04, Disabled, 00000000:00:06.0\n", "memory.used is not a number"),
        ("zero, NVIDIA H100, GPU-x, 81559, 0, 580.159.04, Disabled, 00000000:00:06.0\n", "GPU index is not a number"),
        (H100 + H100, "appears twice"),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", "expected 8"),
        ('Field "cuda_version" is not a valid field to query.\n', "expected 8"),
    ],
)
def test_malformed_output_raises(text, message):
    with pytest.raises(ns.NvidiaSmiParseError, match=message):
        ns.parse_query_gpu(text)


def test_malformed_error_names_the_line():
    with pytest.raises(ns.NvidiaSmiParseError, match="line 2"):
        ns.parse_query_gpu(H100 + "1, broken\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VERSION, "13.0"),
        (PLAIN_HEADER, "13.0"),
        (QUERY_HEADER, "13.0"),
        ("| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |", "11.4"),
        ("CUDA Version: 12.2.1", "12.2.1"),
        ("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", None),
        ("", None),
        (None, None),
        ("CUDA Version: N/A", None),
    ],
)
def test_parse_cuda_version(text, expected):
    assert ns.parse_cuda_version(text) == expected


def test_no_driver_detection():
    assert ns.is_no_driver_error("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure ...")
    assert ns.is_no_driver_error("Failed to initialize NVML: Driver/library version mismatch")
    assert not ns.is_no_driver_error("No devices were found")
    assert not ns.is_no_driver_error(None)


def test_summarize_totals_and_names():
    gpus = ns.parse_query_gpu(
        "0, NVIDIA H200, GPU-a, 143771, 0, 580.159.04, Disabled, 00000000:19:00.0\n"
        "1, NVIDIA H200, GPU-b, 143771, 1, 580.159.04, Disabled, 00000000:3B:00.0\n"
    )
    facts = ns.summarize(gpus, "13.0")
    assert facts["available"] is True
    assert facts["gpu_count"] == 2
    assert facts["total_memory_mib"] == 2 * 143771
    assert facts["names"] == ["NVIDIA H200", "NVIDIA H200"]
    assert facts["driver_version"] == "580.159.04" and facts["cuda_version"] == "13.0"
    assert set(facts["gpus"][0]) == {"index", "name", "uuid", "memory_total_mib", "memory_used_mib", "mig_mode", "pci_bus_id"}


def test_summarize_counts_unknown_memory_as_zero():
    facts = ns.summarize(ns.parse_query_gpu("0, GPU, GPU-a, [N/A], [N/A], 580.1, [N/A], 00000000:01:00.0\n"))
    assert facts["total_memory_mib"] == 0 and facts["cuda_version"] is None


def test_unavailable_facts():
    facts = ns.unavailable("no driver")
    assert facts == {"available": False, "gpu_count": 0, "gpus": [], "driver_version": None, "cuda_version": None,
                     "total_memory_mib": 0, "names": [], "reason": "no driver"}


# --- tensor_parallel_size ----------------------------------------------------------------------

@pytest.mark.parametrize(("count", "size"), [(1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (6, 4), (7, 4), (8, 8), (12, 8), (16, 16), ("4", 4), (8.0, 8)])
def test_tensor_parallel_size_is_largest_power_of_two(count, size):
    assert ns.tensor_parallel_size(count) == size


@pytest.mark.parametrize(("count", "heads", "size"), [(8, 32, 8), (8, 40, 8), (8, 20, 4), (8, 12, 4), (8, 7, 1), (4, 64, 4), (3, 1, 1)])
def test_tensor_parallel_size_divides_the_attention_heads(count, heads, size):
    assert ns.tensor_parallel_size(count, heads) == size
    assert heads % size == 0


@pytest.mark.parametrize("count", [0, -2, "x", None, True, 2.5])
def test_tensor_parallel_size_rejects_bad_counts(count):
    with pytest.raises(ValueError, match="gpu_count"):
        ns.tensor_parallel_size(count)


def test_tensor_parallel_size_rejects_bad_heads():
    with pytest.raises(ValueError, match="num_attention_heads"):
        ns.tensor_parallel_size(4, 0)


# --- model_fits (field notes: Qwen3-8B BF16 16.4 GB weights, 144 KiB KV per token) -----------

def test_qwen3_8b_fits_an_h100_with_full_context():
    assert ns.model_fits(81559, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=40960)


def test_qwen3_8b_on_24_gb_fits_32k_but_not_40k():
    estimate = ns.model_memory_estimate(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768)
    assert estimate["fits"]
    assert estimate["kv_cache_bytes"] == 32768 * 147456  # 4.5 GiB
    assert estimate["required_gib"] == pytest.approx(21.77, abs=0.01)
    assert not ns.model_fits(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=40960)


def test_qwen3_8b_never_fits_16_gb():
    assert not ns.model_fits(16376, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=1024)
    assert not ns.model_fits(16376, QWEN3_8B_WEIGHTS, max_model_len=None)


def test_tensor_parallel_adds_memory_and_overhead_per_gpu():
    estimate = ns.model_memory_estimate(16376, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768,
                                        tensor_parallel_size=2)
    assert estimate["fits"]
    assert estimate["overhead_bytes"] == 2 * ns.DEFAULT_OVERHEAD_BYTES
    assert estimate["available_bytes"] == int(16376 * ns.MIB * 0.92 * 2)


def test_utilization_and_overhead_are_honoured():
    tight = dict(kv_bytes_per_token=QWEN3_8B_KV, max_model_len=32768)
    assert ns.model_fits(24564, QWEN3_8B_WEIGHTS, gpu_memory_utilization=0.92, **tight)
    assert not ns.model_fits(24564, QWEN3_8B_WEIGHTS, gpu_memory_utilization=0.9, **tight)
    assert not ns.model_fits(24564, QWEN3_8B_WEIGHTS, overhead_bytes=3 * ns.GIB, **tight)


@pytest.mark.parametrize("length", [None, "auto", ""])
def test_auto_context_counts_no_kv_cache(length):
    estimate = ns.model_memory_estimate(24564, QWEN3_8B_WEIGHTS, kv_bytes_per_token=QWEN3_8B_KV, max_model_len=length)
    assert estimate["kv_cache_bytes"] == 0 and estimate["fits"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"max_model_len": "long"}, "max_model_len"),
        ({"kv_bytes_per_token": -1}, "kv_bytes_per_token"),
        ({"overhead_bytes": "x"}, "overhead_bytes"),
    ],
)
def test_model_fits_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ns.model_memory_estimate(81559, QWEN3_8B_WEIGHTS, **kwargs)


@pytest.mark.parametrize(("memory", "weights"), [(-1, 1), ("lots", 1), (1, -5), (1, True)])
def test_model_fits_rejects_bad_sizes(memory, weights):
    with pytest.raises(ValueError):
        ns.model_fits(memory, weights)
