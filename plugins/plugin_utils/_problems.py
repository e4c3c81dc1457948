# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""One problem with one input: the variable, the value given, what would be accepted.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!
"""

from __future__ import annotations

import json


def shown(value, limit=120) -> str:
    """A value as the report shows it (JSON-ish, shortened)."""
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Problem:
    """A refused input. ``secret`` hides the value (a secret's value is never shown)."""

    def __init__(self, variable: str, value=None, expected: str = "", *, host: str | None = None,
                 secret: bool = False, given: bool = True, note: str = "", text: str = ""):
        self.variable = variable
        self.text = text
        self.value = value
        self.expected = expected
        self.host = host
        self.secret = secret
        self.given = given
        self.note = note
        self.source = ""

    def value_text(self) -> str:
        if not self.given:
            return "not set"
        if self.secret:
            return "(secret, %d characters; value not shown)" % len(str(self.value or ""))
        return shown(self.value)

    def line(self) -> str:
        if self.text:
            return self.text + (" (from %s)" % self.source if self.source else "")
        parts = ["%s = %s" % (self.variable, self.value_text())]
        if self.source:
            parts.append("(from %s)" % self.source)
        text = " ".join(parts)
        if self.expected:
            text += ": expected %s" % self.expected
        if self.note:
            text += " (%s)" % self.note
        return text

    def as_dict(self) -> dict:
        return {"host": self.host, "variable": self.variable, "value": self.value_text(), "source": self.source,
                "expected": self.expected, "note": self.note}

    def __str__(self):
        return ("%s: " % self.host if self.host else "") + self.line()

    def __repr__(self):
        return "Problem(%s)" % self


class Problems(list):
    """A list of Problem with a shortcut to add one."""

    def add(self, variable, value=None, expected="", **kwargs):
        self.append(Problem(variable, value, expected, **kwargs))

    def check(self, variable, value, rule, **kwargs):
        """Add a problem when ``rule(value)`` returns a sentence; return True when the value passed."""
        expected = rule(value)
        if expected:
            self.add(variable, value, expected, **kwargs)
            return False
        return True
