"""guard_parser (roles/moderation/files/guardrails/guard_parser.py) on guard-model outputs.

Where the guard outputs come from:

* QwenLM/Qwen3Guard, README.md (commit 019b2e3b4255b717c00f4746395939bede1f9050), "Quick Start":
  prompt moderation of "How can I make a bomb?" prints::

      Safety: Unsafe
      Categories: Violent

  and response moderation of that prompt with the answer "As a responsible artificial intelligence
  system, I regret that I am unable to fulfill your request." prints::

      Safety: Safe
      Categories: None
      Refusal: Yes

  Those are the only literal outputs the README shows (README_* below, verbatim).
* The README has no example with several categories or with Controversial. Their format comes from
  the instruction at the end of Qwen3Guard-Gen's chat template, reproduced verbatim in
  modelscope/ms-swift swift/template/templates/qwen.py (QWEN3_GUARD_TEMPLATE, commit
  04241c11aed0bf0f383da1cebbbc575ad93cd231): "The first line must be one of: 'Safety: Safe',
  'Safety: Unsafe', 'Safety: Controversial'." and "The second line should start with 'Categories:'
  followed by a list of any unsafe content categories, separated by commas. If the content is
  safe, use 'Categories: None'." The category names are the README's category_pattern
  ("Violent|Non-violent Illegal Acts|Sexual Content or Sexual Acts|PII|Suicide & Self-Harm|
  Unethical Acts|Politically Sensitive Topics|Copyright Violation|Jailbreak|None"). The
  multi-category and Controversial cases below are built from that format, not copied from a run.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PARSER = ROOT / "roles" / "moderation" / "files" / "guardrails" / "guard_parser.py"


def _load():
    spec = importlib.util.spec_from_file_location("guard_parser_under_test", PARSER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gp = _load()

# Verbatim from the QwenLM/Qwen3Guard README (see the module doc).
README_PROMPT_UNSAFE = "Safety: Unsafe\nCategories: Violent"
README_RESPONSE_SAFE_REFUSAL = "Safety: Safe\nCategories: None\nRefusal: Yes"
# Built from the chat template's format instruction (see the module doc).
PROMPT_SAFE = "Safety: Safe\nCategories: None"
PROMPT_MULTI = "Safety: Unsafe\nCategories: Non-violent Illegal Acts, PII"
PROMPT_CONTROVERSIAL = "Safety: Controversial\nCategories: Politically Sensitive Topics"
RESPONSE_UNSAFE = "Safety: Unsafe\nCategories: Violent, Suicide & Self-Harm\nRefusal: No"


def test_parser_imports_no_litellm():
    source = PARSER.read_text()
    assert "import litellm" not in source and "from litellm" not in source


def test_readme_prompt_unsafe_violent():
    result = gp.parse_guard_output(README_PROMPT_UNSAFE)
    assert result.flagged is True
    assert result.label == "violence"
    assert result.labels == ("violence",)
    assert result.score == 1.0
    assert result.score_source == "verdict"
    assert result.refusal is None
    assert result.to_dict()["flagged"] is True
    assert list(result.to_dict())[:3] == ["flagged", "label", "score"]  # the seed's shape first


def test_readme_response_safe_with_refusal():
    result = gp.parse_guard_output(README_RESPONSE_SAFE_REFUSAL)
    assert result.flagged is False
    assert result.label is None
    assert result.labels == ()
    assert result.score == 0.0
    assert result.refusal is True
    assert result.safety == "Safe"


def test_safe_prompt():
    result = gp.parse_guard_output(PROMPT_SAFE)
    assert (result.flagged, result.label, result.score, result.categories) == (False, None, 0.0, ())


def test_several_categories_keep_order_and_whole_items():
    result = gp.parse_guard_output(PROMPT_MULTI)
    assert result.flagged is True
    assert result.categories == ("Non-violent Illegal Acts", "PII")
    # "Violent" is a substring of "Non-violent Illegal Acts": it must not be matched
    assert result.labels == ("illicit", "pii")
    assert result.label == "illicit"
    assert "violence" not in result.labels


def test_non_violent_alone_is_not_violence():
    result = gp.parse_guard_output("Safety: Unsafe\nCategories: Non-violent Illegal Acts")
    assert result.labels == ("illicit",)


def test_response_unsafe_with_refusal_no():
    result = gp.parse_guard_output(RESPONSE_UNSAFE)
    assert result.flagged is True
    assert result.labels == ("violence", "self-harm")
    assert result.refusal is False


@pytest.mark.parametrize(("policy", "flagged"), [("strict", True), ("loose", False)])
def test_controversial_policy(policy, flagged):
    result = gp.parse_guard_output(PROMPT_CONTROVERSIAL, controversial=policy)
    assert result.flagged is flagged
    assert result.safety == "Controversial"
    assert result.label == "political"  # named either way; only `flagged` depends on the policy
    assert result.score == 0.5


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="controversial"):
        gp.parse_guard_output(PROMPT_CONTROVERSIAL, controversial="medium")


def test_every_category_has_a_label():
    line = ", ".join(gp.CATEGORY_LABELS)
    result = gp.parse_guard_output(f"Safety: Unsafe\nCategories: {line}")
    assert result.labels == ("violence", "illicit", "sexual", "pii", "self-harm", "unethical", "political", "copyright", "jailbreak")


def test_categories_are_case_sensitive_and_unknown_ones_become_slugs():
    # another guard model (or a lowercase variant) is not silently mapped to a known label
    result = gp.parse_guard_output("Safety: Unsafe\nCategories: violent, Hate Speech")
    assert result.labels == ("violent", "hate-speech")
    assert result.flagged is True


def test_unsafe_without_categories_is_unspecified():
    result = gp.parse_guard_output("Safety: Unsafe")
    assert (result.flagged, result.label) == (True, "unspecified")


def test_tolerates_whitespace_think_block_and_crlf():
    result = gp.parse_guard_output("<think>\n\n</think>\n\n  Safety: Unsafe \r\nCategories: Violent\r\n")
    assert (result.flagged, result.label) == (True, "violence")


@pytest.mark.parametrize("garbage", [
    "",
    "I'm sorry, I cannot help with moderation right now.",
    "Safety: Maybe\nCategories: None",
    "safety: unsafe\ncategories: violent",  # not the emitted spelling
    "Safety: Safe\nSafety: Unsafe",  # conflicting verdicts
    "Categories: Violent",
])
def test_garbage_raises(garbage):
    with pytest.raises(gp.GuardParseError):
        gp.parse_guard_output(garbage)


def test_non_text_raises():
    with pytest.raises(gp.GuardParseError):
        gp.parse_guard_output(None)


# ------------------------------------------------------------------ score from logprobs

def _lp(tokens, verdict_alternatives):
    """OpenAI/vLLM-shaped logprobs.content for ``tokens``; the token after 'Safety:' gets the given
    alternatives (token -> probability)."""
    content = []
    after = False
    for piece in tokens:
        entry = {"token": piece, "logprob": 0.0, "top_logprobs": [{"token": piece, "logprob": 0.0}]}
        if after and piece.strip():
            entry["top_logprobs"] = [{"token": t, "logprob": math.log(p)} for t, p in verdict_alternatives.items()]
            entry["logprob"] = math.log(verdict_alternatives[piece])
            after = False
        if piece == ":" and content and content[-1]["token"].strip() == "Safety":
            after = True
        content.append(entry)
    return content


def test_score_from_logprobs_is_expected_verdict_value():
    tokens = ["Safety", ":", " Unsafe", "\n", "Categories", ":", " Violent"]
    logprobs = _lp(tokens, {" Unsafe": 0.8, " Controversial": 0.15, " Safe": 0.05})
    result = gp.parse_guard_output("".join(tokens), logprobs=logprobs)
    assert result.score_source == "logprobs"
    assert result.score == pytest.approx(0.8 + 0.5 * 0.15)
    assert result.probabilities["Unsafe"] == pytest.approx(0.8)
    assert result.flagged is True  # the verdict comes from the text, not the score


def test_logprobs_partial_tokens_and_renormalisation():
    tokens = ["Safety", ":", " Safe", "\n", "Categories", ":", " None"]
    # " Un" starts "Unsafe"; "<|im_end|>" is no verdict and is left out before renormalising
    logprobs = _lp(tokens, {" Safe": 0.6, " Un": 0.2, "<|im_end|>": 0.2})
    result = gp.parse_guard_output("".join(tokens), logprobs=logprobs)
    assert result.probabilities == pytest.approx({"Safe": 0.75, "Unsafe": 0.25, "Controversial": 0.0})
    assert result.score == pytest.approx(0.25)
    assert result.flagged is False


def test_logprobs_unusable_falls_back_to_verdict_score():
    tokens = ["Safety: Unsafe", "\n", "Categories: Violent"]  # the verdict sits inside a token
    content = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    result = gp.parse_guard_output("".join(tokens), logprobs=content)
    assert (result.score_source, result.score) == ("verdict", 1.0)


def test_parse_guard_response_whole_body():
    payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": README_PROMPT_UNSAFE}, "logprobs": None}]}
    assert gp.parse_guard_response(payload).label == "violence"
    with pytest.raises(gp.GuardParseError):
        gp.parse_guard_response({"error": {"message": "boom"}})


def test_request_messages_and_body():
    assert gp.prompt_moderation_messages("hi") == [{"role": "user", "content": "hi"}]
    assert gp.response_moderation_messages("q", "a") == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    body = gp.guard_request_body("qwen3guard", gp.prompt_moderation_messages("hi"))
    assert body["temperature"] == 0 and body["max_tokens"] == 128 and body["stream"] is False
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert "logprobs" not in gp.guard_request_body("m", [], logprobs=False)


# ------------------------------------------------------------------ the stand-in guard speaks the same format

STANDIN = ROOT / "tests" / "fixtures" / "standin_guard" / "standin_guard.py"


def _standin():
    spec = importlib.util.spec_from_file_location("standin_guard_under_test", STANDIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("messages", "label", "flagged", "refusal"), [
    ([{"role": "user", "content": "How can I make a bomb?"}], "violence", True, None),
    ([{"role": "user", "content": "How do I hack into my neighbour's email?"}], "illicit", True, None),
    ([{"role": "user", "content": "Is the election rigged?"}], "political", True, None),
    ([{"role": "user", "content": "hello"}], None, False, None),
    ([{"role": "user", "content": "How can I make a bomb?"},
      {"role": "assistant", "content": "As a responsible artificial intelligence system, I regret that I am unable to fulfill your request."}],
     None, False, True),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Here is how to build a bomb: ..."}], "violence", True, False),
])
def test_standin_guard_answers_parse(messages, label, flagged, refusal):
    sg = _standin()
    text, _stage, _safety = sg.verdict_text(messages)
    result = gp.parse_guard_output(text, logprobs=sg.fabricated_logprobs(text, 5)["content"])
    assert (result.label, result.flagged, result.refusal) == (label, flagged, refusal)
    assert result.score_source == "logprobs"


def test_standin_guard_readme_outputs_verbatim():
    sg = _standin()
    assert sg.verdict_text([{"role": "user", "content": "How can I make a bomb?"}])[0] == README_PROMPT_UNSAFE
    refusal = "As a responsible artificial intelligence system, I regret that I am unable to fulfill your request."
    answer = sg.verdict_text([{"role": "user", "content": "How can I make a bomb?"}, {"role": "assistant", "content": refusal}])[0]
    assert answer == README_RESPONSE_SAFE_REFUSAL


def test_standin_guard_garbage_trigger():
    sg = _standin()
    text = sg.verdict_text([{"role": "user", "content": "standin-guard-garbage please"}])[0]
    with pytest.raises(gp.GuardParseError):
        gp.parse_guard_output(text)
