"""llmops.gpu_stack.stack_health's ``moderation`` check against the real LiteLLM proxy, on loopback.

The processes and the proxy configs come from test_guardrail.py: the stand-in engine and the
stand-in guard (tests/fixtures, NOT vLLM and NOT a model) and the pinned LiteLLM proxy with the
guardrail files (roles/moderation/files/guardrails) next to its config file. Three proxies are
started once for the module, at the same time:

* ``blocking``: ``moderation_action: block``, ``on_error: closed``;
* ``logging``: ``moderation_action: log``, ``on_error: closed``;
* ``skipped``: the guardrail declared with ``action: log``, which LiteLLM 1.106 rejects with its own
  validation and SKIPS, starting without it (``--validate_config`` still says OK): the case the
  check's ``/v2/guardrails/list`` step is there for.

The module runs as its own process (``python plugins/modules/stack_health.py ARGS.json``, as in
test_stack_health.py), once through ``ansible localhost -m``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (a helper module beside this file)
import test_guardrail as tg  # noqa: E402  (its process and config helpers)

pytestmark = pytest.mark.integration

ROOT = sp.ROOT
MODULE = ROOT / "plugins" / "modules" / "stack_health.py"
CHECKS = ["engine", "gateway", "moderation"]


def start_proxies(workdir: pathlib.Path, venv: pathlib.Path, configs: dict[str, dict]) -> dict[str, sp.Service]:
    """tg.start_proxy for several configs, started at once (LiteLLM takes seconds to import)."""
    os.environ["MODERATION_API_KEY"] = tg.GUARD_KEY  # read through os.environ/MODERATION_API_KEY
    proxies = {}
    for name, config in configs.items():
        directory = workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        for source in tg.GUARDRAIL_FILES.glob("*.py"):
            shutil.copy(source, directory / source.name)
        proxies[name] = sp.litellm_proxy(directory, engine_url="", engine_key=None, master_key=tg.MASTER_KEY, venv=venv,
                                         config=config, name=name)
    try:
        for proxy in proxies.values():
            proxy.start(wait=False)
        for proxy in proxies.values():
            proxy.wait_ready()
    except BaseException:
        for proxy in proxies.values():
            proxy.stop()
        raise
    return proxies


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    venv = sp.litellm_venv()
    work = tmp_path_factory.mktemp("stack-health-moderation")
    engine = sp.standin_engine(work, api_key=tg.ENGINE_KEY, name="engine")
    guard = tg.guard_service(work)
    started = []
    try:
        for service in (engine, guard):
            service.start()
            started.append(service)
        skipped = tg.proxy_config(engine.url, engine.url, guard.url, moderation_action="block", on_error="closed")
        skipped["guardrails"][0]["litellm_params"]["action"] = "log"
        proxies = start_proxies(work, venv, {
            "blocking": tg.proxy_config(engine.url, engine.url, guard.url, moderation_action="block", on_error="closed"),
            "logging": tg.proxy_config(engine.url, engine.url, guard.url, moderation_action="log", on_error="closed"),
            "skipped": skipped,
        })
        started.extend(proxies.values())
        yield {"engine": engine, "guard": guard, "work": work, **proxies}
    finally:
        for service in reversed(started):
            service.stop()


def module_args(stack, proxy, **overrides):
    args = {
        "engine_url": stack["engine"].url,
        "engine_api_key": tg.ENGINE_KEY,
        "expected_models": ["qwen3-8b"],
        "gateway_url": stack[proxy].url,
        "gateway_api_key": tg.MASTER_KEY,
        "checks": CHECKS,
        "request_timeout": 30,
    }
    args.update(overrides)
    return args


def run_module(stack, proxy, **overrides):
    """Run the module file once; returns (exit code, result dict, stdout + stderr)."""
    path = stack["work"] / f"args-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args(stack, proxy, **overrides)}))
    path.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = subprocess.run([sys.executable, str(MODULE), str(path)], env=env, capture_output=True, text=True, timeout=180, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr
    except ValueError:
        raise AssertionError(f"module printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None


def assert_no_secrets(text):
    for secret in (tg.MASTER_KEY, tg.ENGINE_KEY, tg.GUARD_KEY):
        assert secret not in text


# --- moderation_action: block -------------------------------------------------------------------

def test_blocking_guardrail_passes_through_ansible(stack):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOCALHOST_WARNING="false", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    ansible = pathlib.Path(sys.executable).with_name("ansible")
    engine_before = tg.engine_calls(stack["engine"])
    proc = subprocess.run([ansible, "localhost", "-m", "llmops.gpu_stack.stack_health", "-a", json.dumps(module_args(stack, "blocking"))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("=>", 1)[1])
    assert result["healthy"] is True and result["changed"] is False
    assert result["msg"] == "stack healthy: engine, gateway, moderation ok"
    moderation = result["components"]["moderation"]
    assert moderation["ok"] and moderation["error"] is None
    detail = moderation["detail"]
    # the guardrail's label for Qwen3Guard's category Violent (guard_parser.CATEGORY_LABELS)
    assert (detail["unsafe"], detail["unsafe_status"], detail["unsafe_label"], detail["unsafe_stage"]) == ("blocked", 400, "violence", "input")
    assert 0.9 <= detail["unsafe_score"] <= 1.0  # the stand-in's fabricated logprobs: 0.97 for the verdict
    assert (detail["safe"], detail["safe_status"]) == ("passed", 200)
    assert detail["guardrail"] == "llmops-moderation" and "llmops-moderation" in detail["guardrails"]
    assert detail["model"] == "qwen3-8b" and detail["expect"] == "block"
    assert tg.engine_calls(stack["engine"]) == engine_before + 1  # only the safe probe reached the engine
    assert_no_secrets(proc.stdout + proc.stderr)


def test_blocking_guardrail_fails_when_log_is_expected(stack):
    rc, result, out = run_module(stack, "blocking", moderation_expect="log")
    assert rc == 1 and result["failing"] == ["moderation"]
    assert result["components"]["moderation"]["error"].startswith("unsafe probe was blocked (violence, score 0.9")
    assert result["components"]["moderation"]["error"].endswith("but moderation_expect is log")
    assert_no_secrets(out)


def test_other_guardrail_name_is_not_loaded(stack):
    rc, result, _ignored = run_module(stack, "blocking", moderation_guardrail="house-guard")
    assert rc == 1 and result["failing"] == ["moderation"]
    assert result["components"]["moderation"]["error"] == "guardrail house-guard is not loaded (the gateway lists: llmops-moderation)"


# --- moderation_action: log ---------------------------------------------------------------------

def test_log_only_guardrail(stack):
    engine_before = tg.engine_calls(stack["engine"])
    rc, result, out = run_module(stack, "logging", moderation_expect="log")
    assert rc == 0 and result["healthy"], result["msg"]
    detail = result["components"]["moderation"]["detail"]
    assert (detail["unsafe"], detail["unsafe_status"], detail["safe"]) == ("passed (log-only)", 200, "passed")
    assert tg.engine_calls(stack["engine"]) == engine_before + 2  # log-only: both probes reached the engine
    assert tg.wait_for_lines(stack["logging"], "flagged_logged", 1), "the guardrail logged the flagged probe"
    assert_no_secrets(out)


def test_log_only_guardrail_fails_when_block_is_expected(stack):
    rc, result, out = run_module(stack, "logging")
    assert rc == 1 and result["healthy"] is False and result["failing"] == ["moderation"]
    error = result["components"]["moderation"]["error"]
    assert error.startswith("unsafe probe was NOT blocked (HTTP 200)")
    assert result["msg"] == f"stack unhealthy: moderation: {error}"
    assert_no_secrets(out)


# --- a guardrail LiteLLM skipped ----------------------------------------------------------------

def test_skipped_guardrail_is_not_loaded(stack):
    """LiteLLM started, but without the guardrail (its `action: log` failed LiteLLM's validation): an
    unmoderated gateway, which only /v2/guardrails/list tells apart."""
    assert "Skipping guardrail 'llmops-moderation'" in stack["skipped"].log_path.read_text(errors="replace")
    rc, result, _ignored = run_module(stack, "skipped")
    assert rc == 1 and result["failing"] == ["moderation"]
    assert result["components"]["moderation"]["error"] == "guardrail llmops-moderation is not loaded (the gateway lists: none)"


# --- the guard down, on_error: closed -------------------------------------------------------------

def test_guard_down_fails_closed(stack):
    guard = stack["guard"]
    guard.stop()
    try:
        rc, result, out = run_module(stack, "blocking")
    finally:
        guard.start()
    assert rc == 1 and result["failing"] == ["moderation"]
    error = result["components"]["moderation"]["error"]
    assert error.startswith("moderation unavailable (guard down?): unsafe probe got HTTP 503: Moderation is unavailable"), error
    assert result["components"]["moderation"]["detail"]["unsafe"] == "unavailable"
    assert_no_secrets(out)
    # and healthy again once the guard is back
    rc, result, _ignored = run_module(stack, "blocking")
    assert rc == 0 and result["healthy"], result["msg"]
