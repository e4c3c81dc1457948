"""The container runtime roles, docker_engine and nvidia_container_toolkit, against a real Debian 13
container that runs its own dockerd.

One container (module scope) is created with the docker-in-docker flags of the field notes
(no --privileged, no CAP_SYS_RESOURCE). It serves the signed stand-in repository of
tests/fixtures/nvidia_apt_repo on its own loopback (127.0.0.1:8090), laid out like NVIDIA's flat
repository with $(ARCH) in the path, and has no GPU. tests/integration/playbooks/nvidia_toolkit.yml runs
nvidia_container_toolkit (docker_engine comes with it as its dependency), playbooks/docker_engine.yml
runs docker_engine alone, both over the community.docker.docker connection. Proven here:

- --check --diff on the fresh container runs clean; a converge installs Docker (docker_engine) and the
  toolkit, merges into a seeded daemon.json (foreign keys stay, each write keeps a backup), a second
  run and a check-mode run report changed=0, and containers start with default-runtime nvidia (the
  stand-in nvidia-container-runtime execs runc);
- docker_engine alone changes nothing on that host and keeps the toolkit's keys; the site's settings
  (docker_engine_daemon_options) are merged, live after one restart, and both roles agree on them;
- a daemon.json that is not JSON fails either role's configure phase, and stays byte for byte;
- a candidate that `dockerd --validate` rejects is never installed (and Docker is not restarted);
- a candidate that validates but that dockerd refuses at restart is rolled back, also where there was
  no daemon.json before (the new one is removed);
- at the toolkit's defaults, daemon.json holds default-runtime nvidia and memlock -1/-1 (asserted in the
  file and in `docker info`; no container is started with it, since the sandbox lacks CAP_SYS_RESOURCE);
- switched off, default-runtime and memlock are removed only where they hold the role's own values;
- nvidia_container_toolkit_version 1.18.2-1 -> 1.18.0-1 -> 1.18.2-1 moves all four packages, which
  stay held; the repository is a deb822 source whose $(ARCH) apt expands;
- the key given as text (air-gapped) or a key URL that does not answer changes nothing;
- preflight: nvidia-smi missing, failing, or answering, through the strict fake of
  tests/fixtures/fake_nvidia_smi (it refuses any query but the one nvidia_gpu_info sends).

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
PLAYBOOKS = ROOT / "tests" / "integration" / "playbooks"
TOOLKIT = PLAYBOOKS / "nvidia_toolkit.yml"
DOCKER_ENGINE = PLAYBOOKS / "docker_engine.yml"
BUILD_REPO = ROOT / "tests" / "fixtures" / "nvidia_apt_repo" / "build.sh"
FAKE_SMI = ROOT / "tests" / "fixtures" / "fake_nvidia_smi" / "nvidia-smi"
BASE_IMAGE_SH = ROOT / "tests" / "harness" / "base-image.sh"
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
IMAGE = os.environ.get("LLMOPS_TEST_IMAGE", "")
NAME = f"tk-nct-{os.getpid()}"
DAEMON_JSON = "/etc/docker/daemon.json"
PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1")
DEFAULT_VERSION = "1.18.2-1"
SEED_VERSION = "1.18.0-1"
NVIDIA = {"path": "nvidia-container-runtime", "runtimeArgs": []}
UNLIMITED = {"Name": "memlock", "Hard": -1, "Soft": -1}
# The test playbooks' docker_engine_daemon_options: a memlock limit any host allows (see the playbooks).
LOW_MEMLOCK = {"Name": "memlock", "Hard": 65536, "Soft": 65536}
SITE = {"default-ulimits": {"memlock": LOW_MEMLOCK}}
# What the lead's molecule prepare seeds too: keys the roles must keep.
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
]  # fmt: skip
RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
SMI_LOG = "/tmp/tk-smi-calls.log"
# The one query the strict fake answers (nvidia_gpu_info's).
SMI_QUERY = "--query-gpu=index,name,uuid,memory.total,memory.used,driver_version,mig.mode.current,pci.bus_id --format=csv,noheader,nounits"


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


def exists(path):
    return inside(f"test -e {path}", check=False).returncode == 0


def write_file(path, data: bytes):
    subprocess.run(["docker", "exec", "-i", NAME, "sh", "-c", f"cat > {path}"], input=data, check=True, timeout=60)


def sha(path):
    return hashlib.sha256(read_bytes(path)).hexdigest()


def daemon_json():
    return json.loads(read_bytes(DAEMON_JSON))


def docker_started_at():
    return inside("systemctl show docker -p ActiveEnterTimestampMonotonic --value").stdout.strip()


def docker_info(field):
    return inside(f"docker info --format '{{{{{field}}}}}'").stdout.strip()


def put_daemon_json(data):
    """Give the container's Docker this daemon.json (bytes, a dict, or None for no file) and restart it with it."""
    if data is None:
        inside(f"rm -f {DAEMON_JSON}")
    else:
        write_file(DAEMON_JSON, data if isinstance(data, bytes) else json.dumps(data).encode())
    inside("systemctl reset-failed docker.service; systemctl restart docker")
    inside("for i in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1", timeout=120)


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


def play(*args, extra=None, playbook=TOOLKIT, timeout=900):
    """Run a test playbook against the container; extra vars go in as JSON (highest precedence)."""
    argv = [str(BIN / "ansible-playbook"), "-i", f"{NAME},", "-c", "community.docker.docker", str(playbook), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    return Play(subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout, check=False))


def flat(text):
    return re.sub(r"\s+", " ", text)


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
        # Test-harness quirk, not the roles' job: the inner dockerd on IPv4-only interfaces.
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


@pytest.fixture
def configured(converged):
    """The converged daemon.json; put back (and Docker restarted with it) after the test if the test changed it."""
    before = read_bytes(DAEMON_JSON)
    yield before
    if not exists(DAEMON_JSON) or read_bytes(DAEMON_JSON) != before:
        put_daemon_json(before)
    inside(f"rm -f {DAEMON_JSON}.rejected")


# ---------------------------------------------------------------- converge


def test_check_mode_on_a_fresh_host_is_clean(converged):
    check = converged["check"]
    expect(check.rc == 0 and check.failed == 0, check)
    # Nothing was installed by check mode; both roles said what they would install.
    expect("Check mode: would install docker.io, docker-compose, python3-requests" in flat(check.output), check)
    expect(f"Check mode: would install nvidia-container-toolkit, nvidia-container-toolkit-base, libnvidia-container-tools, "
           f"libnvidia-container1 at {DEFAULT_VERSION}" in flat(check.output), check)


def test_daemon_json_is_merged_and_foreign_keys_stay(converged):
    assert converged["first"].changed > 0
    daemon = daemon_json()
    assert daemon == {
        "registry-mirrors": FOREIGN["registry-mirrors"],
        "log-opts": FOREIGN["log-opts"],
        "runtimes": {"crun-test": FOREIGN["runtimes"]["crun-test"], "nvidia": NVIDIA},
        "default-runtime": "nvidia",
        # The site's limit (docker_engine_daemon_options) wins over the toolkit's -1.
        "default-ulimits": {"memlock": LOW_MEMLOCK},
    }
    # Each write kept a backup: docker_engine's (the seeded file, byte for byte) and the toolkit's (the file
    # with the site's memlock that docker_engine wrote).
    backups = inside("ls /etc/docker | grep '^daemon.json\\..*~$'").stdout.split()
    contents = sorted(read_bytes(f"/etc/docker/{name}") for name in backups)
    assert len(contents) == 2, backups
    assert json.dumps(FOREIGN).encode() in contents
    assert {json.dumps(json.loads(c), sort_keys=True) for c in contents} == {
        json.dumps(FOREIGN, sort_keys=True), json.dumps(dict(FOREIGN, **SITE), sort_keys=True)}


def test_second_run_and_check_mode_change_nothing(converged):
    second = play()
    expect(second.rc == 0 and second.changed == 0, second)
    check = play("--check", "--diff")
    expect(check.rc == 0 and check.changed == 0, check)


def test_docker_uses_the_nvidia_runtime_and_containers_start(converged):
    assert docker_info(".DefaultRuntime") == "nvidia"
    runtimes = json.loads(docker_info("json .Runtimes"))
    assert {"nvidia", "crun-test", "runc"} <= set(runtimes)
    # A one-binary image made inside the container (no registry here); it runs through the
    # stand-in nvidia-container-runtime, which execs runc.
    inside("docker image inspect tk-true:test >/dev/null 2>&1 || tar -chf - -C / usr/bin/true "
           "usr/lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 | docker import - tk-true:test")
    inside("docker run --rm tk-true:test /usr/bin/true")


def test_packages_pinned_and_held_from_a_deb822_source(converged):
    out = inside("dpkg-query -W -f='${Package} ${Version} ${db:Status-Want}\\n' " + " ".join(PACKAGES)).stdout
    assert sorted(out.split("\n")[:-1]) == sorted(f"{p} {DEFAULT_VERSION} hold" for p in PACKAGES)
    source = inside("cat /etc/apt/sources.list.d/nvidia-container-toolkit.sources").stdout
    assert sorted(source.strip().splitlines()) == sorted([
        "X-Repolib-Name: nvidia-container-toolkit",
        "Types: deb",
        "URIs: http://127.0.0.1:8090/stable/deb/$(ARCH)",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc",
    ]), source
    assert read_bytes("/etc/apt/keyrings/nvidia-container-toolkit.asc").startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # One source for the repository: no one-line list of older guides (or of 0.1.0) beside it.
    assert inside("grep -rl 127.0.0.1:8090 /etc/apt/sources.list.d").stdout.split() == ["/etc/apt/sources.list.d/nvidia-container-toolkit.sources"]
    # apt expanded $(ARCH) itself.
    policy = inside("apt-cache policy nvidia-container-toolkit").stdout
    assert "http://127.0.0.1:8090/stable/deb/amd64" in policy, policy


# ---------------------------------------------------------------- docker_engine


def test_docker_engine_alone_changes_nothing_and_keeps_the_toolkit_keys(converged):
    before = sha(DAEMON_JSON)
    again = play(playbook=DOCKER_ENGINE)
    expect(again.rc == 0 and again.changed == 0, again)
    check = play("--check", "--diff", playbook=DOCKER_ENGINE)
    expect(check.rc == 0 and check.changed == 0, check)
    assert sha(DAEMON_JSON) == before
    expect("Compose 2." in again.output, again)
    # community.docker's modules need requests on the host.
    assert inside("dpkg-query -W -f='${db:Status-Status}' python3-requests").stdout == "installed"
    inside("python3 -c 'import requests'")


def test_site_options_are_merged_live_and_both_roles_agree(configured):
    site = dict(SITE, labels=["llmops-test=site-options"])
    started = docker_started_at()
    result = play("--diff", playbook=DOCKER_ENGINE, extra={"docker_engine_daemon_options": site})
    expect(result.rc == 0 and result.changed == 1, result)
    daemon = daemon_json()
    assert daemon["labels"] == ["llmops-test=site-options"]
    assert daemon["runtimes"]["nvidia"] == NVIDIA and daemon["default-runtime"] == "nvidia"
    # Live: Docker was restarted once and reports the new setting.
    assert docker_started_at() != started
    assert json.loads(docker_info("json .Labels")) == ["llmops-test=site-options"]
    # The toolkit merges the same site settings last: it changes nothing, and neither does docker_engine after it.
    toolkit = play("--tags", "nvidia_container_toolkit_configure", extra={"docker_engine_daemon_options": site})
    expect(toolkit.rc == 0 and toolkit.changed == 0, toolkit)
    engine = play(playbook=DOCKER_ENGINE, extra={"docker_engine_daemon_options": site})
    expect(engine.rc == 0 and engine.changed == 0, engine)


# ---------------------------------------------------------------- the daemon.json module through both roles


@pytest.mark.parametrize("tag", ["docker_engine_configure", "nvidia_container_toolkit_configure"])
def test_invalid_json_fails_and_the_file_stays_byte_for_byte(configured, tag):
    bad = b'{"registry-mirrors": ["https://mirror.internal.example"],\n  "log-opts": {"max-size": "10m"\n'
    write_file(DAEMON_JSON, bad)
    started = docker_started_at()
    result = play("--tags", tag)
    expect(result.rc != 0 and result.failed == 1, result)
    expect(f"{DAEMON_JSON} is not valid JSON" in result.output, result)
    assert read_bytes(DAEMON_JSON) == bad
    assert docker_started_at() == started, "Docker was restarted"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"default-ulimits": "bogus"}, id="wrong-type"),
        pytest.param({"tk-no-such-option": True}, id="unknown-key"),
    ],
)
@pytest.mark.parametrize("tag", ["docker_engine_configure", "nvidia_container_toolkit_configure"])
def test_candidate_rejected_by_dockerd_is_never_installed(configured, tag, extra):
    before = sha(DAEMON_JSON)
    started = docker_started_at()
    result = play("--tags", tag, extra={"docker_engine_daemon_options": extra})
    expect(result.rc != 0 and result.failed == 1, result)
    expect(f"dockerd --validate refused the new {DAEMON_JSON} (rc=1)" in flat(result.output), result)
    assert sha(DAEMON_JSON) == before, "the rejected candidate replaced the live file"
    assert docker_started_at() == started, "Docker was restarted"
    assert inside("systemctl is-active docker").stdout.strip() == "active"


def test_config_that_dockerd_refuses_at_restart_is_rolled_back(configured):
    # "hosts" validates on its own but conflicts with the unit's `-H fd://` flag at start.
    result = play("--tags", "nvidia_container_toolkit_configure", extra={"docker_engine_daemon_options": {"hosts": ["unix:///run/docker.sock"]}})
    expect(result.rc != 0, result)
    expect(f"Docker did not come back with the new {DAEMON_JSON}" in flat(result.output), result)
    expect(f"The previous {DAEMON_JSON} was put back and Docker restarted with it" in flat(result.output), result)
    assert read_bytes(DAEMON_JSON) == configured
    assert "hosts" in json.loads(read_bytes(DAEMON_JSON + ".rejected"))
    assert inside("systemctl is-active docker").stdout.strip() == "active"
    assert docker_info(".DefaultRuntime") == "nvidia"


def test_rollback_removes_the_file_where_there_was_none(configured):
    put_daemon_json(None)
    result = play("--tags", "docker_engine_configure", extra={"docker_engine_daemon_options": {"hosts": ["unix:///run/docker.sock"]}})
    expect(result.rc != 0, result)
    expect(f"There was no {DAEMON_JSON} before, so the new one was removed and Docker restarted with it" in flat(result.output), result)
    assert not exists(DAEMON_JSON), "the refused daemon.json stayed although there was none before"
    assert json.loads(read_bytes(DAEMON_JSON + ".rejected")) == {"hosts": ["unix:///run/docker.sock"]}
    assert inside("systemctl is-active docker").stdout.strip() == "active"
    assert docker_info(".DefaultRuntime") == "runc", "Docker does not run without daemon.json"


# ---------------------------------------------------------------- the toolkit's keys at their defaults and switched off


def test_toolkit_defaults_are_unlimited_memlock_and_the_nvidia_default_runtime(configured):
    # No site settings: only the role's own keys at its defaults (the test playbook sets neither switch).
    result = play("--tags", "nvidia_container_toolkit_configure", extra={"docker_engine_daemon_options": {}})
    expect(result.rc == 0 and result.changed == 1, result)
    daemon = daemon_json()
    assert daemon["default-ulimits"] == {"memlock": UNLIMITED}
    assert '"Hard": -1,' in read_bytes(DAEMON_JSON).decode(), "memlock is not the integer -1"
    assert daemon["default-runtime"] == "nvidia" and daemon["runtimes"]["nvidia"] == NVIDIA
    # dockerd takes it (only the containers could not start here, without CAP_SYS_RESOURCE).
    assert inside("systemctl is-active docker").stdout.strip() == "active"
    assert docker_info(".DefaultRuntime") == "nvidia"
    again = play("--tags", "nvidia_container_toolkit_configure", extra={"docker_engine_daemon_options": {}})
    expect(again.rc == 0 and again.changed == 0, again)


SWITCHED_OFF = {
    "docker_engine_daemon_options": {},
    "nvidia_container_toolkit_set_default_runtime": False,
    "nvidia_container_toolkit_memlock_unlimited": False,
}
NOFILE = {"Name": "nofile", "Hard": 65536, "Soft": 65536}


def test_switched_off_keys_that_hold_the_roles_values_are_removed(configured):
    put_daemon_json(dict(FOREIGN, **{
        "runtimes": {"crun-test": FOREIGN["runtimes"]["crun-test"], "nvidia": NVIDIA},
        "default-runtime": "nvidia",
        "default-ulimits": {"memlock": UNLIMITED, "nofile": NOFILE},
    }))
    result = play("--tags", "nvidia_container_toolkit_configure", extra=SWITCHED_OFF)
    expect(result.rc == 0 and result.changed == 1, result)
    daemon = daemon_json()
    assert "default-runtime" not in daemon
    assert daemon["default-ulimits"] == {"nofile": NOFILE}, "memlock stayed, or the other ulimit went with it"
    assert daemon["runtimes"]["nvidia"] == NVIDIA, "the runtime itself has no switch and must stay"
    assert daemon["registry-mirrors"] == FOREIGN["registry-mirrors"] and daemon["log-opts"] == FOREIGN["log-opts"]
    assert docker_info(".DefaultRuntime") == "runc"
    # memlock was the only ulimit: default-ulimits goes too.
    put_daemon_json(dict(daemon, **{"default-ulimits": {"memlock": UNLIMITED}}))
    result = play("--tags", "nvidia_container_toolkit_configure", extra=SWITCHED_OFF)
    expect(result.rc == 0 and result.changed == 1, result)
    assert "default-ulimits" not in daemon_json()


def test_switched_off_keys_that_hold_the_sites_values_stay(configured):
    site = dict(FOREIGN, **{
        "runtimes": {"crun-test": FOREIGN["runtimes"]["crun-test"], "nvidia": NVIDIA},
        "default-runtime": "crun-test",
        "default-ulimits": {"memlock": LOW_MEMLOCK},
    })
    put_daemon_json(site)
    before = sha(DAEMON_JSON)
    result = play("--tags", "nvidia_container_toolkit_configure", extra=SWITCHED_OFF)
    expect(result.rc == 0 and result.changed == 0, result)
    assert sha(DAEMON_JSON) == before
    assert docker_info(".DefaultRuntime") == "crun-test"


# ---------------------------------------------------------------- packages and the repository key


def installed_versions():
    out = inside("dpkg-query -W -f='${Package} ${Version} ${db:Status-Want}\\n' " + " ".join(PACKAGES)).stdout
    return {line.split()[0]: tuple(line.split()[1:]) for line in out.splitlines()}


def test_version_switch_moves_all_four_and_keeps_them_held(converged):
    down = play("--tags", "nvidia_container_toolkit_install", extra={"nvidia_container_toolkit_version": SEED_VERSION})
    expect(down.rc == 0 and down.changed > 0, down)
    assert installed_versions() == {p: (SEED_VERSION, "hold") for p in PACKAGES}
    # Held: a plain upgrade would not move them back up to 1.18.2-1.
    upgrade = inside("apt-get -s upgrade").stdout
    assert not any(f"Inst {p} " in upgrade for p in PACKAGES), upgrade
    again = play("--tags", "nvidia_container_toolkit_install", extra={"nvidia_container_toolkit_version": SEED_VERSION})
    expect(again.rc == 0 and again.changed == 0, again)
    up = play("--tags", "nvidia_container_toolkit_install")
    expect(up.rc == 0 and up.changed > 0, up)
    assert installed_versions() == {p: (DEFAULT_VERSION, "hold") for p in PACKAGES}


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
    expect("keeping the key already in /etc/apt/keyrings/nvidia-container-toolkit.asc" in flat(result.output), result)


# ---------------------------------------------------------------- preflight through the strict fake nvidia-smi


@pytest.fixture(scope="module")
def fake_smi(container):
    """tests/fixtures/fake_nvidia_smi in the container (NOT NVIDIA's program), one wrapper per scenario;
    every call is logged in SMI_LOG."""
    inside("mkdir -p /opt/llmops-test/fake-nvidia-smi")
    write_file("/opt/llmops-test/fake-nvidia-smi/nvidia-smi", FAKE_SMI.read_bytes())
    inside("chmod 0755 /opt/llmops-test/fake-nvidia-smi/nvidia-smi")
    for scenario in ("h100", "h200x2", "no_driver", "no_devices", "malformed", "not_a_number"):
        write_file(f"/usr/local/bin/tk-smi-{scenario}", (
            "#!/bin/sh\n# TEST STAND-IN: tests/fixtures/fake_nvidia_smi, not NVIDIA's nvidia-smi\n"
            f"FAKE_NVIDIA_SMI_SCENARIO={scenario} FAKE_NVIDIA_SMI_LOG={SMI_LOG} "
            'exec /opt/llmops-test/fake-nvidia-smi/nvidia-smi "$@"\n'
        ).encode())
        inside(f"chmod 0755 /usr/local/bin/tk-smi-{scenario}")
    return lambda scenario: f"/usr/local/bin/tk-smi-{scenario}"


def preflight(smi):
    inside(f"rm -f {SMI_LOG}")
    return play("--tags", "nvidia_container_toolkit_preflight",
                extra={"nvidia_container_toolkit_require_gpu": True, "nvidia_container_toolkit_nvidia_smi": smi})


def test_the_fake_refuses_any_other_query(fake_smi):
    """Control: the query of the toolkit's 0.1.0 preflight gets exit 98 from the strict fake."""
    out = inside(f"{fake_smi('h100')} --query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits", check=False)
    assert out.returncode == 98, out


@pytest.mark.parametrize(
    ("scenario", "as_name", "count", "label"),
    [
        ("h100", False, 1, "NVIDIA H100 80GB HBM3 (81559 MiB)"),
        # A command name is looked up on PATH (the wrappers are in /usr/local/bin).
        ("h200x2", True, 2, "NVIDIA H200 (143771 MiB)"),
    ],
)
def test_preflight_reports_the_gpus(fake_smi, scenario, as_name, count, label):
    smi = fake_smi(scenario)
    result = preflight(smi.rsplit("/", 1)[-1] if as_name else smi)
    expect(result.rc == 0 and result.changed == 0, result)
    expect(f"gpu_count: {count}" in result.output, result)
    expect("driver_version: 580.159.04" in result.output, result)
    expect(re.search(r"cuda_version: '?13\.0", result.output) is not None, result)
    expect(result.output.count(f"- {label}") == count, result)
    calls = inside(f"cat {SMI_LOG}").stdout.splitlines()
    assert calls[0] == SMI_QUERY, calls


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("missing", "nvidia-smi was not found"),
        ("no_driver", "is installed but did not list a GPU: nvidia-smi cannot reach the NVIDIA driver (rc=9)"),
        ("no_devices", "is installed but did not list a GPU: nvidia-smi found no GPU: No devices were found"),
        ("malformed", "answered but did not list a GPU with a driver version: cannot parse nvidia-smi output"),
        ("not_a_number", "answered but did not list a GPU with a driver version: cannot parse nvidia-smi output"),
    ],
)
def test_preflight_fails_with_a_fix(fake_smi, scenario, message):
    smi = "/usr/local/bin/tk-no-such-nvidia-smi" if scenario == "missing" else fake_smi(scenario)
    result = preflight(smi)
    expect(result.rc != 0 and result.failed == 1, result)
    expect(message in flat(result.output), result)
    expect("nvidia_container_toolkit_require_gpu" in result.output or scenario != "missing", result)


def test_preflight_alone_touches_nothing(fake_smi):
    before = sha(DAEMON_JSON)
    result = preflight(fake_smi("h100"))
    expect(result.rc == 0 and result.changed == 0, result)
    # Only argument checks of docker_engine run (they carry the tag `always`); none of its phases.
    expect(not re.search(r"TASK \[llmops\.gpu_stack\.docker_engine : (?!Validating arguments)", result.output), result)
    assert sha(DAEMON_JSON) == before
