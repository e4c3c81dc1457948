# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""HTTP for the stack_health checks: one request that never raises, short error texts.

Through ``ansible.module_utils.urls`` only (proxy settings, certificate validation). Pure helpers
(``parse_json``, ``endpoint``, ``classify_error``, ``join_url``, ``error_message``, ``http_error``)
are unit-tested without a network. Python 3.8+ syntax: module_utils run with the managed host's
Python.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import Request, make_context

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


# --- URLs and error texts of answers ---------------------------------------------------------

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
