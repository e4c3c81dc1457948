# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The model_store filters: ``model_entries`` and ``pip_lock_problems``.

Their documentation is in ``model_entries.yml`` and ``pip_lock_problems.yml`` beside this file; the rules
are in ``plugins/plugin_utils/_models.py`` and ``_pip_lock.py``.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _models, _pip_lock


def model_entries_filter(models, models_root, aliases=None, *, stack_root=None, variable="gpu_stack_models",
                         root_variable="gpu_stack_models_root", aliases_variable="model_store_aliases", strict=True):
    """The entries of ``models`` with their defaults filled in (those named by ``aliases`` when given)."""
    entries, problems = _models.model_entries(models, models_root, variable=variable, root_variable=root_variable,
                                              stack_root=stack_root or None)
    if aliases is not None:
        entries, more = _models.select_entries(entries, aliases, variable=aliases_variable, models_variable=variable)
        problems += more
    if not strict:
        return {"entries": entries, "problems": problems}
    if problems:
        raise AnsibleFilterError("model_entries: %d problem(s): %s" % (len(problems), "; ".join(problems)))
    return entries


def pip_lock_problems_filter(text, wanted, source="the hash lock", own=False):
    """Sentences for each wanted project -> [variable, version] the lock ``text`` does not pin."""
    return ["%s = %s: expected %s" % (name, json.dumps(value), expected)
            for name, value, expected in _pip_lock.problems(text, wanted, str(source), own=bool(own))]


class FilterModule(object):
    """llmops.gpu_stack model_store filters."""

    def filters(self):
        return {"model_entries": model_entries_filter, "pip_lock_problems": pip_lock_problems_filter}
