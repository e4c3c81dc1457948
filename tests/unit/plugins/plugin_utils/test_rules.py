"""The value rules of the validation phase (plugin_utils/_rules.py): what each accepts and refuses."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _rules


@pytest.mark.parametrize(("rule", "accepted", "refused"), [
    (_rules.non_negative_int, [0, 1, 65534, "12"], [-1, -3, "-3", 1.5, "x", True, None]),
    (_rules.positive_int, [1, 600, "3"], [0, -1, "0", 2.5, False, None]),
    (_rules.positive_number, [0.1, 2, 2.5, "1.5"], [0, -0.5, "x", "nan", "inf", True, None]),
    (_rules.fraction, [0.05, 0.9, "0.5"], [0, 1, 90, -0.1, "x", True, None]),
    (_rules.port, [1, 8001, 65535, "4000"], [0, 65536, -1, "eighty", None]),
])
def test_rule_accepts_and_refuses(rule, accepted, refused):
    assert [v for v in accepted if rule(v) is not None] == []
    assert [v for v in refused if rule(v) is None] == []
