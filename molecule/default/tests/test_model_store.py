"""model_store on the molecule instance (pytest-testinfra `host` fixture).

The models came from the stand-in ModelScope hub that prepare_model_hub.yml runs on the instance's
loopback (tests/fixtures/modelscope_hub: generated files, no real model). Paths, owners and models
are read from the inventory (host.ansible.get_variables(): group_vars plus the host_vars override
of gpu_stack_models_root); with another backend, MODEL_STORE_TEST_VARS (a JSON object) or the
role's defaults are used. The stack folders (config/, data/, logs/) belong to the stack roles since 0.2.0
and are checked with them; model_store owns the models root and the model directories.
"""

import json
import os
import shlex

import pytest

DEFAULTS = {
    "gpu_stack_models_root": "/Models/Pretrained_Models",
    "model_store_owner": "root",
    "model_store_group": "root",
    "model_store_venv": "/opt/llmops/modelscope-venv",
    "model_store_modelscope_version": "1.40.2",
    "model_store_modelscope_hub_version": "0.5.1",
    "gpu_stack_models": [{"alias": "qwen3-8b", "source": "modelscope", "repo_id": "Qwen/Qwen3-8B", "revision": "master"}],
}


@pytest.fixture(scope="module")
def cfg(inventory):
    found = inventory or json.loads(os.environ.get("MODEL_STORE_TEST_VARS", "{}"))
    # Values that are still templates (e.g. a lookup) cannot be read here: use the default.
    return {key: found[key] if key in found and "{{" not in json.dumps(found[key]) else value
            for key, value in DEFAULTS.items()} | {key: value for key, value in found.items() if key not in DEFAULTS}


def user_of(host, name):
    return str(name) if str(name).isdigit() else str(host.user(str(name)).uid)


def group_of(host, name):
    return str(name) if str(name).isdigit() else str(host.group(str(name)).gid)


def target_of(cfg, model):
    root = cfg["gpu_stack_models_root"].rstrip("/")
    return model.get("target_dir") or f"{root}/{model['repo_id'].split('/')[-1]}"


def test_models_root(host, cfg):
    root = host.file(cfg["gpu_stack_models_root"])
    assert root.is_directory
    assert root.mode == 0o755
    assert str(root.uid) == user_of(host, cfg["model_store_owner"])
    assert str(root.gid) == group_of(host, cfg["model_store_group"])


def test_models_are_complete(host, cfg):
    for model in cfg["gpu_stack_models"]:
        target = target_of(cfg, model)
        manifest_file = host.file(f"{target}/.llmops-manifest.json")
        assert manifest_file.is_file, f"{model['alias']}: no manifest in {target}"
        manifest = json.loads(manifest_file.content_string)
        assert manifest["inputs"]["source"] == model.get("source", "modelscope")
        if manifest["inputs"]["source"] != "local":
            assert manifest["inputs"]["repo_id"] == model["repo_id"]
            assert manifest["inputs"]["revision"] == model.get("revision", "master")
        paths = {entry["path"] for entry in manifest["files"]}
        assert "config.json" in paths
        for entry in manifest["files"]:
            copy = host.file(f"{target}/{entry['path']}")
            assert copy.is_file and copy.size == entry["size"], entry["path"]
            assert copy.mode == 0o644
            assert str(copy.uid) == user_of(host, cfg["model_store_owner"])
        sums = host.check_output(f"cd {shlex.quote(target)} && sha256sum -- " + " ".join(shlex.quote(p) for p in sorted(paths)))
        assert {line.split(None, 1)[1].lstrip("*"): line.split()[0] for line in sums.splitlines()} == {
            entry["path"]: entry["sha256"] for entry in manifest["files"]}
        progress = json.loads(host.file(f"{target}/.llmops-progress.json").content_string)
        assert progress["state"] == "complete" and progress["bytes_done"] == progress["bytes_total"]


def test_models_land_under_the_host_override(host, cfg):
    """host_vars override gpu_stack_models_root (the lead sets /srv/models for gpu-stack-1)."""
    root = cfg["gpu_stack_models_root"].rstrip("/")
    default_root = DEFAULTS["gpu_stack_models_root"]
    for model in cfg["gpu_stack_models"]:
        if not model.get("target_dir"):
            assert target_of(cfg, model).startswith(root + "/")
            assert host.file(target_of(cfg, model)).is_directory
            if root != default_root:
                # Nothing was written under the default root: the override is the only path used.
                assert not host.file(f"{default_root}/{model['repo_id'].split('/')[-1]}").exists


def test_client_virtualenv_is_pinned(host, cfg):
    if not any(model.get("source", "modelscope") == "modelscope" for model in cfg["gpu_stack_models"]):
        pytest.skip("no modelscope model")
    python = f"{cfg['model_store_venv']}/bin/python"
    versions = json.loads(host.check_output(
        "%s -c %s", python,
        'import importlib.metadata as m, json; print(json.dumps([m.version("modelscope"), m.version("modelscope-hub")]))'))
    assert versions == [cfg["model_store_modelscope_version"], cfg["model_store_modelscope_hub_version"]]


def test_standin_hub_saw_only_known_paths(host):
    out = host.run("python3 -c %s", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8091/__stats', timeout=5).read().decode())")
    if out.rc != 0:
        pytest.skip("the stand-in hub does not run here")
    assert json.loads(out.stdout)["unknown"] == []
