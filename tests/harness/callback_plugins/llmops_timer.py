# Test-harness callback: prints one line with a playbook's wall time in milliseconds.
# Used by molecule/default so tests/harness/molecule_timings.py can set the idempotent
# re-run of site.yml beside a no-op play (the stock timer rounds to whole seconds).
from __future__ import annotations

import json
import time

from ansible.plugins.callback import CallbackBase

SLOW_TASK_SECONDS = 5.0

DOCUMENTATION = """
    name: llmops_timer
    type: aggregate
    short_description: print playbook wall time in ms (test harness only)
    description:
      - Prints C(llmops-timer playbook=NAME seconds=S.SSS) at the end of each playbook,
        C(llmops-timer play="NAME" seconds=S.SSS) for each play, and
        C(llmops-timer task="NAME" seconds=S.SSS) for each task that took 5 s or more (all its
        hosts together), so a slow step of the suite can be found in tests/output/molecule.log.
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
        self._task = None
        self._task_start = 0.0

    def _end_task(self):
        if self._task is not None:
            elapsed = time.monotonic() - self._task_start
            if elapsed >= SLOW_TASK_SECONDS:
                self._display.display(f"llmops-timer task={json.dumps(self._task)} seconds={elapsed:.3f}")
            self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._end_task()
        self._task = task.get_name()
        self._task_start = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _end_play(self):
        self._end_task()
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
