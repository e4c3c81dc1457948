"""The stack roles render each host of a fleet for its part: engines, gateways, both, or all-in-one.

tests/integration/playbooks/render_stack.yml renders every host of the sample fleet in
playbooks/fleet/ (gw-1 gateway + engine, gw-2 gateway only, gpu-a and gpu-b engines only with mixed
host_vars, solo in neither group) on the controller in one run, without starting anything; the
files are then read back and checked with the real tools (Compose v2, promtool, the pinned LiteLLM's
--validate_config, iptables-restore --test, systemd-analyze verify). Helpers: stack_files.py.
"""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_files as sf  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration

FLEET = sf.ROOT / "tests" / "integration" / "playbooks" / "fleet"
HOSTS = ("gw-1", "gw-2", "gpu-a", "gpu-b", "solo")
GATEWAYS = ("gw-1", "gw-2", "solo")
ENGINE_KEY = "test-only-engine-key-0123"
GPU_B_KEY = "test-only-gpu-b-engine-key"
SECRETS = (ENGINE_KEY, GPU_B_KEY, "sk-test-only-master-key", "test-only-redis-password", "test-only-database-password",
           "test-only-salt-key-0001")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(scratch folder with one folder per host, the ansible-playbook process)."""
    root = tmp_path_factory.mktemp("fleet")
    return root, sf.playbook(FLEET / "hosts.yml", "-e", f"render_root={root}")


@pytest.fixture(scope="module")
def fleet(rendered):
    return rendered[0]


def stack(fleet, host) -> pathlib.Path:
    return fleet / host / "stack"


def compose(fleet, host) -> dict:
    return sf.load_yaml(stack(fleet, host) / "compose.yaml")


def litellm(fleet, host) -> dict:
    return sf.load_yaml(stack(fleet, host) / "config" / "litellm.yaml")


def secrets(fleet, host) -> dict:
    """{env file name: {variable: value}} of a host's secrets/."""
    return {path.stem: sf.env_file(path) for path in sorted((stack(fleet, host) / "secrets").glob("*.env"))}


def scrape_targets(fleet, host):
    config = sf.load_yaml(stack(fleet, host) / "config" / "prometheus" / "prometheus.yml")
    return {job["job_name"]: {t: (sc["labels"].get("llmops_host"), sc["labels"].get("engine"))
                              for sc in job["static_configs"] for t in sc["targets"]}
            for job in config["scrape_configs"]}


def firewall_files(fleet, host) -> dict:
    folder = fleet / host / "firewall"
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*"))} if folder.is_dir() else {}


def test_each_host_runs_the_services_of_its_part(fleet):
    assert sorted(compose(fleet, "gw-1")["services"]) == ["inference-engine", "litellm-db", "litellm-proxy", "prometheus", "redis-cache"]
    assert sorted(compose(fleet, "gw-2")["services"]) == ["litellm-proxy", "prometheus"]
    assert sorted(compose(fleet, "gpu-a")["services"]) == ["inference-engine"]
    assert sorted(compose(fleet, "gpu-b")["services"]) == ["inference-engine", "inference-engine-2"]
    assert sorted(compose(fleet, "solo")["services"]) == ["inference-engine", "litellm-db", "litellm-proxy", "prometheus", "redis-cache"]
    # gw-2 uses gw-1's database, published on gw-1's address for gw-2 only
    assert compose(fleet, "gw-1")["services"]["litellm-db"]["ports"] == ["10.0.0.5:5432:5432"]
    assert compose(fleet, "gw-2")["services"]["litellm-proxy"]["environment"]["DATABASE_HOST"] == "10.0.0.5:5432"
    assert "ports" not in compose(fleet, "solo")["services"]["litellm-db"]
    # each host's compose.yaml names the roles it runs (a GPU host the toolkit too)
    assert "(inference_engine)" in (stack(fleet, "gpu-b") / "compose.yaml").read_text(encoding="utf-8")
    assert "(nvidia_container_toolkit, inference_engine)" in (stack(fleet, "gpu-a") / "compose.yaml").read_text(encoding="utf-8")
    assert "(gateway, monitoring)" in (stack(fleet, "gw-2") / "compose.yaml").read_text(encoding="utf-8")


def test_gateway_model_list_has_one_deployment_per_engine(fleet):
    models = litellm(fleet, "gw-2")["model_list"]
    assert [(m["model_info"]["id"], m["litellm_params"]["api_base"], m["litellm_params"]["api_key"]) for m in models] == [
        ("gw-1/inference-engine", "http://10.0.0.5:8001/v1", "os.environ/VLLM_API_KEY"),
        ("gpu-a/inference-engine", "http://10.0.0.11:8001/v1", "os.environ/VLLM_API_KEY"),
        ("gpu-b/inference-engine", "http://10.0.0.12:8002/v1", "os.environ/VLLM_API_KEY_GPU_B"),
        ("gpu-b/inference-engine-2", "http://10.0.0.12:8003/v1", "os.environ/VLLM_API_KEY_GPU_B"),
    ]
    assert {m["model_name"] for m in models} == {"qwen3-8b"}
    assert all(m["model_info"]["allowed_fails"] == 0 for m in models)
    # an engine's own context length
    assert [m["model_info"]["max_input_tokens"] for m in models] == [4096, 4096, 4096, 2048]
    # gw-1 reaches its own engine on the stack network; both gateways name every deployment alike
    own = litellm(fleet, "gw-1")["model_list"]
    assert own[0]["litellm_params"]["api_base"] == "http://inference-engine:8001/v1"
    assert [m["model_info"]["id"] for m in own] == [m["model_info"]["id"] for m in models]
    # solo routes to its own engine only
    assert [m["model_info"]["id"] for m in litellm(fleet, "solo")["model_list"]] == ["solo/inference-engine"]


def test_gateways_share_the_first_gateways_redis(fleet):
    assert litellm(fleet, "gw-1")["router_settings"]["redis_host"] == "redis-cache"
    assert litellm(fleet, "gw-2")["router_settings"]["redis_host"] == "10.0.0.5"
    assert litellm(fleet, "gw-2")["router_settings"]["redis_port"] == 6379
    assert compose(fleet, "gw-1")["services"]["redis-cache"]["ports"] == ["10.0.0.5:6379:6379"]
    assert "depends_on" not in compose(fleet, "gw-2")["services"]["litellm-proxy"], "no engine, no Redis of its own to wait for"
    # Redis data on the first gateway only; Prometheus data on the gateways only
    assert (stack(fleet, "gw-1") / "data" / "redis").is_dir()
    assert not (stack(fleet, "gw-2") / "data" / "redis").exists()
    for host in ("gpu-a", "gpu-b"):
        assert not (stack(fleet, host) / "data" / "redis").exists() and not (stack(fleet, host) / "data" / "prometheus").exists()


def test_engines_are_published_on_their_address_for_other_gateways_only(fleet):
    assert compose(fleet, "gpu-a")["services"]["inference-engine"]["ports"] == ["10.0.0.11:8001:8001"]
    assert compose(fleet, "gpu-b")["services"]["inference-engine"]["ports"] == ["10.0.0.12:8002:8002"]
    assert compose(fleet, "gpu-b")["services"]["inference-engine-2"]["ports"] == ["10.0.0.12:8003:8003"]
    assert compose(fleet, "gw-1")["services"]["inference-engine"]["ports"] == ["10.0.0.5:8001:8001"]  # for gw-2
    assert "ports" not in compose(fleet, "solo")["services"]["inference-engine"]
    assert "ports" not in compose(fleet, "solo")["services"]["redis-cache"]
    # gateways publish their own port only
    for host in GATEWAYS:
        assert compose(fleet, host)["services"]["litellm-proxy"]["ports"] == ["0.0.0.0:4000:4000"]


def test_mixed_host_vars(fleet):
    gpu = compose(fleet, "gpu-a")["services"]["inference-engine"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [{"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ["0", "1"]}]
    assert gpu["command"][gpu["command"].index("--tensor-parallel-size") + 1] == "2"
    assert gpu["command"][gpu["command"].index("--gpu-memory-utilization") + 1] == "0.85"
    assert gpu["image"].startswith("vllm/vllm-openai:v")
    cpu = compose(fleet, "gpu-b")["services"]
    assert cpu["inference-engine"]["image"].startswith("vllm/vllm-openai-cpu:v") and "deploy" not in cpu["inference-engine"]
    assert cpu["inference-engine-2"]["command"][cpu["inference-engine-2"]["command"].index("--max-model-len") + 1] == "2048"


def test_secrets_go_only_where_they_are_used(fleet, rendered):
    assert secrets(fleet, "gpu-a") == {"engine": {"VLLM_API_KEY": ENGINE_KEY}}
    assert secrets(fleet, "gpu-b") == {"engine": {"VLLM_API_KEY": GPU_B_KEY}}
    gw2 = secrets(fleet, "gw-2")
    assert sorted(gw2) == ["litellm-proxy"], "no engine and no Redis of its own"
    assert sorted(gw2["litellm-proxy"]) == ["DATABASE_PASSWORD", "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "REDIS_PASSWORD", "VLLM_API_KEY",
                                            "VLLM_API_KEY_GPU_B"]
    assert gw2["litellm-proxy"]["VLLM_API_KEY_GPU_B"] == GPU_B_KEY
    assert sorted(secrets(fleet, "gw-1")) == ["engine", "litellm-db", "litellm-proxy", "redis-cache"]
    proxy = compose(fleet, "gw-2")["services"]["litellm-proxy"]
    assert proxy["env_file"] == [str(stack(fleet, "gw-2") / "secrets" / "litellm-proxy.env")]
    assert not any(name.startswith("VLLM_API_KEY") for name in proxy["environment"])
    assert not (stack(fleet, "gpu-a") / "config" / "litellm.yaml").exists()
    for host in HOSTS:
        assert sf.mode(stack(fleet, host) / "secrets") == 0o700
        for path in (stack(fleet, host) / "secrets").iterdir():
            assert sf.mode(path) == 0o600, path
        for path in stack(fleet, host).rglob("*"):
            if path.is_file() and path.parent.name != "secrets":
                text = path.read_text(encoding="utf-8", errors="replace")
                assert not any(secret in text for secret in SECRETS), path
    assert not any(secret in rendered[1].stdout + rendered[1].stderr for secret in SECRETS)


def test_prometheus_on_a_gateway_scrapes_every_engine_and_gateway(fleet):
    targets = scrape_targets(fleet, "gw-2")
    assert targets["inference-engine"] == {
        "10.0.0.5:8001": ("gw-1", "inference-engine"), "10.0.0.11:8001": ("gpu-a", "inference-engine"),
        "10.0.0.12:8002": ("gpu-b", "inference-engine"), "10.0.0.12:8003": ("gpu-b", "inference-engine-2")}
    assert targets["litellm-proxy"] == {"litellm-proxy:4000": ("gw-2", None), "10.0.0.5:4000": ("gw-1", None)}
    targets = scrape_targets(fleet, "gw-1")
    assert targets["inference-engine"]["inference-engine:8001"] == ("gw-1", "inference-engine")
    assert set(targets["inference-engine"]) == {"inference-engine:8001", "10.0.0.11:8001", "10.0.0.12:8002", "10.0.0.12:8003"}
    assert targets["litellm-proxy"] == {"litellm-proxy:4000": ("gw-1", None), "10.0.0.6:4000": ("gw-2", None)}
    assert scrape_targets(fleet, "solo")["inference-engine"] == {"inference-engine:8001": ("solo", "inference-engine")}


# ---------------------------------------------------------------- the firewall of the published ports


def rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("-A ")]


def test_firewall_lets_only_the_stack_hosts_reach_published_ports(fleet):
    names = "llm-stack-engine-firewall.rules", "llmops-llm-stack-engine-firewall.service"
    # gpu-b: both engines, for the gateways only, each port's sources first, then the drop
    files = firewall_files(fleet, "gpu-b")
    assert sorted(files) == sorted(names)
    assert rules(files["llm-stack-engine-firewall.rules"]) == [
        f"-A LLMOPS-ENGINE {match} --ctorigdst 10.0.0.12 --ctorigdstport {port} --ctdir ORIGINAL -j {action}"
        for port in (8002, 8003)
        for match, action in (("-s 10.0.0.5 -p tcp -m conntrack", "RETURN"), ("-s 10.0.0.6 -p tcp -m conntrack", "RETURN"),
                              ("-p tcp -m conntrack", "DROP"))]
    assert ":LLMOPS-ENGINE - [0:0]" in files["llm-stack-engine-firewall.rules"]
    unit = files["llmops-llm-stack-engine-firewall.service"]
    assert "ExecStart=/usr/sbin/iptables-restore -w --noflush /etc/llmops/llm-stack-engine-firewall.rules" in unit
    assert "iptables -w -I DOCKER-USER 1 -j LLMOPS-ENGINE" in unit and "PartOf=docker.service" in unit
    # gpu-a: its own sources (a CIDR) instead of the gateways' addresses
    assert [r.split(" -p ")[0] for r in rules(firewall_files(fleet, "gpu-a")["llm-stack-engine-firewall.rules"])] == [
        "-A LLMOPS-ENGINE -s 10.0.0.0/28", "-A LLMOPS-ENGINE"]
    # gw-1: its engine and the shared Redis, for gw-2 only
    files = firewall_files(fleet, "gw-1")
    assert sorted(files) == sorted([*names, "llm-stack-redis-firewall.rules", "llmops-llm-stack-redis-firewall.service"])
    assert rules(files["llm-stack-redis-firewall.rules"]) == [
        "-A LLMOPS-REDIS -s 10.0.0.6 -p tcp -m conntrack --ctorigdst 10.0.0.5 --ctorigdstport 6379 --ctdir ORIGINAL -j RETURN",
        "-A LLMOPS-REDIS -p tcp -m conntrack --ctorigdst 10.0.0.5 --ctorigdstport 6379 --ctdir ORIGINAL -j DROP"]
    assert [r.split(" -p ")[0] for r in rules(files["llm-stack-engine-firewall.rules"])] == ["-A LLMOPS-ENGINE -s 10.0.0.6", "-A LLMOPS-ENGINE"]
    # nothing published for other hosts: no firewall
    assert firewall_files(fleet, "gw-2") == {} and firewall_files(fleet, "solo") == {}


@pytest.fixture(scope="module")
def firewall_tools():
    sf.run([sf.HARNESS / "ensure-debs.sh", "iptables", "systemd"])


@pytest.mark.parametrize("host", ["gw-1", "gpu-a", "gpu-b"])
def test_firewall_files_pass_the_real_tools(fleet, firewall_tools, host):
    folder = fleet / host / "firewall"
    for path in sorted(folder.glob("*.rules")):
        sf.iptables_restore_test(path)
    for path in sorted(folder.glob("*.service")):
        sf.systemd_verify(path)


# ---------------------------------------------------------------- refusals


def test_an_inference_host_without_gateways_is_refused(tmp_path):
    inventory = sf.write_inventory(tmp_path / "hosts.yml", {"lonely": {
        "gpu_stack_address": "10.9.9.9", "gpu_stack_root": str(tmp_path / "stack"), "gpu_stack_models_root": str(tmp_path / "models"),
        "gpu_stack_accelerator": "cpu", "inference_engine_api_key": ENGINE_KEY}}, groups={"inference_hosts": ["lonely"]})
    proc = sf.playbook(inventory, check=False)
    assert proc.returncode != 0
    text = sf.messages(proc, "lonely")
    assert re.search(r"gpu_stack_gateway_group = \"gateway_hosts\": expected a group with at least one gateway host: lonely is in "
                     r"inference_hosts, but nothing would route to its engines", text), text
    assert not (tmp_path / "stack").exists(), "refused before anything is written"


# ---------------------------------------------------------------- the real tools


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory):
    return sf.compose_env(tmp_path_factory.mktemp("compose"), sf.compose_image())


@pytest.mark.parametrize("host", HOSTS)
def test_compose_accepts_each_hosts_file(fleet, compose_env, host):
    sf.compose_config(stack(fleet, host), compose_env)


@pytest.fixture(scope="module")
def promtool():
    return sf.promtool()


@pytest.mark.parametrize("host", GATEWAYS)
def test_promtool_accepts_the_gateways_config(fleet, promtool, host):
    assert "SUCCESS: 6 rules found" in sf.promtool_check(promtool, stack(fleet, host))


@pytest.fixture(scope="module")
def litellm_venv():
    return sf.litellm_venv()


@pytest.mark.parametrize("host", ["gw-1", "gw-2"])  # solo's is test_stack_render.py's gpu-all on CPU
def test_litellm_accepts_the_gateways_config(fleet, litellm_venv, host, tmp_path):
    # the environment the container gets from its env file
    out = sf.litellm_validate(litellm_venv, stack(fleet, host), tmp_path, secrets(fleet, host)["litellm-proxy"]).stdout
    assert "config OK" in out
