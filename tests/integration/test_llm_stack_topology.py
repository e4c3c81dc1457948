"""llm_stack renders each host of a fleet for its part: engines, gateways, both, or all-in-one.

tests/integration/playbooks/render_llm_stack_fleet.yml renders every host of the sample fleet in
playbooks/fleet/ (gw-1 gateway + engine, gw-2 gateway, gpu-a and gpu-b engines, solo in neither
group) on the controller without starting anything; the files are then read back and checked with
the real tools (Compose v2 in the llmops-test/compose image, promtool, LiteLLM --validate_config).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "tests" / "integration" / "playbooks"
FLEET = PLAYBOOKS / "fleet" / "hosts.yml"
HARNESS = ROOT / "tests" / "harness"
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
HOSTS = ("gw-1", "gw-2", "gpu-a", "gpu-b", "solo")


def run(args, timeout=600, check=True, env=None):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=ROOT)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def playbook(inventory, root, check=True):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return run([BIN / "ansible-playbook", "-i", inventory, PLAYBOOKS / "render_llm_stack_fleet.yml", "--tags", "llm_stack_configure",
                "-e", f"render_root={root}"], env=env, check=check)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    playbook(FLEET, root)
    return root


def stack(fleet, host):
    return fleet / host / "stack"


def compose(fleet, host):
    return yaml.safe_load((stack(fleet, host) / "compose.yaml").read_text(encoding="utf-8"))


def litellm(fleet, host):
    return yaml.safe_load((stack(fleet, host) / "config" / "litellm.yaml").read_text(encoding="utf-8"))


def env_names(fleet, host):
    lines = (stack(fleet, host) / ".env").read_text(encoding="utf-8").splitlines()
    return sorted(line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#"))


def scrape_targets(fleet, host):
    config = yaml.safe_load((stack(fleet, host) / "config" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: {t: sc.get("labels", {}).get("llmops_host") for sc in job["static_configs"] for t in sc["targets"]}
            for job in config["scrape_configs"]}


def test_each_host_runs_the_services_of_its_part(fleet):
    assert sorted(compose(fleet, "gw-1")["services"]) == ["inference-engine", "litellm-proxy", "prometheus", "redis-cache"]
    assert sorted(compose(fleet, "gw-2")["services"]) == ["litellm-proxy", "prometheus"]
    assert sorted(compose(fleet, "gpu-a")["services"]) == ["inference-engine"]
    assert sorted(compose(fleet, "gpu-b")["services"]) == ["inference-engine"]
    assert sorted(compose(fleet, "solo")["services"]) == ["inference-engine", "litellm-proxy", "prometheus", "redis-cache"]


def test_gateway_model_list_has_one_deployment_per_engine_host(fleet):
    models = litellm(fleet, "gw-2")["model_list"]
    assert [(m["model_info"]["id"], m["litellm_params"]["api_base"], m["litellm_params"]["api_key"]) for m in models] == [
        ("gw-1/qwen3-8b", "http://10.0.0.5:8001/v1", "os.environ/VLLM_API_KEY"),
        ("gpu-a/qwen3-8b", "http://10.0.0.11:8001/v1", "os.environ/VLLM_API_KEY"),
        ("gpu-b/qwen3-8b", "http://10.0.0.12:8002/v1", "os.environ/VLLM_API_KEY_GPU_B"),
    ]
    assert {m["model_name"] for m in models} == {"qwen3-8b"}
    assert all(m["model_info"]["allowed_fails"] == 0 for m in models)
    # gw-1 reaches its own engine on the stack network
    assert litellm(fleet, "gw-1")["model_list"][0]["litellm_params"]["api_base"] == "http://inference-engine:8001/v1"


def test_gateways_share_the_first_gateways_redis(fleet):
    assert litellm(fleet, "gw-1")["router_settings"]["redis_host"] == "redis-cache"
    assert litellm(fleet, "gw-2")["router_settings"]["redis_host"] == "10.0.0.5"
    assert litellm(fleet, "gw-2")["router_settings"]["redis_port"] == 6379
    assert compose(fleet, "gw-1")["services"]["redis-cache"]["ports"] == ["10.0.0.5:6379:6379"]
    assert "data" not in os.listdir(stack(fleet, "gpu-a")) and not (stack(fleet, "gw-2") / "data" / "redis").exists()


def test_engines_are_published_on_their_address_for_other_gateways_only(fleet):
    assert compose(fleet, "gpu-a")["services"]["inference-engine"]["ports"] == ["10.0.0.11:8001:8001"]
    assert compose(fleet, "gpu-b")["services"]["inference-engine"]["ports"] == ["10.0.0.12:8002:8002"]
    assert compose(fleet, "gw-1")["services"]["inference-engine"]["ports"] == ["10.0.0.5:8001:8001"]  # for gw-2
    assert "ports" not in compose(fleet, "solo")["services"]["inference-engine"]
    assert "ports" not in compose(fleet, "solo")["services"]["redis-cache"]


def test_secrets_go_only_where_they_are_used(fleet):
    assert env_names(fleet, "gpu-a") == ["VLLM_API_KEY"]
    assert "test-only-gpu-b-key" in (stack(fleet, "gpu-b") / ".env").read_text(encoding="utf-8")
    assert env_names(fleet, "gw-2") == ["LITELLM_MASTER_KEY", "REDIS_PASSWORD", "VLLM_API_KEY", "VLLM_API_KEY_GPU_B"]
    assert "test-only-gpu-b-key" in (stack(fleet, "gw-2") / ".env").read_text(encoding="utf-8")
    proxy_env = compose(fleet, "gw-2")["services"]["litellm-proxy"]["environment"]
    assert proxy_env["VLLM_API_KEY_GPU_B"] == "${VLLM_API_KEY_GPU_B:?VLLM_API_KEY_GPU_B is missing from .env}"
    assert not (stack(fleet, "gpu-a") / "config" / "litellm.yaml").exists()


def test_prometheus_on_a_gateway_scrapes_every_engine_and_gateway(fleet):
    targets = scrape_targets(fleet, "gw-2")
    assert targets["inference-engine"] == {"10.0.0.5:8001": "gw-1", "10.0.0.11:8001": "gpu-a", "10.0.0.12:8002": "gpu-b"}
    assert targets["litellm-proxy"] == {"litellm-proxy:4000": "gw-2", "10.0.0.5:4000": "gw-1"}
    targets = scrape_targets(fleet, "gw-1")
    assert targets["inference-engine"] == {"inference-engine:8001": "gw-1", "10.0.0.11:8001": "gpu-a", "10.0.0.12:8002": "gpu-b"}
    assert scrape_targets(fleet, "solo")["inference-engine"] == {"inference-engine:8001": "solo"}


def test_an_inference_host_without_gateways_is_refused(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "llm_stack_litellm_master_key": "sk-x", "llm_stack_engine_api_key": "k", "llm_stack_redis_password": "p",
                 "llm_stack_accelerator": "cpu", "model_store_models": [{"alias": "m", "repo_id": "x/m"}]},
        "children": {"inference_hosts": {"hosts": {"lonely": {"llm_stack_address": "10.9.9.9"}}}}}}), encoding="utf-8")
    proc = playbook(inventory, tmp_path / "out", check=False)
    assert proc.returncode != 0
    assert "gateway_hosts has no host" in proc.stdout


# ---------------------------------------------------------------- the real tools


@pytest.fixture(scope="module")
def compose_image():
    base = os.environ.get("BASE_IMAGE") or run([HARNESS / "base-image.sh"]).stdout.strip().splitlines()[-1]
    return run([HARNESS / "images" / "build.sh", "compose"], env=dict(os.environ, BASE_IMAGE=base)).stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("host", HOSTS)
def test_compose_accepts_each_hosts_file(fleet, compose_image, host):
    root = fleet / host
    run(["docker", "run", "--rm", "--network", "none", "-v", f"{root}:{root}:ro", compose_image,
         "--project-directory", root / "stack", "-f", root / "stack" / "compose.yaml", "config", "-q"])


@pytest.mark.parametrize("host", ["gw-1", "gw-2"])
def test_promtool_accepts_the_gateways_config(fleet, host):
    run([HARNESS / "ensure-debs.sh", "prometheus"])
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    run([promtool, "check", "config", "--syntax-only", stack(fleet, host) / "config" / "prometheus" / "prometheus.yml"])


@pytest.mark.parametrize("host", ["gw-1", "gw-2"])
def test_litellm_accepts_the_gateways_config(fleet, host):
    venv = pathlib.Path(run([HARNESS / "litellm_venv.sh"], timeout=1200).stdout.strip().splitlines()[-1])
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY="sk-test",
               VLLM_API_KEY="k", VLLM_API_KEY_GPU_B="k2", REDIS_PASSWORD="p")  # noqa: S106 (test dummies)
    run([venv / "bin" / "litellm", "--config", stack(fleet, host) / "config" / "litellm.yaml", "--validate_config"], env=env, timeout=300)
