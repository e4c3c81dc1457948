"""plugins/module_utils/_nvidia_smi.py: nvidia-smi output parsed into nvidia_gpu_info's facts (pure functions)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvidia_smi as ns

# Captured on an H100 machine (driver 580.159.04); the UUID is made up.
H100 = "0, NVIDIA H100 80GB HBM3, GPU-5f0c3b2a-9d41-4e6b-8a17-2c6e0d9b4f31, 81559, 0, 580.159.04, Disabled, 00000000:00:06.0\n"
VERSION = "NVIDIA-SMI version  : 580.159.04\nNVML version        : 580.159\nDRIVER version      : 580.159.04\nCUDA Version        : 13.0\n"
PLAIN_HEADER = (
    "Wed Nov 25 03:54:02 2026       \n"
    "+-----------------------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |\n"
)
QUERY_HEADER = "Driver Version                                         : 580.159.04\nCUDA Version                                           : 13.0\n"


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
