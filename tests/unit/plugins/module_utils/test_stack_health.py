"""plugins/module_utils/stack_health.py: result shaping, model lists, Prometheus targets,
RESP, error classification, the polling loop, and the Redis/HTTP checks against loopback fakes."""

from __future__ import annotations

import http.client
import importlib.util
import json
import pathlib
import socket
import ssl
import sys
import threading
import urllib.error

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import stack_health as sh

from ..servers import FakeHTTP, FakeRedis, Route, closed_port

# --- result shaping --------------------------------------------------------------------------


def test_component_shape():
    assert sh.component(True, 1.234, {"a": 1}) == {"ok": True, "latency_ms": 1.2, "detail": {"a": 1}, "error": None}
    assert sh.component(False) == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "failed"}
    # a passing component never carries an error text
    assert sh.component(True, error="ignored")["error"] is None


def test_summary_names_each_failing_component_in_order():
    components = {
        "engine": sh.component(True),
        "redis": sh.component(False, error="connection refused (127.0.0.1:6379)"),
        "prometheus": sh.component(False, error="job inference-engine target down (connection refused)"),
    }
    assert sh.failing_components(components) == ["redis", "prometheus"]
    assert sh.summary_message(components) == (
        "stack unhealthy: redis: connection refused (127.0.0.1:6379); prometheus: job inference-engine target down (connection refused)"
    )
    assert sh.summary_message(components, ["prometheus", "redis", "engine"]).startswith("stack unhealthy: prometheus:")
    assert sh.summary_message({"engine": sh.component(True), "chat": sh.component(True)}) == "stack healthy: engine, chat ok"


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        ("http://127.0.0.1:8001", "/v1/models", "http://127.0.0.1:8001/v1/models"),
        ("http://127.0.0.1:8001/", "/v1/models", "http://127.0.0.1:8001/v1/models"),
        ("http://127.0.0.1:8001/v1", "/v1/models", "http://127.0.0.1:8001/v1/models"),
        ("http://127.0.0.1:8001/v1/", "/v1/models", "http://127.0.0.1:8001/v1/models"),
        ("http://gw.internal/llm", "/health/readiness", "http://gw.internal/llm/health/readiness"),
    ],
)
def test_join_url(base, path, url):
    assert sh.join_url(base, path) == url


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}},
         "The model `x` does not exist."),
        ({"error": {"message": "Authentication Error, Invalid proxy server token passed.", "type": "auth_error", "code": "401"}},
         "Authentication Error, Invalid proxy server token passed."),
        ({"error": "Unauthorized"}, "Unauthorized"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"detail": {"error": "guardrail tripped"}}, "guardrail tripped"),
        ({"error": {"message": "a\n  b"}}, "a b"),
        ({"ok": True}, None),
        (["x"], None),
        (None, None),
    ],
)
def test_error_message(payload, message):
    assert sh.error_message(payload) == message


def test_error_message_is_cut():
    assert sh.error_message({"error": {"message": "x" * 500}}, limit=10) == "x" * 10 + "..."


# --- model lists -----------------------------------------------------------------------------

VLLM_MODELS = {"object": "list", "data": [{"id": "qwen3-8b", "object": "model", "owned_by": "vllm"}]}


def test_models_ok():
    assert sh.evaluate_models(VLLM_MODELS, ["qwen3-8b"]) == (True, {"models": ["qwen3-8b"]}, None)
    assert sh.evaluate_models(VLLM_MODELS, []) == (True, {"models": ["qwen3-8b"]}, None)


def test_models_missing():
    ok, detail, error = sh.evaluate_models(VLLM_MODELS, ["qwen3-8b", "qwen3-guard"])
    assert not ok and detail == {"models": ["qwen3-8b"]}
    assert error == "model qwen3-guard missing (serving: qwen3-8b)"
    assert sh.evaluate_models({"data": []}, ["a", "b"])[2] == "models a, b missing (serving: none)"


@pytest.mark.parametrize("payload", [{"object": "list"}, [], {"data": [{"name": "x"}]}, {"data": ["x"]}, "text", None])
def test_not_a_model_list(payload):
    ok, _ignored, error = sh.evaluate_models(payload, ["qwen3-8b"])
    assert not ok and error.startswith("answer is not a model list")


# --- Prometheus targets ----------------------------------------------------------------------

def target(job, health="up", instance="127.0.0.1:8001", last_error=""):
    return {"labels": {"job": job, "instance": instance}, "scrapePool": job, "health": health, "lastError": last_error}


def targets(*items):
    return {"status": "success", "data": {"activeTargets": list(items), "droppedTargets": []}}


JOBS = ["litellm-proxy", "inference-engine"]
REFUSED = 'Get "http://127.0.0.1:8001/metrics": dial tcp 127.0.0.1:8001: connect: connection refused'


def test_targets_all_up():
    ok, detail, error = sh.evaluate_targets(targets(target("litellm-proxy"), target("inference-engine"), target("prometheus")), JOBS)
    assert ok and error is None
    assert detail["jobs"]["inference-engine"]["up"] == 1 and detail["jobs"]["inference-engine"]["total"] == 1
    assert detail["other_jobs"] == ["prometheus"]


def test_target_down_names_job_and_reason():
    payload = targets(target("litellm-proxy"), target("inference-engine", "down", last_error=REFUSED))
    ok, detail, error = sh.evaluate_targets(payload, JOBS)
    assert not ok
    assert error == "job inference-engine target down (connection refused)"
    assert detail["jobs"]["inference-engine"]["targets"][0]["last_error"] == REFUSED


def test_missing_job_and_unknown_health():
    ok, _ignored, error = sh.evaluate_targets(targets(target("inference-engine", "unknown")), JOBS)
    assert not ok
    assert error == "job litellm-proxy has no target; job inference-engine target not up (not scraped yet)"


def test_several_targets_one_down():
    payload = targets(target("inference-engine", instance="a:1"), target("inference-engine", "down", "b:2", "server returned HTTP status 401 Unauthorized"))
    ok, detail, error = sh.evaluate_targets(payload, ["inference-engine"])
    assert not ok and error == "job inference-engine: 1 of 2 targets not up (b:2: HTTP status 401 Unauthorized)"
    assert detail["jobs"]["inference-engine"] == {
        "up": 1, "total": 2,
        "targets": [{"instance": "a:1", "health": "up", "last_error": None},
                    {"instance": "b:2", "health": "down", "last_error": "server returned HTTP status 401 Unauthorized"}],
    }


def test_job_from_scrape_pool_when_labels_lack_it():
    item = {"labels": {"instance": "x"}, "scrapePool": "litellm-proxy", "health": "up"}
    assert sh.evaluate_targets(targets(item), ["litellm-proxy"])[0]


def test_no_expected_jobs_needs_only_an_answer():
    assert sh.evaluate_targets(targets(), [])[0]


@pytest.mark.parametrize("payload", [{"status": "error", "error": "x"}, {"status": "success", "data": {}}, [], "text", None])
def test_not_a_targets_answer(payload):
    ok, _ignored, error = sh.evaluate_targets(payload, JOBS)
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
    assert sh.short_scrape_error(text) == short


# --- RESP ------------------------------------------------------------------------------------

def test_encode_command():
    assert sh.encode_command("AUTH", "pässword") == b"*2\r\n$4\r\nAUTH\r\n$9\r\np\xc3\xa4ssword\r\n"
    assert sh.encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert sh.encode_command(b"SELECT", 3) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    with pytest.raises(TypeError):
        sh.encode_command("PING", None)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"+PONG\r\n", "PONG"),
        (b":42\r\n", 42),
        (b"$5\r\nhello\r\n", b"hello"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b"a", [1]]),
        (b"*0\r\n", []),
    ],
)
def test_parse_reply(data, value):
    assert sh.parse_reply(data) == (value, len(data))


def test_parse_error_reply():
    reply, _ignored = sh.parse_reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    assert isinstance(reply, sh.RedisReplyError) and reply.code == "WRONGPASS"
    assert sh.RedisReplyError("").code == ""


def test_parse_two_replies_in_one_buffer():
    buf = b"+OK\r\n+PONG\r\n"
    first, pos = sh.parse_reply(buf)
    second, end = sh.parse_reply(buf, pos)
    assert (first, second, end) == ("OK", "PONG", len(buf))


@pytest.mark.parametrize("data", [b"", b"+PO", b"+PONG\r", b"$5\r\nhel", b"$5\r\nhello\r", b"*2\r\n$1\r\na\r\n", b":1"])
def test_incomplete_replies(data):
    with pytest.raises(sh.IncompleteReply):
        sh.parse_reply(data)


@pytest.mark.parametrize("data", [b"HTTP/1.1 400 Bad Request\r\n", b":abc\r\n", b"$x\r\n", b"*y\r\n", b"$3\r\nabcde\r\n"])
def test_not_resp(data):
    with pytest.raises(sh.RespProtocolError):
        sh.parse_reply(data)


def test_read_replies_across_small_chunks():
    left, right = socket.socketpair()
    try:
        right.settimeout(2)

        def send():
            for byte in b"+OK\r\n$4\r\nPONG\r\n":
                left.send(bytes([byte]))

        thread = threading.Thread(target=send)
        thread.start()
        assert sh.read_replies(right, 2) == ["OK", b"PONG"]
        thread.join()
    finally:
        left.close()
        right.close()


def test_read_replies_when_the_peer_closes():
    left, right = socket.socketpair()
    left.sendall(b"+O")
    left.close()
    with pytest.raises(ConnectionResetError):
        sh.read_replies(right, 1)
    right.close()


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
    assert sh.redis_auth_error(sh.RedisReplyError(reply)).startswith(text)


# --- the Redis check against a fake server ---------------------------------------------------

TEST_PASSWORD = "unit-test-only-redis-password"  # noqa: S105


def test_redis_pong_with_password():
    with FakeRedis(password=TEST_PASSWORD) as fake:
        result = sh.check_redis("127.0.0.1", fake.port, TEST_PASSWORD, timeout=2)
    assert result["ok"], result
    assert result["detail"] == {"address": f"127.0.0.1:{fake.port}", "auth": True, "ping": "PONG"}
    assert fake.commands == [["AUTH", TEST_PASSWORD], ["PING"]]


def test_redis_without_password():
    with FakeRedis() as fake:
        result = sh.check_redis("127.0.0.1", fake.port, None, timeout=2)
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
        result = sh.check_redis("127.0.0.1", fake.port, given, timeout=2)
    assert not result["ok"] and result["error"].startswith(error)


def test_redis_connection_refused():
    port = closed_port()
    result = sh.check_redis("127.0.0.1", port, "x", timeout=2)
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
        result = sh.check_redis("127.0.0.1", fake.port, None, timeout=0.3)
    assert not result["ok"] and result["error"].startswith(error.format(port=fake.port)), result


def test_redis_reply_in_pieces():
    with FakeRedis(mode="split") as fake:
        assert sh.check_redis("127.0.0.1", fake.port, None, timeout=2)["ok"]


# --- HTTP client: error classification and answers -------------------------------------------

WHERE = "127.0.0.1:8001"


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused (127.0.0.1:8001)"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused (127.0.0.1:8001)"),
        (urllib.error.URLError(TimeoutError("timed out")), "timed out after 5s (127.0.0.1:8001)"),
        (TimeoutError("The read operation timed out"), "timed out after 5s (127.0.0.1:8001)"),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "cannot resolve host (127.0.0.1:8001)"),
        (ConnectionResetError(104, "reset"), "connection reset (127.0.0.1:8001)"),
        (http.client.RemoteDisconnected("Remote end closed connection without response"),
         "connection closed without an answer (127.0.0.1:8001)"),
        (urllib.error.URLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")), "TLS error (127.0.0.1:8001)"),
        (ValueError("unknown url type: 'htp'"), "ValueError (127.0.0.1:8001): unknown url type: 'htp'"),
    ],
)
def test_classify_error(exc, text):
    assert sh.classify_error(exc, WHERE, 5).startswith(text)


def test_classify_error_follows_causes():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert sh.classify_error(outer, WHERE) == "connection refused (127.0.0.1:8001)"


@pytest.mark.parametrize(
    ("url", "where"),
    [("http://127.0.0.1:8001/v1", "127.0.0.1:8001"), ("https://gw.example", "gw.example:443"), ("http://gw", "gw:80"),
     ("http://[::1]:9090/", "[::1]:9090")],
)
def test_endpoint(url, where):
    assert sh.endpoint(url) == where


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"<html>502 Bad Gateway</html>", "answer is not JSON: '<html>502 Bad Gateway</html>'"), (b"", "answer is not JSON: empty body"),
     (b"x" * 200, "answer is not JSON: '" + "x" * 80 + "...'")],
)
def test_parse_json_errors(body, error):
    assert sh.parse_json(body) == (None, error)


def test_request_answers():
    routes = {
        "/json": Route(200, {"a": 1}),
        "/text": Route(200, "I'm alive!", "text/plain"),
        "/denied": Route(401, {"error": "Unauthorized"}),
        "/slow": Route(200, {}, delay=1.0),
        "/echo": lambda req: Route(200, {"auth": req["headers"].get("Authorization"), "body": req["body"].decode()}),
    }
    with FakeHTTP(routes) as fake:
        result = sh.request(fake.url + "/json")
        assert result.ok and result.status == 200 and result.json() == ({"a": 1}, None) and result.latency_ms >= 0
        result = sh.request(fake.url + "/text")
        assert result.ok and result.json()[1] == "answer is not JSON: \"I'm alive!\""
        result = sh.request(fake.url + "/denied")
        assert (result.status, result.ok, result.error) == (401, False, None)
        assert result.json() == ({"error": "Unauthorized"}, None)
        result = sh.request(fake.url + "/slow", timeout=0.2)
        assert result.status is None and result.error == f"timed out after 0.2s (127.0.0.1:{fake.port})"
        result = sh.request(fake.url + "/echo", method="POST", headers=sh.bearer("k"), body={"x": 1})
        assert result.json()[0] == {"auth": "Bearer k", "body": '{"x": 1}'}
    port = closed_port()
    result = sh.request(f"http://127.0.0.1:{port}/x")
    assert result.status is None and result.error == f"connection refused (127.0.0.1:{port})"


def test_bearer():
    assert sh.bearer(None) == {} and sh.bearer("") == {}
    assert sh.bearer("k") == {"Authorization": "Bearer k"}


def test_http_error_text():
    result = sh.HttpResult("u", status=503, body=b'{"error": {"message": "not ready"}}')
    assert sh.http_error(result) == "HTTP 503: not ready"
    assert sh.http_error(sh.HttpResult("u", status=500, body=b"Internal Server Error"), "readiness") == "readiness: HTTP 500: Internal Server Error"
    assert sh.http_error(sh.HttpResult("u", status=502, body=b"")) == "HTTP 502"


# --- polling ---------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*outcomes):
    """A check that returns ok/failed per call from ``outcomes`` (the last one repeats)."""
    calls = []

    def check():
        ok = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(ok)
        return sh.component(ok, 1.0, {}, None if ok else "down")

    check.calls = calls
    return check


def sequential(funcs):
    return {name: func() for name, func in funcs.items()}


def test_poll_all_ok_in_one_round():
    clock = Clock()
    checks = {"engine": scripted(True), "redis": scripted(True)}
    result = sh.poll(checks, wait_timeout=10, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["healthy"] and result["attempts"] == 1 and result["failing"] == [] and clock.sleeps == []


def test_poll_single_round_without_wait():
    clock = Clock()
    checks = {"engine": scripted(True), "redis": scripted(False, True)}
    result = sh.poll(checks, wait_timeout=0, clock=clock, sleep=clock.sleep, runner=sequential)
    assert not result["healthy"] and result["attempts"] == 1 and result["failing"] == ["redis"]
    assert result["components"]["redis"]["error"] == "down"


def test_poll_reruns_only_failing_then_confirms_the_others():
    clock = Clock()
    engine, redis = scripted(True), scripted(False, False, True)
    result = sh.poll({"engine": engine, "redis": redis}, wait_timeout=10, poll_interval=0.2, clock=clock, sleep=clock.sleep,
                     runner=sequential)
    assert result["healthy"]
    # round 1: both; rounds 2-3: redis only; round 4: engine confirmed
    assert result["attempts"] == 4
    assert len(redis.calls) == 3 and len(engine.calls) == 2
    assert clock.sleeps == [0.2, 0.2]
    assert list(result["components"]) == ["engine", "redis"]


def test_poll_confirmation_catches_a_component_that_went_down():
    clock = Clock()
    engine, redis = scripted(True, False, True), scripted(False, True)
    result = sh.poll({"engine": engine, "redis": redis}, wait_timeout=10, poll_interval=0.2, clock=clock, sleep=clock.sleep,
                     runner=sequential)
    assert result["healthy"]
    # 1: engine ok, redis down; 2: redis ok; 3: confirm engine -> down; 4: engine ok; 5: confirm redis
    assert result["attempts"] == 5
    assert engine.calls == [True, False, True] and redis.calls == [False, True, True]


def test_poll_times_out():
    clock = Clock()
    result = sh.poll({"redis": scripted(False)}, wait_timeout=1.0, poll_interval=0.3, clock=clock, sleep=clock.sleep, runner=sequential)
    assert not result["healthy"] and result["failing"] == ["redis"]
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert result["attempts"] == 5 and result["elapsed"] == pytest.approx(1.0)


def test_poll_does_not_run_a_dependent_check_while_a_dependency_fails():
    clock = Clock()
    engine, gateway, chat = scripted(False, False, True), scripted(True), scripted(True)
    result = sh.poll({"engine": engine, "gateway": gateway, "chat": chat}, wait_timeout=10, poll_interval=0.2,
                     clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["healthy"]
    # rounds 1-2: engine fails, chat not sent; round 3: engine ok, chat sent in the same round;
    # round 4: gateway confirmed
    assert result["attempts"] == 4
    assert engine.calls == [False, False, True] and chat.calls == [True] and gateway.calls == [True, True]


def test_poll_reports_why_a_dependent_check_did_not_run():
    clock = Clock()
    result = sh.poll({"engine": scripted(False), "gateway": scripted(False), "chat": scripted(True)}, clock=clock, sleep=clock.sleep,
                     runner=sequential)
    assert result["failing"] == ["engine", "gateway", "chat"]
    assert result["components"]["chat"] == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "not run: engine, gateway failing"}


def test_poll_dependencies_only_among_requested_checks():
    clock = Clock()
    chat = scripted(True)
    result = sh.poll({"redis": scripted(False), "chat": chat}, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["failing"] == ["redis"] and chat.calls == [True]
    result = sh.poll({"engine": scripted(False), "chat": scripted(True)}, depends={}, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["failing"] == ["engine"]


def test_run_round_is_parallel_and_survives_a_raising_check():
    barrier = threading.Barrier(3, timeout=5)

    def waits():
        barrier.wait()  # only passes when all three checks run at the same time
        return sh.component(True)

    def raises():
        barrier.wait()
        raise KeyError("boom")

    results = sh.run_round({"a": waits, "b": waits, "c": raises})
    assert results["a"]["ok"] and results["b"]["ok"]
    assert results["c"] == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "check raised KeyError: 'boom'"}


# --- the moderation check against a fake gateway --------------------------------------------
#
# Answers shaped like LiteLLM 1.106 with the llmops_guard guardrail (captured from the real proxy
# in front of the stand-in guard): the guardrail's HTTPException detail ends up in
# error.provider_specific_fields.

MOD_KEY = "sk-unit-moderation-master-key"
UNSAFE = sh.MODERATION_UNSAFE_PROMPT
SAFE = sh.MODERATION_SAFE_PROMPT


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
    return sh.check_moderation(gateway.fake.url, key, **kwargs)


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
    assert "build a bomb" in sh.MODERATION_UNSAFE_PROMPT.lower()
    assert "bomb" not in sh.MODERATION_SAFE_PROMPT.lower()


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
        result = sh.check_moderation(fake.url, MOD_KEY, model="m", timeout=2)
    assert result["error"] == "guardrails list: HTTP 500: bad token ******** for /v2/guardrails/list"
    assert MOD_KEY not in json.dumps(result)


def test_moderation_gateway_down():
    port = closed_port()
    result = sh.check_moderation(f"http://127.0.0.1:{port}", MOD_KEY, model="m", timeout=2)
    assert result["error"] == f"guardrails list: connection refused (127.0.0.1:{port})"
    assert result["detail"] == {"guardrail": "llmops-moderation", "model": "m", "expect": "block"}


def test_moderation_rejects_an_unknown_expectation():
    with pytest.raises(ValueError, match="expect must be one of block, log"):
        sh.check_moderation("http://127.0.0.1:1", MOD_KEY, model="m", expect="warn")


@pytest.mark.parametrize(
    ("payload", "names"),
    [(guardrail_list("a", "b"), ["a", "b"]), ({"guardrails": []}, []), ({"guardrails": [{"name": "a"}]}, None), ([], None),
     ({"data": []}, None)],
)
def test_guardrail_names(payload, names):
    assert sh.guardrail_names(payload) == names


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
    assert sh.moderation_verdict(payload) == verdict


def test_moderation_depends_on_engine_and_gateway_and_is_not_a_default():
    assert sh.DEPENDS["moderation"] == ("engine", "gateway")
    assert "moderation" in sh.CHECKS and "moderation" not in sh.DEFAULT_CHECKS
    assert list(sh.DEFAULT_CHECKS) == [c for c in sh.CHECKS if c != "moderation"]
