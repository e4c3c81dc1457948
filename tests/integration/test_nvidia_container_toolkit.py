"""The nvidia_container_toolkit role against a real Debian 13 container that runs its own dockerd.

One container (module scope) is created with the docker-in-docker flags of docs/field-notes
(no --privileged). It serves the signed stand-in repository of tests/fixtures/nvidia_apt_repo on its
own loopback (127.0.0.1:8090), like NVIDIA's flat repository with $(ARCH) in the path, and has no GPU.
tests/integration/playbooks/nvidia_toolkit.yml runs the role there over the community.docker.docker
connection. Proven here:

- --check --diff on the fresh container runs clean; a converge then merges into a seeded daemon.json
  (foreign keys stay), a second run and a check-mode run report changed=0, and containers start
  with default-runtime nvidia (the stand-in nvidia-container-runtime execs runc);
- a daemon.json that is not JSON fails the play, names the file and stays byte for byte;
- a candidate that `dockerd --validate` rejects is never installed (and Docker is not restarted);
- a candidate that validates but that dockerd refuses at restart is rolled back;
- nvidia_container_toolkit_version 1.18.0-1 -> 1.17.8-1 -> 1.18.0-1 moves all four packages,
  which stay held;
- the key given as text (air-gapped) or a key URL that does not answer changes nothing;
- preflight: nvidia-smi missing, failing, or answering (canned stand-ins, not NVIDIA's program).

Needs a Docker engine on this machine (the suite runner starts one). Without it the module fails,
unless LLMOPS_ALLOW_NO_DOCKER=1 (then it is skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "nvidia_toolkit.yml"
BUILD_REPO = ROOT / "tests" / "fixtures" / "nvidia_apt_repo" / "build.sh"
BASE_IMAGE_SH = ROOT / "tests" / "harness" / "base-image.sh"
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
IMAGE = os.environ.get("LLMOPS_TEST_IMAGE", "")
NAME = f"tk-nct-{os.getpid()}"
DAEMON_JSON = "/etc/docker/daemon.json"
PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1")
# What the lead's molecule prepare seeds too: keys the role must keep.
FOREIGN = {
    "registry-mirrors": ["https://mirror.internal.example"],
    "log-opts": {"max-size": "10m"},
    "runtimes": {"crun-test": {"path": "/usr/bin/runc"}},
}
DOCKER_FLAGS = [
    "--stop-signal", "SIGRTMIN+3",
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/tmp", "-v", "/var/lib/docker",
]
RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def sh(*argv, check=True, timeout=300, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout, **kw)


def inside(script, check=True, timeout=300):
    """Run a shell script inside the test container."""
    out = sh("docker", "exec", NAME, "sh", "-c", script, check=False, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"in {NAME}: {script!r} exited {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def read_bytes(path):
    out = subprocess.run(["docker", "exec", NAME, "cat", path], capture_output=True, check=True, timeout=60)
    return out.stdout


def write_file(path, data: bytes):
    subprocess.run(["docker", "exec", "-i", NAME, "sh", "-c", f"cat > {path}"], input=data, check=True, timeout=60)


def sha(path):
    return hashlib.sha256(read_bytes(path)).hexdigest()


def docker_started_at():
    return inside("systemctl show docker -p ActiveEnterTimestampMonotonic --value").stdout.strip()


class Play:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        found = RECAP.findall(self.output)
        self.ok, self.changed, self.unreachable, self.failed = (int(x) for x in found[-1]) if found else (0, 0, 0, 0)

    def __repr__(self):
        return f"Play(rc={self.rc}, changed={self.changed}, failed={self.failed})\n{self.output[-6000:]}"


def expect(condition, result, what=""):
    """Assert with the play's whole output (pytest would truncate an assert message)."""
    if not condition:
        pytest.fail(f"{what}\n{result!r}", pytrace=False)


def play(*args, extra=None, timeout=900):
    """Run the test playbook against the container; extra vars go in as JSON (highest precedence)."""
    argv = [str(BIN / "ansible-playbook"), "-i", f"{NAME},", "-c", "community.docker.docker", str(PLAYBOOK), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    return Play(subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout, check=False))


def docker_reachable():
    try:
        return sh("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pick_image():
    if IMAGE and sh("docker", "image", "inspect", IMAGE, check=False).returncode == 0:
        return IMAGE
    # A fresh machine: the harness's own Debian 13 base image (debootstrap, cached by recipe hash).
    return sh(str(BASE_IMAGE_SH), timeout=900).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nvidia_apt_repo")
    start = time.monotonic()
    sh(str(BUILD_REPO), str(out), timeout=120)
    assert time.monotonic() - start < 45, "the fixture repository must build in well under a minute"
    return out


@pytest.fixture(scope="module")
def container(repo_dir):
    if not docker_reachable():
        if os.environ.get("LLMOPS_ALLOW_NO_DOCKER") == "1":
            pytest.skip("no Docker engine reachable and LLMOPS_ALLOW_NO_DOCKER=1")
        pytest.fail("no Docker engine reachable (`docker info` failed); the suite runner starts one "
                    "(tests/harness/docker-engine.sh start). Set LLMOPS_ALLOW_NO_DOCKER=1 to skip instead.")
    image = pick_image()
    sh("docker", "rm", "-f", "-v", NAME, check=False)
    sh("docker", "run", "-d", "--name", NAME, "--hostname", NAME, "--label", "llmops.test=nvidia_container_toolkit",
       *DOCKER_FLAGS, image, "/sbin/init")
    try:
        # Right after `docker run`, systemctl may not reach PID 1 yet: ask again for up to a minute.
        deadline, state = time.monotonic() + 60, ""
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            state = inside("systemctl is-system-running --wait", check=False, timeout=120).stdout.strip()
            if state not in ("running", "degraded"):
                time.sleep(0.5)
        assert state in ("running", "degraded"), f"systemd in {NAME} did not boot: {state!r}"
        # Test-harness quirk, not the role's job: the inner dockerd on IPv4-only interfaces.
        inside("mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\n"
               "Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' > /etc/systemd/system/docker.service.d/10-test.conf")
        inside("mkdir -p /etc/docker")
        write_file(DAEMON_JSON, json.dumps(FOREIGN).encode())
        # The stand-in repository on the container's own loopback.
        sh("docker", "cp", f"{repo_dir}/.", f"{NAME}:/srv/nvidia-apt-repo")
        inside("systemd-run --unit=llmops-test-apt-repo python3 -m http.server --bind 127.0.0.1 "
               "--directory /srv/nvidia-apt-repo 8090")
        inside("for i in $(seq 50); do python3 -c \"import urllib.request as u; "
               "u.urlopen('http://127.0.0.1:8090/gpgkey', timeout=2)\" 2>/dev/null && exit 0; sleep 0.2; done; exit 1")
        yield NAME
    finally:
        sh("docker", "rm", "-f", "-v", NAME, check=False)


@pytest.fixture(scope="module")
def converged(container):
    """--check --diff on the fresh container, then the first real run. Returns both results."""
    check = play("--check", "--diff")
    first = play("--diff")
    expect(first.rc == 0, first)
    return {"check": check, "first": first}


def test_check_mode_on_a_fresh_host_is_clean(converged):
    check = converged["check"]
    expect(check.rc == 0 and check.failed == 0, check)
    # Nothing was installed by check mode.
    expect("Check mode: would install" in check.output, check)


def test_daemon_json_is_merged_and_foreign_keys_stay(converged):
    assert converged["first"].changed > 0
    daemon = json.loads(read_bytes(DAEMON_JSON))
    assert daemon["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "runtimeArgs": []}
    assert daemon["default-runtime"] == "nvidia"
    assert daemon["default-ulimits"]["memlock"]["Name"] == "memlock"
    assert daemon["registry-mirrors"] == FOREIGN["registry-mirrors"]
    assert daemon["log-opts"] == FOREIGN["log-opts"]
    assert daemon["runtimes"]["crun-test"] == FOREIGN["runtimes"]["crun-test"]
    # The previous file was kept as a backup.
    assert inside("ls /etc/docker | grep -c '^daemon.json\\..*~$'").stdout.strip() == "1"


def test_second_run_and_check_mode_change_nothing(converged):
    second = play()
    expect(second.rc == 0 and second.changed == 0, second)
    check = play("--check", "--diff")
    expect(check.rc == 0 and check.changed == 0, check)


def test_docker_uses_the_nvidia_runtime_and_containers_start(converged):
    assert inside("docker info --format '{{.DefaultRuntime}}'").stdout.strip() == "nvidia"
    runtimes = json.loads(inside("docker info --format '{{json .Runtimes}}'").stdout)
    assert {"nvidia", "crun-test", "runc"} <= set(runtimes)
    # A one-binary image made inside the container (no registry here); it runs through the
    # stand-in nvidia-container-runtime, which execs runc.
    inside("docker image inspect tk-true:test >/dev/null 2>&1 || tar -chf - -C / usr/bin/true "
           "usr/lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 | docker import - tk-true:test")
    inside("docker run --rm tk-true:test /usr/bin/true")


def test_packages_pinned_and_held(converged):
    out = inside("dpkg-query -W -f='${Package} ${Version} ${db:Status-Want}\\n' " + " ".join(PACKAGES)).stdout
    assert sorted(out.split("\n")[:-1]) == sorted(f"{p} 1.18.0-1 hold" for p in PACKAGES)
    source = inside("cat /etc/apt/sources.list.d/nvidia-container-toolkit.list").stdout
    assert "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] http://127.0.0.1:8090/stable/deb/$(ARCH) /" in source
    # apt expanded $(ARCH) itself.
    policy = inside("apt-cache policy nvidia-container-toolkit").stdout
    assert "http://127.0.0.1:8090/stable/deb/amd64" in policy, policy


def test_invalid_json_fails_and_the_file_stays_byte_for_byte(converged):
    good = read_bytes(DAEMON_JSON)
    bad = b'{"registry-mirrors": ["https://mirror.internal.example"],\n  "log-opts": {"max-size": "10m"\n'
    write_file(DAEMON_JSON, bad)
    try:
        started = docker_started_at()
        result = play("--tags", "nvidia_container_toolkit_configure")
        expect(result.rc != 0 and result.failed == 1, result)
        expect(f"{DAEMON_JSON} on {NAME} is not valid JSON" in result.output, result)
        assert read_bytes(DAEMON_JSON) == bad
        assert docker_started_at() == started, "Docker was restarted"
    finally:
        write_file(DAEMON_JSON, good)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"default-ulimits": "bogus"}, id="wrong-type"),
        pytest.param({"tk-no-such-option": True}, id="unknown-key"),
    ],
)
def test_candidate_rejected_by_dockerd_is_never_installed(converged, extra):
    before = sha(DAEMON_JSON)
    started = docker_started_at()
    result = play("--tags", "nvidia_container_toolkit_configure", extra={"nvidia_container_toolkit_daemon_json_extra": extra})
    expect(result.rc != 0 and result.failed == 1, result)
    expect("failed to validate" in result.output or "dockerd --validate" in result.output, result)
    assert sha(DAEMON_JSON) == before, "the rejected candidate replaced the live file"
    assert docker_started_at() == started, "Docker was restarted"
    assert inside("systemctl is-active docker").stdout.strip() == "active"


def test_config_that_dockerd_refuses_at_restart_is_rolled_back(converged):
    # "hosts" validates on its own but conflicts with the unit's `-H fd://` flag at start.
    before = read_bytes(DAEMON_JSON)
    result = play(
        "--tags", "nvidia_container_toolkit_configure",
        extra={"nvidia_container_toolkit_daemon_json_extra": {"hosts": ["unix:///run/docker.sock"]}},
    )
    expect(result.rc != 0, result)
    expect("did not come back with the new" in result.output, result)
    assert read_bytes(DAEMON_JSON) == before
    assert "hosts" in json.loads(read_bytes(DAEMON_JSON + ".rejected"))
    assert inside("systemctl is-active docker").stdout.strip() == "active"
    assert inside("docker info --format '{{.DefaultRuntime}}'").stdout.strip() == "nvidia"
    inside(f"rm -f {DAEMON_JSON}.rejected")


def installed_versions():
    out = inside("dpkg-query -W -f='${Package} ${Version} ${db:Status-Want}\\n' " + " ".join(PACKAGES)).stdout
    return {line.split()[0]: tuple(line.split()[1:]) for line in out.splitlines()}


def test_version_switch_moves_all_four_and_keeps_them_held(converged):
    down = play("--tags", "nvidia_container_toolkit_install", extra={"nvidia_container_toolkit_version": "1.17.8-1"})
    expect(down.rc == 0 and down.changed > 0, down)
    assert installed_versions() == {p: ("1.17.8-1", "hold") for p in PACKAGES}
    # Held: a plain upgrade would not move them back.
    upgrade = inside("apt-get -s upgrade").stdout
    assert not any(f"Inst {p} " in upgrade for p in PACKAGES), upgrade
    again = play("--tags", "nvidia_container_toolkit_install", extra={"nvidia_container_toolkit_version": "1.17.8-1"})
    expect(again.rc == 0 and again.changed == 0, again)
    up = play("--tags", "nvidia_container_toolkit_install")
    expect(up.rc == 0 and up.changed > 0, up)
    assert installed_versions() == {p: ("1.18.0-1", "hold") for p in PACKAGES}


def test_key_content_replaces_the_key_url(converged, repo_dir):
    """Air-gapped hosts: the armored key as text, the key URL unreachable; nothing changes."""
    key = (repo_dir / "gpgkey").read_text()
    result = play(
        "--tags", "nvidia_container_toolkit_install",
        extra={"nvidia_container_toolkit_key_content": key, "nvidia_container_toolkit_apt_key_url": "http://127.0.0.1:9/unreachable"},
    )
    expect(result.rc == 0 and result.changed == 0, result)
    expect("127.0.0.1:9" not in result.output, result, "the key URL was used although key content was given")


def test_unreachable_key_url_keeps_the_stored_key(converged):
    result = play("--tags", "nvidia_container_toolkit_install", extra={"nvidia_container_toolkit_apt_key_url": "http://127.0.0.1:9/gpgkey"})
    expect(result.rc == 0 and result.changed == 0, result)
    expect("keeping the key already in" in result.output, result)


# Canned stand-ins for nvidia-smi (shell scripts written into the container; not NVIDIA's program).
FAKE_SMI = {
    "h100": 'echo "NVIDIA H100 80GB HBM3, 580.159.04, 81559"',
    "h200x2": 'echo "NVIDIA H200, 580.159.04, 143771"; echo "NVIDIA H200, 580.159.04, 143771"',
    "no_driver": "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    'Make sure that the latest NVIDIA driver is installed and running."; exit 9',
    "no_devices": 'echo "No devices were found"; exit 6',
    "malformed": 'echo "NVIDIA H100 80GB HBM3, 81559"',
}


@pytest.fixture(scope="module")
def fake_smi(container):
    for name, body in FAKE_SMI.items():
        write_file(f"/usr/local/bin/tk-smi-{name}", f"#!/bin/sh\n# TEST STAND-IN, not NVIDIA's nvidia-smi\n{body}\n".encode())
        inside(f"chmod 0755 /usr/local/bin/tk-smi-{name}")
    return lambda name: f"/usr/local/bin/tk-smi-{name}"


def preflight(smi):
    return play("--tags", "nvidia_container_toolkit_preflight",
                extra={"nvidia_container_toolkit_require_gpu": True, "nvidia_container_toolkit_nvidia_smi": smi})


@pytest.mark.parametrize(
    ("scenario", "count", "label"),
    [("h100", 1, "NVIDIA H100 80GB HBM3 (81559 MiB)"), ("h200x2", 2, "NVIDIA H200 (143771 MiB)")],
)
def test_preflight_reports_the_gpus(fake_smi, scenario, count, label):
    result = preflight(fake_smi(scenario))
    expect(result.rc == 0 and result.changed == 0, result)
    expect(f"gpu_count: {count}" in result.output, result)
    expect("driver_version: 580.159.04" in result.output, result)
    expect(result.output.count(f"- {label}") == count, result)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("missing", "nvidia-smi was not found"),
        ("no_driver", "is installed but failed (exit 9)"),
        ("no_devices", "is installed but failed (exit 6)"),
        ("malformed", "did not list a GPU with a driver version"),
    ],
)
def test_preflight_fails_with_a_fix(fake_smi, scenario, message):
    smi = "/usr/local/bin/tk-no-such-nvidia-smi" if scenario == "missing" else fake_smi(scenario)
    result = preflight(smi)
    expect(result.rc != 0 and result.failed == 1, result)
    expect(message in re.sub(r"\s+", " ", result.output), result)
    expect("nvidia_container_toolkit_require_gpu" in result.output or scenario != "missing", result)


def test_preflight_alone_touches_nothing(fake_smi):
    before = sha(DAEMON_JSON)
    result = preflight(fake_smi("h100"))
    expect(result.rc == 0 and result.changed == 0, result)
    expect("Docker Engine and Compose v2" not in result.output, result)
    assert sha(DAEMON_JSON) == before
