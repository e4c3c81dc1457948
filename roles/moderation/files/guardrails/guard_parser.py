"""Parse a guard model's verdict into a moderation result: the contract between guard model and gateway.

Standard library only (no LiteLLM import): the LiteLLM guardrail ``llmops_guard.py`` loads this file from
its own directory, and the unit tests import it on its own.

Guard model output (Qwen3Guard-Gen, served by vLLM over ``/v1/chat/completions``), one item a line::

    Safety: Safe|Unsafe|Controversial
    Categories: <comma-separated list> | None
    Refusal: Yes|No                      (response moderation only)

The categories the model emits are the keys of :data:`CATEGORY_LABELS`. They are matched as whole,
case-sensitive list items, never as substrings (``Violent`` is a substring of ``Non-violent Illegal
Acts``). Labels follow the style of OpenAI's moderation categories.

Moderation result (what the gateway logs and puts in a block's error body)::

    {"flagged": true, "label": "violence", "score": 1.0, "labels": ["violence"], "safety": "Unsafe",
     "categories": ["Violent"], "refusal": null, "score_source": "verdict"}

* ``flagged``: ``Unsafe``, or ``Controversial`` under the ``strict`` policy (``loose`` lets it pass).
* ``label``: the label of the first category (``None`` when safe; ``unspecified`` when flagged without
  a category); ``labels``: all of them in the model's order.
* ``score``: the model emits no probability, so the score is defined here, in [0, 1]:

  - ``score_source: "verdict"`` (always available): the verdict's fixed value, Unsafe 1.0,
    Controversial 0.5, Safe 0.0.
  - ``score_source: "logprobs"`` (when the guard response carries token logprobs, i.e. the request
    had ``logprobs: true, top_logprobs: N``): the expectation of that same value under the model's
    own distribution over the verdict token, ``P(Unsafe) + 0.5 * P(Controversial)``, the three
    probabilities renormalised over the candidates seen in ``top_logprobs``. The verdict itself
    (``flagged``) always comes from the generated text (greedy), never from the score.

Anything without a valid ``Safety:`` line raises :class:`GuardParseError`; the guardrail then applies
its ``on_error`` policy (fail closed or open).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Category as Qwen3Guard-Gen emits it -> label (OpenAI moderation style).
CATEGORY_LABELS: Mapping[str, str] = {
    "Violent": "violence",
    "Non-violent Illegal Acts": "illicit",
    "Sexual Content or Sexual Acts": "sexual",
    "PII": "pii",
    "Suicide & Self-Harm": "self-harm",
    "Unethical Acts": "unethical",
    "Politically Sensitive Topics": "political",
    "Copyright Violation": "copyright",
    "Jailbreak": "jailbreak",
}
SAFETY_VALUES = ("Safe", "Unsafe", "Controversial")
# The fixed score of each verdict (score_source "verdict"), and the weights of the logprob expectation.
VERDICT_SCORES: Mapping[str, float] = {"Safe": 0.0, "Controversial": 0.5, "Unsafe": 1.0}
POLICIES = ("strict", "loose")
UNSPECIFIED_LABEL = "unspecified"

_LINE = re.compile(r"^\s*(Safety|Categories|Refusal)\s*:\s*(.*?)\s*$")
_THINK = re.compile(r"<think>.*?</think>", re.S)


class GuardParseError(ValueError):
    """The guard model's answer is not a verdict (no or an invalid ``Safety:`` line)."""


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    label: str | None
    score: float
    labels: tuple[str, ...] = ()
    safety: str = "Safe"
    categories: tuple[str, ...] = ()
    refusal: bool | None = None
    score_source: str = "verdict"
    probabilities: Mapping[str, float] | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """The seed's three keys first, then the details (JSON-ready)."""
        out = {
            "flagged": self.flagged,
            "label": self.label,
            "score": round(self.score, 4),
            "labels": list(self.labels),
            "safety": self.safety,
            "categories": list(self.categories),
            "refusal": self.refusal,
            "score_source": self.score_source,
        }
        if self.probabilities is not None:
            out["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        return out


def category_label(category: str) -> str:
    """The label of a category; an unknown category (another guard model) becomes a slug of its name."""
    if category in CATEGORY_LABELS:
        return CATEGORY_LABELS[category]
    slug = re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
    return slug or UNSPECIFIED_LABEL


def _split_categories(value: str) -> tuple[str, ...]:
    items = []
    for raw in value.split(","):
        item = raw.strip().rstrip(".").strip()
        if item and item != "None" and item not in items:
            items.append(item)
    return tuple(items)


def is_flagged(safety: str, policy: str = "strict") -> bool:
    """Unsafe is always flagged; Controversial only under the ``strict`` policy."""
    if policy not in POLICIES:
        raise ValueError(f"controversial policy must be one of {POLICIES}, not {policy!r}")
    return safety == "Unsafe" or (safety == "Controversial" and policy == "strict")


def parse_guard_output(text: str, *, controversial: str = "strict", logprobs: Sequence[Mapping] | None = None) -> ModerationResult:
    """Parse the guard model's raw answer (and optional token logprobs) into a :class:`ModerationResult`.

    ``controversial``: ``strict`` (Controversial counts as flagged) or ``loose``.
    ``logprobs``: ``choices[0].logprobs.content`` of an OpenAI-style chat completion, if any.
    """
    if not isinstance(text, str):
        raise GuardParseError(f"guard answer is not text: {type(text).__name__}")
    body = _THINK.sub("", text)
    found: dict[str, str] = {}
    for line in body.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match.group(1), match.group(2)
        if key in found and found[key] != value:
            raise GuardParseError(f"conflicting {key} lines: {found[key]!r} and {value!r}")
        found[key] = value
    if "Safety" not in found:
        raise GuardParseError(f"no 'Safety:' line in guard answer {text[:200]!r}")
    safety = found["Safety"].rstrip(".").strip()
    if safety not in SAFETY_VALUES:
        raise GuardParseError(f"unknown safety verdict {found['Safety']!r} (expected one of {', '.join(SAFETY_VALUES)})")
    categories = _split_categories(found.get("Categories", ""))
    refusal = {"Yes": True, "No": False}.get(found.get("Refusal", "").rstrip(".").strip())

    flagged = is_flagged(safety, controversial)
    labels = tuple(dict.fromkeys(category_label(c) for c in categories))
    if safety == "Safe":
        label = None
    else:
        label = labels[0] if labels else UNSPECIFIED_LABEL

    probabilities = verdict_probabilities(logprobs) if logprobs else None
    if probabilities:
        score = sum(VERDICT_SCORES[k] * p for k, p in probabilities.items())
        source = "logprobs"
    else:
        probabilities = None
        score = VERDICT_SCORES[safety]
        source = "verdict"
    return ModerationResult(flagged=flagged, label=label, score=min(max(score, 0.0), 1.0), labels=labels, safety=safety,
                            categories=categories, refusal=refusal, score_source=source, probabilities=probabilities)


def _classify_token(token: str) -> str | None:
    """Which verdict a (possibly partial) verdict token starts: ' Un' -> Unsafe, ' Safe' -> Safe."""
    piece = token.strip()
    if not piece:
        return None
    for verdict in SAFETY_VALUES:
        if verdict.startswith(piece):
            return verdict
    return None


def verdict_probabilities(content: Iterable[Mapping] | None) -> dict[str, float] | None:
    """P(Safe), P(Unsafe), P(Controversial) at the verdict token, from OpenAI-style ``logprobs.content``.

    The verdict token is the first token whose text starts right after ``Safety:`` (spaces skipped).
    Its ``top_logprobs`` (plus the token itself) are grouped by the verdict they begin and
    renormalised. Returns None when the token cannot be found or carries no usable alternatives.
    """
    if not content:
        return None
    tokens = [item for item in content if isinstance(item, Mapping) and isinstance(item.get("token"), str)]
    text = ""
    offsets = []
    for item in tokens:
        offsets.append(len(text))
        text += item["token"]
    marker = re.search(r"Safety\s*:\s*", text)
    if not marker:
        return None
    start = marker.end()
    for item, offset in zip(tokens, offsets, strict=True):
        token = item["token"]
        lead = len(token) - len(token.lstrip())
        if offset + len(token) <= start or not token.strip():
            continue
        if offset + lead != start:
            return None  # the verdict starts inside a token: no clean alternative set
        candidates: dict[str, float] = {}
        seen = list(item.get("top_logprobs") or [])
        if not any(c.get("token") == token for c in seen if isinstance(c, Mapping)):
            seen.append({"token": token, "logprob": item.get("logprob")})
        for cand in seen:
            if not isinstance(cand, Mapping):
                continue
            verdict = _classify_token(str(cand.get("token", "")))
            logprob = cand.get("logprob")
            if verdict is None or not isinstance(logprob, int | float) or math.isnan(logprob):
                continue
            candidates[verdict] = candidates.get(verdict, 0.0) + math.exp(max(float(logprob), -1e4))
        total = sum(candidates.values())
        if total <= 0:
            return None
        return {verdict: candidates.get(verdict, 0.0) / total for verdict in SAFETY_VALUES}
    return None


# ------------------------------------------------------------------------- requests to the guard

def prompt_moderation_messages(user_text: str) -> list[dict]:
    """Prompt moderation: the user turn alone (the guard judges the last user turn)."""
    return [{"role": "user", "content": user_text}]


def response_moderation_messages(user_text: str, assistant_text: str) -> list[dict]:
    """Response moderation: user + assistant turns (the guard judges the assistant turn)."""
    return [{"role": "user", "content": user_text}, {"role": "assistant", "content": assistant_text}]


def guard_request_body(model: str, messages: list[dict], *, max_tokens: int = 128, logprobs: bool = True, top_logprobs: int = 5) -> dict:
    """An OpenAI-compatible chat completion request for the guard model: greedy, short, non-streaming."""
    body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": max_tokens, "stream": False}
    if logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = top_logprobs
    return body


def parse_guard_response(payload: Mapping, *, controversial: str = "strict") -> ModerationResult:
    """Parse a whole chat completion response body of the guard model (raises GuardParseError)."""
    try:
        choice = payload["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise GuardParseError(f"guard response has no choices[0].message.content: {str(payload)[:200]}") from err
    logprobs = None
    if isinstance(choice.get("logprobs"), Mapping):
        logprobs = choice["logprobs"].get("content")
    return parse_guard_output(text, controversial=controversial, logprobs=logprobs)
