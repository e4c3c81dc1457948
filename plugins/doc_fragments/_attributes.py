# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

from __future__ import annotations


class ModuleDocFragment(object):

    # The attributes every module of this collection documents (descriptions only; each module,
    # or one of the fragments below, says how far it supports them). Managed hosts are Linux.
    #   extends_documentation_fragment:
    #     - llmops.gpu_stack._attributes
    #     - llmops.gpu_stack._attributes.read_only
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and report what would change, without changing anything.
  diff_mode:
    description: Reports the differences it would make in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

    # With the standard fragment: a module that only reads and never reports a change.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same way in check mode.
  diff_mode:
    support: none
"""
