"""Stop a playbook run at its first change; note its first failure (tests/bench/validation_before.py).

On the first task result with changed=true on any host, the task and the host go into the JSON file
named by LLMOPS_FIRST_CHANGE_OUT and the run ends at once (exit 3): the change is the proof that the
run changed the host before refusing anything, and nothing after it matters. A failure before any
change (not one ignored by ignore_errors) is noted in the same file; the run then goes on as usual.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: first_change
    type: aggregate
    short_description: abort a run at its first changed task, note its first failure
    description: Writes the first changed task (and host), or the first failure, to $LLMOPS_FIRST_CHANGE_OUT.
    requirements: [enable in callbacks_enabled]
"""

EXIT_CHANGED = 3


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "first_change"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("LLMOPS_FIRST_CHANGE_OUT", "first_change.json")
        self._record = {"changed": None, "failed": None}

    def _write(self):
        with open(self._path, "w", encoding="utf-8") as handle:
            json.dump(self._record, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _where(result):
        return {"task": result._task.get_name(), "host": result._host.get_name(),
                "action": result._task.action}

    def v2_runner_on_ok(self, result):
        if result._result.get("changed"):
            self._record["changed"] = self._where(result)
            self._write()
            os._exit(EXIT_CHANGED)  # noqa: SLF001 - on purpose: nothing after the first change counts

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors or self._record["failed"] or self._record["changed"]:
            return
        res = result._result
        msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
        self._record["failed"] = {**self._where(result), "msg": str(msg)}
        self._write()

    def v2_runner_on_unreachable(self, result):
        self.v2_runner_on_failed(result)

    def v2_playbook_on_stats(self, stats):
        self._write()
