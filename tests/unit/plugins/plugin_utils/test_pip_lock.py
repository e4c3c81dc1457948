"""Hash locks of the download client (plugins/plugin_utils/_pip_lock.py, roles/model_store/files/pip, tools/pip_locks.sh)
and their check in the validation phase (plugins/plugin_utils/_validate.py)."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _pip_lock, _validate

ROOT = pathlib.Path(__file__).resolve().parents[4]
LOCKS = ROOT / "roles" / "model_store" / "files" / "pip"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "model_store" / "defaults" / "main.yml").read_text(encoding="utf-8"))
SECRETS = {"inference_engine_api_key": "engine-key-0123456789", "gateway_master_key": "sk-master-0123456789",
           "gateway_redis_password": "redis-pass-0123456789", "gateway_database_password": "db-pass-0123456789",
           "gateway_salt_key": "salt-key-0123456789"}


@pytest.mark.parametrize("name, projects", [
    ("modelscope", {"modelscope": "model_store_modelscope_version", "modelscope-hub": "model_store_modelscope_hub_version"}),
    ("modelscope-huggingface", {"modelscope": "model_store_modelscope_version", "modelscope-hub": "model_store_modelscope_hub_version",
                                "huggingface_hub": "model_store_huggingface_hub_version"}),
])
def test_the_shipped_locks_pin_the_default_versions_with_hashes(name, projects):
    """A default version changed without `make pip-locks` fails here (and the validation phase refuses it)."""
    text = (LOCKS / f"{name}.txt").read_text(encoding="utf-8")
    wanted = {project: [variable, DEFAULTS[variable]] for project, variable in projects.items()}
    assert _pip_lock.problems(text, wanted, name) == []
    # every requirement line carries hashes, and no index address is written in
    assert text.count("--hash=sha256:") >= len([line for line in text.splitlines() if _pip_lock._PIN.match(line)])
    assert "--index-url" not in text and "://" not in text


def test_a_version_the_lock_does_not_pin_is_named():
    text = (LOCKS / "modelscope.txt").read_text(encoding="utf-8")
    (problem,) = _pip_lock.problems(text, {"modelscope": ["model_store_modelscope_version", "1.41.0"]}, "lock.txt")
    assert problem[:2] == ("model_store_modelscope_version", "1.41.0")
    assert "pins (modelscope 1.40.2)" in problem[2] and "model_store_pip_requirements" in problem[2]


def test_a_lock_without_hashes_or_missing_is_refused():
    (problem,) = _pip_lock.problems("modelscope==1.40.2\n", {"modelscope": ["v", "1.40.2"]}, "/srv/req.txt", own=True)
    assert problem[0] == "model_store_pip_requirements" and "--hash=sha256:" in problem[2]
    (problem,) = _pip_lock.problems(None, {}, "/srv/none.txt", own=True)
    assert problem == ("model_store_pip_requirements", "/srv/none.txt",
                       "a requirements file with hashes on the controller (/srv/none.txt is missing or pins no package)")


def problems_of(host_vars):
    _plans, problems, _warnings = _validate.validate(["a"], {"a": dict(SECRETS, ansible_host="10.0.0.5", **host_vars)},
                                                     {"gpu_hosts": ["a"]})
    return [(p.variable, p.line()) for p in problems]


def test_the_validation_phase_checks_the_lock_before_any_change(tmp_path):
    assert problems_of({}) == []
    found = problems_of({"model_store_modelscope_version": "1.41.0"})
    assert [v for v, _line in found] == ["model_store_modelscope_version"], found
    # without hashes any version goes; no download, no client
    assert problems_of({"model_store_modelscope_version": "1.41.0", "model_store_pip_require_hashes": False}) == []
    assert problems_of({"model_store_modelscope_version": "1.41.0", "model_store_download": False}) == []
    # a model from Hugging Face needs the lock with huggingface_hub
    hf = [{"alias": "qwen3-8b", "source": "huggingface", "repo_id": "Qwen/Qwen3-8B"}]
    assert problems_of({"gpu_stack_models": hf}) == []
    found = problems_of({"gpu_stack_models": hf, "model_store_huggingface_hub_version": "2.5.0"})
    assert [v for v, _line in found] == ["model_store_huggingface_hub_version"], found
    # the user's own lock
    own = tmp_path / "req.txt"
    own.write_text((LOCKS / "modelscope.txt").read_text(encoding="utf-8"), encoding="utf-8")
    assert problems_of({"model_store_pip_requirements": str(own)}) == []
    found = problems_of({"model_store_pip_requirements": "req.txt"})
    assert found == [("model_store_pip_requirements", 'model_store_pip_requirements = "req.txt": expected an absolute path on the controller')]
    found = problems_of({"model_store_pip_requirements": str(tmp_path / "none.txt")})
    assert [v for v, _line in found] == ["model_store_pip_requirements"] and "is missing" in found[0][1]
