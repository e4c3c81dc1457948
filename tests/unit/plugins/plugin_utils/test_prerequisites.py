"""plugins/plugin_utils/_prerequisites.py: the host prerequisite checks of the validation phase's second stage."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _prerequisites as pre

GB = 10 ** 9
DEBIAN = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "13",
          "distribution_version": "13.1", "service_mgr": "systemd"}
PLAN = {
    "models_root": "/Models", "roles": ["docker_engine", "model_store", "inference_engine"],
    "model_dirs": {"a": "/Models/A", "b": "/Models/B", "c": "/big/C"},
    "model_sizes": {"a": 16, "b": 8, "c": 100},
    "published_ports": {4000: "litellm-proxy", 9090: "prometheus"},
    "port_variables": {4000: "gateway_port", 9090: "monitoring_port"},
    "host_checks": {"needs_driver": False},
}


def info(free_models=30, free_big=200, models=None, listeners=None):
    return {
        "filesystems": {"/Models": {"checked": "/", "device": 1, "free_bytes": free_models * GB},
                        "/big/C": {"checked": "/big", "device": 2, "free_bytes": free_big * GB}},
        "models": models if models is not None else {"/Models/A": {"complete": False, "bytes": 0},
                                                     "/Models/B": {"complete": False, "bytes": 0},
                                                     "/big/C": {"complete": False, "bytes": 0}},
        "listeners": listeners or {},
    }


def lines(problems):
    return [p.line() for p in problems]


def test_a_supported_host_with_room_and_free_ports_passes():
    assert lines(pre.host_problems(DEBIAN, PLAN, {}, info())) == []


def test_too_little_room_names_the_models_root_and_every_model_on_that_disk():
    found = lines(pre.host_problems(DEBIAN, PLAN, {}, info(free_models=20)))
    assert len(found) == 1
    assert found[0].startswith('gpu_stack_models_root = "/Models"')
    assert "24.0 GB (a 16.0 GB, b 8.0 GB" in found[0] and "20.0 GB free" in found[0]


def test_complete_and_partial_downloads_count_only_what_is_left():
    models = {"/Models/A": {"complete": True, "bytes": 16 * GB}, "/Models/B": {"complete": False, "bytes": 5 * GB},
              "/big/C": {"complete": False, "bytes": 0}}
    assert lines(pre.host_problems(DEBIAN, PLAN, {}, info(free_models=4, models=models))) == []
    found = lines(pre.host_problems(DEBIAN, PLAN, {}, info(free_models=2, models=models)))
    assert len(found) == 1 and "3.0 GB (b 3.0 GB" in found[0]


def test_each_file_system_is_checked_on_its_own():
    found = lines(pre.host_problems(DEBIAN, PLAN, {}, info(free_big=50)))
    assert len(found) == 1 and "100.0 GB (c 100.0 GB" in found[0] and "/big" in found[0]


def test_models_without_size_gb_are_not_guessed_at():
    plan = dict(PLAN, model_sizes={})
    assert lines(pre.host_problems(DEBIAN, plan, {}, info(free_models=0, free_big=0))) == []


def test_a_port_held_by_another_process_is_refused_and_docker_proxy_is_ours():
    listeners = {"4000": [{"address": "0.0.0.0", "pid": 77, "process": "nginx"}],
                 "9090": [{"address": "0.0.0.0", "pid": 80, "process": "docker-proxy"}]}
    found = lines(pre.host_problems(DEBIAN, PLAN, {}, info(listeners=listeners)))
    assert len(found) == 1
    assert found[0].startswith("gateway_port = 4000") and "litellm-proxy" in found[0] and "nginx (pid 77)" in found[0]


def test_a_holder_proc_does_not_show_is_not_guessed_at():
    listeners = {"4000": [{"address": "0.0.0.0", "pid": None, "process": None}]}
    assert lines(pre.host_problems(DEBIAN, PLAN, {}, info(listeners=listeners))) == []


def test_the_driver_is_required_only_where_the_toolkit_needs_a_gpu():
    missing = {"available": False, "reason": "nvidia-smi not found (looked in PATH): install the NVIDIA driver"}
    assert lines(pre.host_problems(DEBIAN, PLAN, {}, info(), missing)) == []
    plan = dict(PLAN, host_checks={"needs_driver": True})
    found = lines(pre.host_problems(DEBIAN, plan, {"nvidia_container_toolkit_nvidia_smi": "nvidia-smi"}, info(), missing))
    assert len(found) == 1
    assert found[0].startswith("nvidia_container_toolkit_require_gpu = true") and "nvidia-smi not found" in found[0]
    assert lines(pre.host_problems(DEBIAN, plan, {}, info(), {"available": True, "gpu_count": 8})) == []


def test_os_and_service_manager():
    found = lines(pre.host_problems(dict(DEBIAN, distribution_major_version="10", distribution_version="10"), PLAN, {}))
    assert len(found) == 1 and "Debian 10" in found[0]
    found = lines(pre.host_problems(dict(DEBIAN, service_mgr="sysvinit"), PLAN, {}))
    assert len(found) == 1 and "ansible_facts.service_mgr" in found[0]


def test_no_answers_check_nothing_but_the_facts():
    assert lines(pre.host_problems({}, PLAN, {}, None, None)) == []
    assert lines(pre.host_problems(DEBIAN, PLAN, {}, {"skipped": True}, {"skipped": True})) == []
