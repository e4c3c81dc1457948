"""How many wrong-input cases of tests/integration/test_validation.py the 0.1 tree would have failed.

    python3 tests/bench/validation_before.py --old f94b55e [--cases id1,id2] [--parallel 2] \
        --out tests/output/validation_before.json

A case of CASES passes only if (1) ansible-playbook exits non-zero, (2) its output names the variable
and (3) nothing changed on the host before the refusal. Each case here runs the old tree's playbook
(``git archive --old``) against a fresh harness host (test_validation's hosts fixture: the Debian 13
base image, systemd as PID 1, the docker connection), with the case's variables renamed to their 0.1
names (tools/migrate_0_2.py's RENAMES, inverted; a name 0.1's roles declare unchanged is kept). The
callback plugin validation_before/callback_plugins/first_change.py ends the run at its first changed
task: that task is the proof that criterion (3) failed. Criterion (2) is judged on the first failure
message (the old roles' fail/assert/argument-spec message), with the variable's 0.1 name without
an index (``model_store_models`` for ``gpu_stack_models[0]``). A case whose variable has no 0.1
counterpart counts as failed before, "no such variable in 0.1 (ignored)", and still runs.

The base inventory is test_validation.BASE renamed (docker install off, so a run that gets past
the checks stops at the toolkit role's Docker check), plus what 0.1's inventories/local and
molecule/default set for a CPU host: nvidia_container_toolkit_require_gpu and
nvidia_container_toolkit_set_default_runtime false (0.2 derives both from gpu_stack_accelerator).
0.1 runs the toolkit role (its Docker check included) before model_store and llm_stack look at
their variables, so with that base every case whose variable belongs to those roles stops at the
Docker check, its variable unread. --docker-install sets nvidia_container_toolkit_docker_install
true (source distro), the 0.1 default, so that a run goes on to its first real change instead.
--with-docker runs every case on a host that already has Docker (docker.io and docker-compose from
Debian installed into a derived image once, dockerd running): what most GPU servers look like, and
the fair comparison, since 0.1 then goes on past its Docker check to its first change or refusal.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tools")]
import test_validation as tv  # noqa: E402 - the cases, the base inventory, the host recipe
from migrate_0_2 import RENAMES  # noqa: E402

PLUGINS = ROOT / "tests" / "bench" / "validation_before" / "callback_plugins"
NEW_TO_OLD = {new: old for old, (new, _note) in RENAMES.items() if new}
CPU_EXTRAS = {"nvidia_container_toolkit_require_gpu": False, "nvidia_container_toolkit_set_default_runtime": False}
NO_SUCH = "no such variable in 0.1 (ignored)"


def declared_names(tree: pathlib.Path) -> set:
    """Every variable the old roles declare (defaults/main.yml keys, argument spec options)."""
    names = set()
    for role in (tree / "roles").iterdir():
        defaults = role / "defaults" / "main.yml"
        if defaults.exists():
            names |= set(yaml.safe_load(defaults.read_text()) or {})
        spec = role / "meta" / "argument_specs.yml"
        if spec.exists():
            for entry in (yaml.safe_load(spec.read_text()) or {}).get("argument_specs", {}).values():
                names |= set(entry.get("options") or {})
    return names


def old_name(name: str, declared: set) -> str | None:
    """0.1 name of a 0.2 variable, its index or key path kept: gpu_stack_models[0] -> model_store_models[0]."""
    base, rest = re.match(r"([A-Za-z0-9_]+)(.*)", name).groups()
    old = NEW_TO_OLD.get(base) or (base if base in declared else None)
    return old + rest if old else None


def case_vars(extra: dict, declared: set, docker_install: bool = False, with_docker: bool = False) -> dict:
    """test_validation's inventory() for one host, renamed to 0.1; unknown names stay as they are."""
    values = dict(tv.BASE)
    for key, value in extra.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    renamed = {(old_name(k, declared) or k): v for k, v in values.items()}
    if renamed.get("llm_stack_accelerator", "gpu") == "cpu":
        renamed.update(CPU_EXTRAS)
    if with_docker:
        renamed["nvidia_container_toolkit_apt_repo_url"] = "http://127.0.0.1:8090/stable/deb/$(ARCH)"
        renamed["nvidia_container_toolkit_apt_key_url"] = "http://127.0.0.1:8090/gpgkey"
    if docker_install:
        renamed["nvidia_container_toolkit_docker_install"] = True
        renamed.setdefault("nvidia_container_toolkit_docker_source", "distro")  # a case's own source stays
    return renamed


def start_host(name: str, image: str):
    tv.docker("rm", "-f", "-v", name, check=False)
    tv.docker("run", "-d", "--name", name, "--hostname", name, "--label", "llmops.test=validation-before",
              "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
              "--security-opt", "apparmor=unconfined", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
              "-v", "/var/lib/docker", "--tmpfs", "/run", "--tmpfs", "/tmp", image, "/sbin/init")
    wait_booted(name)
    if image.startswith("llmops-before/debian-docker:"):
        deadline = time.monotonic() + 120
        while tv.docker("exec", name, "docker", "info", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start on {name}")
            time.sleep(2)


def docker_image(base: str) -> str:
    """The base image with Docker from Debian installed (built once per base image, then reused)."""
    tag = "llmops-before/debian-docker:" + base.rsplit(":", 1)[-1]
    if tv.docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    name = "llmops-before-docker-build"
    start_host(name, base)
    try:
        # The drop-in is the harness's quirk for this sandbox (molecule/_shared/prepare.yml does the same).
        tv.docker("exec", name, "sh", "-c", "mkdir -p /etc/systemd/system/docker.service.d && printf "
                  "'[Service]\\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' "
                  "> /etc/systemd/system/docker.service.d/10-llmops-test.conf && apt-get update -q && "
                  "DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose && "
                  "systemctl enable docker && rm -rf /var/lib/apt/lists/*")
        # The stand-in NVIDIA apt repository on the host's loopback (as molecule/_shared/prepare_nvidia_repo.yml):
        # 0.1 installs the toolkit on CPU hosts too, from nvidia.github.io by default (unreachable here).
        with tempfile.TemporaryDirectory(prefix="llmops-before-repo-") as repo:
            subprocess.run([str(ROOT / "tests" / "fixtures" / "nvidia_apt_repo" / "build.sh"), repo], check=True,
                           capture_output=True)
            tv.docker("exec", name, "mkdir", "-p", "/srv/llmops-test")
            tv.docker("cp", f"{repo}/.", f"{name}:/srv/llmops-test/nvidia-apt-repo")
        tv.docker("exec", name, "sh", "-c", "printf '[Service]\\nExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 "
                  "--directory /srv/llmops-test/nvidia-apt-repo 8090\\n[Install]\\nWantedBy=multi-user.target\\n' "
                  "> /etc/systemd/system/llmops-test-apt-repo.service && systemctl enable llmops-test-apt-repo.service")
        tv.docker("commit", name, tag)
    finally:
        tv.docker("rm", "-f", "-v", name, check=False)
    return tag


def wait_booted(name: str):
    deadline = time.monotonic() + 180
    while tv.docker("exec", name, "systemctl", "is-system-running", "--wait", check=False).stdout.strip() not in ("running", "degraded"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not boot")
        time.sleep(2)
    # The same listener as the fixture's first host (the prereq-*-port-busy cases).
    tv.docker("exec", "-d", name, "python3", "-c",
              f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {tv.BUSY_PORT})); s.listen(); time.sleep(86400)")


def run_case(number: int, case: tuple, args: argparse.Namespace) -> dict:
    """One case on its own fresh host; args carries the old tree, the image, the declared names, the work folder."""
    old, declared = args.tree, args.declared
    case_id, extra, playbook, expected = case
    host = f"llmops-before-{number}"
    variables = [old_name(variable, declared) for variable, _fragment in expected]
    folder = args.work / case_id
    folder.mkdir()
    inventory = folder / "hosts.yml"
    hostvars = {"ansible_connection": "community.docker.docker", "ansible_host": host, **case_vars(extra, declared, args.docker_install, args.with_docker)}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {host: hostvars}}}}}, sort_keys=False))
    record = folder / "first_change.json"
    env = {k: v for k, v in os.environ.items() if k != tv.ENV}
    env.update(ANSIBLE_CONFIG=str(old / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(old / "collections"),
               ANSIBLE_CALLBACK_PLUGINS=str(PLUGINS), ANSIBLE_CALLBACKS_ENABLED="first_change", ANSIBLE_PIPELINING="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               LLMOPS_FIRST_CHANGE_OUT=str(record))
    start = time.monotonic()
    try:
        start_host(host, args.image)
        booted = time.monotonic()
        proc = subprocess.run([args.ansible_playbook, "-i", str(inventory), tv.PLAYBOOKS[playbook]], cwd=old, env=env,
                              capture_output=True, text=True, timeout=args.timeout, check=False)
    finally:
        tv.docker("rm", "-f", "-v", host, check=False)
    seen = json.loads(record.read_text()) if record.exists() else {"changed": None, "failed": None}
    (folder / "output.txt").write_text(proc.stdout + proc.stderr)
    message = (seen["failed"] or {}).get("msg", "")
    if not message and proc.returncode not in (0, 3):
        message = next((line for line in proc.stderr.splitlines() if line.startswith(("ERROR", "[ERROR]"))), proc.stderr.strip()[-300:])
    named = all(v and re.split(r"[\[.]", v)[0] in message for v in variables)
    if proc.returncode == 0:
        result = "exit 0"
    elif seen["changed"]:
        result = "changed '{task}' first on host {host}".format(**seen["changed"])
    else:
        result = "refused before any change" + ("" if named else " (variable not named)")
    passed = proc.returncode != 0 and not seen["changed"] and named and all(variables)
    return {"case": case_id, "playbook": tv.PLAYBOOKS[playbook], "variables_0_2": [v for v, _f in expected],
            "variables_0_1": variables, "result": result, "reason": NO_SUCH if not all(variables) else "",
            "failed_before": not passed, "rc": proc.returncode, "first_change": seen["changed"], "first_failure": seen["failed"],
            "first_line": first_line(message), "boot_s": round(booted - start, 1), "playbook_s": round(time.monotonic() - booted, 1)}


def first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    # "Validation of arguments failed:" and the like say what in the next line.
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--old", required=True, help="commit of the 0.1 tree (git archive)")
    parser.add_argument("--cases", help="comma-separated case ids (default: every case)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "output" / "validation_before.json")
    parser.add_argument("--docker-install", action="store_true",
                        help="base inventory with nvidia_container_toolkit_docker_install true (0.1's default), source distro")
    parser.add_argument("--with-docker", action="store_true",
                        help="hosts that already run Docker (docker.io, docker-compose from Debian), so 0.1 goes past its Docker check")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per ansible-playbook run")
    parser.add_argument("--ansible-playbook", default=str(ROOT / ".venv" / "bin" / "ansible-playbook"))
    args = parser.parse_args()
    cases = list(enumerate(tv.CASES, 1))
    if args.cases:
        wanted = args.cases.split(",")
        unknown = set(wanted) - {c[0] for _n, c in cases}
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        cases = [(n, c) for n, c in cases if c[0] in wanted]
    args.image = subprocess.run([str(tv.HARNESS / "base-image.sh")], capture_output=True, text=True, check=True).stdout.split()[-1]
    if args.with_docker:
        args.image = docker_image(args.image)
    with tempfile.TemporaryDirectory(prefix="llmops-before-") as tmp:
        args.tree, args.work = pathlib.Path(tmp) / "tree", pathlib.Path(tmp) / "cases"
        args.tree.mkdir()
        args.work.mkdir()
        subprocess.run(f"git -C {ROOT} archive {args.old} | tar -x -C {args.tree}", shell=True, check=True)  # noqa: S602
        args.declared = declared_names(args.tree)
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
            rows = list(pool.map(lambda nc: run_case(*nc, args), cases))
    failed = sum(row["failed_before"] for row in rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"old": args.old, "docker_install": args.docker_install, "with_docker": args.with_docker,
               "cases": len(rows), "failed_before": failed, "rows": rows}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("| case | 0.1 variable(s) | result on 0.1 | first message line | s (boot + playbook) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        names = ", ".join(v or f"({new}: none)" for v, new in zip(row["variables_0_1"], row["variables_0_2"], strict=True))
        result = f"{NO_SUCH}; ran: {row['result']}" if row["reason"] else row["result"]
        cell = row["first_line"][:200].replace("|", "\\|")
        print(f"| {row['case']} | {names} | {result} | {cell} | {row['boot_s']} + {row['playbook_s']} |")
    print(f"\n{failed} of {len(rows)} case(s) would have failed on {args.old}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
