"""The collection builds, installs, and its playbooks parse from outside the checkout."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The ansible-* entry points of the virtualenv that runs pytest.
BIN = pathlib.Path(sys.executable).parent


def run(args, cwd, env=None):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collection")
    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp, str(ROOT)], cwd=tmp)
    tarballs = list(tmp.glob("llmops-gpu_stack-*.tar.gz"))
    assert len(tarballs) == 1
    dest = tmp / "installed"
    run([BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", dest, tarballs[0]], cwd=tmp)
    return tmp, tarballs[0], dest


def test_tarball_leaves_out_caches_and_checkout_links(installed):
    tarball = installed[1]
    listing = subprocess.run(["tar", "-tzf", tarball], capture_output=True, text=True, check=True).stdout.split()
    for bad in (".venv/", ".cache/", "collections/", "tests/output/", "__pycache__", ".git/", ".ci/"):
        assert not any(bad in name for name in listing), f"{bad} leaked into {tarball.name}"
    for needed in ("MANIFEST.json", "FILES.json", "meta/runtime.yml", "playbooks/site.yml", "README.md"):
        assert any(name.endswith(needed) for name in listing), f"{needed} missing from tarball"


@pytest.mark.parametrize("playbook", ["site", "validate", "verify", "rolling_update", "teardown"])
def test_installed_playbooks_parse_from_outside(installed, playbook):
    tmp, dest = installed[0], installed[2]
    config = tmp / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_CONFIG=str(config))
    run(
        [BIN / "ansible-playbook", f"llmops.gpu_stack.{playbook}", "--syntax-check", "-i", ROOT / "inventories" / "example"],
        cwd=tmp,
        env=env,
    )


@pytest.mark.parametrize("inventory", ["example", "local"])
def test_root_site_parses_from_checkout(inventory):
    run([BIN / "ansible-playbook", "site.yml", "--syntax-check", "-i", f"inventories/{inventory}"], cwd=ROOT)


def test_example_inventory_overrides_models_root_per_host():
    proc = run([BIN / "ansible-inventory", "-i", "inventories/example", "--list"], cwd=ROOT)
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]
    roots = {host: hv.get("gpu_stack_models_root") for host, hv in hostvars.items()}
    assert len(set(roots.values())) == 2, f"expected one host to override the models root: {roots}"
