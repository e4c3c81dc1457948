#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Documentation of the action plugin llmops.gpu_stack.validate_inputs (it runs on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_inputs
short_description: Check every input of every host of a run before anything changes
version_added: "0.2.0"
description:
  - "Runs on the controller only, once for the play (C(run_once)). It reads the variables and gathered facts of every host
    of the play and checks them against the collection's role argument specs (types, element types, choices,
    sub-options), the rules a spec cannot express (port and size ranges, image references, Prometheus durations,
    model aliases, absolute paths, tensor-parallel sizes within the GPUs given, GPU memory shares below 1, aliases that
    exist, a consistent fleet topology, secrets present and long enough, the master key starting with C(sk-)).
    With O(stage=hosts), once the inputs passed, it checks the host prerequisites instead: OS family and version,
    systemd, the NVIDIA driver where GPUs are required (and tensor-parallel sizes against the GPUs found), free space
    for the models still to download (models with C(size_gb)), and the ports the stack publishes free (or held by
    Docker's proxy for the stack's own containers)."
  - "Fails with one message listing every problem of every host, each naming the variable, the value given (never a
    secret's), where it came from when the value says so (inventory file and line, or the C(LLMOPS_*) environment
    variable an inventory reads) and what would be accepted. Changes nothing on any host."
  - Returns the stack plan of each host (what it runs, its Compose services, config, firewall ports), which the
    collection's playbooks set as the fact C(gpu_stack_plan).
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  purpose:
    description:
      - Which playbook asks, and so which roles' inputs are checked.
      - V(deploy) (site.yml) and V(rolling_update) check every role a host runs; V(verify) the stack roles; V(teardown)
        only the collection-wide settings (paths, project name, purge switches).
    type: str
    choices: [deploy, rolling_update, verify, teardown]
    default: deploy
  hosts:
    description: The hosts to check (default the play's hosts, C(ansible_play_hosts_all)).
    type: list
    elements: str
  stage:
    description:
      - V(inputs) checks the variables of every host (and returns the plans).
      - V(hosts) checks the host prerequisites, from each host's C(ansible_facts), its fact C(gpu_stack_plan) and the
        registered results C(gpu_stack_host_info) (M(llmops.gpu_stack.stack_host_info)) and C(gpu_stack_gpu_info)
        (M(llmops.gpu_stack.nvidia_gpu_info)); only for O(purpose=deploy) and O(purpose=rolling_update).
    type: str
    choices: [inputs, hosts]
    default: inputs
attributes:
  check_mode:
    support: full
    description: It changes nothing in any mode.
  diff_mode:
    support: none
    description: It reports problems, not differences.
  platform:
    platforms: all
    support: full
    description: Runs on the controller; the hosts checked may be of any platform.
notes:
  - Variables with a prefix of the collection's roles that no role knows are reported as warnings (with the closest
    known name), not as errors.
"""

EXAMPLES = r"""
- name: Check every input of every host before anything changes
  llmops.gpu_stack.validate_inputs:
    purpose: deploy
  run_once: true
  register: gpu_stack_validation

- name: Then check the host prerequisites from what the hosts answered
  llmops.gpu_stack.validate_inputs:
    purpose: deploy
    stage: hosts
  run_once: true
"""

RETURN = r"""
plans:
  description: Host name to its stack plan (see the llmops.gpu_stack.stack_plan filter).
  returned: with O(stage=inputs), when every host passed
  type: dict
problems:
  description: Every problem found (host, variable, value shown, source, expected).
  returned: always
  type: list
  elements: dict
roles:
  description: Host name to the roles it runs.
  returned: with O(stage=inputs)
  type: dict
"""
