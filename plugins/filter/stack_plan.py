# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The stack plan filters: ``stack_plan`` and ``compose_project``.

Their documentation is in ``stack_plan.yml`` and ``compose_project.yml`` beside this file; the
plan is computed in ``plugins/plugin_utils/_plan.py``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _plan


def stack_plan_filter(hostvars, host, groups, *, own=None, gpu_info=None, model_configs=None, strict=True):
    """The plan of ``host``; with strict (the default) every problem of its inputs fails the filter."""
    try:
        plan, problems = _plan.stack_plan(host, hostvars, groups, own=own, gpu_info=gpu_info, model_configs=model_configs)
    except (TypeError, ValueError, KeyError) as err:
        raise AnsibleFilterError("stack_plan: cannot plan %s: %s" % (host, err)) from err
    if problems and strict:
        raise AnsibleFilterError("stack_plan: %d problem(s) with the inputs of %s:\n  - %s"
                                 % (len(problems), host, "\n  - ".join(p.line() for p in problems)))
    plan["problems"] = [p.as_dict() for p in problems]
    return plan


def compose_project_filter(plan):
    """The host's compose.yaml as data."""
    if not isinstance(plan, dict) or "services" not in plan:
        raise AnsibleFilterError("compose_project: the input must be a stack plan (llmops.gpu_stack.stack_plan)")
    return _plan.compose_project(plan)


class FilterModule(object):
    """llmops.gpu_stack stack plan filters."""

    def filters(self):
        return {"stack_plan": stack_plan_filter, "compose_project": compose_project_filter}
