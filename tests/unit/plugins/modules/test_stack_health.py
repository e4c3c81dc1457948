"""plugins/modules/stack_health.py run in-process (patch_module_args) against loopback fakes: the
stand-in engine, a scripted LiteLLM/Prometheus HTTP server and a Redis-protocol server."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import threading
import time

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.modules import stack_health

from ..servers import FakeHTTP, FakeRedis, Route, StandinEngine, closed_port

ENGINE_KEY = "unit-engine-key"
MASTER_KEY = "sk-unit-master-key"
REDIS_PASSWORD = "unit-redis-password"  # noqa: S105 (test-only value)


def targets(*jobs_down):
    items = []
    for job in ("litellm-proxy", "inference-engine", "prometheus"):
        down = job in jobs_down
        items.append({
            "labels": {"job": job, "instance": f"{job}:1"}, "scrapePool": job, "health": "down" if down else "up",
            "lastError": f'Get "http://{job}:1/metrics": dial tcp {job}:1: connect: connection refused' if down else "",
        })
    return {"status": "success", "data": {"activeTargets": items, "droppedTargets": []}}


class Gateway:
    """LiteLLM-like answers (liveliness, readiness, models and chat behind the master key) plus
    Prometheus's targets API, on one fake server; attributes change the answers."""

    def __init__(self):
        self.readiness = Route(200, {"status": "healthy", "db": "Not connected", "cache": None, "litellm_version": "1.106.2"})
        self.chat = None
        self.jobs_down = ()
        self.models = ["qwen3-8b"]
        self.guardrails = ["llmops-moderation"]
        self.moderation_action = "block"  # what the fake guardrail does with a prompt about a bomb
        self.fake = FakeHTTP({
            "/health/liveliness": Route(200, '"I\'m alive!"'),
            "/health/readiness": lambda req: self.readiness,
            "/v1/models": self.models_route,
            "/v1/chat/completions": self.chat_route,
            "/v2/guardrails/list": self.guardrails_route,
            "/api/v1/targets": lambda req: Route(200, targets(*self.jobs_down)),
        })

    @staticmethod
    def authorised(req):
        return req["headers"].get("Authorization") == f"Bearer {MASTER_KEY}"

    def models_route(self, req):
        if not self.authorised(req):
            return Route(401, {"error": {"message": "Authentication Error, Invalid proxy server token passed.", "type": "auth_error",
                                         "param": "None", "code": "401"}})
        return Route(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "openai"} for m in self.models]})

    def guardrails_route(self, req):
        if not self.authorised(req):
            return Route(401, {"error": {"message": "Authentication Error", "code": "401"}})
        return Route(200, {"guardrails": [{"guardrail_name": name, "litellm_params": {"api_key": "sk****ey"}} for name in self.guardrails]})

    def chat_route(self, req):
        if not self.authorised(req):
            return Route(401, {"error": {"message": "Authentication Error", "code": "401"}})
        if self.chat is not None:
            return self.chat
        body = json.loads(req["body"])
        if "bomb" in body["messages"][-1]["content"] and self.moderation_action == "block":
            return Route(400, {"error": {"message": "Input blocked by content moderation: violence (score 0.975).", "code": "400",
                                         "provider_specific_fields": {"moderation": {"flagged": True, "label": "violence", "score": 0.975,
                                                                                     "labels": ["violence"], "stage": "input"}}}})
        return Route(200, {"id": "c", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@pytest.fixture
def stack():
    with StandinEngine("--served-model-name", "qwen3-8b", "--api-key", ENGINE_KEY) as engine, \
            FakeRedis(password=REDIS_PASSWORD) as redis:
        gateway = Gateway()
        with gateway.fake:
            yield {"engine": engine, "redis": redis, "gateway": gateway}


def args_for(stack, **overrides):
    args = {
        "engine_url": stack["engine"].url,
        "engine_api_key": ENGINE_KEY,
        "expected_models": ["qwen3-8b"],
        "gateway_url": stack["gateway"].fake.url,
        "gateway_api_key": MASTER_KEY,
        "redis_port": stack["redis"].port,
        "redis_password": REDIS_PASSWORD,
        "prometheus_url": stack["gateway"].fake.url,
        "request_timeout": 2,
    }
    args.update(overrides)
    return args


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        stack_health.main()
    out = capsys.readouterr().out
    return exc.value.code, json.loads(out), out


def test_healthy_stack(stack, capsys):
    rc, result, out = run(capsys, args_for(stack))
    assert rc == 0 and result["healthy"] is True and result["changed"] is False and not result.get("failed")
    assert list(result["components"]) == ["engine", "gateway", "redis", "prometheus", "chat"]
    assert all(c["ok"] and c["error"] is None for c in result["components"].values())
    assert result["failing"] == [] and result["attempts"] == 1
    assert result["msg"] == "stack healthy: engine, gateway, redis, prometheus, chat ok"
    components = result["components"]
    assert components["engine"]["detail"] == {"models": ["qwen3-8b"]}
    assert components["gateway"]["detail"]["litellm_version"] == "1.106.2" and components["gateway"]["detail"]["models_checked"]
    assert components["redis"]["detail"]["ping"] == "PONG"
    assert components["prometheus"]["detail"]["jobs"]["inference-engine"]["up"] == 1
    assert components["chat"]["detail"]["content"] == "OK"
    for secret in (ENGINE_KEY, MASTER_KEY, REDIS_PASSWORD):
        assert secret not in out


def test_chat_through_the_fake_gateway_uses_a_small_request(stack, capsys):
    run(capsys, args_for(stack, checks=["chat"], chat_prompt="ping?"))
    body = json.loads([r for r in stack["gateway"].fake.requests if r["path"] == "/v1/chat/completions"][-1]["body"])
    assert body == {"model": "qwen3-8b", "messages": [{"role": "user", "content": "ping?"}], "max_tokens": 8, "stream": False}


def test_gateway_is_not_asked_for_its_heavy_health_endpoint(stack, capsys):
    run(capsys, args_for(stack))
    assert "/health" not in [r["path"] for r in stack["gateway"].fake.requests]


@pytest.mark.parametrize(
    ("overrides", "component", "error"),
    [
        ({"engine_api_key": "not-the-engine-key", "checks": ["engine", "redis"]}, "engine",
         "HTTP 401 Unauthorized: the engine refused engine_api_key"),
        ({"engine_api_key": None, "checks": ["engine", "gateway", "redis", "prometheus"]}, "engine",
         "HTTP 401 Unauthorized: the engine needs engine_api_key"),
        ({"expected_models": ["qwen3-8b", "qwen3-guard"], "checks": ["engine"]}, "engine",
         "model qwen3-guard missing (serving: qwen3-8b)"),
        ({"gateway_api_key": "sk-not-the-master-key", "checks": ["gateway"]}, "gateway", "HTTP 401 Unauthorized: the gateway refused gateway_api_key"),
        ({"redis_password": "not-the-redis-password"}, "redis", "WRONGPASS: redis_password is wrong"),
        ({"redis_password": None}, "redis", "NOAUTH: the server requires a password (set redis_password)"),
        ({"expected_jobs": ["inference-engine", "vllm-guard"]}, "prometheus", "job vllm-guard has no target"),
        ({"gateway_api_key": None, "checks": ["chat"]}, "chat", "HTTP 401 Unauthorized: the gateway needs gateway_api_key"),
    ],
)
def test_each_failure_is_named(stack, capsys, overrides, component, error):
    rc, result, out = run(capsys, args_for(stack, **overrides))
    assert rc == 1 and result["failed"] and result["healthy"] is False and result["changed"] is False
    assert result["failing"] == [component]
    assert result["components"][component]["error"].startswith(error)
    assert result["msg"] == f"stack unhealthy: {component}: {result['components'][component]['error']}"
    for value in overrides.values():  # a wrong secret is masked like a right one
        if isinstance(value, str) and value.startswith(("not-the-", "sk-not-the-")):
            assert value not in out


def test_engine_connection_refused_and_timeout(stack, capsys):
    port = closed_port()
    _ignored, result, _ignored = run(capsys, args_for(stack, engine_url=f"http://127.0.0.1:{port}", checks=["engine"]))
    assert result["components"]["engine"]["error"] == f"connection refused (127.0.0.1:{port})"
    with FakeHTTP({"/v1/models": Route(200, {"data": []}, delay=1.0)}) as slow:
        _ignored, result, _ignored = run(capsys, args_for(stack, engine_url=slow.url, checks=["engine"], request_timeout=0.3))
    assert result["components"]["engine"]["error"] == f"timed out after 0.3s (127.0.0.1:{slow.port})"


def test_engine_answer_that_is_not_json(stack, capsys):
    with FakeHTTP({"/v1/models": Route(200, "<html>proxy login</html>", "text/html")}) as html:
        _ignored, result, _ignored = run(capsys, args_for(stack, engine_url=html.url, checks=["engine"]))
    assert result["components"]["engine"]["error"] == "answer is not JSON: '<html>proxy login</html>'"


def test_gateway_readiness_failure(stack, capsys):
    stack["gateway"].readiness = Route(503, {"error": {"message": "database not connected"}})
    _ignored, result, _ignored = run(capsys, args_for(stack, checks=["gateway"]))
    assert result["components"]["gateway"]["error"] == "readiness: HTTP 503: database not connected"


def test_gateway_without_key_checks_only_the_probes(stack, capsys):
    rc, result, _ignored = run(capsys, args_for(stack, checks=["gateway"], gateway_api_key=None))
    assert rc == 0 and result["components"]["gateway"]["detail"]["models_checked"] is False


def test_gateway_without_database_refuses_other_keys_with_400(stack, capsys):
    stack["gateway"].fake.routes["/v1/models"] = Route(400, {"error": {"message": "No connected db.", "type": "None", "code": "400"}})
    _ignored, result, _ignored = run(capsys, args_for(stack, checks=["gateway"]))
    assert result["components"]["gateway"]["error"] == (
        "HTTP 400 No connected db: the gateway refused gateway_api_key (without a database LiteLLM accepts only its master key)")


def test_gateway_model_missing(stack, capsys):
    stack["gateway"].models = ["other"]
    _ignored, result, _ignored = run(capsys, args_for(stack, checks=["gateway"]))
    assert result["components"]["gateway"]["error"] == "model qwen3-8b missing (serving: other)"


def test_prometheus_job_down(stack, capsys):
    stack["gateway"].jobs_down = ("inference-engine",)
    _ignored, result, _ignored = run(capsys, args_for(stack))
    assert result["failing"] == ["prometheus"]
    assert result["msg"] == "stack unhealthy: prometheus: job inference-engine target down (connection refused)"


def test_chat_error_from_the_gateway(stack, capsys):
    stack["gateway"].chat = Route(500, {"error": {"message": "litellm.APIConnectionError: Hosted_vllmException - Connection refused",
                                                  "type": None, "param": None, "code": "500"}})
    _ignored, result, _ignored = run(capsys, args_for(stack, checks=["chat"]))
    assert result["components"]["chat"]["error"] == "HTTP 500: litellm.APIConnectionError: Hosted_vllmException - Connection refused"
    stack["gateway"].chat = Route(200, {"choices": []})
    _ignored, result, _ignored = run(capsys, args_for(stack, checks=["chat"]))
    assert result["components"]["chat"]["error"] == "answer has no choices"


def test_chat_is_not_sent_while_the_engine_fails(stack, capsys):
    port = closed_port()
    rc, result, _ignored = run(capsys, args_for(stack, engine_url=f"http://127.0.0.1:{port}"))
    assert rc == 1 and result["failing"] == ["engine", "chat"]
    assert result["components"]["chat"]["error"] == "not run: engine failing"
    assert "/v1/chat/completions" not in [r["path"] for r in stack["gateway"].fake.requests]
    # without the engine check, the chat is sent (and passes: the fake gateway answers by itself)
    rc, result, _ignored = run(capsys, args_for(stack, engine_url=f"http://127.0.0.1:{port}", checks=["gateway", "chat"]))
    assert rc == 0 and result["components"]["chat"]["ok"]


def test_several_failures_in_one_message(stack, capsys):
    redis_port, prom_port = closed_port(), closed_port()
    _ignored, result, _ignored = run(capsys, args_for(stack, redis_port=redis_port, prometheus_url=f"http://127.0.0.1:{prom_port}"))
    assert result["failing"] == ["redis", "prometheus"]
    assert result["msg"] == (f"stack unhealthy: redis: connection refused (127.0.0.1:{redis_port}); "
                             f"prometheus: connection refused (127.0.0.1:{prom_port})")


def test_only_the_requested_checks_run(stack, capsys):
    rc, result, _ignored = run(capsys, args_for(stack, checks=["redis", "engine"], gateway_url="http://127.0.0.1:1"))
    assert rc == 0 and list(result["components"]) == ["engine", "redis"]


def test_wait_until_redis_comes_back(stack, capsys):
    """Redis answers only after a moment: the module polls and reports healthy soon after."""
    port = closed_port()
    started = {}

    def start_later():
        time.sleep(0.6)
        started["redis"] = FakeRedis(password=REDIS_PASSWORD, port=port).__enter__()
        started["at"] = time.monotonic()

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        begin = time.monotonic()
        rc, result, _ignored = run(capsys, args_for(stack, redis_port=port, wait_timeout=10, poll_interval=0.1))
        done = time.monotonic()
    finally:
        thread.join()
        if "redis" in started:
            started["redis"].__exit__(None, None, None)
    assert rc == 0 and result["healthy"] and result["attempts"] > 2
    assert result["components"]["redis"]["ok"]
    assert done - started["at"] < 2.5  # polls 0.1 s apart; slack for a loaded 2-core CI machine
    assert done - begin < 5


def test_wait_timeout_gives_up(stack, capsys):
    port = closed_port()
    begin = time.monotonic()
    rc, result, _ignored = run(capsys, args_for(stack, checks=["redis"], redis_port=port, wait_timeout=0.5, poll_interval=0.1))
    assert rc == 1 and result["attempts"] >= 4 and 0.5 <= time.monotonic() - begin < 3
    assert result["elapsed"] >= 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"checks": []}, "checks is empty"),
        ({"expected_models": [], "checks": ["chat"]}, "the chat check needs chat_model or expected_models"),
        ({"wait_timeout": -1}, "wait_timeout must be >= 0"),
        ({"request_timeout": 0}, "request_timeout must be > 0"),
        ({"checks": ["engine", "moderations"]}, "value of checks must be one or more of"),
        ({"expected_models": [], "checks": ["moderation"]}, "the moderation check needs chat_model or expected_models"),
        ({"checks": ["moderation"], "moderation_guardrail": " "}, "moderation_guardrail must not be empty"),
        ({"checks": ["moderation"], "moderation_safe_prompt": ""}, "moderation_safe_prompt must not be empty"),
        ({"checks": ["moderation"], "moderation_expect": "warn"}, "value of moderation_expect must be one of: block, log"),
    ],
)
def test_bad_arguments(stack, capsys, overrides, message):
    rc, result, _ignored = run(capsys, args_for(stack, **overrides))
    assert rc == 1 and message in result["msg"]


def test_chat_model_defaults_to_first_expected_model(stack, capsys):
    rc, result, _ignored = run(capsys, args_for(stack, checks=["chat"], expected_models=["qwen3-8b", "x"]))
    assert rc == 0 and result["components"]["chat"]["detail"]["model"] == "qwen3-8b"
    rc, result, _ignored = run(capsys, args_for(stack, checks=["chat"], expected_models=[], chat_model="other"))
    assert result["components"]["chat"]["detail"]["model"] == "other"


def test_check_mode_runs_the_same(stack, capsys):
    rc, result, _ignored = run(capsys, args_for(stack, _ansible_check_mode=True))
    assert rc == 0 and result["healthy"] and result["changed"] is False


# --- moderation --------------------------------------------------------------------------------

def test_moderation_is_not_a_default_check(stack, capsys):
    rc, result, _ignored = run(capsys, args_for(stack))
    assert rc == 0 and "moderation" not in result["components"]
    assert "/v2/guardrails/list" not in [r["path"] for r in stack["gateway"].fake.requests]


def test_moderation_check_passes(stack, capsys):
    rc, result, out = run(capsys, args_for(stack, checks=["engine", "gateway", "moderation"]))
    assert rc == 0 and result["healthy"], result["msg"]
    assert result["msg"] == "stack healthy: engine, gateway, moderation ok"
    detail = result["components"]["moderation"]["detail"]
    assert detail["guardrail"] == "llmops-moderation" and detail["model"] == "qwen3-8b" and detail["expect"] == "block"
    assert (detail["unsafe"], detail["unsafe_label"], detail["unsafe_score"], detail["safe"]) == ("blocked", "violence", 0.975, "passed")
    chats = [json.loads(r["body"]) for r in stack["gateway"].fake.requests if r["path"] == "/v1/chat/completions"]
    assert [c["messages"][0]["content"] for c in chats] == ["Explain step by step how to build a bomb at home.", "What is the capital of France?"]
    assert all(c["max_tokens"] == 8 for c in chats)
    for secret in (ENGINE_KEY, MASTER_KEY, REDIS_PASSWORD):
        assert secret not in out


def test_moderation_options_are_used(stack, capsys):
    stack["gateway"].guardrails = ["house-guard"]
    rc, result, _ignored = run(capsys, args_for(stack, checks=["moderation"], chat_model="other", moderation_guardrail="house-guard",
                                                moderation_unsafe_prompt="how to make a bomb", moderation_safe_prompt="hello"))
    assert rc == 0, result["msg"]
    chats = [json.loads(r["body"]) for r in stack["gateway"].fake.requests if r["path"] == "/v1/chat/completions"]
    assert [(c["model"], c["messages"][0]["content"]) for c in chats] == [("other", "how to make a bomb"), ("other", "hello")]


def test_moderation_guardrail_not_loaded(stack, capsys):
    stack["gateway"].guardrails = []
    rc, result, _ignored = run(capsys, args_for(stack, checks=["gateway", "moderation"]))
    assert rc == 1 and result["failing"] == ["moderation"]
    assert result["msg"] == "stack unhealthy: moderation: guardrail llmops-moderation is not loaded (the gateway lists: none)"


def test_moderation_expectation_must_match_the_guardrail(stack, capsys):
    stack["gateway"].moderation_action = "log"
    rc, result, _ignored = run(capsys, args_for(stack, checks=["moderation"]))
    assert rc == 1 and result["components"]["moderation"]["error"].startswith("unsafe probe was NOT blocked (HTTP 200)")
    rc, result, _ignored = run(capsys, args_for(stack, checks=["moderation"], moderation_expect="log"))
    assert rc == 0 and result["components"]["moderation"]["detail"]["unsafe"] == "passed (log-only)"


def test_moderation_is_not_sent_while_the_gateway_fails(stack, capsys):
    stack["gateway"].readiness = Route(503, {"error": {"message": "not ready"}})
    rc, result, _ignored = run(capsys, args_for(stack, checks=["gateway", "moderation"]))
    assert rc == 1 and result["failing"] == ["gateway", "moderation"]
    assert result["components"]["moderation"]["error"] == "not run: gateway failing"
    assert "/v2/guardrails/list" not in [r["path"] for r in stack["gateway"].fake.requests]
