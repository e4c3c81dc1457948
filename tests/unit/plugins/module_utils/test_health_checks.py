"""plugins/module_utils/hc.py: result shaping, model lists, Prometheus targets, AUTH errors,
and the Redis and moderation checks against loopback fakes."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _health_checks as hc
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _resp

from ..servers import FakeHTTP, FakeRedis, Route, closed_port

# --- result shaping --------------------------------------------------------------------------


def test_component_shape():
    assert hc.component(True, 1.234, {"a": 1}) == {"ok": True, "latency_ms": 1.2, "detail": {"a": 1}, "error": None}
    assert hc.component(False) == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "failed"}
    # a passing component never carries an error text
    assert hc.component(True, error="ignored")["error"] is None


def test_summary_names_each_failing_component_in_order():
    components = {
        "engine": hc.component(True),
        "redis": hc.component(False, error="connection refused (127.0.0.1:6379)"),
        "prometheus": hc.component(False, error="job inference-engine target down (connection refused)"),
    }
    assert hc.failing_components(components) == ["redis", "prometheus"]
    assert hc.summary_message(components) == (
        "stack unhealthy: redis: connection refused (127.0.0.1:6379); prometheus: job inference-engine target down (connection refused)"
    )
    assert hc.summary_message(components, ["prometheus", "redis", "engine"]).startswith("stack unhealthy: prometheus:")
    assert hc.summary_message({"engine": hc.component(True), "chat": hc.component(True)}) == "stack healthy: engine, chat ok"


# --- model lists -----------------------------------------------------------------------------

VLLM_MODELS = {"object": "list", "data": [{"id": "qwen3-8b", "object": "model", "owned_by": "vllm"}]}


def test_models_ok():
    assert hc.evaluate_models(VLLM_MODELS, ["qwen3-8b"]) == (True, {"models": ["qwen3-8b"]}, None)
    assert hc.evaluate_models(VLLM_MODELS, []) == (True, {"models": ["qwen3-8b"]}, None)


def test_models_missing():
    ok, detail, error = hc.evaluate_models(VLLM_MODELS, ["qwen3-8b", "qwen3-guard"])
    assert not ok and detail == {"models": ["qwen3-8b"]}
    assert error == "model qwen3-guard missing (serving: qwen3-8b)"
    assert hc.evaluate_models({"data": []}, ["a", "b"])[2] == "models a, b missing (serving: none)"


@pytest.mark.parametrize("payload", [{"object": "list"}, [], {"data": [{"name": "x"}]}, {"data": ["x"]}, "text", None])
def test_not_a_model_list(payload):
    ok, _ignored, error = hc.evaluate_models(payload, ["qwen3-8b"])
    assert not ok and error.startswith("answer is not a model list")


# --- Prometheus targets ----------------------------------------------------------------------

def target(job, health="up", instance="127.0.0.1:8001", last_error=""):
    return {"labels": {"job": job, "instance": instance}, "scrapePool": job, "health": health, "lastError": last_error}


def targets(*items):
    return {"status": "success", "data": {"activeTargets": list(items), "droppedTargets": []}}


JOBS = ["litellm-proxy", "inference-engine"]
REFUSED = 'Get "http://127.0.0.1:8001/metrics": dial tcp 127.0.0.1:8001: connect: connection refused'


def test_targets_all_up():
    ok, detail, error = hc.evaluate_targets(targets(target("litellm-proxy"), target("inference-engine"), target("prometheus")), JOBS)
    assert ok and error is None
    assert detail["jobs"]["inference-engine"]["up"] == 1 and detail["jobs"]["inference-engine"]["total"] == 1
    assert detail["other_jobs"] == ["prometheus"]


def test_target_down_names_job_and_reason():
    payload = targets(target("litellm-proxy"), target("inference-engine", "down", last_error=REFUSED))
    ok, detail, error = hc.evaluate_targets(payload, JOBS)
    assert not ok
    assert error == "job inference-engine target down (connection refused)"
    assert detail["jobs"]["inference-engine"]["targets"][0]["last_error"] == REFUSED


def test_missing_job_and_unknown_health():
    ok, _ignored, error = hc.evaluate_targets(targets(target("inference-engine", "unknown")), JOBS)
    assert not ok
    assert error == "job litellm-proxy has no target; job inference-engine target not up (not scraped yet)"


def test_several_targets_one_down():
    payload = targets(target("inference-engine", instance="a:1"), target("inference-engine", "down", "b:2", "server returned HTTP status 401 Unauthorized"))
    ok, detail, error = hc.evaluate_targets(payload, ["inference-engine"])
    assert not ok and error == "job inference-engine: 1 of 2 targets not up (b:2: HTTP status 401 Unauthorized)"
    assert detail["jobs"]["inference-engine"] == {
        "up": 1, "total": 2,
        "targets": [{"instance": "a:1", "health": "up", "last_error": None},
                    {"instance": "b:2", "health": "down", "last_error": "server returned HTTP status 401 Unauthorized"}],
    }


def test_job_from_scrape_pool_when_labels_lack_it():
    item = {"labels": {"instance": "x"}, "scrapePool": "litellm-proxy", "health": "up"}
    assert hc.evaluate_targets(targets(item), ["litellm-proxy"])[0]


def test_no_expected_jobs_needs_only_an_answer():
    assert hc.evaluate_targets(targets(), [])[0]


@pytest.mark.parametrize("payload", [{"status": "error", "error": "x"}, {"status": "success", "data": {}}, [], "text", None])
def test_not_a_targets_answer(payload):
    ok, _ignored, error = hc.evaluate_targets(payload, JOBS)
    assert not ok and error.startswith("answer is not a Prometheus targets list")


@pytest.mark.parametrize(
    ("text", "short"),
    [
        (REFUSED, "connection refused"),
        ('Get "http://x/metrics": context deadline exceeded', "timeout"),
        ("dial tcp: lookup litellm-proxy on 127.0.0.11:53: no such host", "cannot resolve host"),
        ("server returned HTTP status 404 Not Found", "HTTP status 404 Not Found"),
        ('Get "http://x/metrics": EOF', "EOF"),
        ("", None),
        (None, None),
    ],
)
def test_short_scrape_error(text, short):
    assert hc.short_scrape_error(text) == short


# --- Redis: AUTH error texts, and the check against a fake server ----------------------------

@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ("WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS: redis_password is wrong"),
        ("ERR invalid password", "WRONGPASS: redis_password is wrong"),
        ("ERR AUTH <password> called without any password configured for the default user.", "AUTH refused: the server has no password set"),
        ("ERR Client sent AUTH, but no password is set", "AUTH refused: the server has no password set"),
        ("ERR something else", "AUTH failed: ERR something else"),
    ],
)
def test_redis_auth_error(reply, text):
    assert hc.redis_auth_error(_resp.RedisReplyError(reply)).startswith(text)


TEST_PASSWORD = "unit-test-only-redis-password"  # noqa: S105


def test_redis_pong_with_password():
    with FakeRedis(password=TEST_PASSWORD) as fake:
        result = hc.check_redis("127.0.0.1", fake.port, TEST_PASSWORD, timeout=2)
    assert result["ok"], result
    assert result["detail"] == {"address": f"127.0.0.1:{fake.port}", "auth": True, "ping": "PONG"}
    assert fake.commands == [["AUTH", TEST_PASSWORD], ["PING"]]


def test_redis_without_password():
    with FakeRedis() as fake:
        result = hc.check_redis("127.0.0.1", fake.port, None, timeout=2)
    assert result["ok"] and fake.commands == [["PING"]]


@pytest.mark.parametrize(
    ("server_password", "given", "error"),
    [
        ("s3cret", None, "NOAUTH: the server requires a password (set redis_password)"),
        ("s3cret", "wrong", "WRONGPASS: redis_password is wrong"),
        (None, "s3cret", "AUTH refused: the server has no password set, but redis_password was given"),
    ],
)
def test_redis_auth_problems(server_password, given, error):
    with FakeRedis(password=server_password) as fake:
        result = hc.check_redis("127.0.0.1", fake.port, given, timeout=2)
    assert not result["ok"] and result["error"].startswith(error)


def test_redis_connection_refused():
    port = closed_port()
    result = hc.check_redis("127.0.0.1", port, "x", timeout=2)
    assert result["error"] == f"connection refused (127.0.0.1:{port})"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("silent", "timed out after 0.3s (127.0.0.1:{port})"),
        ("close", "connection reset (127.0.0.1:{port})"),
        ("http", "not a Redis answer (127.0.0.1:{port})"),
        ("loading", "PING refused: LOADING Redis is loading the dataset in memory"),
    ],
)
def test_redis_odd_servers(mode, error):
    with FakeRedis(mode=mode) as fake:
        result = hc.check_redis("127.0.0.1", fake.port, None, timeout=0.3)
    assert not result["ok"] and result["error"].startswith(error.format(port=fake.port)), result


def test_redis_reply_in_pieces():
    with FakeRedis(mode="split") as fake:
        assert hc.check_redis("127.0.0.1", fake.port, None, timeout=2)["ok"]


# --- the moderation check against a fake gateway --------------------------------------------
#
# Answers shaped like LiteLLM 1.106 with the llmops_guard guardrail (captured from the real proxy
# in front of the stand-in guard): the guardrail's HTTPException detail ends up in
# error.provider_specific_fields.

MOD_KEY = "sk-unit-moderation-master-key"
UNSAFE = hc.MODERATION_UNSAFE_PROMPT
SAFE = hc.MODERATION_SAFE_PROMPT


def guardrail_list(*names):
    return {"guardrails": [{"guardrail_id": f"id-{i}", "guardrail_name": name,
                            "litellm_params": {"guardrail": "llmops_guard.LlmopsGuard", "api_key": "te****ey"}}
                           for i, name in enumerate(names)]}


def blocked(label="violence", score=0.975, stage="input"):
    message = f"Input blocked by content moderation: {label} (score {score})."
    return Route(400, {"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": "400",
        "provider_specific_fields": {
            "error": {"message": message, "type": "content_moderation", "param": None, "code": "content_filter"},
            "moderation": {"flagged": True, "label": label, "score": score, "labels": [label], "stage": stage},
            "guardrail_name": "llmops-moderation", "guardrail_mode": ["pre_call", "post_call"]}}})


UNAVAILABLE = Route(503, {"error": {
    "message": "Moderation is unavailable; the request was not processed (input screening failed).",
    "type": "internal_server_error", "param": None, "code": "503",
    "provider_specific_fields": {
        "error": {"message": "Moderation is unavailable; the request was not processed (input screening failed).",
                  "type": "moderation_unavailable", "param": None, "code": "moderation_unavailable"},
        "moderation": {"stage": "input", "error": "guard unavailable"}}}})
PASSED = Route(200, {"id": "c", "object": "chat.completion", "model": "qwen3-8b",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}]})


class ModerationGateway:
    """A fake LiteLLM: /v2/guardrails/list and chat completions behind MOD_KEY; ``unsafe`` and
    ``safe`` are the answers to the two probes (picked by the prompt)."""

    def __init__(self, listed=("llmops-moderation",), unsafe=None, safe=PASSED):
        self.listed = listed
        self.unsafe = unsafe or blocked()
        self.safe = safe
        self.fake = FakeHTTP({"/v2/guardrails/list": self.guardrails, "/v1/chat/completions": self.chat})

    @staticmethod
    def refused(req):
        if req["headers"].get("Authorization") != f"Bearer {MOD_KEY}":
            return Route(401, {"error": {"message": "Authentication Error", "code": "401"}})
        return None

    def guardrails(self, req):
        return self.refused(req) or Route(200, guardrail_list(*self.listed))

    def chat(self, req):
        refused = self.refused(req)
        if refused:
            return refused
        body = json.loads(req["body"])
        return self.unsafe if body["messages"][-1]["content"] == UNSAFE else self.safe

    def paths(self):
        return [r["path"] for r in self.fake.requests]

    def prompts(self):
        return [json.loads(r["body"])["messages"][-1]["content"] for r in self.fake.requests if r["path"] == "/v1/chat/completions"]

    def __enter__(self):
        self.fake.__enter__()
        return self

    def __exit__(self, *exc):
        self.fake.__exit__(*exc)


def moderation(gateway, key=MOD_KEY, **kwargs):
    kwargs.setdefault("model", "qwen3-8b")
    kwargs.setdefault("timeout", 2)
    return hc.check_moderation(gateway.fake.url, key, **kwargs)


def test_moderation_listed_blocked_and_safe_passes():
    with ModerationGateway() as gateway:
        result = moderation(gateway)
    assert result["ok"] and result["error"] is None, result
    assert result["detail"] == {
        "guardrail": "llmops-moderation", "model": "qwen3-8b", "expect": "block", "guardrails": ["llmops-moderation"],
        "unsafe_status": 400, "unsafe": "blocked", "unsafe_label": "violence", "unsafe_score": 0.975, "unsafe_stage": "input",
        "safe_status": 200, "safe": "passed",
    }
    assert gateway.paths() == ["/v2/guardrails/list", "/v1/chat/completions", "/v1/chat/completions"]
    assert gateway.prompts() == [UNSAFE, SAFE]
    body = json.loads(gateway.fake.requests[1]["body"])
    assert body["model"] == "qwen3-8b" and body["max_tokens"] == 8 and body["stream"] is False
    assert all(r["headers"]["Authorization"] == "Bearer " + MOD_KEY for r in gateway.fake.requests)
    assert MOD_KEY not in json.dumps(result)


def test_moderation_default_probes_trigger_the_standin_guard():
    assert "build a bomb" in hc.MODERATION_UNSAFE_PROMPT.lower()
    assert "bomb" not in hc.MODERATION_SAFE_PROMPT.lower()


def test_moderation_guardrail_not_listed_is_named():
    with ModerationGateway(listed=("other-guard",)) as gateway:
        result = moderation(gateway)
    assert not result["ok"]
    assert result["error"] == "guardrail llmops-moderation is not loaded (the gateway lists: other-guard)"
    assert gateway.paths() == ["/v2/guardrails/list"]  # no probe is sent
    with ModerationGateway(listed=()) as gateway:
        result = moderation(gateway, guardrail_name="my-guard")
    assert result["error"] == "guardrail my-guard is not loaded (the gateway lists: none)"
    assert result["detail"]["guardrails"] == []


def test_moderation_unsafe_answered_200_is_not_blocked():
    with ModerationGateway(unsafe=PASSED) as gateway:
        result = moderation(gateway)
    assert not result["ok"]
    assert result["error"].startswith("unsafe probe was NOT blocked (HTTP 200)")
    assert result["detail"]["unsafe"] == "passed" and "safe" not in result["detail"]
    assert gateway.prompts() == [UNSAFE]


def test_moderation_guard_down_503():
    with ModerationGateway(unsafe=UNAVAILABLE) as gateway:
        result = moderation(gateway)
    assert not result["ok"]
    assert result["error"] == ("moderation unavailable (guard down?): unsafe probe got HTTP 503: "
                               "Moderation is unavailable; the request was not processed (input screening failed).")
    assert result["detail"]["unsafe"] == "unavailable" and result["detail"]["unsafe_status"] == 503
    # fails closed on the safe probe too (expect log: the unsafe one passed)
    with ModerationGateway(unsafe=PASSED, safe=UNAVAILABLE) as gateway:
        result = moderation(gateway, expect="log")
    assert result["error"].startswith("moderation unavailable (guard down?): safe probe got HTTP 503")


def test_moderation_expect_log_passes_on_200():
    with ModerationGateway(unsafe=PASSED) as gateway:
        result = moderation(gateway, expect="log")
    assert result["ok"], result
    assert result["detail"]["unsafe"] == "passed (log-only)" and result["detail"]["unsafe_status"] == 200
    assert result["detail"]["safe"] == "passed" and result["detail"]["expect"] == "log"
    assert "unsafe_label" not in result["detail"]


def test_moderation_expect_log_but_blocked():
    with ModerationGateway() as gateway:
        result = moderation(gateway, expect="log")
    assert not result["ok"]
    assert result["error"] == "unsafe probe was blocked (violence, score 0.975), but moderation_expect is log"


def test_moderation_safe_probe_blocked():
    with ModerationGateway(safe=blocked("political", 0.8)) as gateway:
        result = moderation(gateway)
    assert not result["ok"]
    assert result["error"] == "safe probe was blocked (political, score 0.8, stage input)"
    assert result["detail"]["safe"] == "blocked" and result["detail"]["unsafe"] == "blocked"


def test_moderation_400_without_a_verdict():
    bad_request = Route(400, {"error": {"message": "Invalid model name passed in model=nope", "code": "400"}})
    with ModerationGateway(unsafe=bad_request) as gateway:
        result = moderation(gateway, model="nope")
    assert result["error"] == "unsafe probe: HTTP 400: Invalid model name passed in model=nope (no moderation verdict in the answer)"
    # flagged must be true: a verdict without it is not a block
    not_flagged = Route(400, {"error": {"message": "x", "provider_specific_fields": {"moderation": {"flagged": False}}}})
    with ModerationGateway(unsafe=not_flagged) as gateway:
        assert moderation(gateway)["error"].endswith("(no moderation verdict in the answer)")


def test_moderation_key_problems_and_no_key_in_output():
    with ModerationGateway() as gateway:
        result = moderation(gateway, key="sk-not-the-master-key")
        assert result["error"] == "guardrails list: HTTP 401 Unauthorized: the gateway refused gateway_api_key"
        result = moderation(gateway, key=None)
        assert result["error"] == "guardrails list: HTTP 401 Unauthorized: the gateway needs gateway_api_key"
    # an answer that echoes the key: the key is masked in the error
    echo = Route(500, {"error": {"message": f"bad token {MOD_KEY} for /v2/guardrails/list"}})
    with FakeHTTP({"/v2/guardrails/list": echo}) as fake:
        result = hc.check_moderation(fake.url, MOD_KEY, model="m", timeout=2)
    assert result["error"] == "guardrails list: HTTP 500: bad token ******** for /v2/guardrails/list"
    assert MOD_KEY not in json.dumps(result)


def test_moderation_gateway_down():
    port = closed_port()
    result = hc.check_moderation(f"http://127.0.0.1:{port}", MOD_KEY, model="m", timeout=2)
    assert result["error"] == f"guardrails list: connection refused (127.0.0.1:{port})"
    assert result["detail"] == {"guardrail": "llmops-moderation", "model": "m", "expect": "block"}


def test_moderation_rejects_an_unknown_expectation():
    with pytest.raises(ValueError, match="expect must be one of block, log"):
        hc.check_moderation("http://127.0.0.1:1", MOD_KEY, model="m", expect="warn")


@pytest.mark.parametrize(
    ("payload", "names"),
    [(guardrail_list("a", "b"), ["a", "b"]), ({"guardrails": []}, []), ({"guardrails": [{"name": "a"}]}, None), ([], None),
     ({"data": []}, None)],
)
def test_guardrail_names(payload, names):
    assert hc.guardrail_names(payload) == names


@pytest.mark.parametrize(
    ("payload", "verdict"),
    [
        (json.loads(blocked().body), {"flagged": True, "label": "violence", "score": 0.975, "labels": ["violence"], "stage": "input"}),
        ({"detail": {"moderation": {"flagged": True}}}, {"flagged": True}),  # the HTTPException detail, unwrapped
        ({"moderation": {"flagged": True}}, {"flagged": True}),
        ({"error": {"moderation": {"flagged": True}}}, {"flagged": True}),
        ({"error": {"message": "x"}}, None),
        ({"error": "x"}, None),
        (None, None),
    ],
)
def test_moderation_verdict(payload, verdict):
    assert hc.moderation_verdict(payload) == verdict


def test_moderation_depends_on_engine_and_gateway_and_is_not_a_default():
    assert hc.DEPENDS["moderation"] == ("engine", "gateway")
    assert "moderation" in hc.CHECKS and "moderation" not in hc.DEFAULT_CHECKS
    assert list(hc.DEFAULT_CHECKS) == [c for c in hc.CHECKS if c not in ("moderation", "database")]
