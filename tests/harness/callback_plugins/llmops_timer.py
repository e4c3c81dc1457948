# Test-harness callback: prints one line with a playbook's wall time in milliseconds.
# Used by molecule/default so tests/harness/molecule_timings.py can set the idempotent
# re-run of site.yml beside a no-op play (the stock timer rounds to whole seconds).
from __future__ import annotations

import json
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: llmops_timer
    type: aggregate
    short_description: print playbook wall time in ms (test harness only)
    description:
      - Prints C(llmops-timer playbook=NAME seconds=S.SSS) at the end of each playbook, and
        C(llmops-timer play="NAME" seconds=S.SSS) for each play.
    requirements: []
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "llmops_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._start = time.monotonic()
        self._name = "?"
        self._play = None
        self._play_start = 0.0

    def _end_play(self):
        if self._play is not None:
            elapsed = time.monotonic() - self._play_start
            self._display.display(f"llmops-timer play={json.dumps(self._play)} seconds={elapsed:.3f}")
            self._play = None

    def v2_playbook_on_start(self, playbook):
        self._start = time.monotonic()
        self._name = playbook._file_name

    def v2_playbook_on_play_start(self, play):
        self._end_play()
        self._play = play.get_name()
        self._play_start = time.monotonic()

    def v2_playbook_on_stats(self, stats):
        self._end_play()
        elapsed = time.monotonic() - self._start
        self._display.display(f"llmops-timer playbook={self._name} seconds={elapsed:.3f}")
