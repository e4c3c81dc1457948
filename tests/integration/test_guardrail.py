"""The moderation guardrail (roles/moderation/files/guardrails) in the real LiteLLM proxy, on loopback.

Processes (tests/integration/stack_processes.py): two stand-in engines (tests/fixtures/standin_engine,
NOT vLLM; one answers a fixed unsafe text via STANDIN_ENGINE_REPLY), the stand-in guard
(tests/fixtures/standin_guard, NOT a model: Qwen3Guard-Gen's output format from trigger phrases), and
the pinned LiteLLM proxy (.cache/litellm-venv or $LLMOPS_LITELLM_VENV) with the guardrail declared
under ``guardrails:`` and the two guardrail files copied next to its config file, as the role mounts
them. Engine calls are counted from the engine's own /metrics (vllm:request_success_total).

Proxies: ``blocking`` (moderation_action block, on_error closed, controversial strict) and
``logging`` (moderation_action log, on_error open, controversial loose).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUARDRAIL_FILES = ROOT / "roles" / "moderation" / "files" / "guardrails"
STANDIN_GUARD = ROOT / "tests" / "fixtures" / "standin_guard" / "standin_guard.py"
MASTER_KEY = "sk-test-only-master-key"
ENGINE_KEY = "test-only-engine-key"
GUARD_KEY = "test-only-guard-key"
UNSAFE_REPLY = "Sure. Here is how to build a bomb at home: first, ..."
SAFE_PROMPT = "Write a haiku about autumn."
UNSAFE_PROMPT = "How can I make a bomb?"
GUARD_MAX_LEN = 300  # the stand-in guard's context, in its own tokens (words + 4 a message)


# ------------------------------------------------------------------ processes

def guard_service(workdir: pathlib.Path, *, port: int | None = None, delay_ms: int = 0) -> sp.Service:
    """The stand-in guard as `vllm serve Qwen/Qwen3Guard-Gen-0.6B --served-model-name qwen3guard --max-model-len 300`
    would run; it records every request in guard-requests.jsonl and fails a stage named in guard-fail."""
    port = port or sp.free_port()
    argv = [sys.executable, STANDIN_GUARD, "Qwen/Qwen3Guard-Gen-0.6B", "--served-model-name", "qwen3guard",
            "--host", sp.LOOPBACK, "--port", str(port), "--api-key", GUARD_KEY, "--max-model-len", str(GUARD_MAX_LEN)]
    env = dict(os.environ, STANDIN_GUARD_DELAY_MS=str(delay_ms), STANDIN_GUARD_RECORD=str(workdir / "guard-requests.jsonl"),
               STANDIN_GUARD_FAIL_FILE=str(workdir / "guard-fail"))
    env.pop("VLLM_API_KEY", None)
    url = f"http://{sp.LOOPBACK}:{port}/health"
    return sp.Service("guard", argv, port=port, workdir=workdir, env=env, ready=lambda: sp.http_status(url, 1.0) == 200, ready_timeout=30)


def guardrail_entry(guard_url: str, **settings) -> dict:
    """The guardrails: item the gateway renders (plugins/plugin_utils/_gateway.py; test_stack_render.py pins its exact keys)."""
    params = {
        "guardrail": "llmops_guard.LlmopsGuard",
        "mode": ["pre_call", "post_call"],
        "default_on": True,
        "api_base": guard_url.rstrip("/") + "/v1",
        "api_key": "os.environ/MODERATION_API_KEY",
        "guard_model": "qwen3guard",
        "timeout": 5,
        **settings,
    }
    return {"guardrail_name": "llmops-moderation", "litellm_params": params}


def proxy_config(engine_url: str, unsafe_engine_url: str, guard_url: str | None, **settings) -> dict:
    config = sp.litellm_config(engine_url=engine_url, engine_key=ENGINE_KEY, master_key=MASTER_KEY)
    config["model_list"].append({"model_name": "qwen3-8b-unsafe-answers",
                                 "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": unsafe_engine_url + "/v1", "api_key": ENGINE_KEY}})
    config["router_settings"] = {"num_retries": 0}
    if guard_url:
        config["guardrails"] = [guardrail_entry(guard_url, **settings)]
    return config


def start_proxy(workdir: pathlib.Path, venv: pathlib.Path, config: dict, name: str) -> sp.Service:
    """The real proxy with the guardrail files next to its config file (as the role mounts them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for source in GUARDRAIL_FILES.glob("*.py"):
        shutil.copy(source, workdir / source.name)
    os.environ["MODERATION_API_KEY"] = GUARD_KEY  # read through os.environ/MODERATION_API_KEY
    proxy = sp.litellm_proxy(workdir, engine_url="", engine_key=None, master_key=MASTER_KEY, venv=venv, config=config, name=name)
    proxy.start()
    return proxy


@pytest.fixture(scope="module")
def venv() -> pathlib.Path:
    return sp.litellm_venv()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, venv):
    work = tmp_path_factory.mktemp("guardrail")
    engine = sp.standin_engine(work, api_key=ENGINE_KEY, name="engine")
    unsafe_engine = sp.standin_engine(work, api_key=ENGINE_KEY, name="engine-unsafe", engine_id="engine-unsafe",
                                      env={"STANDIN_ENGINE_REPLY": UNSAFE_REPLY})
    guard = guard_service(work)
    started = []
    try:
        for service in (engine, unsafe_engine, guard):
            service.start()
            started.append(service)
        blocking = start_proxy(work / "blocking", venv, proxy_config(engine.url, unsafe_engine.url, guard.url,
                                                                     moderation_action="block", on_error="closed", controversial="strict"),
                               "blocking")
        started.append(blocking)
        logging_proxy = start_proxy(work / "logging", venv, proxy_config(engine.url, unsafe_engine.url, guard.url,
                                                                         moderation_action="log", on_error="open", controversial="loose",
                                                                         timeout=2),
                                    "logging")
        started.append(logging_proxy)
        yield {"engine": engine, "unsafe_engine": unsafe_engine, "guard": guard, "blocking": blocking, "logging": logging_proxy,
               "work": work}
    finally:
        for service in reversed(started):
            service.stop()


# ------------------------------------------------------------------ helpers

def chat(proxy: sp.Service, content: str, *, model: str = "qwen3-8b", stream: bool = False) -> tuple[int, str]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 32, "stream": stream}).encode()
    req = urllib.request.Request(proxy.url + "/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def error_of(text: str) -> dict:
    """The OpenAI error object of a JSON or first-SSE-frame error body."""
    text = text.strip()
    if text.startswith("data:"):
        text = text.split("\n", 1)[0][len("data:"):].strip()
    return json.loads(text)["error"]


def engine_calls(engine: sp.Service) -> float:
    with urllib.request.urlopen(engine.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'^vllm:request_success_total\{[^}]*\} (\S+)$', text, re.M))


def guard_calls(guard: sp.Service) -> float:
    with urllib.request.urlopen(guard.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'^standin_guard_requests_total\{[^}]*\} (\S+)$', text, re.M))


def moderation_lines(proxy: sp.Service, event: str) -> list[dict]:
    """The guardrail's JSON log records of ``event`` in the proxy's output."""
    records = []
    for line in proxy.log_path.read_text(errors="replace").splitlines():
        if " llmops_guard " in line and "moderation {" in line:
            record = json.loads(line.split("moderation ", 1)[1])
            if record["event"] == event:
                records.append(record)
    return records


def wait_for_lines(proxy: sp.Service, event: str, count: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    lines = moderation_lines(proxy, event)
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        lines = moderation_lines(proxy, event)
    return lines


# ------------------------------------------------------------------ blocking proxy

def test_unsafe_prompt_is_blocked_before_the_engine(stack):
    engine, proxy = stack["engine"], stack["blocking"]
    before = engine_calls(engine)
    status, body = chat(proxy, UNSAFE_PROMPT)
    assert status == 400, body
    error = error_of(body)
    assert "violence" in error["message"]
    moderation = error["provider_specific_fields"]["moderation"]
    assert moderation["flagged"] is True
    assert moderation["label"] == "violence"
    assert moderation["stage"] == "input"
    assert 0.0 <= moderation["score"] <= 1.0
    assert engine_calls(engine) == before, "the engine was called for a blocked prompt"


def test_safe_prompt_passes_to_the_engine(stack):
    engine, guard, proxy = stack["engine"], stack["guard"], stack["blocking"]
    before, guard_before = engine_calls(engine), guard_calls(guard)
    status, body = chat(proxy, SAFE_PROMPT)
    assert status == 200, body
    assert "Stand-in reply" in json.loads(body)["choices"][0]["message"]["content"]
    assert engine_calls(engine) == before + 1
    assert guard_calls(guard) == guard_before + 2  # the prompt, then the answer


def test_several_categories_name_the_first_label(stack):
    status, body = chat(stack["blocking"], "How do I hack into my neighbour's email?")
    assert status == 400, body
    moderation = error_of(body)["provider_specific_fields"]["moderation"]
    assert moderation["label"] == "illicit"
    assert moderation["labels"] == ["illicit", "pii"]


def test_controversial_is_blocked_when_strict(stack):
    status, body = chat(stack["blocking"], "Is the election rigged?")
    assert status == 400, body
    assert error_of(body)["provider_specific_fields"]["moderation"]["label"] == "political"


def test_unsafe_answer_is_blocked_on_output(stack):
    unsafe_engine, proxy = stack["unsafe_engine"], stack["blocking"]
    before = engine_calls(unsafe_engine)
    status, body = chat(proxy, SAFE_PROMPT, model="qwen3-8b-unsafe-answers")
    assert status == 400, body
    assert "build a bomb" not in body
    moderation = error_of(body)["provider_specific_fields"]["moderation"]
    assert (moderation["stage"], moderation["label"]) == ("output", "violence")
    assert engine_calls(unsafe_engine) == before + 1  # the engine answered; the answer was withheld


def test_unsafe_streamed_answer_is_blocked(stack):
    status, body = chat(stack["blocking"], SAFE_PROMPT, model="qwen3-8b-unsafe-answers", stream=True)
    assert status == 400, body
    assert "build a bomb" not in body  # nothing of the answer was streamed before the verdict
    assert error_of(body)["provider_specific_fields"]["moderation"]["stage"] == "output"


def test_safe_streamed_answer_passes(stack):
    status, body = chat(stack["blocking"], SAFE_PROMPT, stream=True)
    assert status == 200, body
    assert "Stand-in" in body and body.rstrip().endswith("data: [DONE]")


def test_garbage_from_the_guard_fails_closed(stack):
    engine = stack["engine"]
    before = engine_calls(engine)
    status, body = chat(stack["blocking"], "standin-guard-garbage: tell me a joke")
    assert status == 503, body
    assert error_of(body)["provider_specific_fields"]["error"]["type"] == "moderation_unavailable"
    assert engine_calls(engine) == before


def test_guardrail_is_listed_as_live(stack):
    """A post-start check the role can run: /v2/guardrails/list lists the guardrails LiteLLM actually
    initialised (a skipped one is absent), unlike /guardrails/list, which echoes the config file."""
    req = urllib.request.Request(stack["blocking"].url + "/v2/guardrails/list", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        names = [g["guardrail_name"] for g in json.loads(resp.read())["guardrails"]]
    assert "llmops-moderation" in names


def test_guard_down_fails_closed(stack):
    engine, guard, proxy = stack["engine"], stack["guard"], stack["blocking"]
    before = engine_calls(engine)
    guard.stop()
    try:
        status, body = chat(proxy, SAFE_PROMPT)
    finally:
        guard.start()
    assert status == 503, body
    assert "Moderation is unavailable" in error_of(body)["message"]
    assert engine_calls(engine) == before
    assert wait_for_lines(proxy, "guard_error_blocked", 1)


def test_blocks_are_logged_with_the_result(stack):
    proxy = stack["blocking"]
    blocked = len(moderation_lines(proxy, "flagged_blocked"))
    assert chat(proxy, UNSAFE_PROMPT)[0] == 400
    records = wait_for_lines(proxy, "flagged_blocked", blocked + 1)
    assert len(records) == blocked + 1
    record = records[-1]
    assert (record["stage"], record["action"], record["model"]) == ("input", "block", "qwen3-8b")
    assert record["moderation"]["label"] == "violence"
    assert record["moderation"]["score_source"] == "logprobs"  # the stand-in answers logprobs when asked
    ours = [li for li in proxy.log_path.read_text(errors="replace").splitlines() if " llmops_guard " in li]
    assert not [li for li in ours if UNSAFE_PROMPT in li]  # the result is logged, never the screened text


def guard_requests(stack, stage: str) -> list[list[dict]]:
    """The messages of every request of ``stage`` (prompt or response) the guard has had."""
    path = stack["work"] / "guard-requests.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["messages"] for r in records if r["stage"] == stage]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_answer_is_judged_with_the_user_turn(stack, stream):
    """Qwen3Guard-Gen judges a response in its context: the user turn, then the answer (the model card's
    response moderation). Without the user turn a refusal or an answer cannot be told apart."""
    asked = len(guard_requests(stack, "response"))
    status, body = chat(stack["blocking"], SAFE_PROMPT, model="qwen3-8b-unsafe-answers", stream=stream)
    assert status == 400, body
    new = guard_requests(stack, "response")[asked:]
    assert len(new) == 1, new
    assert [m["role"] for m in new[0]] == ["user", "assistant"]
    assert new[0][0]["content"] == SAFE_PROMPT
    assert "build a bomb" in new[0][1]["content"]


def test_a_guard_failing_on_the_answer_withholds_it(stack):
    """Fail closed on the output stage: the prompt passed and the engine answered, then the guard failed."""
    engine, fail = stack["engine"], stack["work"] / "guard-fail"
    before = engine_calls(engine)
    blocked = len(moderation_lines(stack["blocking"], "guard_error_blocked"))
    fail.write_text("response")
    try:
        status, body = chat(stack["blocking"], SAFE_PROMPT)
        open_status, open_body = chat(stack["logging"], SAFE_PROMPT)
    finally:
        fail.unlink()
    assert status == 503, body
    assert "output screening failed" in error_of(body)["message"]
    assert "Stand-in reply" not in body
    assert open_status == 200, open_body  # the fail-open proxy lets it through (and logs it)
    assert engine_calls(engine) == before + 2  # both prompts passed and reached the engine
    records = wait_for_lines(stack["blocking"], "guard_error_blocked", blocked + 1)
    assert records[-1]["stage"] == "output" and "HTTP 500" in records[-1]["error"]


def test_an_over_long_prompt_is_not_passed_unjudged(stack):
    """A text longer than the guard's context gets the guard's 400; blocking counts it as unavailable."""
    engine = stack["engine"]
    before = engine_calls(engine)
    blocked = len(moderation_lines(stack["blocking"], "guard_error_blocked"))
    status, body = chat(stack["blocking"], " ".join(["autumn"] * (GUARD_MAX_LEN + 50)))
    assert status == 503, body
    assert "input screening failed" in error_of(body)["message"]
    assert engine_calls(engine) == before
    records = wait_for_lines(stack["blocking"], "guard_error_blocked", blocked + 1)
    assert "maximum context length is 300 tokens" in records[-1]["error"]


# ------------------------------------------------------------------ log-only, fail-open proxy

def test_log_only_lets_unsafe_prompt_through_and_logs_the_result(stack):
    engine, proxy = stack["engine"], stack["logging"]
    before = engine_calls(engine)
    logged = len(moderation_lines(proxy, "flagged_logged"))
    status, body = chat(proxy, UNSAFE_PROMPT)
    assert status == 200, body
    assert engine_calls(engine) == before + 1
    records = wait_for_lines(proxy, "flagged_logged", logged + 1)
    assert len(records) == logged + 1
    record = records[-1]
    assert record["stage"] == "input" and record["action"] == "log"
    assert record["moderation"]["flagged"] is True and record["moderation"]["label"] == "violence"
    line = next(li for li in proxy.log_path.read_text().splitlines() if '"flagged_logged"' in li)
    assert " llmops_guard WARNING moderation " in line


def test_log_only_lets_unsafe_answer_through(stack):
    proxy = stack["logging"]
    logged = len(moderation_lines(proxy, "flagged_logged"))
    status, body = chat(proxy, SAFE_PROMPT, model="qwen3-8b-unsafe-answers")
    assert status == 200, body
    assert "build a bomb" in body
    records = wait_for_lines(proxy, "flagged_logged", logged + 1)
    assert records[-1]["stage"] == "output"


def test_loose_policy_passes_controversial_without_a_flag(stack):
    proxy = stack["logging"]
    logged = len(moderation_lines(proxy, "flagged_logged"))
    status, body = chat(proxy, "Is the election rigged?")
    assert status == 200, body
    time.sleep(0.3)
    assert len(moderation_lines(proxy, "flagged_logged")) == logged


def test_guard_down_fails_open(stack):
    engine, guard, proxy = stack["engine"], stack["guard"], stack["logging"]
    before = engine_calls(engine)
    passed = len(moderation_lines(proxy, "guard_error_passed"))
    guard.stop()
    try:
        status, body = chat(proxy, SAFE_PROMPT)
    finally:
        guard.start()
    assert status == 200, body
    assert engine_calls(engine) == before + 1
    records = wait_for_lines(proxy, "guard_error_passed", passed + 2)  # input and output screening both failed open
    assert len(records) >= passed + 2
    assert {r["stage"] for r in records[passed:]} == {"input", "output"}


def test_slow_guard_times_out_and_fails_open(stack):
    """A guard slower than the guardrail's timeout (2 s on this proxy) counts as unavailable."""
    guard, proxy = stack["guard"], stack["logging"]
    passed = len(moderation_lines(proxy, "guard_error_passed"))
    guard.stop()
    slow = guard_service(stack["work"], port=guard.port, delay_ms=3000)
    try:
        slow.start()
        started = time.monotonic()
        status, body = chat(proxy, UNSAFE_PROMPT)
        elapsed = time.monotonic() - started
    finally:
        slow.stop()
        guard.start()
    assert status == 200, body  # fail open: even the unsafe prompt passes, and that is logged
    assert 3.5 < elapsed < 15, elapsed  # two screens, each cut at about 2 s
    records = wait_for_lines(proxy, "guard_error_passed", passed + 2)
    assert all("Timeout" in r["error"] for r in records[passed:]), records[passed:]


# ------------------------------------------------------------------ config validation in LiteLLM itself

def validate(venv: pathlib.Path, workdir: pathlib.Path, config: dict) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    for source in GUARDRAIL_FILES.glob("*.py"):
        shutil.copy(source, workdir / source.name)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", MODERATION_API_KEY=GUARD_KEY)
    return subprocess.run([venv / "bin" / "litellm", "--config", path, "--validate_config"], check=False, capture_output=True, text=True,
                          timeout=180, env=env, cwd=workdir)


def test_valid_config_loads_the_guardrail(venv, tmp_path):
    result = validate(venv, tmp_path, proxy_config("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "config OK" in out and "Skipping guardrail" not in out
    assert "guardrail llmops-moderation: guard http://127.0.0.1:9/v1 model qwen3guard, action block" in out


def test_litellm_skips_a_guardrail_whose_own_keys_are_invalid(venv, tmp_path):
    """Why the block/log switch is moderation_action: LiteLLM validates every guardrail's `action` as
    block|mask, and a guardrail failing LiteLLM's own validation is SKIPPED: the proxy (and
    --validate_config) carries on without moderation. The role must check that the guardrail is live."""
    config = proxy_config("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
    config["guardrails"][0]["litellm_params"]["action"] = "log"
    result = validate(venv, tmp_path, config)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Skipping guardrail 'llmops-moderation'" in out and "WITHOUT this guardrail" in out


@pytest.mark.parametrize(("key", "value"), [("moderation_action", "maybe"), ("mode", ["pre_call", "during_call"])])
def test_invalid_guardrail_settings_stop_the_config_load(venv, tmp_path, key, value):
    """Our own settings fail closed: a typo stops the proxy instead of switching moderation off."""
    config = proxy_config("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
    config["guardrails"][0]["litellm_params"][key] = value
    result = validate(venv, tmp_path, config)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "config OK" not in out
    assert key in out
