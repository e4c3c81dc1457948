"""LiteLLM custom guardrail: input and output moderation by a guard model (Qwen3Guard-Gen on vLLM).

Declared in the proxy config (this file and guard_parser.py lie next to the config file: LiteLLM
resolves ``llmops_guard.LlmopsGuard`` relative to the config file's directory)::

    guardrails:
      - guardrail_name: llmops-moderation
        litellm_params:
          guardrail: llmops_guard.LlmopsGuard
          mode: [pre_call, post_call]
          default_on: true
          api_base: http://moderation-engine:8001/v1
          api_key: os.environ/MODERATION_API_KEY
          guard_model: qwen3guard
          moderation_action: block        # block | log
          screen_input: true
          screen_output: true
          screen_stream: true             # buffer streamed answers to screen them
          on_error: closed                # closed | open
          controversial: strict           # strict | loose
          timeout: 10                     # seconds per guard call
          # max_tokens: 128               # of the guard's verdict
          # use_logprobs: true            # ask for logprobs to compute the score (false: fixed scores)

Unset, api_base / api_key / guard_model / moderation_action / on_error fall back to the environment
variables MODERATION_API_BASE / MODERATION_API_KEY / MODERATION_MODEL / MODERATION_ACTION /
MODERATION_ON_ERROR. An invalid value of these settings raises GuardConfigError, which stops the
config load (a ValueError would make LiteLLM start without the guardrail).

LiteLLM passes every ``litellm_params`` key except guardrail/mode/default_on/stream_scope to the
constructor, together with the defaults of its own guardrail settings (so ``__init__`` takes
``**kwargs`` and hands what it does not use to CustomGuardrail). ``action`` is not usable for the
block/log switch: LiteLLM 1.106 validates ``action`` as ``block|mask`` for all guardrails, and on
``action: log`` it skips the whole guardrail and serves unmoderated (``--validate_config`` still says
OK); this guardrail reads ``moderation_action`` instead.

Hooks (only these; no ``apply_guardrail``, which would make LiteLLM route every event through its
unified path instead):

* ``async_pre_call_hook``: prompt moderation of the last user turn before the engine is called.
* ``async_post_call_success_hook``: response moderation (user + assistant) of a non-streamed answer.
* ``async_post_call_streaming_iterator_hook``: the same for ``stream: true``; the stream is buffered
  until complete, screened, then released (``screen_stream: false`` streams unscreened).

A flagged text gets ``fastapi.HTTPException(400)`` whose detail names the label (``moderation_action:
log`` lets it through and logs a WARNING line instead). A guard that cannot be reached, answers an
error or garbage gets 503 (``on_error: closed``) or passes with a WARNING line (``on_error: open``).
Log lines go to stderr through the ``llmops.guardrail`` logger (``LLMOPS_GUARD_LOG_LEVEL``, default
INFO), independent of ``LITELLM_LOG``; they carry the moderation result, never the screened text.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks


def _load_parser():
    """guard_parser.py from this file's directory (LiteLLM loads this module by path: its directory
    is not on sys.path)."""
    name = "llmops_guard_parser"
    if name in sys.modules:
        return sys.modules[name]
    path = pathlib.Path(__file__).with_name("guard_parser.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


guard_parser = _load_parser()

logger = logging.getLogger("llmops.guardrail")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s llmops_guard %(levelname)s %(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
logger.setLevel(os.environ.get("LLMOPS_GUARD_LOG_LEVEL", "INFO").upper())

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
# Call types whose request carries a user turn and whose answer is text.
SCREENED_CALL_TYPES = frozenset({
    "completion", "acompletion", "text_completion", "atext_completion",
    "responses", "aresponses", "anthropic_messages", "aanthropic_messages",
})
DEFAULT_TIMEOUT = 10.0


class GuardConfigError(RuntimeError):
    """An invalid guardrail setting. Deliberately not a ValueError/TypeError: LiteLLM 1.106 skips a
    guardrail whose constructor raises those and starts WITHOUT it (unmoderated); any other error
    stops the config load, so a typo cannot silently switch moderation off."""


def _flag(value: Any, default: bool, name: str) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise GuardConfigError(f"llmops_guard: {name} must be true or false, not {value!r}")


def _choice(value: Any, allowed: tuple[str, ...], default: str, name: str) -> str:
    if value is None or value == "":
        return default
    text = str(value).strip().lower()
    if text not in allowed:
        raise GuardConfigError(f"llmops_guard: {name} must be one of {', '.join(allowed)}, not {value!r}")
    return text


def _check_modes(event_hook: Any) -> None:
    """mode must be pre_call and/or post_call (checked here: LiteLLM's own check raises ValueError,
    which makes it skip the guardrail instead of failing)."""
    hooks = event_hook if isinstance(event_hook, list | tuple) else [event_hook]
    values = [getattr(hook, "value", hook) for hook in hooks]
    unsupported = [v for v in values if v not in ("pre_call", "post_call")]
    if not values or unsupported:
        raise GuardConfigError(f"llmops_guard: mode must be pre_call and/or post_call, not {event_hook!r}")


def _setting(kwargs: dict, key: str, env: str) -> Any:
    value = kwargs.pop(key, None)
    return value if value not in (None, "") else os.environ.get(env)


def content_text(content: Any) -> str:
    """Text of an OpenAI message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def last_user_text(data: Mapping) -> str:
    """The newest user turn of a request: chat/anthropic ``messages``, completions ``prompt`` or
    responses ``input``."""
    messages = data.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return content_text(message.get("content"))
        return ""
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    items = data.get("input")
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        for item in reversed(items):
            if isinstance(item, Mapping) and item.get("role") == "user":
                return content_text(item.get("content"))
    return ""


def response_texts(response: Any) -> list[str]:
    """Texts of a completion response: each choice's message content (chat) or text (completions)."""
    texts = []
    for choice in getattr(response, "choices", None) or []:
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None) if message is not None else getattr(choice, "text", None)
        text = content_text(text)
        if text:
            texts.append(text)
    return texts


class GuardUnavailable(Exception):
    """The guard gave no verdict: unreachable, timed out, an HTTP error or an unparseable answer."""


class LlmopsGuard(CustomGuardrail):
    """Prompt and response moderation through an OpenAI-compatible guard model (see the module doc)."""

    def __init__(self, **kwargs):
        api_base = _setting(kwargs, "api_base", "MODERATION_API_BASE")
        api_key = _setting(kwargs, "api_key", "MODERATION_API_KEY")
        self.guard_model = str(_setting(kwargs, "guard_model", "MODERATION_MODEL") or "qwen3guard")
        self.action = _choice(_setting(kwargs, "moderation_action", "MODERATION_ACTION"), ("block", "log"), "block", "moderation_action")
        self.screen_input = _flag(kwargs.pop("screen_input", None), True, "screen_input")
        self.screen_output = _flag(kwargs.pop("screen_output", None), True, "screen_output")
        self.screen_stream = _flag(kwargs.pop("screen_stream", None), True, "screen_stream")
        self.on_error = _choice(_setting(kwargs, "on_error", "MODERATION_ON_ERROR"), ("closed", "open"), "closed", "on_error")
        self.controversial = _choice(kwargs.pop("controversial", None), guard_parser.POLICIES, "strict", "controversial")
        self.max_tokens = kwargs.pop("max_tokens", None) or 128
        self.use_logprobs = _flag(kwargs.pop("use_logprobs", None), True, "use_logprobs")
        if not api_base:
            raise GuardConfigError("llmops_guard: api_base (the guard's OpenAI-compatible base URL, ending in /v1) is required")
        try:
            self.max_tokens = int(self.max_tokens)
        except (TypeError, ValueError) as err:
            raise GuardConfigError(f"llmops_guard: max_tokens must be an integer, not {self.max_tokens!r}") from err
        _check_modes(kwargs.get("event_hook"))
        self.api_base = str(api_base).rstrip("/")
        self.url = self.api_base + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        kwargs.setdefault("supported_event_hooks", [GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call])
        super().__init__(**kwargs)
        if self.timeout is None:
            self.timeout = DEFAULT_TIMEOUT
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        logger.info("guardrail %s: guard %s model %s, action %s, screen input %s output %s stream %s, on_error %s, controversial %s, "
                    "timeout %ss", self.guardrail_name, self.api_base, self.guard_model, self.action, self.screen_input, self.screen_output,
                    self.screen_stream, self.on_error, self.controversial, self.timeout)

    # ------------------------------------------------------------------ guard calls

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(float(self.timeout)), trust_env=False)
            self._client_loop = loop
        return self._client

    async def moderate(self, messages: list[dict]):
        """Ask the guard about ``messages``; a ModerationResult, or GuardUnavailable."""
        body = guard_parser.guard_request_body(self.guard_model, messages, max_tokens=self.max_tokens, logprobs=self.use_logprobs)
        try:
            reply = await self._http().post(self.url, json=body, headers=self._headers)
        except httpx.HTTPError as err:
            raise GuardUnavailable(f"{type(err).__name__} calling {self.url}: {err}") from err
        if reply.status_code != 200:
            raise GuardUnavailable(f"guard answered HTTP {reply.status_code}: {reply.text[:200]}")
        try:
            payload = reply.json()
        except ValueError as err:
            raise GuardUnavailable(f"guard answered non-JSON: {reply.text[:200]!r}") from err
        try:
            return guard_parser.parse_guard_response(payload, controversial=self.controversial)
        except guard_parser.GuardParseError as err:
            raise GuardUnavailable(f"unparseable guard answer: {err}") from err

    def _log(self, level: int, event: str, stage: str, data: Mapping, **fields: Any) -> None:
        record = {"event": event, "stage": stage, "guardrail": self.guardrail_name, "model": data.get("model"),
                  "call_id": data.get("litellm_call_id"), **fields}
        logger.log(level, "moderation %s", json.dumps(record, default=str, sort_keys=False))

    async def screen(self, stage: str, messages: list[dict], data: Mapping) -> None:
        """Moderate one text; raise HTTPException to block, return to let it pass."""
        started = time.monotonic()
        try:
            result = await self.moderate(messages)
        except GuardUnavailable as err:
            elapsed = round((time.monotonic() - started) * 1000, 1)
            if self.on_error == "open":
                self._log(logging.WARNING, "guard_error_passed", stage, data, on_error="open", error=str(err), ms=elapsed)
                return
            self._log(logging.ERROR, "guard_error_blocked", stage, data, on_error="closed", error=str(err), ms=elapsed)
            raise HTTPException(status_code=503, detail={
                "error": {"message": f"Moderation is unavailable; the request was not processed ({stage} screening failed).",
                          "type": "moderation_unavailable", "param": None, "code": "moderation_unavailable"},
                "moderation": {"stage": stage, "error": "guard unavailable"},
            }) from err
        elapsed = round((time.monotonic() - started) * 1000, 1)
        verdict = {**result.to_dict(), "stage": stage}
        if not result.flagged:
            self._log(logging.DEBUG, "passed", stage, data, moderation=verdict, ms=elapsed)
            return
        if self.action == "log":
            self._log(logging.WARNING, "flagged_logged", stage, data, action="log", moderation=verdict, ms=elapsed)
            return
        self._log(logging.WARNING, "flagged_blocked", stage, data, action="block", moderation=verdict, ms=elapsed)
        what = "Input" if stage == "input" else "Output"
        raise HTTPException(status_code=400, detail={
            "error": {"message": f"{what} blocked by content moderation: {result.label} (score {verdict['score']}).",
                      "type": "content_moderation", "param": None, "code": "content_filter"},
            "moderation": {"flagged": True, "label": result.label, "score": verdict["score"], "labels": list(result.labels),
                           "stage": stage},
        })

    # ------------------------------------------------------------------ LiteLLM hooks

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if not self.screen_input or str(call_type) not in SCREENED_CALL_TYPES:
            return None
        text = last_user_text(data)
        if text.strip():
            await self.screen("input", guard_parser.prompt_moderation_messages(text), data)
        return None

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        if not self.screen_output:
            return None
        user = last_user_text(data)
        for text in response_texts(response):
            await self.screen("output", guard_parser.response_moderation_messages(user, text), data)
        return None

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict) -> AsyncGenerator[Any, None]:
        if not (self.screen_output and self.screen_stream):
            async for chunk in response:
                yield chunk
            return
        chunks: list[Any] = []
        texts: dict[int, list[str]] = {}
        async for chunk in response:
            chunks.append(chunk)
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                piece = getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
                if isinstance(piece, str) and piece:
                    texts.setdefault(getattr(choice, "index", 0) or 0, []).append(piece)
        user = last_user_text(request_data)
        for parts in texts.values():
            text = "".join(parts)
            if text.strip():
                await self.screen("output", guard_parser.response_moderation_messages(user, text), request_data)
        for chunk in chunks:
            yield chunk
