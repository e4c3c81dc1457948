"""plugins/module_utils/_http.py: HTTP requests (against a loopback fake), error classification and error texts."""

from __future__ import annotations

import http.client
import importlib.util
import pathlib
import socket
import ssl
import sys
import urllib.error

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _http

from ..servers import FakeHTTP, Route, closed_port

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
    assert _http.classify_error(exc, WHERE, 5).startswith(text)


def test_classify_error_follows_causes():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert _http.classify_error(outer, WHERE) == "connection refused (127.0.0.1:8001)"


@pytest.mark.parametrize(
    ("url", "where"),
    [("http://127.0.0.1:8001/v1", "127.0.0.1:8001"), ("https://gw.example", "gw.example:443"), ("http://gw", "gw:80"),
     ("http://[::1]:9090/", "[::1]:9090")],
)
def test_endpoint(url, where):
    assert _http.endpoint(url) == where


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"<html>502 Bad Gateway</html>", "answer is not JSON: '<html>502 Bad Gateway</html>'"), (b"", "answer is not JSON: empty body"),
     (b"x" * 200, "answer is not JSON: '" + "x" * 80 + "...'")],
)
def test_parse_json_errors(body, error):
    assert _http.parse_json(body) == (None, error)


def test_request_answers():
    routes = {
        "/json": Route(200, {"a": 1}),
        "/text": Route(200, "I'm alive!", "text/plain"),
        "/denied": Route(401, {"error": "Unauthorized"}),
        "/slow": Route(200, {}, delay=1.0),
        "/echo": lambda req: Route(200, {"auth": req["headers"].get("Authorization"), "body": req["body"].decode()}),
    }
    with FakeHTTP(routes) as fake:
        result = _http.request(fake.url + "/json")
        assert result.ok and result.status == 200 and result.json() == ({"a": 1}, None) and result.latency_ms >= 0
        result = _http.request(fake.url + "/text")
        assert result.ok and result.json()[1] == "answer is not JSON: \"I'm alive!\""
        result = _http.request(fake.url + "/denied")
        assert (result.status, result.ok, result.error) == (401, False, None)
        assert result.json() == ({"error": "Unauthorized"}, None)
        result = _http.request(fake.url + "/slow", timeout=0.2)
        assert result.status is None and result.error == f"timed out after 0.2s (127.0.0.1:{fake.port})"
        result = _http.request(fake.url + "/echo", method="POST", headers=_http.bearer("k"), body={"x": 1})
        assert result.json()[0] == {"auth": "Bearer k", "body": '{"x": 1}'}
    port = closed_port()
    result = _http.request(f"http://127.0.0.1:{port}/x")
    assert result.status is None and result.error == f"connection refused (127.0.0.1:{port})"


def test_bearer():
    assert _http.bearer(None) == {} and _http.bearer("") == {}
    assert _http.bearer("k") == {"Authorization": "Bearer k"}


# --- URLs and error texts of answers ---------------------------------------------------------

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
    assert _http.join_url(base, path) == url


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
    assert _http.error_message(payload) == message


def test_error_message_is_cut():
    assert _http.error_message({"error": {"message": "x" * 500}}, limit=10) == "x" * 10 + "..."


def test_http_error_text():
    result = _http.HttpResult("u", status=503, body=b'{"error": {"message": "not ready"}}')
    assert _http.http_error(result) == "HTTP 503: not ready"
    assert _http.http_error(_http.HttpResult("u", status=500, body=b"Internal Server Error"), "readiness") == "readiness: HTTP 500: Internal Server Error"
    assert _http.http_error(_http.HttpResult("u", status=502, body=b"")) == "HTTP 502"
