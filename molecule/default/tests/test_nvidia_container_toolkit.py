"""nvidia_container_toolkit and docker_engine on the molecule instance (pytest-testinfra `host` fixture).

The instance has no GPU: the role installed the signed stand-in repository served on its loopback
(prepare_nvidia_repo.yml, tests/fixtures/nvidia_apt_repo: NOT NVIDIA software). prepare.yml seeded
/etc/docker/daemon.json with foreign keys that the roles' merge must keep.
"""

import json

import pytest

PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1")
VERSION = "1.18.2-1"
KEY = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
DAEMON_JSON = "/etc/docker/daemon.json"
# What the lead's prepare seeds: the role must keep all of it.
FOREIGN = {
    "registry-mirrors": ["https://mirror.internal.example"],
    "log-opts": {"max-size": "10m"},
    "runtimes": {"crun-test": {"path": "/usr/bin/runc"}},
}


@pytest.fixture(scope="module")
def daemon_json(host):
    return json.loads(host.file(DAEMON_JSON).content_string)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_pinned_and_held(host, inventory, name):
    version = str(inventory.get("nvidia_container_toolkit_version", VERSION))
    pkg = host.package(name)
    assert pkg.is_installed
    assert pkg.version == version
    selection = host.check_output("dpkg --get-selections %s", name).split()
    assert selection == [name, "hold"]


def test_held_packages_do_not_move_on_upgrade(host):
    simulated = host.check_output("apt-get -s -o Debug::NoLocking=1 upgrade")
    assert not any(f"Inst {name} " in simulated for name in PACKAGES), simulated


def test_key_and_signed_by_deb822_source(host):
    key = host.file(KEY)
    assert key.is_file and key.mode == 0o644
    assert key.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    fields = dict(line.split(": ", 1) for line in host.file(SOURCE).content_string.splitlines() if ": " in line)
    assert fields["Types"] == "deb"
    assert fields["Suites"] == "/", "a flat repository"
    assert fields["Signed-By"] == KEY
    assert fields["URIs"].endswith("/$(ARCH)")
    for legacy in ("nvidia-container-toolkit.list", "nvidia-docker.list", "nvidia-container-runtime.list", "libnvidia-container.list"):
        assert not host.file(f"/etc/apt/sources.list.d/{legacy}").exists
    assert not host.file("/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").exists


def test_daemon_json_has_the_nvidia_runtime(daemon_json):
    assert daemon_json["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "runtimeArgs": []}
    assert daemon_json["default-runtime"] == "nvidia"


def test_daemon_json_memlock(daemon_json, inventory):
    # The toolkit's -1/-1, unless the site's settings (docker_engine_daemon_options) give another limit:
    # they win (the instance lacks CAP_SYS_RESOURCE, so the scenario sets a low one).
    site = inventory.get("docker_engine_daemon_options") or {}
    expected = (site.get("default-ulimits") or {}).get("memlock") or {"Name": "memlock", "Hard": -1, "Soft": -1}
    assert daemon_json["default-ulimits"]["memlock"] == expected


def test_daemon_json_keeps_foreign_keys(daemon_json):
    assert daemon_json["registry-mirrors"] == FOREIGN["registry-mirrors"]
    assert daemon_json["log-opts"] == FOREIGN["log-opts"]
    assert daemon_json["runtimes"]["crun-test"] == FOREIGN["runtimes"]["crun-test"]


def test_docker_runs_with_the_nvidia_default_runtime(host):
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    assert host.check_output("docker info --format '{{.DefaultRuntime}}'") == "nvidia"
    runtimes = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert {"nvidia", "crun-test"} <= set(runtimes)


def test_compose_v2_present(host):
    assert host.run("docker compose version").rc == 0


def test_python_requests_for_community_docker(host):
    assert host.package("python3-requests").is_installed


def test_a_container_starts_through_the_nvidia_runtime(host):
    images = [i for i in host.check_output("docker image ls --format '{{.Repository}}:{{.Tag}}'").splitlines() if not i.endswith(":<none>")]
    if not images:
        pytest.skip("no image is loaded in the instance's Docker")
    run = host.run("docker run --rm --entrypoint true %s", images[0])
    assert run.rc == 0, run.stderr
