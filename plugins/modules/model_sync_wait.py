#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_sync_wait
short_description: Wait a while for background model_sync jobs and say how far they are
version_added: "0.2.0"
description:
  - Blocks until every job of O(jobs) has finished or O(interval) seconds have passed, then returns one progress
    line of all of them (RV(summary)), e.g. C(qwen3-8b 1.2 GiB / 16.4 GiB 7% downloading 110.0 MiB/s) (one
    part per job), and whether all are done (RV(done)).
  - >-
    Run it in a loop with C(loop_control.label) showing RV(summary) and C(break_when) on RV(done): one progress
    line every O(interval) seconds, as the P(llmops.gpu_stack.model_store#role) role does.
  - A job is the registered result of a M(llmops.gpu_stack.model_sync) task started with C(async) and C(poll=0);
    the figures come from the job's C(.llmops-progress.json), its end from Ansible's async results file.
    Collect the results with M(ansible.builtin.async_status) afterwards.
  - Needs no download client (any Python 3). Never reports a change.
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  jobs:
    description:
      - The jobs, each a dictionary with C(results_file) (Ansible's async results file), C(progress_file) and
        C(alias), as M(llmops.gpu_stack.model_sync) returns them when started with C(async) and C(poll=0).
      - Other keys are ignored, so the registered results of a loop can be passed as they are; entries without
        C(results_file) (skipped items) are left out.
    type: list
    elements: dict
    required: true
  interval:
    description: Seconds to wait at most before answering.
    type: float
    default: 15
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
  - llmops.gpu_stack._attributes.read_only
seealso:
  - module: llmops.gpu_stack.model_sync
  - module: ansible.builtin.async_status
"""

EXAMPLES = r"""
- name: Start the downloads
  llmops.gpu_stack.model_sync:
    alias: "{{ item.alias }}"
    repo_id: "{{ item.repo_id }}"
    target_dir: "{{ item.target_dir }}"
  vars:
    ansible_python_interpreter: /opt/llmops/modelscope-venv/bin/python
  loop: "{{ models }}"
  async: 14400
  poll: 0
  register: jobs

- name: Wait for the downloads (a progress line every 15 seconds, at most 14400 s)
  llmops.gpu_stack.model_sync_wait:
    jobs: "{{ jobs.results }}"
    interval: 15
  loop: "{{ range(962) | list }}"
  loop_control:
    label: "{{ wait.summary | default('waiting') }}"
    break_when: wait.done | default(false)
  register: wait
"""

RETURN = r"""
done:
  description: Whether every job has finished (successfully or not; see M(ansible.builtin.async_status)).
  returned: always
  type: bool
summary:
  description: One progress line of all jobs, separated by C( | ).
  returned: always
  type: str
  sample: "qwen3-8b: 1.2 GiB / 16.4 GiB (7%) downloading 110.0 MiB/s | qwen3guard: 1.2 GiB / 1.2 GiB (100%) finished"
jobs:
  description: The figures of each job.
  returned: always
  type: list
  elements: dict
  contains:
    alias:
      description: The model's alias.
      type: str
    state:
      description: C(starting), C(listing), C(downloading), C(copying), C(verifying), C(complete), C(failed) or C(finished).
      type: str
    finished:
      description: Whether the job has ended.
      type: bool
    bytes_done:
      description: Bytes of the model on disk.
      type: int
    bytes_total:
      description: Bytes of the model.
      type: int
    percent:
      description: RV(jobs[].bytes_done) of RV(jobs[].bytes_total) in percent (null before the listing).
      type: float
    rate_bytes_per_s:
      description: Bytes per second over the last 10 seconds.
      type: int
    error:
      description: The job's error, when it failed.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_progress import wait_round


def jobs_of(given: list) -> list:
    """The started jobs of ``given`` (registered results of a loop or single results)."""
    return [job for job in given or [] if isinstance(job, dict) and job.get("results_file")]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jobs=dict(type="list", elements="dict", required=True),
            interval=dict(type="float", default=15.0),
        ),
        supports_check_mode=True,
    )
    if module.params["interval"] < 0:
        module.fail_json(msg="interval must be 0 or more seconds, got %s" % module.params["interval"])
    result = wait_round(jobs_of(module.params["jobs"]), module.params["interval"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
