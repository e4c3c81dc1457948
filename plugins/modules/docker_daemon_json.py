#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_json
short_description: Merge the keys a caller owns into Docker's daemon.json, validated, with restart and rollback
version_added: "0.2.0"
description:
  - Reads O(path) (Docker's C(daemon.json)), applies O(settings) and then O(merge), and writes the result only
    when its content differs from what the file says (key order and layout do not count, so a file that says
    the same in another layout is not rewritten and Docker is not restarted for whitespace).
  - Keys that neither O(settings) nor O(merge) name stay as they are (other runtimes, registry mirrors, log
    options). A setting switched off (O(settings[].state=absent)) is removed only where the file still holds
    exactly the caller's own O(settings[].value); another value there is the site's and stays.
  - A file that is not valid JSON, or not a JSON object, fails the task and stays byte for byte as it was.
    An empty file counts as C({}).
  - Before the new file replaces the live one it is checked with C(dockerd --validate --config-file), where
    C(dockerd --help) lists C(--validate) (Docker 23 and later). A candidate that dockerd refuses is never
    installed. In check mode the candidate is validated the same way (it only reads), so C(--check) reports a
    refusal too.
  - The file is replaced atomically (its mode and owner kept; a new file gets C(0644)), and with O(backup)
    the previous file is kept as C(<path>.<pid>.<date>~).
  - With O(restart), a changed file is applied with C(systemctl restart <service>) (no C(daemon-reload)),
    and the module waits until C(docker info) answers. If Docker does not come back within
    O(restart_timeout), the refused file is kept as C(<path>.rejected), the previous file is put back (or
    the new one removed where there was none before), the service's failed state is cleared, Docker is
    started again, and the task fails with the reason and the last lines of the service's journal.
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  path:
    description: The daemon.json to manage.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - The keys this caller owns, each with its value and whether it is switched on.
      - Absent entries are applied first, then present ones, then O(merge).
    type: list
    elements: dict
    default: []
    suboptions:
      key:
        description:
          - Where the value lives, as the list of key names from the top of the file, outermost first
            (for example C([default-ulimits, memlock])). A list, so key names may hold dots.
        type: list
        elements: str
        required: true
      value:
        description:
          - The caller's own value at O(settings[].key).
          - With V(present), a JSON object is merged into an object already there (as O(merge) does); any
            other value replaces what is there.
          - With V(absent), the key is removed only when it holds exactly this value (types count, so V(1),
            V(1.0) and V(true) differ); objects on the way that this leaves empty are removed too.
        type: raw
        required: true
      state:
        description: V(present) writes the value; V(absent) removes it if it is still the caller's own.
        type: str
        choices: [present, absent]
        default: present
  merge:
    description:
      - More settings, deep-merged last (they win over the file and over O(settings)). Objects merge key by
        key; any other value, lists too, replaces the file's value.
      - Keys given here are never removed by this module when a later run leaves them out.
    type: dict
    default: {}
  validate:
    description:
      - Check the candidate with C(dockerd --validate --config-file) before it replaces the live file.
      - Where dockerd is missing or has no C(--validate), the file is written unvalidated with a warning,
        and RV(validation) says why.
    type: bool
    default: true
  dockerd_path:
    description: The C(dockerd) that validates. When not set, C(dockerd) is looked up on E(PATH) and in the sbin folders.
    type: path
  backup:
    description: Keep the previous file as C(<path>.<pid>.<date>~) before it is replaced.
    type: bool
    default: true
  restart:
    description:
      - Restart the Docker service when the file changed, wait until C(docker info) answers, and roll back to
        the previous file when it does not.
      - Never in check mode.
    type: bool
    default: false
  restart_timeout:
    description: Seconds to wait for C(docker info) to answer after a restart before the new file is rolled back.
    type: int
    default: 60
  service:
    description: The systemd unit of the Docker engine.
    type: str
    default: docker
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
attributes:
  check_mode:
    support: full
    details: Computes and validates the new file and reports the diff; writes nothing and restarts nothing.
  diff_mode:
    support: full
notes:
  - C(dockerd --validate) checks the file alone. It cannot see a conflict with the flags in the systemd unit
    (for example C(hosts) in daemon.json against C(-H fd://)); O(restart) catches those and rolls back.
  - Restarting Docker stops running containers unless C(live-restore) is set. No C(systemctl daemon-reload)
    is run; daemon.json is read by dockerd, not by systemd, and a needless daemon-reload makes running GPU
    containers lose their devices.
  - Runs on the managed host; needs only the Python standard library.
seealso:
  - name: dockerd configuration file
    description: The keys of daemon.json.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: The nvidia runtime as Docker's default, unlimited memlock switched off (removed if it is still ours)
  llmops.gpu_stack.docker_daemon_json:
    settings:
      - key: [runtimes, nvidia]
        value: {path: nvidia-container-runtime, runtimeArgs: []}
      - key: [default-runtime]
        value: nvidia
      - key: [default-ulimits, memlock]
        value: {Name: memlock, Hard: -1, Soft: -1}
        state: absent
    restart: true

- name: The site's own settings, applied with a restart that is rolled back if Docker refuses them
  llmops.gpu_stack.docker_daemon_json:
    merge:
      live-restore: true
      log-opts: {max-size: 10m, max-file: "3"}
    restart: true
    restart_timeout: 90
  register: daemon

- name: Show what changed
  ansible.builtin.debug:
    msg: "{{ daemon.changed_keys }} ({{ daemon.validation }})"

- name: Ask what would change, without touching anything (also validates the candidate)
  llmops.gpu_stack.docker_daemon_json:
    merge: {registry-mirrors: ["https://mirror.internal.example"]}
  check_mode: true
  diff: true
"""

RETURN = r"""
path:
  description: The file managed.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
config:
  description: The file's content after the run (in check mode, what it would be; after a rollback, the previous content).
  returned: always
  type: dict
  sample: {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}
changed_keys:
  description: Dotted paths of the values that changed, down to the first level that is not an object on both sides.
  returned: always
  type: list
  elements: str
  sample: ["default-runtime", "runtimes.nvidia"]
validated:
  description: Whether dockerd validated the new file.
  returned: always
  type: bool
  sample: true
validation:
  description: What happened to validation, in words (validated, not needed, or why not).
  returned: always
  type: str
  sample: validated by dockerd --validate
backup_file:
  description: The copy of the previous file.
  returned: when the file was replaced, O(backup) is true and a file existed before
  type: str
  sample: /etc/docker/daemon.json.4242.2026-12-01@10:00:00~
restarted:
  description: Whether Docker was restarted.
  returned: always
  type: bool
  sample: true
rolled_back:
  description: Whether the new file was rolled back because Docker did not come back with it (the task then fails).
  returned: always
  type: bool
  sample: false
rejected_file:
  description: Where the refused file was kept.
  returned: when rolled back
  type: str
  sample: /etc/docker/daemon.json.rejected
journal:
  description: The last lines of the service's journal, read when Docker did not come back.
  returned: when rolled back
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmops.gpu_stack.plugins.module_utils._docker_daemon_json import DaemonJson, DaemonJsonError

SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]


def argument_spec():
    return dict(
        path=dict(type="path", default="/etc/docker/daemon.json"),
        settings=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                key=dict(type="list", elements="str", required=True, no_log=False),
                value=dict(type="raw", required=True),
                state=dict(type="str", choices=["present", "absent"], default="present"),
            ),
        ),
        merge=dict(type="dict", default={}),
        validate=dict(type="bool", default=True),
        dockerd_path=dict(type="path"),
        backup=dict(type="bool", default=True),
        restart=dict(type="bool", default=False),
        restart_timeout=dict(type="int", default=60),
        service=dict(type="str", default="docker"),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    manager = DaemonJson(
        path=params["path"],
        run=run,
        which=lambda name: module.get_bin_path(name, opt_dirs=SBIN),
        settings=params["settings"],
        merge=params["merge"],
        validate=params["validate"],
        dockerd_path=params["dockerd_path"],
        backup=params["backup"],
        restart=params["restart"],
        restart_timeout=params["restart_timeout"],
        service=params["service"],
        check_mode=module.check_mode,
        make_backup=module.backup_local,
        tmpdir=module.tmpdir,
    )
    try:
        result = manager.run()
    except DaemonJsonError as err:
        module.fail_json(msg=err.msg, **err.result)
    diff = result.pop("diff", None)
    if result["changed"] and params["validate"] and not result["validated"] and not module.check_mode:
        module.warn("%s was written without validation: %s." % (params["path"], result["validation"].replace("not validated: ", "", 1)))
    if diff and module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
