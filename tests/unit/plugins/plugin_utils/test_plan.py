"""The stack plan (plugins/plugin_utils/_plan.py) on sample hosts and fleets, without a playbook."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _engines, _plan, _settings, _topology

KEY = "engine-key-0123456789"
MASTER = "sk-master-0123456789"
REDIS = "redis-pass-0123456789"
GUARD = "guard-key-0123456789"
DB = "db-pass-0123456789"
SALT = "salt-key-0123456789"
SECRETS = {"inference_engine_api_key": KEY, "gateway_master_key": MASTER, "gateway_redis_password": REDIS,
           "gateway_database_password": DB, "gateway_salt_key": SALT}


def plan_of(host, hostvars, groups, **kwargs):
    plan, problems = _plan.stack_plan(host, hostvars, groups, **kwargs)
    return plan, [str(p) for p in problems]


def ok_plan(host, hostvars, groups, **kwargs):
    plan, problems = plan_of(host, hostvars, groups, **kwargs)
    assert problems == []
    return plan


def single(**extra):
    return {"gpu-stack-1": dict(SECRETS, ansible_host="10.0.0.5", **extra)}


ALL_IN_ONE = {"gpu_hosts": ["gpu-stack-1"]}


# ------------------------------------------------------------------------------------ defaults
def test_plan_roles_defaults_are_literal_values():
    """The plan reads other hosts' defaults from the files: they may hold no Jinja."""
    for role in _settings.PLAN_ROLES:
        for name, value in _settings.role_defaults(role).items():
            assert "{{" not in json.dumps(value), f"{role}: {name} is templated"


# ------------------------------------------------------------------------------------ one host
def test_single_gpu_host_runs_everything_with_the_seed_names():
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE)
    assert plan["roles"] == ["nvidia_container_toolkit", "inference_engine", "gateway", "monitoring"]
    assert sorted(plan["services"]) == ["inference-engine", "litellm-db", "litellm-proxy", "prometheus", "redis-cache"]
    engine = plan["services"]["inference-engine"]
    assert engine["image"] == "vllm/vllm-openai:v0.32.0"
    assert engine["command"][:5] == ["/models/Qwen3-8B", "--served-model-name", "qwen3-8b", "--port", "8001"]
    assert engine["runtime"] == "runc"
    assert engine["deploy"]["resources"]["reservations"]["devices"] == [{"driver": "nvidia", "capabilities": ["gpu"], "count": "all"}]
    assert "NVIDIA_VISIBLE_DEVICES" not in engine["environment"]
    assert engine["ipc"] == "host"
    assert engine["volumes"][0] == {"type": "bind", "source": "/Models/Pretrained_Models/Qwen3-8B", "target": "/models/Qwen3-8B",
                                    "read_only": True, "bind": {"create_host_path": False}}
    # tensor parallel auto over all GPUs: unknown until the host's preflight has looked
    assert plan["engines"][0]["tensor_parallel_size"] is None
    assert plan["gateway"]["model_list"] == [{
        "model_name": "qwen3-8b",
        "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": "http://inference-engine:8001/v1",
                           "api_key": "os.environ/VLLM_API_KEY"},
        "model_info": {"id": "gpu-stack-1/inference-engine", "mode": "chat", "max_input_tokens": 32768},
    }]
    assert plan["services"]["litellm-proxy"]["ports"] == ["0.0.0.0:4000:4000"]
    assert plan["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert "ports" not in plan["services"]["redis-cache"]
    assert "ports" not in engine
    assert plan["firewall"] == {"engine": [], "redis": [], "database": []}
    assert plan["models"] == ["qwen3-8b"]
    # LiteLLM's database: on the stack network only, the password in its env file only
    db = plan["services"]["litellm-db"]
    assert db["image"] == "postgres:18.6-alpine"
    assert "ports" not in db
    assert db["environment"] == {"POSTGRES_USER": "litellm", "POSTGRES_DB": "litellm", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert db["volumes"] == [{"type": "bind", "source": "/opt/llm-stack/data/postgres", "target": "/var/lib/postgresql"}]
    assert db["healthcheck"]["test"] == ["CMD-SHELL", 'pg_isready -q -h 127.0.0.1 -U "$${POSTGRES_USER}" -d "$${POSTGRES_DB}"']
    gateway_env = plan["services"]["litellm-proxy"]["environment"]
    assert (gateway_env["DATABASE_HOST"], gateway_env["DATABASE_USERNAME"], gateway_env["DATABASE_NAME"]) == ("litellm-db:5432", "litellm", "litellm")
    assert plan["services"]["litellm-proxy"]["depends_on"]["litellm-db"] == {"condition": "service_healthy"}
    assert plan["gateway"]["litellm_config"]["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY",
                                                                     "allow_requests_on_db_unavailable": False}
    assert plan["gateway"]["database"] == {"host": "litellm-db", "port": 5432, "name": "litellm", "user": "litellm",
                                           "runs": True, "shared": False}


def test_the_plan_holds_no_secret_value():
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE)
    text = json.dumps(plan)
    for secret in SECRETS.values():
        assert secret not in text
    assert plan["secrets"] == {
        "engine": {"VLLM_API_KEY": ["gpu-stack-1", "inference_engine_api_key"]},
        "redis-cache": {"REDIS_PASSWORD": ["gpu-stack-1", "gateway_redis_password"]},
        "litellm-db": {"POSTGRES_PASSWORD": ["gpu-stack-1", "gateway_database_password"]},
        "litellm-proxy": {"LITELLM_MASTER_KEY": ["gpu-stack-1", "gateway_master_key"],
                          "REDIS_PASSWORD": ["gpu-stack-1", "gateway_redis_password"],
                          "DATABASE_PASSWORD": ["gpu-stack-1", "gateway_database_password"],
                          "LITELLM_SALT_KEY": ["gpu-stack-1", "gateway_salt_key"],
                          "VLLM_API_KEY": ["gpu-stack-1", "inference_engine_api_key"]},
    }


def test_cpu_profile():
    plan = ok_plan("gpu-stack-1", single(gpu_stack_accelerator="cpu", inference_engine_shm_size="4g",
                                         inference_engine_cpu_kvcache_space=1), ALL_IN_ONE)
    engine = plan["services"]["inference-engine"]
    assert engine["image"] == "vllm/vllm-openai-cpu:v0.32.0-x86_64"
    assert "--tensor-parallel-size" not in engine["command"]
    assert "--gpu-memory-utilization" not in engine["command"]
    assert engine["command"][-2:] == ["--dtype", "bfloat16"]
    assert engine["environment"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert engine["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert (engine["shm_size"], engine["cap_add"], engine["security_opt"]) == ("4g", ["SYS_NICE"], ["seccomp=unconfined"])
    assert "deploy" not in engine
    assert plan["uses_gpus"] is False


def test_registry_prefix_replaces_a_registry_host():
    plan = ok_plan("gpu-stack-1", single(gpu_stack_registry="registry.internal:5000",
                                         gateway_litellm_image="ghcr.io/berriai/litellm:v1.108.5"), ALL_IN_ONE)
    assert plan["images"] == {
        "inference-engine": "registry.internal:5000/vllm/vllm-openai:v0.32.0",
        "litellm-proxy": "registry.internal:5000/berriai/litellm:v1.108.5",
        "redis-cache": "registry.internal:5000/redis:7.2.11-alpine",
        "litellm-db": "registry.internal:5000/postgres:18.6-alpine",
        "prometheus": "registry.internal:5000/prom/prometheus:v3.13.5",
    }


def test_dollar_signs_are_escaped_for_compose():
    plan = ok_plan("gpu-stack-1", single(inference_engine_env={"PRICE": "$5"}), ALL_IN_ONE)
    assert plan["services"]["inference-engine"]["environment"]["PRICE"] == "$$5"
    assert plan["services"]["redis-cache"]["command"][2].count("$${REDIS_PASSWORD}") == 1


# ------------------------------------------------------------------------------------ several engines
EIGHT_GPUS = {"gpu_count": 8, "gpus": [{"index": i, "memory_total_mib": 143771} for i in range(8)]}


def test_four_tensor_parallel_2_replicas_on_8_gpus():
    engines = [{"gpus": [2 * i, 2 * i + 1], "tensor_parallel_size": 2} for i in range(4)]
    plan = ok_plan("gpu-stack-1", single(inference_engine_engines=engines), ALL_IN_ONE, gpu_info=EIGHT_GPUS)
    assert [e["name"] for e in plan["engines"]] == ["inference-engine", "inference-engine-2", "inference-engine-3", "inference-engine-4"]
    assert [e["port"] for e in plan["engines"]] == [8001, 8002, 8003, 8004]
    assert [e["tensor_parallel_size"] for e in plan["engines"]] == [2, 2, 2, 2]
    devices = [plan["services"][e["name"]]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for e in plan["engines"]]
    assert devices == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    deployments = plan["gateway"]["model_list"]
    assert [d["model_name"] for d in deployments] == ["qwen3-8b"] * 4
    assert [d["litellm_params"]["api_base"] for d in deployments] == [
        "http://inference-engine:8001/v1", "http://inference-engine-2:8002/v1",
        "http://inference-engine-3:8003/v1", "http://inference-engine-4:8004/v1"]
    # several deployments of one alias: a failing one is cooled down at once
    assert {d["model_info"]["allowed_fails"] for d in deployments} == {0}
    assert plan["services"]["litellm-proxy"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in
        ["inference-engine", "inference-engine-2", "inference-engine-3", "inference-engine-4", "redis-cache", "litellm-db"]}
    targets = plan["monitoring"]["prometheus_config"]["scrape_configs"][1]["static_configs"]
    assert [t["targets"][0] for t in targets] == ["inference-engine:8001", "inference-engine-2:8002",
                                                  "inference-engine-3:8003", "inference-engine-4:8004"]


def test_different_models_side_by_side():
    models = [{"alias": "qwen3-8b", "repo_id": "Qwen/Qwen3-8B"}, {"alias": "qwen3-32b", "repo_id": "Qwen/Qwen3-32B"}]
    engines = [{"model": "qwen3-8b", "gpus": [0]}, {"model": "qwen3-32b", "gpus": [1, 2, 3, 4], "port": 9000, "name": "big"}]
    plan = ok_plan("gpu-stack-1", single(gpu_stack_models=models, inference_engine_engines=engines), ALL_IN_ONE)
    assert [(e["name"], e["alias"], e["port"], e["tensor_parallel_size"]) for e in plan["engines"]] == [
        ("inference-engine", "qwen3-8b", 8001, 1), ("big", "qwen3-32b", 9000, 4)]
    assert plan["models"] == ["qwen3-32b", "qwen3-8b"]
    assert plan["gateway"]["aliases"] == ["qwen3-32b", "qwen3-8b"]


def test_tensor_parallel_auto_follows_the_gpus_and_the_heads():
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE, gpu_info=EIGHT_GPUS)
    assert plan["engines"][0]["tensor_parallel_size"] == 8
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE, gpu_info=EIGHT_GPUS, model_configs={"qwen3-8b": {"num_attention_heads": 20}})
    assert plan["engines"][0]["tensor_parallel_size"] == 4
    plan = ok_plan("gpu-stack-1", single(inference_engine_gpus=3), ALL_IN_ONE)
    assert plan["engines"][0]["tensor_parallel_size"] == 2
    assert plan["services"]["inference-engine"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 3


def test_shared_gpus_must_sum_below_one():
    engines = [{"gpus": [0], "gpu_memory_utilization": 0.6}, {"gpus": [0, 1], "gpu_memory_utilization": 0.5}]
    _plan_, problems = plan_of("gpu-stack-1", single(inference_engine_engines=engines), ALL_IN_ONE)
    assert problems == ["gpu-stack-1: inference_engine_engines[1].gpu_memory_utilization = 0.5: expected memory shares of the "
                        "services sharing a GPU to sum below 1 (inference-engine 0.6 + inference-engine-2 0.5 = 1.1)"]
    engines[1]["gpu_memory_utilization"] = 0.3
    ok_plan("gpu-stack-1", single(inference_engine_engines=engines), ALL_IN_ONE)


def test_guard_sharing_the_engines_gpu():
    models = [{"alias": "qwen3-8b", "repo_id": "Qwen/Qwen3-8B"}, {"alias": "qwen3guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"}]
    hostvars = single(gpu_stack_models=models, moderation_enabled=True, moderation_api_key=GUARD)
    _p, problems = plan_of("gpu-stack-1", hostvars, ALL_IN_ONE)
    assert problems == ["gpu-stack-1: moderation_gpu_memory_utilization = 0.1: expected memory shares of the services sharing a "
                        "GPU to sum below 1 (inference-engine 0.9 + moderation-engine 0.1 = 1.0)"]
    hostvars["gpu-stack-1"]["inference_engine_gpu_memory_utilization"] = 0.8
    plan = ok_plan("gpu-stack-1", hostvars, ALL_IN_ONE)
    guard = plan["services"]["moderation-engine"]
    assert guard["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
    assert guard["depends_on"] == {"inference-engine": {"condition": "service_healthy"}}
    assert plan["gateway"]["litellm_config"]["guardrails"][0]["litellm_params"]["api_base"] == "http://moderation-engine:8001/v1"
    assert plan["secrets"]["litellm-proxy"]["MODERATION_API_KEY"] == ["gpu-stack-1", "moderation_api_key"]
    assert plan["models"] == ["qwen3-8b", "qwen3guard"]
    assert "moderation" in plan["roles"]


@pytest.mark.parametrize(("extra", "expected"), [
    ({"inference_engine_port": 70000}, "inference_engine_port = 70000: expected a TCP port, a whole number from 1 to 65535"),
    ({"inference_engine_extra_args": "--max-num-seqs 4"},
     'inference_engine_extra_args = "--max-num-seqs 4": expected a list of arguments, one item each'),
    ({"inference_engine_model": "qwen3-9b"}, 'inference_engine_model = "qwen3-9b": expected the alias of an entry of gpu_stack_models (qwen3-8b)'),
    ({"inference_engine_gpus": [0], "inference_engine_tensor_parallel_size": 2},
     "inference_engine_tensor_parallel_size = 2: expected at most the 1 GPU(s) given to this engine (inference_engine_gpus)"),
    ({"inference_engine_extra_args": ["--disable-log-requests"]}, "no --disable-log-requests"),
    ({"gateway_port": 8001, "inference_engine_publish": True}, "gateway_port = 8001: expected a host port of its own"),
    ({"monitoring_retention": "15 days"}, 'monitoring_retention = "15 days": expected a Prometheus duration'),
    ({"monitoring_alert_kv_cache_threshold": 90}, "monitoring_alert_kv_cache_threshold = 90: expected a number between 0 and 1"),
    ({"monitoring_alert_gateway_error_ratio": 0}, "monitoring_alert_gateway_error_ratio = 0: expected a number between 0 and 1"),
    ({"monitoring_alert_ttft_p95_seconds": -1}, "monitoring_alert_ttft_p95_seconds = -1: expected a number above 0"),
    ({"monitoring_alert_queue_waiting_threshold": -3},
     "monitoring_alert_queue_waiting_threshold = -3: expected a whole number of 0 or more"),
    ({"gateway_redis_image": ""}, 'gateway_redis_image = "": expected an image reference'),
    ({"gateway_master_key": "master-0123456789"}, "gateway_master_key = (secret, 17 characters; value not shown): expected a key starting with sk-"),
    ({"inference_engine_api_key": "short"}, "inference_engine_api_key = (secret, 5 characters; value not shown): expected at least 16 characters"),
])
def test_wrong_inputs_are_named(extra, expected):
    _p, problems = plan_of("gpu-stack-1", single(**extra), ALL_IN_ONE)
    assert any(expected in p for p in problems), problems
    assert not any(str(v) in " ".join(problems) for k, v in extra.items() if "key" in k or "password" in k)


def test_a_missing_secret_is_named_not_shown():
    hostvars = single()
    del hostvars["gpu-stack-1"]["gateway_redis_password"]
    _p, problems = plan_of("gpu-stack-1", hostvars, ALL_IN_ONE)
    assert problems == ["gpu-stack-1: gateway_redis_password = not set: expected a secret of at least 16 characters (it has no "
                        "default: Ansible Vault, -e, or an environment variable the inventory reads)"]


# ------------------------------------------------------------------------------------ a fleet
FLEET_GROUPS = {"inference_hosts": ["inference-1", "inference-2"], "gateway_hosts": ["gateway-1", "gateway-2"]}


def fleet():
    base = dict(SECRETS)
    return {
        "gateway-1": dict(base, ansible_host="10.0.0.10"),
        "gateway-2": dict(base, ansible_host="10.0.0.11"),
        "inference-1": dict(base, ansible_host="10.0.0.21"),
        # another port and another key: the gateways get VLLM_API_KEY_INFERENCE_2
        "inference-2": dict(base, ansible_host="gpu2.internal", gpu_stack_address="10.0.0.22", inference_engine_port=8101,
                            inference_engine_api_key="other-engine-key-0123"),
    }


def test_fleet_gateway_routes_to_every_engine():
    plan = ok_plan("gateway-1", fleet(), FLEET_GROUPS)
    assert plan["roles"] == ["gateway", "monitoring"]
    assert plan["engines"] == []
    assert [(d["litellm_params"]["api_base"], d["litellm_params"]["api_key"], d["model_info"]["id"])
            for d in plan["gateway"]["model_list"]] == [
        ("http://10.0.0.21:8001/v1", "os.environ/VLLM_API_KEY", "inference-1/inference-engine"),
        ("http://10.0.0.22:8101/v1", "os.environ/VLLM_API_KEY_INFERENCE_2", "inference-2/inference-engine"),
    ]
    assert plan["secrets"]["litellm-proxy"]["VLLM_API_KEY_INFERENCE_2"] == ["inference-2", "inference_engine_api_key"]
    assert plan["secrets"]["litellm-proxy"]["VLLM_API_KEY"] == ["gateway-1", "inference_engine_api_key"]
    # the first gateway runs the Redis the gateways share, published on its address for the other one
    assert plan["gateway"]["runs_redis"] and plan["gateway"]["redis_shared"]
    assert plan["services"]["redis-cache"]["ports"] == ["10.0.0.10:6379:6379"]
    assert plan["firewall"]["redis"] == [{"port": 6379, "address": "10.0.0.10", "sources": ["10.0.0.11"], "what": "redis-cache"}]
    jobs = {j["job_name"]: j for j in plan["monitoring"]["prometheus_config"]["scrape_configs"]}
    assert [c["targets"][0] for c in jobs["litellm-proxy"]["static_configs"]] == ["litellm-proxy:4000", "10.0.0.11:4000"]
    assert [(c["targets"][0], c["labels"]) for c in jobs["inference-engine"]["static_configs"]] == [
        ("10.0.0.21:8001", {"llmops_host": "inference-1", "engine": "inference-engine"}),
        ("10.0.0.22:8101", {"llmops_host": "inference-2", "engine": "inference-engine"})]


def test_fleet_second_gateway_uses_the_shared_redis():
    plan = ok_plan("gateway-2", fleet(), FLEET_GROUPS)
    assert plan["gateway"]["runs_redis"] is False
    assert plan["gateway"]["redis"] == {"host": "10.0.0.10", "port": 6379}
    assert "redis-cache" not in plan["services"]
    assert plan["secrets"]["litellm-proxy"]["REDIS_PASSWORD"] == ["gateway-1", "gateway_redis_password"]


def test_fleet_gateways_share_the_first_gateways_database():
    first = ok_plan("gateway-1", fleet(), FLEET_GROUPS)
    assert first["services"]["litellm-db"]["ports"] == ["10.0.0.10:5432:5432"]
    assert first["firewall"]["database"] == [{"port": 5432, "address": "10.0.0.10", "sources": ["10.0.0.11"], "what": "litellm-db"}]
    second = ok_plan("gateway-2", fleet(), FLEET_GROUPS)
    assert "litellm-db" not in second["services"]
    assert second["services"]["litellm-proxy"]["environment"]["DATABASE_HOST"] == "10.0.0.10:5432"
    assert second["secrets"]["litellm-proxy"]["DATABASE_PASSWORD"] == ["gateway-1", "gateway_database_password"]
    assert second["firewall"]["database"] == []


def test_fleet_gateways_must_agree_on_the_database_secrets():
    hostvars = fleet()
    other = {"gateway_database_password": "another-db-password-0123", "gateway_salt_key": "another-salt-key-0123"}
    hostvars["gateway-2"] = dict(hostvars["gateway-2"], **other)
    _p, problems = plan_of("gateway-2", hostvars, FLEET_GROUPS)
    assert problems == [
        "gateway-2: gateway_database_password = (secret, 24 characters; value not shown): expected the same value as on gateway-1, whose database "
        "this gateway shares",
        "gateway-2: gateway_salt_key = (secret, 21 characters; value not shown): expected the same value as on gateway-1, whose database this "
        "gateway shares"]


def test_an_external_database_runs_no_litellm_db():
    plan = ok_plan("gpu-stack-1", single(gateway_database_host="pg.internal", gateway_database_port=6543,
                                         gateway_database_name="llm_keys"), ALL_IN_ONE)
    assert "litellm-db" not in plan["services"] and "litellm-db" not in plan["secrets"]
    env = plan["services"]["litellm-proxy"]["environment"]
    assert (env["DATABASE_HOST"], env["DATABASE_NAME"]) == ("pg.internal:6543", "llm_keys")
    assert "litellm-db" not in plan["services"]["litellm-proxy"]["depends_on"]


def test_without_the_database_no_service_no_secrets_and_none_asked_for():
    hostvars = single(gateway_database=False)
    del hostvars["gpu-stack-1"]["gateway_database_password"], hostvars["gpu-stack-1"]["gateway_salt_key"]
    plan = ok_plan("gpu-stack-1", hostvars, ALL_IN_ONE)
    assert "litellm-db" not in plan["services"]
    assert set(plan["secrets"]["litellm-proxy"]) == {"LITELLM_MASTER_KEY", "REDIS_PASSWORD", "VLLM_API_KEY"}
    assert "DATABASE_HOST" not in plan["services"]["litellm-proxy"]["environment"]
    assert plan["gateway"]["database"] is None
    assert plan["gateway"]["litellm_config"]["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}


def test_database_inputs_are_checked():
    hostvars = single(gateway_database_name="LiteLLM-keys", gateway_database_user="1user", gateway_database_port=70000)
    del hostvars["gpu-stack-1"]["gateway_salt_key"]
    _p, problems = plan_of("gpu-stack-1", hostvars, ALL_IN_ONE)
    assert [p.split(" = ")[0] for p in problems] == [
        "gpu-stack-1: gateway_database_name", "gpu-stack-1: gateway_database_user", "gpu-stack-1: gateway_database_port",
        "gpu-stack-1: gateway_salt_key"], problems


def test_a_database_password_with_a_space_is_refused():
    _p, problems = plan_of("gpu-stack-1", single(gateway_database_password="two words-0123456789"), ALL_IN_ONE)  # noqa: S106
    assert problems == ["gpu-stack-1: gateway_database_password = (secret, 20 characters; value not shown): expected no space "
                        "(LiteLLM puts it in the database URL as '+', and the login fails)"]


def test_fleet_engine_is_published_for_the_gateways_only():
    plan = ok_plan("inference-2", fleet(), FLEET_GROUPS)
    assert plan["roles"] == ["nvidia_container_toolkit", "inference_engine"]
    assert plan["services"]["inference-engine"]["ports"] == ["10.0.0.22:8101:8101"]
    assert plan["firewall"]["engine"] == [{"port": 8101, "address": "10.0.0.22", "sources": ["10.0.0.10", "10.0.0.11"],
                                           "what": "inference-engine"}]
    assert plan["firewall_enabled"] is True
    assert plan["first_gateway"] == "gateway-1"
    assert plan["secrets"] == {"engine": {"VLLM_API_KEY": ["inference-2", "inference_engine_api_key"]}}


def test_fleet_engine_address_must_be_an_ip():
    hostvars = fleet()
    del hostvars["inference-2"]["gpu_stack_address"]
    _p, problems = plan_of("inference-2", hostvars, FLEET_GROUPS)
    assert problems == ['inference-2: gpu_stack_address = "gpu2.internal": expected this host\'s IP address on the network between '
                        "gateways and engines (the engines are published there for the gateways; found from ansible_host (a name))"]


def test_fleet_inference_host_without_gateways():
    _p, problems = plan_of("inference-1", fleet(), {"inference_hosts": ["inference-1"]})
    assert any("gpu_stack_gateway_group" in p and "nothing would route" in p for p in problems)


def test_own_scope_wins_over_hostvars():
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE, own={"inference_engine_port": 8005})
    assert plan["engines"][0]["port"] == 8005


def test_compose_project_renders_as_yaml():
    plan = ok_plan("gpu-stack-1", single(), ALL_IN_ONE)
    project = yaml.safe_load(yaml.safe_dump(_plan.compose_project(plan)))
    assert project["name"] == "llm-stack"
    assert set(project["services"]) == set(plan["services"])


def test_the_registry_prefix_reaches_compose_yaml():
    """compose.yaml runs the images the roles pull (or load) from gpu_stack_registry."""
    plan = ok_plan("gpu-stack-1", single(gpu_stack_registry="registry.internal:5000"), ALL_IN_ONE)
    assert {name: service["image"] for name, service in plan["services"].items()} == plan["images"]
    assert plan["services"]["inference-engine"]["image"] == "registry.internal:5000/vllm/vllm-openai:v0.32.0"


# ------------------------------------------------------------------------------------ the sample fleet inventory
# (was tests/unit/plugins/filter/test_topology.py): fleet_inventory/ mixes what real host_vars do:
# two gateways (gw-1 also runs an engine), hosts with another alias, another port, an address other
# than ansible_host, a key of their own, a context length of their own.
INVENTORY = pathlib.Path(__file__).with_name("fleet_inventory")
SAMPLE_GROUPS = {"gateway_hosts": ["gw-1", "gw-2"], "inference_hosts": ["gw-1", "gpu-a", "gpu-b", "gpu-c"]}
SHARED_KEY = "test-shared-engine-key"


def load_fleet():
    """hostvars of the sample inventory as Ansible merges them (all < host entry < host_vars)."""
    tree = yaml.safe_load((INVENTORY / "hosts.yml").read_text(encoding="utf-8"))
    group_all = yaml.safe_load((INVENTORY / "group_vars" / "all.yml").read_text(encoding="utf-8"))
    hostvars = {}
    for group in tree["all"]["children"].values():
        for host, entry in group["hosts"].items():
            hostvars.setdefault(host, dict(group_all)).update(entry or {})
    for path in (INVENTORY / "host_vars").glob("*.yml"):
        hostvars[path.stem].update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return hostvars


def by_id(model_list):
    return {entry["model_info"]["id"]: entry for entry in model_list}


def test_sample_fleet_model_list_seen_by_gw_2():
    models = ok_plan("gw-2", load_fleet(), SAMPLE_GROUPS)["gateway"]["model_list"]
    # one deployment per engine, grouped by alias (qwen3-8b first: gw-1 serves it first)
    assert [(m["model_name"], m["model_info"]["id"]) for m in models] == [
        ("qwen3-8b", "gw-1/inference-engine"),
        ("qwen3-8b", "gpu-a/inference-engine"),
        ("qwen3-8b", "gpu-b/inference-engine"),
        ("qwen2.5-0.5b", "gpu-c/inference-engine"),
    ]
    found = by_id(models)
    assert found["gw-1/inference-engine"]["litellm_params"] == {
        "model": "hosted_vllm/qwen3-8b", "api_base": "http://10.0.0.5:8001/v1", "api_key": "os.environ/VLLM_API_KEY"}
    # gpu_stack_address wins over a non-IP ansible_host; its own port and key; its own context length
    assert found["gpu-b/inference-engine"]["litellm_params"] == {
        "model": "hosted_vllm/qwen3-8b", "api_base": "http://10.0.0.12:8002/v1", "api_key": "os.environ/VLLM_API_KEY_GPU_B"}
    assert found["gpu-b/inference-engine"]["model_info"]["max_input_tokens"] == 16384
    assert found["gpu-a/inference-engine"]["model_info"] == {
        "id": "gpu-a/inference-engine", "mode": "chat", "max_input_tokens": 32768, "allowed_fails": 0}
    # the host's own context length; the model entry's litellm_model_info is merged in
    assert found["gpu-c/inference-engine"]["model_info"] == {
        "id": "gpu-c/inference-engine", "mode": "chat", "max_input_tokens": 4096, "supports_function_calling": False}
    assert found["gpu-c/inference-engine"]["litellm_params"]["api_base"] == "http://10.0.0.13:8001/v1"


def test_sample_fleet_gateways_own_engine_is_reached_on_the_stack_network():
    models = by_id(ok_plan("gw-1", load_fleet(), SAMPLE_GROUPS)["gateway"]["model_list"])
    assert models["gw-1/inference-engine"]["litellm_params"]["api_base"] == "http://inference-engine:8001/v1"
    assert models["gpu-a/inference-engine"]["litellm_params"]["api_base"] == "http://10.0.0.11:8001/v1"


def test_sample_fleet_allowed_fails_only_where_an_alias_has_several_deployments():
    models = by_id(ok_plan("gw-1", load_fleet(), SAMPLE_GROUPS)["gateway"]["model_list"])
    assert {key: value["model_info"].get("allowed_fails") for key, value in models.items()} == {
        "gw-1/inference-engine": 0, "gpu-a/inference-engine": 0, "gpu-b/inference-engine": 0, "gpu-c/inference-engine": None}


def test_role_defaults_apply_to_hosts_that_do_not_set_them():
    """A gateway knows an engine host's port from the role defaults when that host sets none."""
    base = dict(SECRETS, gpu_stack_models=[{"alias": "m", "repo_id": "x/m"}], inference_engine_max_model_len="auto")
    hostvars = {"g": dict(base, ansible_host="10.1.1.9"), "a": dict(base, ansible_host="10.1.1.1"),
                "b": dict(base, ansible_host="10.1.1.2", inference_engine_port="9000")}
    models = ok_plan("g", hostvars, {"inference_hosts": ["a", "b"], "gateway_hosts": ["g"]})["gateway"]["model_list"]
    assert [m["litellm_params"]["api_base"] for m in models] == ["http://10.1.1.1:8001/v1", "http://10.1.1.2:9000/v1"]
    assert all("max_input_tokens" not in m["model_info"] for m in models)  # "auto": vLLM decides


def test_address_falls_back_to_facts_then_names():
    def address(host_vars):
        return _topology.host_address(_settings.HostSettings("n", host_vars))

    assert address({"ansible_host": "node.example", "ansible_facts": {"default_ipv4": {"address": "10.9.0.1"}}}) == (
        "10.9.0.1", "facts (default_ipv4)")
    assert address({"ansible_host": "node.example", "ansible_default_ipv4": {"address": "10.9.0.2"}})[0] == "10.9.0.2"
    assert address({"ansible_host": "node.example"}) == ("node.example", "ansible_host (a name)")
    assert address({}) == ("n", "inventory name")
    assert address({"ansible_host": "10.9.0.3", "ansible_facts": {"default_ipv4": {"address": "10.9.0.1"}}}) == ("10.9.0.3", "ansible_host")
    assert address({"gpu_stack_address": " 10.9.0.4 ", "ansible_host": "10.9.0.3"}) == ("10.9.0.4", "gpu_stack_address")


def test_ipv6_addresses_are_bracketed_in_urls():
    base = dict(SECRETS, gpu_stack_firewall=False)
    hostvars = {"v6": dict(base, gpu_stack_address="fd00::11"), "gw": dict(base, gpu_stack_address="fd00::1")}
    groups = {"inference_hosts": ["v6"], "gateway_hosts": ["gw"]}
    plan = ok_plan("gw", hostvars, groups)
    assert plan["gateway"]["model_list"][0]["litellm_params"]["api_base"] == "http://[fd00::11]:8001/v1"
    jobs = {j["job_name"]: j for j in plan["monitoring"]["prometheus_config"]["scrape_configs"]}
    assert jobs["inference-engine"]["static_configs"][0]["targets"] == ["[fd00::11]:8001"]


def test_the_firewall_refuses_an_ipv6_address_it_cannot_guard():
    hostvars = {"v6": dict(SECRETS, gpu_stack_address="fd00::11"), "gw": dict(SECRETS, gpu_stack_address="10.0.0.1")}
    _p, problems = plan_of("v6", hostvars, {"inference_hosts": ["v6"], "gateway_hosts": ["gw"]})
    assert problems == ['v6: gpu_stack_address = "fd00::11": expected an IPv4 address while gpu_stack_firewall is on (it manages '
                        "IPv4 only; switch it off where a firewall of the site guards inference-engine)"]


def test_sample_fleet_engine_keys_only_for_hosts_with_their_own():
    plan = ok_plan("gw-2", load_fleet(), SAMPLE_GROUPS)
    assert plan["gateway"]["key_envs"] == {"VLLM_API_KEY": "gw-2", "VLLM_API_KEY_GPU_B": "gpu-b"}
    assert plan["secrets"]["litellm-proxy"]["VLLM_API_KEY_GPU_B"] == ["gpu-b", "inference_engine_api_key"]
    # a gateway whose own key is gpu-b's: every other host's key gets a variable of its own
    fleet = load_fleet()
    fleet["gw-2"]["inference_engine_api_key"] = "test-gpu-b-own-key"
    plan = ok_plan("gw-2", fleet, SAMPLE_GROUPS)
    assert plan["gateway"]["key_envs"] == {"VLLM_API_KEY_GW_1": "gw-1", "VLLM_API_KEY_GPU_A": "gpu-a", "VLLM_API_KEY": "gw-2",
                                           "VLLM_API_KEY_GPU_C": "gpu-c"}
    assert plan["secrets"]["litellm-proxy"]["VLLM_API_KEY"] == ["gw-2", "inference_engine_api_key"]


def test_sample_fleet_gateway_addresses_are_the_firewall_sources():
    fleet = load_fleet()
    assert ok_plan("gpu-a", fleet, SAMPLE_GROUPS)["firewall"]["engine"] == [
        {"port": 8001, "address": "10.0.0.11", "sources": ["10.0.0.5", "10.0.1.6"], "what": "inference-engine"}]
    gw1 = ok_plan("gw-1", fleet, SAMPLE_GROUPS)["firewall"]
    assert [entry["sources"] for entry in gw1["engine"] + gw1["redis"]] == [["10.0.1.6"], ["10.0.1.6"]]


def test_sample_fleet_plan_is_stable():
    first = ok_plan("gw-2", load_fleet(), SAMPLE_GROUPS)
    again = ok_plan("gw-2", load_fleet(), SAMPLE_GROUPS)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_own_scope_wins_over_the_inventory_for_the_gateways_own_engine():
    """The gateway's own settings as the play sees them (role defaults, play vars) beat hostvars."""
    own = {"inference_engine_model": "qwen2.5-0.5b", "inference_engine_port": "8005"}
    models = by_id(ok_plan("gw-1", load_fleet(), SAMPLE_GROUPS, own=own)["gateway"]["model_list"])
    assert models["gw-1/inference-engine"]["model_name"] == "qwen2.5-0.5b"
    assert models["gw-1/inference-engine"]["litellm_params"]["api_base"] == "http://inference-engine:8005/v1"


def test_other_gateways_are_scraped_at_their_own_port():
    fleet = load_fleet()
    fleet["gw-2"]["gateway_port"] = 4400
    jobs = {j["job_name"]: j for j in ok_plan("gw-1", fleet, SAMPLE_GROUPS)["monitoring"]["prometheus_config"]["scrape_configs"]}
    assert [c["targets"][0] for c in jobs["litellm-proxy"]["static_configs"]] == ["litellm-proxy:4000", "10.0.1.6:4400"]


def test_several_cpu_engines_on_a_host_do_not_bind_the_same_cores():
    plan = ok_plan("gpu-stack-1", single(gpu_stack_accelerator="cpu", inference_engine_shm_size="4g",
                                         inference_engine_engines=[{}, {}]), ALL_IN_ONE)
    assert [plan["services"][e]["environment"].get("VLLM_CPU_OMP_THREADS_BIND") for e in ("inference-engine", "inference-engine-2")] == [
        "nobind", "nobind"]
    one = ok_plan("gpu-stack-1", single(gpu_stack_accelerator="cpu", inference_engine_shm_size="4g"), ALL_IN_ONE)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in one["services"]["inference-engine"]["environment"]
    own = ok_plan("gpu-stack-1", single(gpu_stack_accelerator="cpu", inference_engine_shm_size="4g",
                                        inference_engine_env={"VLLM_CPU_OMP_THREADS_BIND": "0"},
                                        inference_engine_engines=[{}, {"env": {"VLLM_CPU_OMP_THREADS_BIND": "1"}}]), ALL_IN_ONE)
    assert [own["services"][e]["environment"]["VLLM_CPU_OMP_THREADS_BIND"] for e in ("inference-engine", "inference-engine-2")] == ["0", "1"]


def test_one_gpu_named_by_uuid_and_by_index_is_one_gpu():
    users = [{"variable": "a_share", "name": "by-uuid", "gpus": ["GPU-1234"], "share": 0.6},
             {"variable": "b_share", "name": "by-index", "gpus": [0], "share": 0.6}]
    assert list(_engines.check_gpu_shares(users, 2)) == []  # without the GPU list the UUID cannot be placed
    info = {"gpu_count": 2, "gpus": [{"index": 0, "uuid": "GPU-1234"}, {"index": 1, "uuid": "GPU-5678"}]}
    found = [p.line() for p in _engines.check_gpu_shares(users, 2, info)]
    assert found == ["b_share = 0.6: expected memory shares of the services sharing a GPU to sum below 1 "
                     "(by-uuid 0.6 + by-index 0.6 = 1.2)"]
    users[1]["gpus"] = [1]
    assert list(_engines.check_gpu_shares(users, 2, info)) == []
