"""llm_stack renders valid files for each variant, and its LiteLLM config runs in the real proxy.

Each variant is rendered by tests/integration/playbooks/render_llm_stack.yml (ansible-playbook -c
local, --tags llm_stack_configure, llm_stack_start false, dummy secrets) into a scratch stack root,
then checked with the real tools: Compose v2 (`config -q`, in the llmops-test/compose image because
the build machine may have no Compose v2), promtool (Debian's prometheus package), and the pinned
LiteLLM (`--validate_config`, then a real proxy on loopback in front of the stand-in engine, with a
real redis-server).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "render_llm_stack.yml"
HARNESS = ROOT / "tests" / "harness"
STANDIN = ROOT / "tests" / "fixtures" / "standin_engine" / "standin_engine.py"
FAKE_NVIDIA_SMI = ROOT / "tests" / "fixtures" / "fake_nvidia_smi"
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
SECRETS = {
    "llm_stack_litellm_master_key": "sk-test-only-master-key",
    "llm_stack_engine_api_key": "test-only-engine-key",
    "llm_stack_redis_password": "test-only-redis-password",
}

VARIANTS = {
    "gpu-all": {"llm_stack_engine_tensor_parallel_size": 4},
    "gpu-count": {"llm_stack_engine_gpus": 2},
    "gpu-ids": {"llm_stack_engine_gpus": [1, 3], "llm_stack_engine_ipc_host": False},
    "cpu": {
        "llm_stack_accelerator": "cpu",
        "llm_stack_engine_max_model_len": 4096,
        "model_store_models": [{"alias": "qwen2.5-0.5b", "source": "modelscope", "repo_id": "Qwen/Qwen2.5-0.5B-Instruct"}],
    },
    "prometheus-off": {"llm_stack_engine_gpus": 1, "llm_stack_prometheus_enabled": False, "llm_stack_litellm_num_workers": 1},
    "registry": {"llm_stack_engine_gpus": 1, "llm_stack_registry": "registry.internal:5000"},
    "published": {
        "llm_stack_engine_gpus": 1,
        "llm_stack_engine_publish": True,
        "llm_stack_redis_publish": True,
        "llm_stack_litellm_bind_address": "10.1.2.3",
    },
    "settings": {
        "llm_stack_engine_gpus": 1,
        "model_store_models": [
            {
                "alias": "qwen3-8b",
                "repo_id": "Qwen/Qwen3-8B",
                "target_dir": "{{ model_store_models_root }}/qwen3-8b-custom",
                "engine": {"max_model_len": 8192, "extra_args": ["--enable-prefix-caching", "--max-num-seqs", "64"]},
            },
            {"alias": "qwen3-guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"},
        ],
        "llm_stack_litellm_extra_models": [
            {
                "model_name": "qwen3-8b-backup",
                "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": "http://backup.internal:8001/v1", "api_key": "os.environ/VLLM_API_KEY"},
            }
        ],
        "llm_stack_litellm_fallbacks": [{"qwen3-8b": ["qwen3-8b-backup"]}],
        "llm_stack_litellm_cache_enabled": True,
        "llm_stack_litellm_settings_extra": {"drop_params": True, "cache_params": {"ttl": 60}},
        "llm_stack_router_settings_extra": {"num_retries": 4},
        "llm_stack_general_settings_extra": {"max_parallel_requests": 200},
    },
    "moderation": {
        "llm_stack_engine_gpus": [0, 1],
        "llm_stack_engine_gpu_memory_utilization": 0.8,
        "llm_stack_moderation_enabled": True,
        "llm_stack_moderation_api_key": "test-only-guard-key",
        "model_store_models": [
            {"alias": "qwen3-8b", "repo_id": "Qwen/Qwen3-8B"},
            {"alias": "qwen3guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"},
        ],
    },
    "moderation-cpu": {
        "llm_stack_accelerator": "cpu",
        "llm_stack_engine_max_model_len": 4096,
        "llm_stack_moderation_enabled": True,
        "llm_stack_moderation_api_key": "test-only-guard-key",
        "llm_stack_moderation_action": "log",
        "llm_stack_moderation_on_error": "open",
        "llm_stack_moderation_screen_output": False,
        "llm_stack_moderation_max_model_len": 2048,
        "llm_stack_moderation_env": {"STANDIN_ENGINE_ID": "guard"},
        "model_store_models": [
            {"alias": "qwen2.5-0.5b", "repo_id": "Qwen/Qwen2.5-0.5B-Instruct"},
            {"alias": "qwen3guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"},
        ],
    },
}
GUARD_KEY = "test-only-guard-key"
GUARDRAILS = ROOT / "roles" / "llm_stack" / "files" / "guardrails"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args, timeout=600, check=True, env=None, cwd=ROOT):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def render(tmp: pathlib.Path, variant: dict, extra_args=(), check=True, env_extra=None):
    tmp.mkdir(parents=True, exist_ok=True)
    varfile = tmp / "vars.yml"
    varfile.write_text(yaml.safe_dump({**SECRETS, **variant}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env_extra or {}))
    return run(
        [BIN / "ansible-playbook", "-c", "local", "-i", "localhost,", PLAYBOOK, "--tags", "llm_stack_configure",
         "-e", f"@{varfile}", "-e", f"render_root={tmp}", *extra_args],
        env=env,
        check=check,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each variant rendered once: {name: stack root}."""
    out = {}
    for name, variant in VARIANTS.items():
        tmp = tmp_path_factory.mktemp(name)
        render(tmp, variant)
        out[name] = tmp / "stack"
    return out


def compose(stack: pathlib.Path) -> dict:
    return yaml.safe_load((stack / "compose.yaml").read_text(encoding="utf-8"))


def litellm_config(stack: pathlib.Path) -> dict:
    return yaml.safe_load((stack / "config" / "litellm.yaml").read_text(encoding="utf-8"))


def engine_args(stack: pathlib.Path) -> list[str]:
    return compose(stack)["services"]["inference-engine"]["command"]


def flag(args: list[str], name: str):
    return args[args.index(name) + 1] if name in args else None


# ---------------------------------------------------------------- real tools on every variant


@pytest.fixture(scope="module")
def compose_image():
    base = os.environ.get("BASE_IMAGE") or run([HARNESS / "base-image.sh"]).stdout.strip().splitlines()[-1]
    proc = run([HARNESS / "images" / "build.sh", "compose"], env=dict(os.environ, BASE_IMAGE=base))
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_config_is_valid(rendered, compose_image, name):
    stack = rendered[name]
    root = stack.parent
    run(["docker", "run", "--rm", "--network", "none", "-v", f"{root}:{root}:ro", compose_image,
         "--project-directory", stack, "-f", stack / "compose.yaml", "config", "-q"])


@pytest.fixture(scope="module")
def promtool():
    run([HARNESS / "ensure-debs.sh", "prometheus"])
    return shutil.which("promtool") or "/usr/bin/promtool"


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.get("llm_stack_prometheus_enabled", True)])
def test_promtool_accepts_config_and_rules(rendered, promtool, name):
    prom = rendered[name] / "config" / "prometheus"
    run([promtool, "check", "config", "--syntax-only", prom / "prometheus.yml"])
    out = run([promtool, "check", "rules", prom / "rules" / "llm_stack.yml"]).stdout
    assert "SUCCESS: 3 rules found" in out


@pytest.fixture(scope="module")
def litellm_venv():
    out = run([HARNESS / "litellm_venv.sh"], timeout=1200).stdout.strip().splitlines()[-1]
    return pathlib.Path(out)


def litellm_env(**extra):
    return dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        LITELLM_MASTER_KEY=SECRETS["llm_stack_litellm_master_key"],
        VLLM_API_KEY=SECRETS["llm_stack_engine_api_key"],
        REDIS_PASSWORD=SECRETS["llm_stack_redis_password"],
        **extra,
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_litellm_validates_config(rendered, litellm_venv, name, tmp_path):
    # As in the container: the guardrail files sit next to the config (/app), where LiteLLM imports them.
    config = tmp_path / "litellm.yaml"
    shutil.copy(rendered[name] / "config" / "litellm.yaml", config)
    for guard_file in (rendered[name] / "config" / "guardrails").glob("*.py"):
        shutil.copy(guard_file, tmp_path / guard_file.name)
    out = run([litellm_venv / "bin" / "litellm", "--config", config, "--validate_config"],
              env=litellm_env(MODERATION_API_KEY=GUARD_KEY), cwd=tmp_path, timeout=180).stdout
    assert "config OK" in out


def test_litellm_validation_refuses_a_bad_config(rendered, litellm_venv, tmp_path):
    bad = litellm_config(rendered["gpu-all"])
    bad["router_settings"]["routing_strategy"] = "no-such-strategy"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    proc = run([litellm_venv / "bin" / "litellm", "--config", path, "--validate_config"], env=litellm_env(), cwd=tmp_path, check=False, timeout=180)
    assert proc.returncode != 0


# ---------------------------------------------------------------- what each variant says


def test_engine_command_is_vllm_serve_arguments(rendered):
    stack = rendered["gpu-all"]
    engine = compose(stack)["services"]["inference-engine"]
    args = engine["command"]
    assert args[0] == "/models/Qwen3-8B", "the command starts with the model path (entrypoint is vllm serve)"
    assert "serve" not in args
    assert flag(args, "--served-model-name") == "qwen3-8b"
    assert flag(args, "--port") == "8001"
    assert flag(args, "--tensor-parallel-size") == "4"
    assert flag(args, "--gpu-memory-utilization") == "0.9"
    assert flag(args, "--max-model-len") == "32768"
    assert "--api-key" not in args and "--disable-log-requests" not in args
    assert engine["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?")
    assert engine["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    model_mount = engine["volumes"][0]
    assert model_mount["target"] == "/models/Qwen3-8B" and model_mount["read_only"] is True
    assert model_mount["source"].endswith("/models/Qwen3-8B")
    assert any(v["target"] == "/var/log/vllm" and v["source"].endswith("/stack/logs/vllm") for v in engine["volumes"])
    assert engine["environment"]["VLLM_LOGGING_CONFIG_PATH"] == "/etc/vllm/logging.json"
    assert {"type": "bind", "source": str(stack / "config" / "vllm-logging.json"), "target": "/etc/vllm/logging.json", "read_only": True} in engine["volumes"]
    assert engine["healthcheck"]["start_period"] == "900s" and "/health" in " ".join(engine["healthcheck"]["test"])
    assert engine["image"] == "vllm/vllm-openai:v0.28.0"
    assert engine["ipc"] == "host"


@pytest.mark.parametrize(
    ("name", "device", "visible", "tp"),
    [
        ("gpu-all", {"count": "all"}, "all", "4"),
        ("gpu-count", {"count": 2}, "0,1", "2"),
        ("gpu-ids", {"device_ids": ["1", "3"]}, "1,3", "2"),
    ],
)
def test_gpu_selection(rendered, name, device, visible, tp):
    engine = compose(rendered[name])["services"]["inference-engine"]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["capabilities"] == ["gpu"]
    assert {k: v for k, v in devices[0].items() if k in ("count", "device_ids")} == device, "count and device_ids are exclusive"
    assert engine["environment"]["NVIDIA_VISIBLE_DEVICES"] == visible
    assert flag(engine["command"], "--tensor-parallel-size") == tp


def test_vllm_logging_config_loads(rendered, tmp_path):
    """The file vLLM gets as VLLM_LOGGING_CONFIG_PATH is a dictConfig that logs to logs/vllm."""
    import logging.config  # noqa: PLC0415 (only this test configures logging)

    config = json.loads((rendered["gpu-all"] / "config" / "vllm-logging.json").read_text(encoding="utf-8"))
    assert config["handlers"]["file"]["filename"] == "/var/log/vllm/vllm.log"
    config["handlers"]["file"]["filename"] = str(tmp_path / "vllm.log")
    config["loggers"] = {"vllm-logging-test": config["loggers"]["vllm"]}
    logging.config.dictConfig(config)
    logging.getLogger("vllm-logging-test").info("written to the file")
    for handler in logging.getLogger("vllm-logging-test").handlers:
        handler.close()
    assert "written to the file" in (tmp_path / "vllm.log").read_text(encoding="utf-8")


def test_gpu_ids_variant_uses_shm_size_instead_of_host_ipc(rendered):
    engine = compose(rendered["gpu-ids"])["services"]["inference-engine"]
    assert "ipc" not in engine and engine["shm_size"] == "8g"


def test_cpu_profile(rendered):
    engine = compose(rendered["cpu"])["services"]["inference-engine"]
    args = engine["command"]
    assert engine["image"] == "vllm/vllm-openai-cpu:v0.28.0-x86_64"
    assert "deploy" not in engine, "no GPU reservation on cpu"
    assert engine["shm_size"] == "8g" and engine["cap_add"] == ["SYS_NICE"]
    assert engine["security_opt"] == ["seccomp=unconfined"]
    assert engine["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert engine["environment"]["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert flag(args, "--dtype") == "bfloat16"
    assert flag(args, "--max-model-len") == "4096"
    assert args[0] == "/models/Qwen2.5-0.5B-Instruct"
    assert "--gpu-memory-utilization" not in args and "--tensor-parallel-size" not in args


@pytest.mark.parametrize("name", VARIANTS)
def test_only_the_gateway_is_published_on_all_interfaces(rendered, name):
    services = compose(rendered[name])["services"]
    ports = {svc: spec.get("ports", []) for svc, spec in services.items()}
    if name == "published":
        assert ports["inference-engine"] == ["127.0.0.1:8001:8001"]
        assert ports["redis-cache"] == ["127.0.0.1:6379:6379"]
        assert ports["litellm-proxy"] == ["10.1.2.3:4000:4000"]
        return
    assert ports["litellm-proxy"] == ["0.0.0.0:4000:4000"]
    assert ports["inference-engine"] == [] and ports["redis-cache"] == []
    if "prometheus" in services:
        assert ports["prometheus"] == ["127.0.0.1:9090:9090"]


@pytest.mark.parametrize("name", VARIANTS)
def test_common_service_settings(rendered, name):
    stack = rendered[name]
    doc = compose(stack)
    text = (stack / "compose.yaml").read_text(encoding="utf-8")
    assert "version" not in doc, "Compose v2 files carry no version key"
    for secret in SECRETS.values():
        assert secret not in text, "secrets stay in .env"
    for svc, spec in doc["services"].items():
        assert spec["restart"] == "unless-stopped", svc
        assert spec["container_name"] == svc
        assert "healthcheck" in spec, svc
        if svc not in ("inference-engine", "moderation-engine"):
            assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void", svc
    gateway = doc["services"]["litellm-proxy"]
    assert gateway["depends_on"] == {
        "inference-engine": {"condition": "service_healthy"},
        "redis-cache": {"condition": "service_healthy"},
        **({"moderation-engine": {"condition": "service_healthy"}} if "moderation-engine" in doc["services"] else {}),
    }
    assert gateway["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert gateway["environment"]["LITELLM_LOG"] == "ERROR"
    assert "/health/liveliness" in " ".join(gateway["healthcheck"]["test"])
    assert {"type": "bind", "source": str(stack / "config" / "litellm.yaml"), "target": "/app/config.yaml", "read_only": True} in gateway["volumes"]
    redis = doc["services"]["redis-cache"]
    assert "--requirepass" in redis["command"][-1] and "$${REDIS_PASSWORD}" in redis["command"][-1]
    assert "--appendonly yes" in redis["command"][-1]
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][1]
    env = stack / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    content = env.read_text(encoding="utf-8")
    assert all(f"='{value}'" in content for value in SECRETS.values())


def test_workers_and_multiproc_dir(rendered):
    two = compose(rendered["gpu-all"])["services"]["litellm-proxy"]
    assert flag(two["command"], "--num_workers") == "2"
    assert two["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus_multiproc"
    assert two["tmpfs"] == ["/tmp/prometheus_multiproc"]
    one = compose(rendered["prometheus-off"])["services"]["litellm-proxy"]
    assert flag(one["command"], "--num_workers") == "1"
    assert "PROMETHEUS_MULTIPROC_DIR" not in one["environment"] and "tmpfs" not in one


def test_prometheus_switch(rendered):
    assert "prometheus" not in compose(rendered["prometheus-off"])["services"]
    prom = compose(rendered["gpu-all"])["services"]["prometheus"]
    assert prom["user"] == "65534:65534"
    assert "--storage.tsdb.retention.time=15d" in prom["command"]
    assert (rendered["gpu-all"] / "data" / "prometheus").stat().st_uid == 65534


def test_registry_prefix(rendered):
    images = {svc: spec["image"] for svc, spec in compose(rendered["registry"])["services"].items()}
    assert images == {
        "inference-engine": "registry.internal:5000/vllm/vllm-openai:v0.28.0",
        "litellm-proxy": "registry.internal:5000/berriai/litellm:v1.106.2",
        "redis-cache": "registry.internal:5000/redis:7.2.5-alpine",
        "prometheus": "registry.internal:5000/prom/prometheus:v2.53.2",
    }


def test_prometheus_scrapes_the_three_jobs(rendered):
    prom = yaml.safe_load((rendered["gpu-all"] / "config" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"litellm-proxy", "inference-engine", "prometheus"}
    assert jobs["litellm-proxy"]["metrics_path"] == "/metrics/"
    assert jobs["litellm-proxy"]["static_configs"][0]["targets"] == ["litellm-proxy:4000"]
    assert jobs["inference-engine"]["static_configs"][0]["targets"] == ["inference-engine:8001"]
    rules_file = rendered["gpu-all"] / "config" / "prometheus" / "rules" / "llm_stack.yml"
    rules = "\n".join(line for line in rules_file.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#"))
    assert "vllm:kv_cache_usage_perc" in rules and "vllm:num_requests_waiting" in rules and "up == 0" in rules
    assert "gpu_cache_usage_perc" not in rules and "time_per_output_token" not in rules


def test_litellm_config_defaults(rendered):
    cfg = litellm_config(rendered["gpu-all"])
    assert cfg["model_list"] == [
        {
            "model_name": "qwen3-8b",
            "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": "http://inference-engine:8001/v1", "api_key": "os.environ/VLLM_API_KEY"},
            # id: <inventory host>/<alias>, as every gateway of a fleet names the deployment (docs/multi-host.md)
            "model_info": {"id": "localhost/qwen3-8b", "mode": "chat", "max_input_tokens": 32768},
        }
    ]
    assert cfg["litellm_settings"] == {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False}
    assert cfg["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    router = cfg["router_settings"]
    assert router["routing_strategy"] == "simple-shuffle"
    assert (router["num_retries"], router["allowed_fails"], router["cooldown_time"], router["timeout"]) == (2, 3, 5, 600)
    assert (router["redis_host"], router["redis_port"], router["redis_password"]) == ("redis-cache", 6379, "os.environ/REDIS_PASSWORD")
    assert "set_verbose" not in json.dumps(cfg)


def test_litellm_settings_variant(rendered):
    stack = rendered["settings"]
    cfg = litellm_config(stack)
    assert [m["model_name"] for m in cfg["model_list"]] == ["qwen3-8b", "qwen3-8b-backup"]
    assert cfg["model_list"][0]["model_info"]["max_input_tokens"] == 8192
    assert cfg["router_settings"]["fallbacks"] == [{"qwen3-8b": ["qwen3-8b-backup"]}]
    assert cfg["router_settings"]["num_retries"] == 4
    assert cfg["litellm_settings"]["drop_params"] is True
    assert cfg["litellm_settings"]["cache"] is True
    assert cfg["litellm_settings"]["cache_params"] == {
        "type": "redis", "host": "redis-cache", "port": 6379, "password": "os.environ/REDIS_PASSWORD", "ttl": 60,
    }, "extras merge recursively"
    assert cfg["general_settings"]["max_parallel_requests"] == 200
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    args = engine_args(stack)
    assert args[0] == "/models/qwen3-8b-custom"
    assert flag(args, "--max-model-len") == "8192"
    assert args[-3:] == ["--enable-prefix-caching", "--max-num-seqs", "64"]


# ---------------------------------------------------------------- preflight and idempotence


def test_rerender_changes_nothing(tmp_path):
    render(tmp_path, VARIANTS["gpu-all"])
    out = render(tmp_path, VARIANTS["gpu-all"]).stdout
    assert "changed=0" in out, out[-2000:]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_missing_secret_fails_naming_it(tmp_path, missing):
    proc = render(tmp_path, {**VARIANTS["gpu-all"], missing: ""}, check=False)
    assert proc.returncode != 0
    assert f"{missing} is not set" in proc.stdout
    for value in SECRETS.values():
        assert value not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"llm_stack_engine_extra_args": ["--disable-log-requests"]}, "--disable-log-requests no longer exists"),
        ({"llm_stack_engine_gpus": "all"}, "set llm_stack_engine_tensor_parallel_size to a number"),
        ({"llm_stack_engine_gpus": 0}, "llm_stack_engine_gpus: must be all"),
        ({"llm_stack_litellm_master_key": "no-prefix-key", "llm_stack_engine_gpus": 1}, "must start with sk-"),
        ({"llm_stack_accelerator": "cpu", "llm_stack_engine_shm_size": "1g"}, "at least 4g"),
        ({"llm_stack_engine_model": "nope", "llm_stack_engine_gpus": 1}, "nope is not an alias"),
        ({"render_create_model_dirs": False, "llm_stack_engine_gpus": 1}, "run the model_store role first"),
    ],
)
def test_preflight_refuses(tmp_path, variant, message):
    proc = render(tmp_path, variant, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]


# ---------------------------------------------------------------- GPU facts (fake nvidia-smi)

QWEN3_8B_CONFIG = {"num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 36, "hidden_size": 4096}


def render_on_fake_gpus(tmp: pathlib.Path, scenario: str, variant: dict, check=True):
    """Render with llm_stack_gpu_check on, nvidia-smi being the fixture, and a Qwen3-8B-sized model
    directory (its config.json and a sparse 16.4 GB weights file)."""
    model = tmp / "models" / "Qwen3-8B"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(QWEN3_8B_CONFIG), encoding="utf-8")
    with open(model / "model.safetensors", "wb") as handle:
        handle.truncate(16_400_000_000)
    env = {"PATH": f"{FAKE_NVIDIA_SMI}:{os.environ['PATH']}", "FAKE_NVIDIA_SMI_SCENARIO": scenario}
    return render(tmp, {"llm_stack_gpu_check": True, **variant}, env_extra=env, check=check)


def test_tensor_parallel_follows_the_gpus_the_host_reports(tmp_path):
    out = render_on_fake_gpus(tmp_path, "h100x8", {}).stdout
    args = engine_args(tmp_path / "stack")
    assert flag(args, "--tensor-parallel-size") == "8"
    assert "WARNING: qwen3-8b probably does not fit" not in out


def test_tensor_parallel_is_a_power_of_two_that_divides_the_heads(tmp_path):
    render_on_fake_gpus(tmp_path, "h100x8", {"llm_stack_engine_gpus": [0, 1, 2, 3, 4, 5]})
    engine = compose(tmp_path / "stack")["services"]["inference-engine"]
    assert flag(engine["command"], "--tensor-parallel-size") == "4"
    assert engine["environment"]["NVIDIA_VISIBLE_DEVICES"] == "0,1,2,3,4,5"


def test_fit_warning_on_a_24_gb_gpu(tmp_path):
    out = render_on_fake_gpus(tmp_path, "rtx4090", {"llm_stack_engine_max_model_len": 40960}).stdout
    assert "WARNING: qwen3-8b probably does not fit" in out, out[-3000:]
    assert flag(engine_args(tmp_path / "stack"), "--tensor-parallel-size") == "1"


def test_gpu_ids_the_host_does_not_have(tmp_path):
    proc = render_on_fake_gpus(tmp_path, "h100", {"llm_stack_engine_gpus": [0, 3]}, check=False)
    assert proc.returncode != 0 and "has 1 GPU(s)" in proc.stdout, proc.stdout[-3000:]


def test_no_driver_fails_clearly(tmp_path):
    proc = render_on_fake_gpus(tmp_path, "no_driver", {}, check=False)
    assert proc.returncode != 0
    assert "nvidia" in proc.stdout.lower(), proc.stdout[-3000:]


# ---------------------------------------------------------------- the real proxy on loopback


def wait_http(url, timeout=120, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def http(method, url, body=None, key=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def live_proxy(rendered, litellm_venv, tmp_path):
    """redis-server, the stand-in engine and the LiteLLM proxy with the rendered config (api_base and
    Redis pointed at loopback), all on free loopback ports."""
    assert STANDIN.is_file(), f"the stand-in engine fixture {STANDIN} is missing"
    run([HARNESS / "ensure-debs.sh", "redis-server"])
    procs = []
    redis_port, engine_port, proxy_port = free_port(), free_port(), free_port()
    password = SECRETS["llm_stack_redis_password"]
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--requirepass", password,
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        engine_env = dict(os.environ, VLLM_API_KEY=SECRETS["llm_stack_engine_api_key"], STANDIN_ENGINE_ID="render-test-engine")
        procs.append(subprocess.Popen(
            [sys.executable, STANDIN, "/models/Qwen3-8B", "--served-model-name", "qwen3-8b", "--host", "127.0.0.1", "--port", str(engine_port)],
            env=engine_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{engine_port}/health", timeout=30, proc=procs[-1])

        cfg = litellm_config(rendered["gpu-all"])
        cfg["model_list"][0]["litellm_params"]["api_base"] = f"http://127.0.0.1:{engine_port}/v1"
        cfg["router_settings"].update(redis_host="127.0.0.1", redis_port=redis_port)
        config = tmp_path / "litellm.yaml"
        config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        multiproc = tmp_path / "prometheus_multiproc"
        multiproc.mkdir()
        log = (tmp_path / "litellm.log").open("w")
        procs.append(subprocess.Popen(
            [litellm_venv / "bin" / "litellm", "--config", config, "--host", "127.0.0.1", "--port", str(proxy_port), "--num_workers", "2"],
            env=litellm_env(PROMETHEUS_MULTIPROC_DIR=str(multiproc)), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        try:
            wait_http(f"http://127.0.0.1:{proxy_port}/health/liveliness", timeout=180, proc=procs[-1])
        except AssertionError:
            log.flush()
            raise AssertionError((tmp_path / "litellm.log").read_text()[-4000:]) from None
        yield f"http://127.0.0.1:{proxy_port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_real_proxy_serves_the_rendered_config(live_proxy):
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    status, text = http("POST", f"{live_proxy}/v1/chat/completions", body, key=SECRETS["llm_stack_litellm_master_key"])
    assert status == 200, text
    answer = json.loads(text)
    assert answer["choices"][0]["message"]["content"]
    assert "render-test-engine" in text, "the answer comes from the stand-in engine"

    status, text = http("POST", f"{live_proxy}/v1/chat/completions", body)
    assert status == 401, (status, text)
    # Without a database LiteLLM cannot look up virtual keys: any key but the master key is refused
    # with 400 "No connected db." (LiteLLM 1.106.2), not 401.
    for wrong in ("sk-wrong-key", "not-a-litellm-key"):
        status, text = http("POST", f"{live_proxy}/v1/chat/completions", body, key=wrong)
        assert status == 400 and "No connected db" in text, (wrong, status, text)

    status, metrics = http("GET", f"{live_proxy}/metrics/")
    assert status == 200
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and not line.startswith("#")}
    assert any(name.startswith("litellm_") for name in names), sorted(names)[:20]


# ---------------------------------------------------------------- moderation (the filtered system)


def test_moderation_is_off_by_default(rendered):
    assert "moderation-engine" not in compose(rendered["gpu-all"])["services"]
    assert "guardrails" not in litellm_config(rendered["gpu-all"])
    assert not (rendered["gpu-all"] / "config" / "guardrails").exists()
    assert "MODERATION_API_KEY" not in (rendered["gpu-all"] / ".env").read_text(encoding="utf-8")


def test_moderation_gpu_variant(rendered):
    stack = rendered["moderation"]
    doc = compose(stack)
    guard = doc["services"]["moderation-engine"]
    assert guard["command"][:4] == ["/models/Qwen3Guard-Gen-0.6B", "--served-model-name", "qwen3guard", "--port"]
    assert flag(guard["command"], "--gpu-memory-utilization") == "0.1"
    assert guard["environment"]["VLLM_API_KEY"].startswith("${MODERATION_API_KEY:?")
    assert guard["environment"]["NVIDIA_VISIBLE_DEVICES"] == "0"
    assert guard["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
    assert guard["volumes"][0]["source"].endswith("/models/Qwen3Guard-Gen-0.6B") and guard["volumes"][0]["read_only"] is True
    assert guard["depends_on"] == {"inference-engine": {"condition": "service_healthy"}}
    assert "ports" not in guard, "the guard stays on the stack network"
    gateway = doc["services"]["litellm-proxy"]
    assert gateway["environment"]["MODERATION_API_KEY"].startswith("${MODERATION_API_KEY:?")
    for name in ("llmops_guard.py", "guard_parser.py"):
        assert {"type": "bind", "source": str(stack / "config" / "guardrails" / name), "target": f"/app/{name}", "read_only": True} in gateway["volumes"]
        assert (stack / "config" / "guardrails" / name).read_bytes() == (GUARDRAILS / name).read_bytes()
    assert GUARD_KEY not in (stack / "compose.yaml").read_text(encoding="utf-8")
    env = stack / ".env"
    assert env.stat().st_mode & 0o777 == 0o600 and f"MODERATION_API_KEY='{GUARD_KEY}'" in env.read_text(encoding="utf-8")
    (rail,) = litellm_config(stack)["guardrails"]
    assert rail["guardrail_name"] == "llmops-moderation"
    assert rail["litellm_params"] == {
        "guardrail": "llmops_guard.LlmopsGuard", "mode": ["pre_call", "post_call"], "default_on": True,
        "api_base": "http://moderation-engine:8001/v1", "api_key": "os.environ/MODERATION_API_KEY", "guard_model": "qwen3guard",
        "moderation_action": "block", "screen_input": True, "screen_output": True, "screen_stream": True,
        "on_error": "closed", "controversial": "strict", "timeout": 10,
    }
    prom = yaml.safe_load((stack / "config" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in prom["scrape_configs"]}
    assert jobs["moderation-engine"] == ["moderation-engine:8001"]


def test_moderation_cpu_variant(rendered):
    stack = rendered["moderation-cpu"]
    guard = compose(stack)["services"]["moderation-engine"]
    assert "deploy" not in guard and guard["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "--gpu-memory-utilization" not in guard["command"] and flag(guard["command"], "--max-model-len") == "2048"
    assert guard["environment"]["STANDIN_ENGINE_ID"] == "guard" and guard["environment"]["HF_HUB_OFFLINE"] == "1"
    params = litellm_config(stack)["guardrails"][0]["litellm_params"]
    assert (params["moderation_action"], params["on_error"], params["screen_output"]) == ("log", "open", False)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"llm_stack_moderation_gpu_memory_utilization": 0.3}, "llm_stack_moderation_gpu_memory_utilization: moderation-engine shares a GPU"),
        ({"llm_stack_moderation_gpus": ["2"], "llm_stack_moderation_gpu_memory_utilization": 0.3, "llm_stack_moderation_alias": "qwen3-8b"},
         "llm_stack_moderation_alias: must be the alias"),
        ({"llm_stack_moderation_alias": "qwen3-8b"}, "llm_stack_moderation_alias: must be the alias"),
        ({"llm_stack_moderation_alias": "nope"}, "llm_stack_moderation_alias: must be the alias"),
        ({"llm_stack_moderation_api_key": ""}, "llm_stack_moderation_api_key is not set"),
        ({"llm_stack_moderation_action": "mask"}, "llm_stack_moderation_action"),
    ],
)
def test_moderation_preflight_refuses(tmp_path, variant, message):
    proc = render(tmp_path, {**VARIANTS["moderation"], **variant}, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert GUARD_KEY not in proc.stdout + proc.stderr
