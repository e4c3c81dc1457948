"""model_store's download client installs from the collection's hash lock, and a tampered file is refused.

The wheels of the lock (roles/model_store/files/pip/modelscope.txt) are fetched once from the
machine's package index into .cache/harness (pip download --require-hashes: they are checked against
the lock on the way in). Two local indexes are made of them (--no-index --find-links): the files as
they are, and the same with the modelscope-hub wheel altered (one file added: still a valid wheel,
other bytes). The role's client tasks (tests/integration/playbooks/model_client.yml, -c local) then:

- install from the true files: the pinned versions, the lock beside them (0644), a second run changes nothing;
- refuse the altered file: pip's hash error names the file, and nothing is installed;
- install the altered file with model_store_pip_require_hashes: false: the control that shows the file
  is a wheel pip takes, so the refusal above is the hash check's.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_files as sf  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration

LOCK = sf.ROOT / "roles" / "model_store" / "files" / "pip" / "modelscope.txt"
PLAYBOOK = sf.ROOT / "tests" / "integration" / "playbooks" / "model_client.yml"
TAMPERED = "modelscope_hub-0.5.1-py3-none-any.whl"
# pip reads no configuration of this machine (its find-links and constraints would add sources)
PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def wheels():
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    cache = sf.ROOT / ".cache" / "harness" / f"model-client-wheels-{digest}"
    if not (cache / ".complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        sf.run([sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--only-binary", ":all:", "--no-deps",
                "-r", LOCK, "-d", cache], env=dict(os.environ, **PIP_ENV), timeout=900)
        (cache / ".complete").touch()
    return cache


@pytest.fixture(scope="module")
def indexes(wheels, tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    good, bad = root / "good", root / "bad"
    shutil.copytree(wheels, good, ignore=shutil.ignore_patterns(".complete"))
    shutil.copytree(wheels, bad, ignore=shutil.ignore_patterns(".complete"))
    with zipfile.ZipFile(bad / TAMPERED, "a") as wheel:
        wheel.writestr("modelscope_hub/_tampered.py", "# not in the published wheel\n")
    assert (bad / TAMPERED).read_bytes() != (good / TAMPERED).read_bytes()
    return good, bad


def run(tmp, name, index, **extra):
    host = {"model_store_venv": str(tmp / name / "venv"), "gpu_stack_models_root": str(tmp / name / "models"),
            "gpu_stack_root": str(tmp / name / "stack"),
            "model_store_pip_extra_args": ["--no-index", "--find-links", str(index)], **extra}
    inventory = sf.write_inventory(tmp / name / "hosts.yml", {name: host})
    return sf.playbook(inventory, playbook=PLAYBOOK, check=False, env_extra=PIP_ENV)


def versions(venv: pathlib.Path) -> dict:
    code = ("import importlib.metadata as m, json\nout = {}\nfor n in ('modelscope', 'modelscope-hub'):\n"
            "    try:\n        out[n] = m.version(n)\n    except m.PackageNotFoundError:\n        out[n] = None\nprint(json.dumps(out))")
    return json.loads(subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def runs(indexes, tmp_path_factory):
    good, bad = indexes
    tmp = tmp_path_factory.mktemp("client")
    out = {"tmp": tmp, "true": run(tmp, "true-files", good)}
    out["again"] = run(tmp, "true-files", good)
    out["tampered"] = run(tmp, "tampered", bad)
    out["control"] = run(tmp, "control", bad, model_store_pip_require_hashes=False)
    return out


def test_the_client_installs_from_the_hash_lock(runs):
    proc = runs["true"]
    assert proc.returncode == 0, sf.failures(proc)
    venv = runs["tmp"] / "true-files" / "venv"
    assert versions(venv) == {"modelscope": "1.40.2", "modelscope-hub": "0.5.1"}
    copied = venv / "llmops-requirements.txt"
    assert copied.read_bytes() == LOCK.read_bytes() and sf.mode(copied) == 0o644
    (install,) = [r for name, r in sf.host_results(proc, "true-files") if name.endswith("Install the pinned clients into the virtualenv")]
    assert "--require-hashes" in install["cmd"] and str(copied) in install["cmd"] and ":all:" in install["cmd"]


def test_a_second_run_changes_nothing(runs):
    assert runs["again"].returncode == 0
    assert sf.stats(runs["again"])["true-files"]["changed"] == 0, sf.stats(runs["again"])


def test_a_tampered_wheel_is_refused_and_nothing_is_installed(runs):
    proc = runs["tampered"]
    assert proc.returncode != 0
    text = sf.failures(proc) + "\n".join(str(r.get("stderr", "")) for _n, r in sf.host_results(proc, "tampered"))
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in text, text[-3000:]
    assert "modelscope-hub" in text or TAMPERED in text
    assert versions(runs["tmp"] / "tampered" / "venv") == {"modelscope": None, "modelscope-hub": None}


def test_control_the_tampered_wheel_installs_without_hashes(runs):
    """The altered file is a wheel pip takes: the refusal above is the hash check, not a broken file."""
    proc = runs["control"]
    assert proc.returncode == 0, sf.failures(proc)
    venv = runs["tmp"] / "control" / "venv"
    assert versions(venv) == {"modelscope": "1.40.2", "modelscope-hub": "0.5.1"}
    assert not (venv / "llmops-requirements.txt").exists()
