"""The GPU pre-start check (roles/inference_engine/files/gpu_prestart_check.py) with fake torch modules.

The check runs inside the engine image with the engine's own GPU request before the stack waits on
a healthcheck. No GPU is here: its logic is tested with fakes of the few torch attributes it uses
(this file), and its run inside the real vLLM CPU image, which has no CUDA, in
tests/integration/test_vllm_engine.py.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[3] / "roles" / "inference_engine" / "files" / "gpu_prestart_check.py"
spec = importlib.util.spec_from_file_location("gpu_prestart_check", PATH)
check_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_module)


class FakeTensor:
    def __init__(self, fail=None):
        self.fail = fail

    def add_(self, _value):
        if self.fail:
            raise self.fail
        return self


class FakeCuda:
    def __init__(self, available=True, count=1, names=("NVIDIA H200",), init_error=None, count_error=None):
        self.available, self.count, self.names = available, count, names
        self.init_error, self.count_error = init_error, count_error

    def is_available(self):
        return self.available

    def device_count(self):
        if self.count_error:
            raise self.count_error
        return self.count

    def get_device_name(self, index):
        return self.names[index]

    def synchronize(self):
        return None


class FakeTorch:
    def __init__(self, cuda, version="13.0"):
        self.cuda = cuda
        self.version = type("V", (), {"cuda": version})()

    def zeros(self, _size, device):
        assert device == "cuda:0"
        return FakeTensor(self.cuda.init_error)


def test_visible_gpus_pass():
    result = check_module.check(FakeTorch(FakeCuda(count=2, names=("NVIDIA H200", "NVIDIA H200"))), 2)
    assert result == {"ok": True, "expected": 2, "visible": 2, "gpus": ["NVIDIA H200", "NVIDIA H200"], "cuda": "13.0",
                      "error": "", "hint": ""}


def test_no_gpu_visible():
    result = check_module.check(FakeTorch(FakeCuda(available=False, count=0), version=None), 1)
    assert not result["ok"]
    assert result["error"] == "no CUDA GPUs are available to the engine (torch.cuda.is_available() is False)"
    assert "inference_engine_gpus" in result["hint"]


def test_error_803_is_named_with_its_cause():
    error = RuntimeError("CUDA error: system has unsupported display driver / cuda driver combination (803)")
    result = check_module.check(FakeTorch(FakeCuda(init_error=error)), 1)
    assert not result["ok"]
    assert result["error"].startswith("RuntimeError: CUDA error: system has unsupported display driver")
    assert "runtime runc" in result["hint"] and "docs/gpu.md" in result["hint"]


def test_driver_too_old():
    error = RuntimeError("The NVIDIA driver on your system is too old (found version 12020). CUDA driver version is insufficient")
    result = check_module.check(FakeTorch(FakeCuda(count_error=error)), 1)
    assert not result["ok"] and "-cu129" in result["hint"]


def test_fewer_gpus_than_the_tensor_parallel_size():
    result = check_module.check(FakeTorch(FakeCuda(count=1)), 2)
    assert not result["ok"]
    assert result["error"] == "the engine sees 1 GPU(s) but needs 2 (its tensor-parallel size)"


def test_no_torch_in_the_image():
    result = check_module.check(None, 1)
    assert result["error"] == "torch is not importable in the engine image"


@pytest.mark.parametrize(("expect", "rc"), [(1, 1)])
def test_main_prints_one_json_line(capsys, monkeypatch, expect, rc):
    monkeypatch.setitem(__import__("sys").modules, "torch", FakeTorch(FakeCuda(available=False, count=0)))
    assert check_module.main(["--expect", str(expect)]) == rc
    assert json.loads(capsys.readouterr().out)["visible"] == 0
