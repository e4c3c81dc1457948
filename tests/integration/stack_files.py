"""Render the stack roles' files with the real playbook, and check them with the real tools.

Used by test_stack_render.py (single hosts, one variant each) and test_stack_fleet.py (a fleet).
tests/integration/playbooks/render_stack.yml imports playbooks/validate.yml and runs the roles
inference_engine, moderation, gateway and monitoring with ``gpu_stack_start: false`` on the
controller (``-c local``); every host of an inventory renders into its own scratch root, in one
ansible-playbook run (the hosts are rendered side by side).

The real tools:

* Compose v2 (``docker compose ... config -q``): the build machine has no Compose v2 plugin, so
  :func:`compose_env` gives the docker CLI one that runs Debian 13's Compose v2 from the
  llmops-test/compose image (tests/harness/images/compose), with the paths it names mounted
  read-only. The roles' own check (``gpu_stack_validate: true``) calls it the same way.
* the pinned LiteLLM (``--validate_config``) from the virtualenv of tests/harness/litellm_venv.sh;
* promtool 3.x (tests/harness/prometheus3.sh), iptables-restore ``--test`` and systemd-analyze ``verify``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "render_stack.yml"
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
# What every scratch host sets: nothing is started, no host prerequisites (no systemd here).
SCRATCH = {"gpu_stack_start": False, "gpu_stack_validate": False, "gpu_stack_host_checks": False,
           "inference_engine_gpu_check": False}

COMPOSE_PLUGIN = """#!/bin/sh
# TEST SHIM (written by tests/integration/stack_files.py): `docker compose ARGS` runs Compose v2 from
# $LLMOPS_COMPOSE_IMAGE with every absolute path of ARGS (or its folder) and $LLMOPS_COMPOSE_MOUNTS
# mounted read-only at the same place, and no network.
if [ "${1:-}" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion":"0.1.0","Vendor":"llmops.gpu_stack tests","Version":"v2","ShortDescription":"Compose v2 in a container"}'
  exit 0
fi
shift
mounts=""
for arg in "$@" ${LLMOPS_COMPOSE_MOUNTS:-}; do
  case "$arg" in
    /*) if [ -d "$arg" ]; then dir=$arg; else dir=$(dirname "$arg"); fi
        mounts="$mounts -v $dir:$dir:ro" ;;
  esac
done
# shellcheck disable=SC2086  # one mount option per word
exec docker run --rm --network none $mounts "$LLMOPS_COMPOSE_IMAGE" "$@"
"""


def run(args, timeout=900, check=True, env=None, cwd=ROOT):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    return proc


def write_inventory(path: pathlib.Path, hosts: dict, *, groups: dict | None = None, common: dict | None = None) -> pathlib.Path:
    """An inventory of scratch hosts: ``hosts`` maps a host to its variables; ``groups`` maps a group to
    its hosts (default: every host in gpu_hosts, all-in-one)."""
    groups = groups or {"gpu_hosts": list(hosts)}
    children = {group: {"hosts": {host: None for host in members}} for group, members in groups.items()}
    tree = {"all": {"vars": {**LOCAL, **SCRATCH, **(common or {})}, "hosts": hosts, "children": children}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


class Run:
    """One ansible-playbook run of render_stack.yml, started at once; :meth:`result` waits for it.
    Runs that do not depend on each other go side by side (each keeps about one core busy)."""

    def __init__(self, inventory, args, *, env_extra=None, check=True, json_output=True, timeout=1500, playbook=PLAYBOOK):
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                   **(env_extra or {}))
        if json_output:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        self.args = [str(a) for a in [BIN / "ansible-playbook", "-i", inventory, playbook, *args]]
        self.check, self.json_output, self.timeout = check, json_output, timeout
        self.name = pathlib.Path(str(playbook)).name
        self.out, self.err = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
        self.popen = subprocess.Popen(self.args, stdout=self.out, stderr=self.err, text=True, env=env, cwd=ROOT)
        self.proc = None

    def result(self) -> subprocess.CompletedProcess:
        """The finished process; with json_output ``.result`` is ansible.posix.json's document."""
        if self.proc is None:
            try:
                returncode = self.popen.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                raise
            self.out.seek(0)
            self.err.seek(0)
            proc = subprocess.CompletedProcess(self.args, returncode, self.out.read(), self.err.read())
            proc.result = None
            if self.json_output:
                try:
                    proc.result = json.loads(proc.stdout)
                except json.JSONDecodeError:
                    proc.result = None
            self.proc = proc
        proc = self.proc
        if self.check:
            assert proc.returncode == 0 and (proc.result is not None or not self.json_output), (
                f"{self.name} failed ({proc.returncode}):\n{failures(proc) if proc.result else proc.stdout[-8000:]}\n"
                f"{proc.stderr[-3000:]}")
        return proc


def playbook(inventory, *args, background=False, **kwargs):
    """ansible-playbook render_stack.yml (or ``playbook=``): the finished process, or with background the :class:`Run`."""
    started = Run(inventory, args, **kwargs)
    return started if background else started.result()


def host_results(proc, host):
    """Every task result of ``host`` in the run, in order: (task name, result)."""
    out = []
    for play in proc.result["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host)
            if result is not None:
                out.append((task["task"]["name"], result))
    return out


def messages(proc, host) -> str:
    """The messages of ``host``'s task results (and of their loop items), one per line."""
    lines = []
    for _name, result in host_results(proc, host):
        for item in [result, *result.get("results", [])]:
            if isinstance(item, dict) and item.get("msg"):
                lines.append(str(item["msg"]))
    return "\n".join(lines)


def failures(proc) -> str:
    lines = []
    for play in proc.result["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") or result.get("unreachable"):
                    lines.append(f"{host}: {task['task']['name']}: {str(result.get('msg'))[:3000]}")
    return "\n".join(lines) or "no failed task"


def stats(proc) -> dict:
    return proc.result["stats"]


def load_yaml(path: pathlib.Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def env_file(path: pathlib.Path) -> dict:
    """A secrets/<name>.env file as {name: value} (values are single-quoted)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            assert value.startswith("'") and value.endswith("'"), line
            out[name] = value[1:-1]
    return out


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- the real tools

def compose_image() -> str:
    base = os.environ.get("BASE_IMAGE") or run([HARNESS / "base-image.sh"]).stdout.strip().splitlines()[-1]
    return run([HARNESS / "images" / "build.sh", "compose"], env=dict(os.environ, BASE_IMAGE=base)).stdout.strip().splitlines()[-1]


def compose_env(tmp: pathlib.Path, image: str, mounts=()) -> dict:
    """Environment for the docker CLI (and for ansible-playbook) in which `docker compose` is Compose v2."""
    plugins = tmp / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    plugin = plugins / "docker-compose"
    plugin.write_text(COMPOSE_PLUGIN, encoding="utf-8")
    plugin.chmod(0o755)
    return {"DOCKER_CONFIG": str(tmp / "docker-config"), "LLMOPS_COMPOSE_IMAGE": image,
            "LLMOPS_COMPOSE_MOUNTS": " ".join(str(m) for m in mounts)}


def compose_config(stack: pathlib.Path, env: dict, *, mounts=()) -> None:
    """`docker compose config -q` of the host's project, as the roles' check runs it."""
    environ = dict(os.environ, **env)
    environ["LLMOPS_COMPOSE_MOUNTS"] = " ".join([env.get("LLMOPS_COMPOSE_MOUNTS", ""), *map(str, mounts)]).strip()
    run(["docker", "compose", "--project-directory", stack, "-f", stack / "compose.yaml", "config", "-q"], env=environ)


def promtool() -> str:
    """promtool 3.x (tests/harness/prometheus3.sh), the major version of the role's default image."""
    return run([HARNESS / "prometheus3.sh"], timeout=600).stdout.strip().splitlines()[-1] + "/promtool"


def promtool_check(tool: str, stack: pathlib.Path) -> str:
    prom = stack / "config" / "prometheus"
    run([tool, "check", "config", "--syntax-only", prom / "prometheus.yml"])
    return run([tool, "check", "rules", prom / "rules" / "llm_stack.yml"]).stdout


def litellm_venv() -> pathlib.Path:
    return pathlib.Path(run([HARNESS / "litellm_venv.sh"], timeout=1800).stdout.strip().splitlines()[-1])


def litellm_validate(venv: pathlib.Path, stack: pathlib.Path, workdir: pathlib.Path, env: dict, *, check=True):
    """The pinned LiteLLM's --validate_config on the host's litellm.yaml, with the guardrail files
    next to it as in the container (/app), where LiteLLM imports them; ``env``: the secrets'
    environment variables (the values of secrets/litellm-proxy.env)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "litellm.yaml"
    shutil.copy(stack / "config" / "litellm.yaml", config)
    for guard_file in (stack / "config" / "guardrails").glob("*.py"):
        shutil.copy(guard_file, workdir / guard_file.name)
    environ = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", **env)
    return run([venv / "bin" / "litellm", "--config", config, "--validate_config"], env=environ, cwd=workdir, timeout=300, check=check)


def iptables_restore_test(rules: pathlib.Path) -> None:
    """iptables-restore parses the rules and builds them without committing anything (--test)."""
    run(["iptables-restore", "--test", "-w", "--noflush", rules])


def systemd_verify(unit: pathlib.Path) -> None:
    run(["systemd-analyze", "verify", unit])
