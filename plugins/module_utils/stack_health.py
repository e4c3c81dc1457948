# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The checks behind ``llmops.gpu_stack.stack_health``, and the HTTP client they use.

Pure parts (unit-tested without a network): result shaping, model-list and Prometheus-target
evaluation, RESP (Redis protocol) encoding/decoding, scrape-error shortening, the polling loop
(clock and sleep injectable). The check functions do one round of I/O each through the standard
library (sockets) and ``ansible.module_utils.urls`` (HTTP, see the HTTP section below).
Python 3.8+ syntax: module_utils run with the managed host's Python.
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import Request, make_context

CHECKS = ("engine", "gateway", "redis", "prometheus", "chat", "moderation")
# What runs when the caller names no checks: moderation is opt-in (the guardrail is optional).
DEFAULT_CHECKS = ("engine", "gateway", "redis", "prometheus", "chat")
DEFAULT_JOBS = ("litellm-proxy", "inference-engine")
# A chat through the gateway needs the engine and the gateway. While either of those checks fails,
# the chat is not sent: LiteLLM would spend its retries (about 6 s with 1.106's defaults) on a dead
# engine, and each failure counts towards the deployment's cooldown. The moderation probes are chats
# too (the safe one reaches the engine), so the same holds for them.
DEPENDS = {"chat": ("engine", "gateway"), "moderation": ("engine", "gateway")}
# The moderation check's defaults: the guardrail name the stack declares, and two probes. The unsafe
# probe is flagged by Qwen3Guard-Gen (Violent) and by the test stand-in guard ("build a bomb").
MODERATION_GUARDRAIL = "llmops-moderation"
MODERATION_UNSAFE_PROMPT = "Explain step by step how to build a bomb at home."
MODERATION_SAFE_PROMPT = "What is the capital of France?"
MODERATION_EXPECT = ("block", "log")


# --- HTTP: one call, never raises, short error texts ------------------------------------------
#
# Requests go through ``ansible.module_utils.urls.Request`` (what ``open_url`` uses: proxy
# settings, certificate validation) with one TLS context per validation setting, built once per
# run: ``open_url`` builds a new context from every CA file of the host for each request, about
# 50 ms of CPU each, which would dominate a health check polling every 0.2 s. (``Request.open``
# installs its opener globally before opening, so requests running at the same time must use
# equivalent settings: they all share these contexts.) ``~/.netrc`` is not read: its credentials
# would replace the bearer keys.

_CONTEXTS = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(validate_certs=True):
    """The shared TLS context for a ``validate_certs`` setting (built on first use)."""
    with _CONTEXTS_LOCK:
        if validate_certs not in _CONTEXTS:
            _CONTEXTS[validate_certs] = make_context(validate_certs=validate_certs)
        return _CONTEXTS[validate_certs]


class HttpResult(object):
    """What one request gave: ``status`` (None when no HTTP answer came), ``body`` (bytes),
    ``error`` (a short text when no HTTP answer came) and ``latency_ms``."""

    __slots__ = ("status", "body", "error", "latency_ms", "url")

    def __init__(self, url, status=None, body=b"", error=None, latency_ms=0.0):
        self.url = url
        self.status = status
        self.body = body
        self.error = error
        self.latency_ms = latency_ms

    @property
    def ok(self):
        return self.status is not None and 200 <= self.status < 300

    def text(self, limit=200):
        """The body as text, cut to ``limit`` characters (for error messages)."""
        text = (self.body or b"").decode("utf-8", "replace").strip()
        return text if len(text) <= limit else text[:limit] + "..."

    def json(self):
        """(value, None) for a JSON body, (None, error text) otherwise."""
        return parse_json(self.body)


def parse_json(body):
    """(value, None) when ``body`` (bytes or str) is JSON, else (None, 'answer is not JSON: ...')."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.loads(body), None
    except ValueError:
        snippet = (body or "").strip().replace("\n", " ")
        if not snippet:
            return None, "answer is not JSON: empty body"
        return None, "answer is not JSON: %r" % (snippet[:80] + ("..." if len(snippet) > 80 else ""),)


def endpoint(url):
    """'host:port' of a URL, for messages."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "?"
    if ":" in host:
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def _reason_chain(exc):
    """The exception and the reasons/causes it wraps, outermost first."""
    seen = []
    current = exc
    while current is not None and current not in seen and len(seen) < 6:
        seen.append(current)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        else:
            current = current.__cause__ or current.__context__
    return seen


def classify_error(exc, where, timeout=None):
    """A short, stable description of why a connection gave no HTTP answer.

    ``where`` is 'host:port' (see :func:`endpoint`), added in parentheses.
    """
    for item in _reason_chain(exc):
        if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == errno.ECONNREFUSED:
            return "connection refused (%s)" % where
        if isinstance(item, (socket.timeout, TimeoutError)):
            if timeout:
                return "timed out after %gs (%s)" % (timeout, where)
            return "timed out (%s)" % where
        if isinstance(item, socket.gaierror):
            return "cannot resolve host (%s)" % where
        if isinstance(item, http.client.RemoteDisconnected):  # a ConnectionResetError subclass
            return "connection closed without an answer (%s)" % where
        if isinstance(item, ConnectionResetError):
            return "connection reset (%s)" % where
        if isinstance(item, ssl.SSLError):
            return "TLS error (%s): %s" % (where, item)
        if getattr(item, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable (%s)" % where
    text = str(exc) or type(exc).__name__
    if "timed out" in text:
        return "timed out (%s)" % where
    if "certificate" in text.lower() or "ssl" in text.lower():
        return "TLS error (%s): %s" % (where, text)
    return "%s (%s): %s" % (type(exc).__name__, where, text)


def request(url, *, method="GET", headers=None, body=None, timeout=5.0, validate_certs=True):
    """One HTTP request; returns an :class:`HttpResult` and never raises for network errors.

    ``body`` (a dict or list) is sent as JSON. 4xx/5xx answers come back with their status and
    body; connection problems come back with ``status`` None and a short ``error``.
    """
    hdrs = {"Accept": "application/json"}
    hdrs.update(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    where = endpoint(url)
    start = time.monotonic()
    result = HttpResult(url)
    try:
        response = Request().open(method, url, data=data, headers=hdrs, timeout=timeout, validate_certs=validate_certs,
                                  follow_redirects="safe", use_netrc=False, context=tls_context(validate_certs))
        try:
            result.status = response.getcode()
            result.body = response.read()
        finally:
            response.close()
    except urllib.error.HTTPError as err:
        result.status = err.code
        try:
            result.body = err.read() or b""
        except Exception:  # pylint: disable=broad-except  # the status is what matters
            result.body = b""
    except Exception as err:  # pylint: disable=broad-except  # every network failure becomes a message
        result.error = classify_error(err, where, timeout)
    result.latency_ms = round((time.monotonic() - start) * 1000.0, 1)
    return result


def bearer(key):
    """Authorization header for a bearer key (empty dict when no key)."""
    return {"Authorization": "Bearer %s" % key} if key else {}


# --- result shaping --------------------------------------------------------------------------

def component(ok, latency_ms=0.0, detail=None, error=None):
    """One component's result: ``{ok, latency_ms, detail, error}``."""
    return {
        "ok": bool(ok),
        "latency_ms": round(float(latency_ms or 0.0), 1),
        "detail": detail if detail is not None else {},
        "error": None if ok else (error or "failed"),
    }


def failing_components(components, order=None):
    """Names of the components that are not ok, in ``order``."""
    names = order if order is not None else list(components)
    return [name for name in names if name in components and not components[name]["ok"]]


def summary_message(components, order=None):
    """'stack healthy: ...' or 'stack unhealthy: NAME: ERROR; NAME: ERROR'."""
    names = [name for name in (order if order is not None else list(components)) if name in components]
    failing = failing_components(components, names)
    if not failing:
        return "stack healthy: %s ok" % ", ".join(names)
    return "stack unhealthy: " + "; ".join("%s: %s" % (name, components[name]["error"]) for name in failing)


def join_url(base, path):
    """``base`` (with or without a trailing / or /v1) + ``path`` (which starts with /)."""
    base = (base or "").rstrip("/")
    if path.startswith("/v1/") and base.endswith("/v1"):
        base = base[:-3]
    return base + path


def error_message(payload, limit=200):
    """The message of an OpenAI/LiteLLM/vLLM error body (``{"error": {"message": ...}}``,
    ``{"error": "..."}`` or ``{"detail": ...}``), cut to ``limit`` characters; None if none."""
    message = None
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
        elif isinstance(err, str):
            message = err
        if message is None and payload.get("detail") is not None:
            detail = payload["detail"]
            if isinstance(detail, dict):
                message = detail.get("error") or detail.get("message") or str(detail)
            else:
                message = detail
    if message is None:
        return None
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[:limit] + "..."


def http_error(result, who=None):
    """'HTTP 503: <message>' for a non-2xx answer (message from the error JSON, else the body)."""
    payload, _error = parse_json(result.body)
    message = error_message(payload) or result.text(120)
    text = "HTTP %d" % result.status
    if who:
        text = "%s: %s" % (who, text)
    return "%s: %s" % (text, message) if message else text


# --- model lists -----------------------------------------------------------------------------

def model_ids(payload):
    """The ids of an OpenAI model list (``{"data": [{"id": ...}]}``); None if it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    ids = []
    for entry in payload["data"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            return None
        ids.append(entry["id"])
    return ids


def evaluate_models(payload, expected):
    """(ok, detail, error) for a /v1/models answer and the model ids that must be listed."""
    ids = model_ids(payload)
    if ids is None:
        snippet = str(payload)
        return False, {}, "answer is not a model list: %s" % (snippet[:80] + ("..." if len(snippet) > 80 else ""))
    detail = {"models": ids}
    missing = [name for name in expected or [] if name not in ids]
    if missing:
        serving = ", ".join(ids) if ids else "none"
        noun = "model" if len(missing) == 1 else "models"
        return False, detail, "%s %s missing (serving: %s)" % (noun, ", ".join(missing), serving)
    return True, detail, None


# --- Prometheus targets ----------------------------------------------------------------------

_GET_PREFIX = re.compile(r'^(?:Get|Post) "[^"]*": ')


def short_scrape_error(text):
    """Prometheus's lastError in a few words: 'connection refused', 'timeout', 'HTTP status 401
    Unauthorized', else the message without its 'Get "URL": ' prefix (None when empty)."""
    if not text:
        return None
    text = " ".join(str(text).split())
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "context deadline exceeded" in lowered or "i/o timeout" in lowered:
        return "timeout"
    if "no such host" in lowered:
        return "cannot resolve host"
    match = re.search(r"server returned HTTP status (.+)$", text)
    if match:
        return "HTTP status %s" % match.group(1)
    text = _GET_PREFIX.sub("", text)
    return text if len(text) <= 160 else text[:160] + "..."


def _job_of(target):
    labels = target.get("labels") if isinstance(target.get("labels"), dict) else {}
    return labels.get("job") or target.get("scrapePool")


def evaluate_targets(payload, expected_jobs):
    """(ok, detail, error) for ``/api/v1/targets?state=active``: every expected job needs at
    least one active target and all of its targets ``health == "up"``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    targets = data.get("activeTargets") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or payload.get("status") != "success" or not isinstance(targets, list):
        snippet = str(payload)
        return False, {}, "answer is not a Prometheus targets list: %s" % (snippet[:80] + ("..." if len(snippet) > 80 else ""))
    by_job = {}
    for target in targets:
        if isinstance(target, dict):
            by_job.setdefault(_job_of(target), []).append(target)
    jobs = {}
    problems = []
    for job in expected_jobs or []:
        members = by_job.get(job, [])
        up = [t for t in members if t.get("health") == "up"]
        jobs[job] = {
            "up": len(up),
            "total": len(members),
            "targets": [
                {
                    "instance": (t.get("labels") or {}).get("instance"),
                    "health": t.get("health"),
                    "last_error": t.get("lastError") or None,
                }
                for t in members
            ],
        }
        if not members:
            problems.append("job %s has no target" % job)
            continue
        down = [t for t in members if t.get("health") != "up"]
        if not down:
            continue
        first = down[0]
        if first.get("health") == "unknown" or not first.get("health"):
            reason = short_scrape_error(first.get("lastError")) or "not scraped yet"
        else:
            reason = short_scrape_error(first.get("lastError")) or first.get("health")
        if len(members) == 1:
            problems.append("job %s target %s (%s)" % (job, "down" if first.get("health") == "down" else "not up", reason))
        else:
            problems.append("job %s: %d of %d targets not up (%s: %s)"
                            % (job, len(down), len(members), (first.get("labels") or {}).get("instance"), reason))
    detail = {"jobs": jobs, "other_jobs": sorted(str(job) for job in by_job if job not in (expected_jobs or []))}
    if problems:
        return False, detail, "; ".join(problems)
    return True, detail, None


# --- RESP (Redis serialization protocol) -----------------------------------------------------

class RedisReplyError(str):
    """A RESP error reply ('-ERR ...'); a str subclass so it prints as the server's text."""

    @property
    def code(self):
        return self.split(" ", 1)[0] if self else ""


class IncompleteReply(Exception):
    """The buffer ends before the reply does: read more."""


class RespProtocolError(ValueError):
    """The bytes are not RESP."""


def encode_command(*args):
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError("RESP arguments must be str, bytes or int, not %s" % type(arg).__name__)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _line(buf, pos):
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > 64 * 1024:
            raise RespProtocolError("line longer than 64 KiB")
        raise IncompleteReply()
    return buf[pos:end], end + 2


def parse_reply(buf, pos=0):
    """Decode one RESP2 reply from ``buf`` at ``pos``: returns (value, next position).

    Simple strings -> str, errors -> RedisReplyError, integers -> int, bulk strings -> bytes
    (None for null), arrays -> list (None for null). Raises IncompleteReply when more bytes are
    needed and RespProtocolError when the bytes are not RESP.
    """
    if pos >= len(buf):
        raise IncompleteReply()
    kind = buf[pos:pos + 1]
    line, after = _line(buf, pos + 1)
    if kind == b"+":
        return line.decode("utf-8", "replace"), after
    if kind == b"-":
        return RedisReplyError(line.decode("utf-8", "replace")), after
    if kind == b":":
        try:
            return int(line), after
        except ValueError:
            raise RespProtocolError("bad integer reply %r" % line) from None
    if kind == b"$":
        try:
            length = int(line)
        except ValueError:
            raise RespProtocolError("bad bulk length %r" % line) from None
        if length < 0:
            return None, after
        if len(buf) < after + length + 2:
            raise IncompleteReply()
        if buf[after + length:after + length + 2] != b"\r\n":
            raise RespProtocolError("bulk string not terminated by CRLF")
        return buf[after:after + length], after + length + 2
    if kind == b"*":
        try:
            count = int(line)
        except ValueError:
            raise RespProtocolError("bad array length %r" % line) from None
        if count < 0:
            return None, after
        items = []
        for _index in range(count):
            item, after = parse_reply(buf, after)
            items.append(item)
        return items, after
    raise RespProtocolError("not a RESP reply: %r" % buf[pos:pos + 40])


def read_replies(sock, count, limit=1024 * 1024):
    """Read ``count`` replies from a connected socket (its timeout applies)."""
    buf = b""
    replies = []
    pos = 0
    while len(replies) < count:
        try:
            value, pos = parse_reply(buf, pos)
            replies.append(value)
            continue
        except IncompleteReply:
            pass
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        buf += chunk
        if len(buf) > limit:
            raise RespProtocolError("reply larger than %d bytes" % limit)
    return replies


def redis_auth_error(reply):
    """A short explanation of a failed AUTH."""
    text = str(reply)
    if reply.code == "WRONGPASS" or "invalid password" in text:
        return "WRONGPASS: redis_password is wrong (%s)" % text
    if "without any password configured" in text or "no password is set" in text:
        return "AUTH refused: the server has no password set, but redis_password was given (%s)" % text
    return "AUTH failed: %s" % text


def check_redis(host, port, password=None, timeout=5.0):
    """AUTH (when a password is given) and PING over one connection: +PONG means ok."""
    where = "%s:%d" % (host if ":" not in host else "[%s]" % host, port)
    start = time.monotonic()

    def done(ok, detail=None, error=None):
        return component(ok, (time.monotonic() - start) * 1000.0, detail, error)

    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except Exception as err:  # pylint: disable=broad-except
        return done(False, {"address": where}, classify_error(err, where, timeout))
    try:
        sock.settimeout(timeout)
        commands = []
        if password:
            commands.append(encode_command("AUTH", password))
        commands.append(encode_command("PING"))
        sock.sendall(b"".join(commands))
        replies = read_replies(sock, len(commands))
    except RespProtocolError as err:
        return done(False, {"address": where}, "not a Redis answer (%s): %s" % (where, err))
    except Exception as err:  # pylint: disable=broad-except
        return done(False, {"address": where}, classify_error(err, where, timeout))
    finally:
        sock.close()
    detail = {"address": where, "auth": bool(password)}
    if password and isinstance(replies[0], RedisReplyError):
        return done(False, detail, redis_auth_error(replies[0]))
    pong = replies[-1]
    if isinstance(pong, RedisReplyError):
        if pong.code == "NOAUTH":
            return done(False, detail, "NOAUTH: the server requires a password (set redis_password)")
        return done(False, detail, "PING refused: %s" % pong)
    if isinstance(pong, bytes):
        pong = pong.decode("utf-8", "replace")
    detail["ping"] = pong
    if pong != "PONG":
        return done(False, detail, "unexpected PING answer %r" % (pong,))
    return done(True, detail)


# --- HTTP checks -----------------------------------------------------------------------------

def _unauthorized(who, key_option, key_given):
    if key_given:
        return "HTTP 401 Unauthorized: %s refused %s" % (who, key_option)
    return "HTTP 401 Unauthorized: %s needs %s" % (who, key_option)


def _gateway_refusal(result, key_given, who=None):
    """The error text when LiteLLM refused the key, else None.

    Without a database LiteLLM can only check its master key: another key gets 401, or 400 'No
    connected db.' when it looks like a virtual key (and for some routes).
    """
    if result.status == 401:
        text = _unauthorized("the gateway", "gateway_api_key", key_given)
    elif result.status == 400 and "No connected db" in result.text(500):
        text = ("HTTP 400 No connected db: the gateway refused gateway_api_key "
                "(without a database LiteLLM accepts only its master key)")
    else:
        return None
    return "%s: %s" % (who, text) if who else text


def check_engine(url, api_key=None, expected=(), timeout=5.0, validate_certs=True):
    """GET /v1/models on the engine with its key; ok when every expected model is listed."""
    result = request(join_url(url, "/v1/models"), headers=bearer(api_key), timeout=timeout, validate_certs=validate_certs)
    if result.error:
        return component(False, result.latency_ms, {}, result.error)
    if result.status == 401:
        return component(False, result.latency_ms, {}, _unauthorized("the engine", "engine_api_key", bool(api_key)))
    if not result.ok:
        return component(False, result.latency_ms, {}, http_error(result))
    payload, err = result.json()
    if err:
        return component(False, result.latency_ms, {}, err)
    ok, detail, error = evaluate_models(payload, expected)
    return component(ok, result.latency_ms, detail, error)


def check_gateway(url, api_key=None, expected=(), timeout=5.0, validate_certs=True):
    """LiteLLM's /health/liveliness and /health/readiness (no key), then /v1/models with the
    master key (when given). /health is not called: it calls every deployment."""
    latency = 0.0
    detail = {}
    for name in ("liveliness", "readiness"):
        result = request(join_url(url, "/health/" + name), timeout=timeout, validate_certs=validate_certs)
        latency += result.latency_ms
        if result.error:
            return component(False, latency, detail, result.error)
        if not result.ok:
            return component(False, latency, detail, http_error(result, name))
        detail[name] = "ok"
        if name == "readiness":
            payload, _error = result.json()
            if isinstance(payload, dict):
                detail["readiness"] = payload.get("status") or "ok"
                if payload.get("litellm_version"):
                    detail["litellm_version"] = payload["litellm_version"]
    if not api_key:
        detail["models"] = None
        detail["models_checked"] = False
        return component(True, latency, detail)
    result = request(join_url(url, "/v1/models"), headers=bearer(api_key), timeout=timeout, validate_certs=validate_certs)
    latency += result.latency_ms
    if result.error:
        return component(False, latency, detail, result.error)
    refused = _gateway_refusal(result, True)
    if refused:
        return component(False, latency, detail, refused)
    if not result.ok:
        return component(False, latency, detail, http_error(result, "models"))
    payload, err = result.json()
    if err:
        return component(False, latency, detail, "models: " + err)
    ok, models, error = evaluate_models(payload, expected)
    detail.update(models)
    detail["models_checked"] = True
    return component(ok, latency, detail, error)


def check_prometheus(url, expected_jobs=DEFAULT_JOBS, timeout=5.0, validate_certs=True):
    """GET /api/v1/targets?state=active; each expected job needs all its targets up."""
    result = request(join_url(url, "/api/v1/targets?state=active"), timeout=timeout, validate_certs=validate_certs)
    if result.error:
        return component(False, result.latency_ms, {}, result.error)
    if not result.ok:
        return component(False, result.latency_ms, {}, http_error(result))
    payload, err = result.json()
    if err:
        return component(False, result.latency_ms, {}, err)
    ok, detail, error = evaluate_targets(payload, expected_jobs)
    return component(ok, result.latency_ms, detail, error)


def check_chat(url, api_key=None, *, model=None, prompt="Reply with OK.", max_tokens=8, timeout=5.0, validate_certs=True):
    """One small chat completion through the gateway; ok on 200 with choices."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": False}
    result = request(join_url(url, "/v1/chat/completions"), method="POST", headers=bearer(api_key), body=body,
                     timeout=timeout, validate_certs=validate_certs)
    detail = {"model": model}
    if result.error:
        return component(False, result.latency_ms, detail, result.error)
    refused = _gateway_refusal(result, bool(api_key))
    if refused:
        return component(False, result.latency_ms, detail, refused)
    if not result.ok:
        return component(False, result.latency_ms, detail, http_error(result))
    payload, err = result.json()
    if err:
        return component(False, result.latency_ms, detail, err)
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        return component(False, result.latency_ms, detail, "answer has no choices")
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    content = message.get("content") or ""
    detail.update({
        "status": result.status,
        "finish_reason": first.get("finish_reason"),
        "content": content if len(content) <= 80 else content[:80] + "...",
        "usage": payload.get("usage"),
    })
    return component(True, result.latency_ms, detail)


# --- moderation ------------------------------------------------------------------------------

def guardrail_names(payload):
    """The names in LiteLLM's ``/v2/guardrails/list`` answer (``{"guardrails": [{"guardrail_name":
    ...}]}``); None if it is not one. Only the names are kept: the entries carry the guardrails'
    settings, which may hold the guard's key."""
    items = payload.get("guardrails") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return None
    names = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("guardrail_name"), str):
            return None
        names.append(item["guardrail_name"])
    return names


def moderation_verdict(payload):
    """The guardrail's ``moderation`` object in an error answer, wherever the proxy put it: LiteLLM
    1.106 turns the guardrail's HTTPException detail into ``error.provider_specific_fields``; the
    detail itself (``detail``) and the top level are looked at too. None when there is none."""
    places = []
    if isinstance(payload, dict):
        places.append(payload)
        for key in ("error", "detail"):
            inner = payload.get(key)
            if isinstance(inner, dict):
                places.append(inner)
                fields = inner.get("provider_specific_fields")
                if isinstance(fields, dict):
                    places.append(fields)
    for place in places:
        if isinstance(place.get("moderation"), dict):
            return place["moderation"]
    return None


def _score(value):
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return None


def _scrub(text, secret):
    """``text`` without ``secret`` (an answer may echo the key it refused)."""
    if text and secret and secret in text:
        return text.replace(secret, "********")
    return text


def _probe(url, api_key, prompt, *, model, max_tokens, timeout, validate_certs):
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": False}
    return request(join_url(url, "/v1/chat/completions"), method="POST", headers=bearer(api_key), body=body,
                   timeout=timeout, validate_certs=validate_certs)


def _blocked_verdict(result):
    """(label, score, stage) when ``result`` is the guardrail's 400 for a flagged text, else None."""
    if result.status != 400:
        return None
    payload, _error = result.json()
    verdict = moderation_verdict(payload)
    if not verdict or verdict.get("flagged") is not True:
        return None
    return verdict.get("label"), _score(verdict.get("score")), verdict.get("stage")


def _probe_failure(result, which, api_key):
    """(state, error) for a probe answer that is neither the expected pass nor a verdict."""
    if result.error:
        return "error", "%s probe: %s" % (which, result.error)
    refused = _gateway_refusal(result, bool(api_key), "%s probe" % which)
    if refused:
        return "error", refused
    if result.status == 503:
        return "unavailable", "moderation unavailable (guard down?): %s probe got %s" % (which, http_error(result))
    if result.status == 400:
        return "error", "%s probe: %s (no moderation verdict in the answer)" % (which, http_error(result))
    return "error", "%s probe: %s" % (which, http_error(result))


def check_moderation(url, api_key=None, *, model=None, guardrail_name=MODERATION_GUARDRAIL, unsafe_prompt=MODERATION_UNSAFE_PROMPT,
                     safe_prompt=MODERATION_SAFE_PROMPT, expect="block", max_tokens=8, timeout=5.0, validate_certs=True):
    """The gateway's moderation guardrail, end to end, in three requests with the master key:

    1. ``GET /v2/guardrails/list`` must list ``guardrail_name`` (LiteLLM starts WITHOUT a guardrail
       whose settings fail its own validation, and lists only those it loaded);
    2. ``unsafe_prompt`` as a chat completion: with ``expect`` ``block`` the answer must be the
       guardrail's 400 with ``moderation.flagged`` true (its label and score go to the detail); with
       ``log`` (log-only moderation) it must be 200;
    3. ``safe_prompt``: must be 200 (not flagged).

    A 503 (the guardrail fails closed when the guard gives no verdict) is reported as moderation
    unavailable. The key never appears in the result.
    """
    if expect not in MODERATION_EXPECT:
        raise ValueError("expect must be one of %s, not %r" % (", ".join(MODERATION_EXPECT), expect))
    latency = 0.0
    detail = {"guardrail": guardrail_name, "model": model, "expect": expect}

    def done(ok, error=None):
        return component(ok, latency, detail, _scrub(error, api_key))

    # 1. the guardrail is loaded
    result = request(join_url(url, "/v2/guardrails/list"), headers=bearer(api_key), timeout=timeout, validate_certs=validate_certs)
    latency += result.latency_ms
    if result.error:
        return done(False, "guardrails list: %s" % result.error)
    refused = _gateway_refusal(result, bool(api_key), "guardrails list")
    if refused:
        return done(False, refused)
    if not result.ok:
        return done(False, http_error(result, "guardrails list"))
    payload, err = result.json()
    if err:
        return done(False, "guardrails list: " + err)
    names = guardrail_names(payload)
    if names is None:
        snippet = str(payload)
        return done(False, "guardrails list: answer is not a guardrail list: %s" % (snippet[:80] + ("..." if len(snippet) > 80 else "")))
    detail["guardrails"] = names
    if guardrail_name not in names:
        return done(False, "guardrail %s is not loaded (the gateway lists: %s)" % (guardrail_name, ", ".join(names) if names else "none"))

    # 2. the unsafe probe
    result = _probe(url, api_key, unsafe_prompt, model=model, max_tokens=max_tokens, timeout=timeout, validate_certs=validate_certs)
    latency += result.latency_ms
    detail["unsafe_status"] = result.status
    verdict = _blocked_verdict(result)
    if verdict:
        detail["unsafe"] = "blocked"
        detail["unsafe_label"], detail["unsafe_score"], detail["unsafe_stage"] = verdict
        if expect == "log":
            return done(False, "unsafe probe was blocked (%s, score %s), but moderation_expect is log"
                        % (verdict[0], verdict[1]))
    elif result.ok:
        if expect == "block":
            detail["unsafe"] = "passed"
            return done(False, "unsafe probe was NOT blocked (HTTP %d): the guardrail let it through "
                               "(moderation_action log, or the guard judged it safe)" % result.status)
        detail["unsafe"] = "passed (log-only)"  # the guardrail logs the verdict; the answer cannot show it
    else:
        detail["unsafe"], error = _probe_failure(result, "unsafe", api_key)
        return done(False, error)

    # 3. the safe probe
    result = _probe(url, api_key, safe_prompt, model=model, max_tokens=max_tokens, timeout=timeout, validate_certs=validate_certs)
    latency += result.latency_ms
    detail["safe_status"] = result.status
    verdict = _blocked_verdict(result)
    if verdict:
        detail["safe"] = "blocked"
        return done(False, "safe probe was blocked (%s, score %s, stage %s)" % verdict)
    if not result.ok:
        detail["safe"], error = _probe_failure(result, "safe", api_key)
        return done(False, error)
    detail["safe"] = "passed"
    return done(True)


# --- rounds and polling ----------------------------------------------------------------------

def run_round(funcs):
    """Run the named check callables at once (threads); returns name -> component."""
    results = {}

    def call(name, func):
        try:
            results[name] = func()
        except Exception as err:  # pylint: disable=broad-except  # a bug must not hide other results
            results[name] = component(False, 0.0, {}, "check raised %s: %s" % (type(err).__name__, err))

    items = list(funcs.items())
    if len(items) == 1:
        call(*items[0])
        return results
    threads = [threading.Thread(target=call, args=item) for item in items]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _run_with_dependencies(funcs, names, results, depends, runner):
    """One round over ``names``: the checks without dependencies first (at once), then each
    dependent check whose dependencies passed; the others get 'not run: X failing'."""
    first = [name for name in names if not depends.get(name)]
    fresh = runner({name: funcs[name] for name in first}) if first else {}
    merged = dict(results)
    merged.update(fresh)
    second = {}
    for name in names:
        if name in first:
            continue
        blocking = [dep for dep in depends[name] if dep in merged and not merged[dep]["ok"]]
        if blocking:
            fresh[name] = component(False, 0.0, {}, "not run: %s failing" % ", ".join(blocking))
        else:
            second[name] = funcs[name]
    if second:
        fresh.update(runner(second))
    return fresh


def poll(funcs, *, wait_timeout=0.0, poll_interval=0.2, depends=None, clock=time.monotonic, sleep=time.sleep, runner=run_round):
    """Check until every component is ok or ``wait_timeout`` seconds have passed.

    Round 1 runs every check. Later rounds re-run only the failing ones, ``poll_interval``
    apart. When none is failing any more, the checks that passed in earlier rounds are re-run
    at once (a confirmation round), so that a healthy answer rests on back-to-back rounds and a
    component that went down meanwhile is caught. ``wait_timeout`` 0 means a single round. The
    last round may end up to one request timeout after ``wait_timeout``.

    ``depends`` maps a check to the checks it needs (default :data:`DEPENDS`, restricted to the
    checks in ``funcs``): within a round it runs after them, and not at all while one of them
    fails.

    Returns ``{healthy, components, failing, attempts, elapsed}``.
    """
    order = list(funcs)
    if depends is None:
        depends = DEPENDS
    depends = {name: tuple(dep for dep in deps if dep in funcs) for name, deps in depends.items() if name in funcs}
    start = clock()
    results = {}
    attempts = 0
    to_run = order
    confirming = False
    healthy = False
    while True:
        attempts += 1
        fresh = _run_with_dependencies(funcs, to_run, results, depends, runner)
        results.update(fresh)
        failing = failing_components(results, order)
        if not failing:
            stale = [name for name in order if name not in fresh]
            if confirming or not stale:
                healthy = True
                break
            to_run = stale
            confirming = True
            continue
        confirming = False
        remaining = wait_timeout - (clock() - start)
        if remaining <= 0:
            break
        sleep(min(poll_interval, remaining))
        to_run = failing
    return {
        "healthy": healthy,
        "components": {name: results[name] for name in order},
        "failing": failing_components(results, order),
        "attempts": attempts,
        "elapsed": round(clock() - start, 3),
    }
