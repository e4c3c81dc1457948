# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of llmops.gpu_stack.validate_inputs (documentation in plugins/modules/validate_inputs.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _validate


class ActionModule(ActionBase):
    """Runs on the controller only: reads every host's variables and facts, changes nothing."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("purpose", "hosts", "stage"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        purpose = self._task.args.get("purpose", "deploy")
        if purpose not in _validate.PURPOSES:
            return dict(result, failed=True, msg="purpose must be one of %s, got %r" % (", ".join(_validate.PURPOSES), purpose))
        hosts = self._task.args.get("hosts") or task_vars.get("ansible_play_hosts_all") or []
        hostvars = task_vars.get("hostvars") or {}
        groups = task_vars.get("groups") or {}
        stage = self._task.args.get("stage", "inputs")
        if stage not in ("inputs", "hosts"):
            return dict(result, failed=True, msg="stage must be inputs or hosts, got %r" % (stage,))
        if stage == "hosts":
            problems = _validate.validate_hosts(list(hosts), hostvars, groups, purpose=purpose)
            result.update(changed=False, problems=[p.as_dict() for p in problems], hosts=list(hosts))
            if problems:
                result.update(failed=True, msg=_validate.report(problems, list(hosts), what="the prerequisites"))
            else:
                result["msg"] = "every prerequisite of %d host(s) is met" % len(hosts)
            return result
        plans, problems, warnings = _validate.validate(list(hosts), hostvars, groups, purpose=purpose)
        result.update(changed=False, problems=[p.as_dict() for p in problems], hosts=list(hosts),
                      roles={h: (p or {}).get("roles", []) for h, p in plans.items()})
        for warning in warnings:
            self._display.warning(warning)
        result["warnings_found"] = warnings
        if problems:
            result["failed"] = True
            result["msg"] = _validate.report(problems, list(hosts))
        else:
            # The plans only when every host passed (they are what the next plays run on).
            result["plans"] = plans
            result["msg"] = "every input of %d host(s) is fine" % len(hosts)
        return result
