"""plugins/modules/stack_host_info.py run in-process: real /proc, a real listening socket, real directories."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.modules import stack_host_info


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        stack_host_info.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("family,address", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_listening_socket_is_found_with_its_process(capsys, family, address):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        rc, result = run(capsys, ports=[port, 1])
    assert rc == 0 and result["changed"] is False
    found = result["listeners"][str(port)]
    assert found == [{"address": address, "pid": os.getpid(), "process": pathlib.Path("/proc/self/comm").read_text().strip()}]
    assert "1" not in result["listeners"]


def test_space_of_a_path_that_does_not_exist_yet_is_its_parents(capsys, tmp_path):
    rc, result = run(capsys, paths=[str(tmp_path / "not" / "yet")])
    fs = result["filesystems"][str(tmp_path / "not" / "yet")]
    assert rc == 0 and fs["checked"] == str(tmp_path) and fs["exists"] is False
    stat = os.statvfs(tmp_path)
    assert abs(fs["free_bytes"] - stat.f_bavail * stat.f_frsize) < 64 * 1024 * 1024
    assert fs["device"] == os.stat(tmp_path).st_dev


def test_model_directories(capsys, tmp_path):
    done, partial = tmp_path / "done", tmp_path / "partial"
    done.mkdir()
    (done / ".llmops-manifest.json").write_text("{}")
    (partial / "sub").mkdir(parents=True)
    (partial / "sub" / "w.safetensors").write_bytes(b"x" * 1000)
    rc, result = run(capsys, model_dirs=[str(done), str(partial), str(tmp_path / "none")])
    assert rc == 0
    assert result["models"][str(done)] == {"exists": True, "complete": True, "bytes": 2}
    assert result["models"][str(partial)] == {"exists": True, "complete": False, "bytes": 1000}
    assert result["models"][str(tmp_path / "none")] == {"exists": False, "complete": False, "bytes": 0}


def test_check_mode_reads_the_same(capsys, tmp_path):
    rc, result = run(capsys, paths=[str(tmp_path)], _ansible_check_mode=True)
    assert rc == 0 and result["changed"] is False and result["filesystems"][str(tmp_path)]["exists"] is True
