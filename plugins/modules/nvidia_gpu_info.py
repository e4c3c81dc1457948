#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_info
short_description: Read the host's NVIDIA GPUs, driver and CUDA version from nvidia-smi
version_added: "0.1.0"
description:
  - Runs C(nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,driver_version,mig.mode.current,pci.bus_id
    --format=csv,noheader,nounits) and returns one entry per GPU, with the driver version and totals.
  - >-
    The CUDA version is not a C(--query-gpu) field (driver 580 rejects C(cuda_version)); it is read from
    the C(CUDA Version) line of C(nvidia-smi --version) and, on drivers whose C(--version) does not print it,
    from the header of plain C(nvidia-smi).
  - Fails with a clear message when C(nvidia-smi) is missing (install the NVIDIA driver) or cannot talk
    to the driver, unless O(required=false).
  - Read-only; never reports a change.
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) program.
      - When not set, C(nvidia-smi) is looked up in E(PATH), then in C(/usr/bin), C(/usr/local/nvidia/bin)
        and C(/usr/lib/wsl/lib).
    type: path
  required:
    description:
      - When V(true), fail if C(nvidia-smi) is missing, cannot reach the driver, or finds no GPU.
      - When V(false), return RV(gpu_count=0) and RV(available=false) in those cases instead
        (for example to choose between a GPU and a CPU setup).
      - Output that C(nvidia-smi) printed but this module cannot parse fails either way.
    type: bool
    default: true
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
  - llmops.gpu_stack._attributes.read_only
notes:
  - Runs on the managed host; needs only the NVIDIA driver's C(nvidia-smi), no Python package.
seealso:
  - name: nvidia-smi documentation
    description: The fields that C(nvidia-smi --help-query-gpu) lists.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Read the GPUs
  llmops.gpu_stack.nvidia_gpu_info:
  register: gpu_info

- name: Show what was found
  ansible.builtin.debug:
    msg: >-
      {{ gpu_info.gpu_count }} x {{ gpu_info.names | unique | join(', ') }},
      driver {{ gpu_info.driver_version }}, CUDA {{ gpu_info.cuda_version }},
      {{ gpu_info.total_memory_mib }} MiB in all

- name: Choose the tensor-parallel size from the GPU count
  ansible.builtin.set_fact:
    engine_tp: "{{ gpu_info.gpu_count | llmops.gpu_stack.tensor_parallel_size }}"

- name: Probe without failing on hosts without a driver
  llmops.gpu_stack.nvidia_gpu_info:
    required: false
  register: probe

- name: Use the CPU profile where there is no GPU
  ansible.builtin.set_fact:
    accelerator: "{{ 'gpu' if probe.available else 'cpu' }}"

- name: Use an nvidia-smi outside PATH
  llmops.gpu_stack.nvidia_gpu_info:
    nvidia_smi_path: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
available:
  description: Whether C(nvidia-smi) ran and listed at least one GPU.
  returned: always
  type: bool
  sample: true
gpu_count:
  description: Number of GPUs C(nvidia-smi) lists (0 when none or unavailable).
  returned: always
  type: int
  sample: 1
gpus:
  description: One entry per GPU, sorted by index. Fields nvidia-smi reports as C([N/A]) or C([Not Supported]) are null.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: nvidia-smi's GPU index (PCI bus order by default).
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA H100 80GB HBM3
    uuid:
      description: GPU UUID (usable in C(NVIDIA_VISIBLE_DEVICES)).
      type: str
      sample: GPU-5f0c3b2a-9d41-4e6b-8a17-2c6e0d9b4f31
    memory_total_mib:
      description: Total framebuffer memory in MiB.
      type: int
      sample: 81559
    memory_used_mib:
      description: Used framebuffer memory in MiB.
      type: int
      sample: 0
    mig_mode:
      description: Current MIG mode (C(Enabled), C(Disabled)); null where MIG is not supported.
      type: str
      sample: Disabled
    pci_bus_id:
      description: PCI bus id as domain:bus:device.function.
      type: str
      sample: "00000000:00:06.0"
driver_version:
  description: NVIDIA driver version (null when unavailable).
  returned: always
  type: str
  sample: 580.159.04
cuda_version:
  description: Highest CUDA version the driver supports (null when unavailable or not printed).
  returned: always
  type: str
  sample: "13.0"
total_memory_mib:
  description: Sum of RV(gpus[].memory_total_mib) over all GPUs.
  returned: always
  type: int
  sample: 81559
names:
  description: The product name of each GPU, in index order (one entry per GPU; apply C(unique) for the kinds).
  returned: always
  type: list
  elements: str
  sample: ["NVIDIA H100 80GB HBM3"]
nvidia_smi:
  description: Path of the C(nvidia-smi) that ran (null when none was found).
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
reason:
  description: Why no GPU is reported, when RV(available) is false.
  returned: when RV(available) is false
  type: str
  sample: "nvidia-smi not found: install the NVIDIA driver"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvidia_smi import (
    NO_DEVICES_MARKER,
    NvidiaSmiParseError,
    is_no_driver_error,
    parse_cuda_version,
    parse_query_gpu,
    query_gpu_args,
    summarize,
    unavailable,
)

EXTRA_DIRS = ["/usr/bin", "/usr/local/nvidia/bin", "/usr/lib/wsl/lib"]


def _output(stdout, stderr):
    return " ".join(" ".join(part.split()) for part in (stderr, stdout) if part and part.strip())


def find_nvidia_smi(module):
    path = module.params["nvidia_smi_path"]
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return module.get_bin_path("nvidia-smi", opt_dirs=EXTRA_DIRS)


def cuda_version(module, nvidia_smi):
    """From `nvidia-smi --version`, else from the plain `nvidia-smi` header; None if neither says."""
    for args in ([nvidia_smi, "--version"], [nvidia_smi]):
        rc, stdout, stderr = module.run_command(args, environ_update={"LC_ALL": "C"})
        if rc == 0:
            found = parse_cuda_version(stdout)
            if found:
                return found
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi_path=dict(type="path"),
            required=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    required = module.params["required"]

    def absent(reason, **extra):
        if required:
            module.fail_json(msg=reason, **dict(unavailable(reason), **extra))
        module.exit_json(changed=False, msg=reason, **dict(unavailable(reason), **extra))

    nvidia_smi = find_nvidia_smi(module)
    if not nvidia_smi:
        where = module.params["nvidia_smi_path"] or "PATH, " + ", ".join(EXTRA_DIRS)
        absent("nvidia-smi not found (looked in %s): install the NVIDIA driver, which provides nvidia-smi" % where,
               nvidia_smi=None)

    rc, stdout, stderr = module.run_command(query_gpu_args(nvidia_smi), environ_update={"LC_ALL": "C"})
    text = _output(stdout, stderr)
    if rc != 0:
        if NO_DEVICES_MARKER in text:
            absent("nvidia-smi found no GPU: %s" % text, nvidia_smi=nvidia_smi)
        if is_no_driver_error(text):
            absent("nvidia-smi cannot reach the NVIDIA driver (rc=%d): %s" % (rc, text), nvidia_smi=nvidia_smi)
        absent("nvidia-smi failed (rc=%d): %s" % (rc, text or "no output"), nvidia_smi=nvidia_smi)

    try:
        gpus = parse_query_gpu(stdout)
    except NvidiaSmiParseError as err:
        module.fail_json(msg="cannot parse nvidia-smi output: %s" % err, stdout=stdout, stderr=stderr, nvidia_smi=nvidia_smi)
    if not gpus:
        absent("nvidia-smi listed no GPU", nvidia_smi=nvidia_smi)

    facts = summarize(gpus, cuda_version(module, nvidia_smi))
    module.exit_json(changed=False, nvidia_smi=nvidia_smi, **facts)


if __name__ == "__main__":
    main()
