"""model_store on the molecule instance (pytest-testinfra `host` fixture).

The models came from the stand-in ModelScope hub that prepare_model_hub.yml runs on the instance's
loopback (tests/fixtures/modelscope_hub: generated files, no real model). Paths, owners and models
are read from the inventory (host.ansible.get_variables(): group_vars plus the host_vars override
of model_store_models_root); with another backend, MODEL_STORE_TEST_VARS (a JSON object) or the
role's defaults are used.
"""

import json
import os
import shlex

import pytest

DEFAULTS = {
    "model_store_models_root": "/Models/Pretrained_Models",
    "model_store_stack_root": "/opt/llm-stack",
    "model_store_owner": "root",
    "model_store_group": "root",
    "model_store_prometheus_uid": 65534,
    "model_store_prometheus_gid": 65534,
    "model_store_venv": "/opt/llmops/modelscope-venv",
    "model_store_modelscope_version": "1.40.2",
    "model_store_modelscope_hub_version": "0.5.1",
    "model_store_models": [{"alias": "qwen3-8b", "source": "modelscope", "repo_id": "Qwen/Qwen3-8B", "revision": "master"}],
}
STACK_DIRS = ("", "config", "data", "data/litellm", "data/vllm", "data/redis", "data/prometheus",
              "logs", "logs/litellm", "logs/vllm", "logs/redis", "logs/prometheus")
LOG_FILES = ("logs/litellm/litellm.log", "logs/vllm/vllm.log")


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
    root = cfg["model_store_models_root"].rstrip("/")
    return model.get("target_dir") or f"{root}/{model['repo_id'].split('/')[-1]}"


@pytest.mark.parametrize("sub", STACK_DIRS)
def test_stack_folder(host, cfg, sub):
    folder = host.file(f"{cfg['model_store_stack_root'].rstrip('/')}/{sub}".rstrip("/"))
    assert folder.is_directory
    assert folder.mode == 0o755
    if sub == "data/prometheus":
        assert folder.uid == int(cfg["model_store_prometheus_uid"])
        assert folder.gid == int(cfg["model_store_prometheus_gid"])
    elif sub != "data/redis":  # the Redis image hands data/redis to its own user
        assert str(folder.uid) == user_of(host, cfg["model_store_owner"])
        assert str(folder.gid) == group_of(host, cfg["model_store_group"])


@pytest.mark.parametrize("name", LOG_FILES)
def test_log_file(host, cfg, name):
    log = host.file(f"{cfg['model_store_stack_root'].rstrip('/')}/{name}")
    assert log.is_file
    assert log.mode == 0o644


def test_models_root(host, cfg):
    root = host.file(cfg["model_store_models_root"])
    assert root.is_directory
    assert root.mode == 0o755
    assert str(root.uid) == user_of(host, cfg["model_store_owner"])


def test_models_are_complete(host, cfg):
    for model in cfg["model_store_models"]:
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
    """host_vars override model_store_models_root (the lead sets /srv/models for gpu-stack-1)."""
    root = cfg["model_store_models_root"].rstrip("/")
    default_root = DEFAULTS["model_store_models_root"]
    for model in cfg["model_store_models"]:
        if not model.get("target_dir"):
            assert target_of(cfg, model).startswith(root + "/")
            assert host.file(target_of(cfg, model)).is_directory
            if root != default_root:
                # Nothing was written under the default root: the override is the only path used.
                assert not host.file(f"{default_root}/{model['repo_id'].split('/')[-1]}").exists


def test_client_virtualenv_is_pinned(host, cfg):
    if not any(model.get("source", "modelscope") == "modelscope" for model in cfg["model_store_models"]):
        pytest.skip("no modelscope model")
    python = f"{cfg['model_store_venv']}/bin/python"
    versions = json.loads(host.check_output(
        "%s -c %s", python,
        'import importlib.metadata as m, json; print(json.dumps([m.version("modelscope"), m.version("modelscope-hub")]))'))
    assert versions == [cfg["model_store_modelscope_version"], cfg["model_store_modelscope_hub_version"]]
    assert host.file(f"{cfg['model_store_venv']}/llmops_model_sync.py").is_file


def test_standin_hub_saw_only_known_paths(host):
    out = host.run("python3 -c %s", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8091/__stats', timeout=5).read().decode())")
    if out.rc != 0:
        pytest.skip("the stand-in hub does not run here")
    assert json.loads(out.stdout)["unknown"] == []
