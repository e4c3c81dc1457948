#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_host_info
short_description: Read what the stack's host prerequisite checks need (free space, listening ports, model directories)
version_added: "0.2.0"
description:
  - "Read-only, standard library only: it works on a host where nothing is installed yet (no Docker, no GPU driver)."
  - For each of O(paths), the free and total space of the file system that holds it (or its nearest existing parent
    when it does not exist yet).
  - For each of O(ports), the TCP sockets listening on it (IPv4 and IPv6) and, where C(/proc) tells (as root), the
    name and id of the process that holds each.
  - For each of O(model_dirs), whether the collection's model manifest is there (a complete download) and how many
    bytes the directory already holds (a partial download resumes from them).
  - The validation phase of the collection's playbooks (C(playbooks/validate.yml)) runs it on every host and checks
    its answer on the controller (C(llmops.gpu_stack.validate_inputs) with O(llmops.gpu_stack.validate_inputs#module:stage=hosts)).
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  paths:
    description: Directories whose file system's free space is reported.
    type: list
    elements: path
    default: []
  ports:
    description: TCP ports whose listening sockets are reported.
    type: list
    elements: int
    default: []
  model_dirs:
    description: Model directories (C(target_dir) of C(llmops.gpu_stack.model_sync)) whose state is reported.
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
  - llmops.gpu_stack._attributes.read_only
notes:
  - Linux only (it reads C(/proc/net/tcp) and C(/proc/net/tcp6)).
  - Without root, sockets of other users' processes are listed with a null process.
"""

EXAMPLES = r"""
- name: Read free space, listeners and model directories
  llmops.gpu_stack.stack_host_info:
    paths: [/Models/Pretrained_Models, /opt/llm-stack]
    ports: [4000, 8001, 9090]
    model_dirs: [/Models/Pretrained_Models/Qwen3-8B]
  register: host_info
"""

RETURN = r"""
filesystems:
  description: Per path of O(paths), its file system's space.
  returned: always
  type: dict
  sample: {"/Models/Pretrained_Models": {"checked": "/", "exists": false, "device": 64768, "free_bytes": 51234567168, "total_bytes": 270582939648}}
listeners:
  description: Per port of O(ports) that something listens on, the sockets (ports nothing listens on are left out).
  returned: always
  type: dict
  sample: {"4000": [{"address": "0.0.0.0", "pid": 812, "process": "docker-proxy"}]}
models:
  description: Per directory of O(model_dirs), whether its manifest is there and the bytes it holds.
  returned: always
  type: dict
  sample: {"/Models/Pretrained_Models/Qwen3-8B": {"exists": true, "complete": false, "bytes": 1073741824}}
"""

import os
import socket
import struct

from ansible.module_utils.basic import AnsibleModule

MANIFEST = ".llmops-manifest.json"  # plugins/module_utils/_model_sync_dir.py: what makes a download complete
LISTEN = "0A"


def space(path):
    checked = path
    while not os.path.exists(checked) and checked not in ("/", ""):
        checked = os.path.dirname(checked.rstrip("/")) or "/"
    stat = os.statvfs(checked)
    return {"checked": checked, "exists": checked == path, "device": os.stat(checked).st_dev,
            "free_bytes": stat.f_bavail * stat.f_frsize, "total_bytes": stat.f_blocks * stat.f_frsize}


def _address(hex_address, family):
    raw = bytes.fromhex(hex_address)
    if family == socket.AF_INET:
        return socket.inet_ntop(family, struct.pack("<I", struct.unpack(">I", raw)[0]))
    # /proc prints an IPv6 address as four 32-bit words, each in host (little-endian) order.
    words = struct.unpack(">4I", raw)
    return socket.inet_ntop(family, struct.pack("<4I", *words))


def listening(ports):
    """port -> [(address, inode)] for the TCP sockets in LISTEN state on one of ``ports``."""
    found = {}
    for name, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(name) as table:
                lines = table.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            address, port = fields[1].rsplit(":", 1)
            port = int(port, 16)
            if port in ports:
                found.setdefault(port, []).append((_address(address, family), fields[9]))
    return found


def holders(inodes):
    """socket inode -> (pid, process name), for the processes /proc lets us look into."""
    wanted = {"socket:[%s]" % inode: inode for inode in inodes}
    held = {}
    if not wanted:
        return held
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target in wanted and wanted[target] not in held:
                try:
                    with open("/proc/%s/comm" % pid) as comm:
                        name = comm.read().strip()
                except OSError:
                    name = None
                held[wanted[target]] = (int(pid), name)
    return held


def model_state(path):
    if not os.path.isdir(path):
        return {"exists": False, "complete": False, "bytes": 0}
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return {"exists": True, "complete": os.path.isfile(os.path.join(path, MANIFEST)), "bytes": total}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", default=[]),
            ports=dict(type="list", elements="int", default=[]),
            model_dirs=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    ports = set(module.params["ports"])
    sockets = listening(ports)
    held = holders([inode for found in sockets.values() for _address_, inode in found])
    listeners = {}
    for port, found in sorted(sockets.items()):
        listeners[str(port)] = [{"address": address, "pid": held.get(inode, (None, None))[0],
                                 "process": held.get(inode, (None, None))[1]} for address, inode in found]
    module.exit_json(
        changed=False,
        filesystems={path: space(path) for path in module.params["paths"]},
        listeners=listeners,
        models={path: model_state(path) for path in module.params["model_dirs"]},
    )


if __name__ == "__main__":
    main()
