"""plugins/modules/nvidia_gpu_info.py run in-process against the fake nvidia-smi
(tests/fixtures/fake_nvidia_smi), one scenario per host kind."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(ROOT / "collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.modules import nvidia_gpu_info

FAKE_DIR = ROOT / "tests" / "fixtures" / "fake_nvidia_smi"
FAKE = FAKE_DIR / "nvidia-smi"


@pytest.fixture
def host(monkeypatch, tmp_path):
    """Choose the fake's scenario; the fake's directory goes first on PATH. Returns the call log."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{FAKE_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI_LOG", str(log))

    def choose(scenario):
        monkeypatch.setenv("FAKE_NVIDIA_SMI_SCENARIO", scenario)
        return log

    return choose


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        nvidia_gpu_info.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_fake_is_executable():
    assert os.access(FAKE, os.X_OK)


def test_one_h100(host, capsys):
    log = host("h100")
    rc, result = run(capsys)
    assert rc == 0 and result["changed"] is False and not result.get("failed")
    assert result["available"] is True
    assert result["gpu_count"] == 1
    assert result["gpus"] == [{
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5f0c3b2a-9d41-4e6b-8a17-2c6e0d9b4f31",
        "memory_total_mib": 81559, "memory_used_mib": 0, "mig_mode": "Disabled", "pci_bus_id": "00000000:00:06.0",
    }]
    assert result["driver_version"] == "580.159.04"
    assert result["cuda_version"] == "13.0"
    assert result["total_memory_mib"] == 81559
    assert result["names"] == ["NVIDIA H100 80GB HBM3"]
    assert result["nvidia_smi"] == str(FAKE)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("--query-gpu=index,name,uuid,memory.total,memory.used,driver_version,mig.mode.current,pci.bus_id")
    assert calls[1:] == ["--version"]  # the CUDA version came from --version: no plain call needed


def test_two_h200(host, capsys):
    host("h200x2")
    _ignored, result = run(capsys)
    assert result["gpu_count"] == 2 and result["total_memory_mib"] == 2 * 143771
    assert [g["index"] for g in result["gpus"]] == [0, 1]
    assert result["names"] == ["NVIDIA H200", "NVIDIA H200"]


def test_eight_h100(host, capsys):
    host("h100x8")
    _ignored, result = run(capsys)
    assert result["gpu_count"] == 8 and len({g["uuid"] for g in result["gpus"]}) == 8


def test_no_mig_support_is_null(host, capsys):
    host("rtx4090")
    _ignored, result = run(capsys)
    assert result["gpus"][0]["mig_mode"] is None and result["cuda_version"] == "12.4"


def test_old_driver_cuda_version_from_the_plain_header(host, capsys):
    log = host("old_driver")
    rc, result = run(capsys)
    assert rc == 0 and result["cuda_version"] == "11.4" and result["driver_version"] == "470.256.02"
    assert log.read_text().splitlines()[1:] == ["--version", ""]


def test_no_driver_fails_with_nvidia_smi_text(host, capsys):
    host("no_driver")
    rc, result = run(capsys)
    assert rc == 1 and result["failed"]
    assert result["msg"].startswith("nvidia-smi cannot reach the NVIDIA driver (rc=9): NVIDIA-SMI has failed because it couldn't "
                                    "communicate with the NVIDIA driver.")
    assert result["gpu_count"] == 0 and result["available"] is False


def test_no_driver_not_required(host, capsys):
    host("no_driver")
    rc, result = run(capsys, required=False)
    assert rc == 0 and not result.get("failed") and result["changed"] is False
    assert result["available"] is False and result["gpu_count"] == 0 and result["gpus"] == []
    assert "couldn't communicate" in result["reason"]


def test_no_devices(host, capsys):
    host("no_devices")
    rc, result = run(capsys)
    assert rc == 1 and result["msg"] == "nvidia-smi found no GPU: No devices were found"
    rc, result = run(capsys, required=False)
    assert rc == 0 and result["gpu_count"] == 0 and result["available"] is False


def test_missing_nvidia_smi(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nvidia_gpu_info, "EXTRA_DIRS", [str(tmp_path)])
    rc, result = run(capsys)
    assert rc == 1
    assert "nvidia-smi not found" in result["msg"] and "install the NVIDIA driver" in result["msg"]
    rc, result = run(capsys, required=False)
    assert rc == 0 and result["available"] is False and result["gpu_count"] == 0 and result["nvidia_smi"] is None


def test_explicit_path(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")  # not on PATH: found through the option
    monkeypatch.setenv("FAKE_NVIDIA_SMI_SCENARIO", "h100")
    rc, result = run(capsys, nvidia_smi_path=str(FAKE))
    assert rc == 0 and result["nvidia_smi"] == str(FAKE) and result["gpu_count"] == 1


def test_explicit_path_that_does_not_exist(tmp_path, capsys):
    rc, result = run(capsys, nvidia_smi_path=str(tmp_path / "nvidia-smi"))
    assert rc == 1 and f"looked in {tmp_path / 'nvidia-smi'}" in result["msg"]


@pytest.mark.parametrize(("scenario", "text"), [("malformed", "expected 8 comma-separated columns"), ("not_a_number", "memory.total is not a number")])
def test_malformed_output_fails_even_when_not_required(host, capsys, scenario, text):
    host(scenario)
    rc, result = run(capsys, required=False)
    assert rc == 1 and result["msg"].startswith("cannot parse nvidia-smi output") and text in result["msg"]
    assert result["stdout"]


def test_check_mode_reads_the_same(host, capsys):
    host("h100")
    rc, result = run(capsys, _ansible_check_mode=True)
    assert rc == 0 and result["gpu_count"] == 1 and result["changed"] is False
