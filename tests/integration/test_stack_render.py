"""The stack roles render valid files for each variant of one host, checked with the real tools.

Every variant is a host of one generated inventory (all-in-one, in gpu_hosts), rendered side by
side in one run of tests/integration/playbooks/render_stack.yml: playbooks/validate.yml, then the
roles inference_engine, moderation, gateway and monitoring with gpu_stack_start false, -c local,
into a scratch root per host (helpers: stack_files.py). The files are then checked with the real
tools: Compose v2 (``config -q``), promtool 3.x (tests/harness/prometheus3.sh), the pinned LiteLLM
(``--validate_config``, then a real proxy on loopback in front of the stand-in engine, with a real
redis-server). One variant also runs the roles' own checks (gpu_stack_validate true: the real tools
in the stack's images, tests/harness/images). Runs beside that one: wrong inputs refused by the
validation phase before anything is written, what only the host can tell (model directories, GPUs
through a fake nvidia-smi), --check --diff on a fresh root; after it: a second run changes nothing,
and a file the real tool refuses leaves the live one alone.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_files as sf  # noqa: E402  (tests/integration is not a package)
import stack_processes as sp  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = sf.ROOT
FAKE_NVIDIA_SMI = ROOT / "tests" / "fixtures" / "fake_nvidia_smi"
GUARDRAILS = ROOT / "roles" / "moderation" / "files" / "guardrails"
DEFAULTS = {role: yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
            for role in ("inference_engine", "gateway", "monitoring")}
VLLM = DEFAULTS["inference_engine"]["inference_engine_version"]
LITELLM = DEFAULTS["gateway"]["gateway_litellm_version"]
REDIS_IMAGE = DEFAULTS["gateway"]["gateway_redis_image"]
PROMETHEUS_IMAGE = DEFAULTS["monitoring"]["monitoring_prometheus_image"]
SECRETS = {
    "gateway_master_key": "sk-test-only-master-key",
    "inference_engine_api_key": "test-only-engine-key-0123",
    "gateway_redis_password": "test-only-redis-password",
    "gateway_database_password": "test-only-database-password",
    "gateway_salt_key": "test-only-salt-key-0001",
}
GUARD_KEY = "test-only-guard-key-0123"
ALL_SECRETS = (*SECRETS.values(), GUARD_KEY)
QWEN3_8B = {"alias": "qwen3-8b", "source": "modelscope", "repo_id": "Qwen/Qwen3-8B"}
QWEN25 = {"alias": "qwen2.5-0.5b", "source": "modelscope", "repo_id": "Qwen/Qwen2.5-0.5B-Instruct"}
GUARD = {"alias": "qwen3guard", "source": "modelscope", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"}
MODELS_ROOT = "@models@"  # replaced by the host's models root

VARIANTS = {
    "gpu-all": {"inference_engine_tensor_parallel_size": 4},
    # gpu_stack_registry prefixes every image (here with a count of GPUs: tensor parallel auto)
    "gpu-count": {"inference_engine_gpus": 2, "gpu_stack_registry": "registry.internal:5000"},
    # device ids without host IPC; the engine and Redis also published on loopback, the gateway on one address
    "gpu-ids": {
        "inference_engine_gpus": [1, 3],
        "inference_engine_ipc_host": False,
        "inference_engine_publish": True,
        "gateway_redis_publish": True,
        "gateway_bind_address": "10.1.2.3",
    },
    # two CPU engines behind one alias
    "cpu": {"gpu_stack_accelerator": "cpu", "inference_engine_max_model_len": 4096, "gpu_stack_models": [QWEN25],
            "inference_engine_engines": [{}, {}]},
    # the gateway's settings merged into litellm.yaml; no Prometheus, one LiteLLM worker
    "settings": {
        "inference_engine_gpus": 1,
        "monitoring_enabled": False,
        "gateway_num_workers": 1,
        "gpu_stack_models": [
            {**QWEN3_8B, "target_dir": f"{MODELS_ROOT}/qwen3-8b-custom"},
            {"alias": "qwen3-guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"},
        ],
        "inference_engine_max_model_len": 8192,
        "inference_engine_extra_args": ["--enable-prefix-caching", "--max-num-seqs", "64"],
        "gateway_extra_models": [
            {
                "model_name": "qwen3-8b-backup",
                "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": "http://backup.internal:8001/v1", "api_key": "os.environ/VLLM_API_KEY"},
            }
        ],
        "gateway_fallbacks": [{"qwen3-8b": ["qwen3-8b-backup"]}],
        "gateway_cache_enabled": True,
        "gateway_litellm_settings": {"drop_params": True, "cache_params": {"ttl": 60}},
        "gateway_router_settings": {"num_retries": 4},
        "gateway_general_settings": {"max_parallel_requests": 200},
    },
    # the guard shares GPU 0; Prometheus runs as another uid (its data folder's owner)
    "moderation": {
        "inference_engine_gpus": [0, 1],
        "inference_engine_gpu_memory_utilization": 0.8,
        "moderation_enabled": True,
        "moderation_api_key": GUARD_KEY,
        "gpu_stack_models": [QWEN3_8B, GUARD],
        "monitoring_uid": 1234,
        "monitoring_gid": 1234,
    },
    # with the roles' own checks (gpu_stack_validate true) in the stack's images: see CHECKED
    "moderation-cpu": {
        "gpu_stack_accelerator": "cpu",
        "inference_engine_max_model_len": 4096,
        "moderation_enabled": True,
        "moderation_api_key": GUARD_KEY,
        "moderation_action": "log",
        "moderation_on_error": "open",
        "moderation_screen_output": False,
        "moderation_max_model_len": 2048,
        "moderation_env": {"STANDIN_ENGINE_ID": "guard"},
        "gpu_stack_models": [QWEN25, GUARD],
    },
    # several engines on one 8-GPU host: two replicas of one alias and a bigger model beside them
    "engines": {
        "gpu_stack_models": [QWEN3_8B, {"alias": "qwen3-32b", "source": "modelscope", "repo_id": "Qwen/Qwen3-32B"}],
        "inference_engine_engines": [{"gpus": [0, 1]}, {"gpus": [2, 3]},
                                     {"model": "qwen3-32b", "gpus": [4, 5, 6, 7], "name": "big", "port": 9000}],
    },
}
CHECKED = "moderation-cpu"
WITH_MONITORING = [name for name, variant in VARIANTS.items() if variant.get("monitoring_enabled", True)]


def host_vars(tmp: pathlib.Path, name: str, variant: dict) -> dict:
    models_root = str(tmp / name / "models")
    text = json.dumps(variant).replace(MODELS_ROOT, models_root)
    return {"gpu_stack_root": str(tmp / name / "stack"), "gpu_stack_models_root": models_root, **SECRETS, **json.loads(text)}


def render(tmp: pathlib.Path, variants: dict, *args, inventory="hosts", extra=None, **kwargs):
    """Render ``variants`` (host -> variables) side by side under ``tmp`` (``extra``: host -> more
    variables); the ansible-playbook process (with background=True the :class:`stack_files.Run`)."""
    hosts = {name: {**host_vars(tmp, name, variant), **(extra or {}).get(name, {})} for name, variant in variants.items()}
    return sf.playbook(sf.write_inventory(tmp / "inventory" / f"{inventory}.yml", hosts), *args, **kwargs)


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory):
    return sf.compose_env(tmp_path_factory.mktemp("compose"), sf.compose_image())


@pytest.fixture(scope="module")
def test_images():
    """The stand-ins for the stack's upstream images (tests/harness/images): {name: image}."""
    base = sf.run([sf.HARNESS / "base-image.sh"]).stdout.strip().splitlines()[-1]
    names = ("standin-engine", "standin-guard", "litellm", "redis", "postgres", "prometheus")
    out = sf.run([sf.HARNESS / "images" / "build.sh", *names], env=dict(os.environ, BASE_IMAGE=base), timeout=1800)
    return dict(zip(names, out.stdout.strip().splitlines()[-len(names):], strict=True))


def checked_vars(test_images) -> dict:
    """gpu_stack_validate true with the stack's images on the host (nothing can be pulled here)."""
    return {"gpu_stack_validate": True, "gpu_stack_pull": "never",
            "inference_engine_image": test_images["standin-engine"], "moderation_image": test_images["standin-guard"],
            "gateway_litellm_image": test_images["litellm"], "gateway_redis_image": test_images["redis"],
            "gateway_database_image": test_images["postgres"], "monitoring_prometheus_image": test_images["prometheus"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, compose_env, test_images):
    """The runs that need nothing from each other, started together: {name: (scratch folder, Run)}."""
    started = {}
    root = tmp_path_factory.mktemp("variants")
    started["variants"] = root, render(root, VARIANTS, extra={CHECKED: checked_vars(test_images)}, env_extra=compose_env,
                                       background=True)
    root = tmp_path_factory.mktemp("refused")
    started["refused"] = root, refused_run(root)
    root = tmp_path_factory.mktemp("on-the-host")
    started["on-the-host"] = root, on_the_host_run(root)
    root = tmp_path_factory.mktemp("check-mode")
    started["check-mode"] = root, render(root, {"moderation": VARIANTS["moderation"]}, "--check", "--diff", background=True)
    return started


@pytest.fixture(scope="module")
def rendered_run(runs):
    root, run = runs["variants"]
    return root, run.result()


@pytest.fixture(scope="module")
def rendered(rendered_run):
    """Each variant rendered once: {name: stack root}."""
    root = rendered_run[0]
    return {name: root / name / "stack" for name in VARIANTS}


def compose(stack: pathlib.Path) -> dict:
    return sf.load_yaml(stack / "compose.yaml")


def litellm_config(stack: pathlib.Path) -> dict:
    return sf.load_yaml(stack / "config" / "litellm.yaml")


def engine_args(stack: pathlib.Path, engine="inference-engine") -> list[str]:
    return compose(stack)["services"][engine]["command"]


def flag(args: list[str], name: str):
    return args[args.index(name) + 1] if name in args else None


def secrets(stack: pathlib.Path) -> dict:
    return {path.stem: sf.env_file(path) for path in sorted((stack / "secrets").glob("*.env"))}


# ---------------------------------------------------------------- real tools on every variant


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_config_is_valid(rendered, compose_env, name):
    sf.compose_config(rendered[name], compose_env)


@pytest.fixture(scope="module")
def promtool():
    return sf.promtool()


@pytest.mark.parametrize("name", WITH_MONITORING)
def test_promtool_accepts_config_and_rules(rendered, promtool, name):
    assert "SUCCESS: 6 rules found" in sf.promtool_check(promtool, rendered[name])


@pytest.fixture(scope="module")
def litellm_venv():
    return sf.litellm_venv()


@pytest.fixture(scope="module")
def litellm_checks(rendered, litellm_venv, tmp_path_factory):
    """--validate_config of every variant's litellm.yaml, and of gpu-all's with a routing strategy
    LiteLLM does not know ("bad"), two at a time: {name: process}."""
    work = tmp_path_factory.mktemp("litellm-validate")
    stacks = dict(rendered)
    bad = litellm_config(rendered["gpu-all"])
    bad["router_settings"]["routing_strategy"] = "no-such-strategy"
    stacks["bad"] = work / "bad" / "stack"
    (stacks["bad"] / "config").mkdir(parents=True)
    (stacks["bad"] / "config" / "litellm.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")

    def check(name):
        env = secrets(rendered["gpu-all" if name == "bad" else name])["litellm-proxy"]
        return sf.litellm_validate(litellm_venv, stacks[name], work / name / "work", env, check=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(stacks, pool.map(check, stacks), strict=True))


@pytest.mark.parametrize("name", VARIANTS)
def test_litellm_validates_config(litellm_checks, name):
    proc = litellm_checks[name]
    assert proc.returncode == 0 and "config OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_litellm_validation_refuses_a_bad_config(litellm_checks):
    assert litellm_checks["bad"].returncode != 0


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
    # the key reaches vLLM as VLLM_API_KEY from the 0600 env file, never from compose.yaml
    assert "VLLM_API_KEY" not in engine["environment"]
    assert engine["env_file"] == [str(stack / "secrets" / "engine.env")]
    assert engine["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    model_mount = engine["volumes"][0]
    assert model_mount["target"] == "/models/Qwen3-8B" and model_mount["read_only"] is True
    assert model_mount["source"] == str(stack.parent / "models" / "Qwen3-8B")
    assert model_mount["bind"] == {"create_host_path": False}, "a missing model directory fails, never an empty one"
    assert any(v["target"] == "/var/log/vllm" and v["source"] == str(stack / "logs" / "vllm") for v in engine["volumes"])
    assert engine["environment"]["VLLM_LOGGING_CONFIG_PATH"] == "/etc/vllm/logging.json"
    assert {"type": "bind", "source": str(stack / "config" / "vllm-logging.json"), "target": "/etc/vllm/logging.json", "read_only": True} in engine["volumes"]
    assert engine["healthcheck"]["start_period"] == "900s" and "/health" in " ".join(engine["healthcheck"]["test"])
    assert engine["image"] == f"vllm/vllm-openai:v{VLLM}"
    assert engine["ipc"] == "host"


@pytest.mark.parametrize(
    ("name", "device", "tp"),
    [
        ("gpu-all", {"count": "all"}, "4"),
        ("gpu-count", {"count": 2}, "2"),
        ("gpu-ids", {"device_ids": ["1", "3"]}, "2"),
    ],
)
def test_gpu_selection(rendered, name, device, tp):
    engine = compose(rendered[name])["services"]["inference-engine"]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert {k: v for k, v in devices[0].items() if k in ("count", "device_ids")} == device, "count and device_ids are exclusive"
    # GPUs through Docker's device requests with runc, not the nvidia runtime's NVIDIA_VISIBLE_DEVICES (docs/gpu.md)
    assert engine["runtime"] == "runc" and "NVIDIA_VISIBLE_DEVICES" not in engine["environment"]
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
    assert engine["image"] == f"vllm/vllm-openai-cpu:v{VLLM}-x86_64"
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
    if name == "gpu-ids":
        assert ports["inference-engine"] == ["127.0.0.1:8001:8001"]
        assert ports["redis-cache"] == ["127.0.0.1:6379:6379"]
        assert ports["litellm-proxy"] == ["10.1.2.3:4000:4000"]
        return
    assert ports.pop("litellm-proxy") == ["0.0.0.0:4000:4000"]
    if "prometheus" in services:
        assert ports.pop("prometheus") == ["127.0.0.1:9090:9090"]
    assert all(published == [] for published in ports.values()), ports


@pytest.mark.parametrize("name", VARIANTS)
def test_common_service_settings(rendered, name):
    stack = rendered[name]
    doc = compose(stack)
    text = (stack / "compose.yaml").read_text(encoding="utf-8")
    assert "version" not in doc, "Compose v2 files carry no version key"
    assert doc["name"] == "llm-stack"
    for secret in ALL_SECRETS:
        assert secret not in text, "secrets stay in secrets/*.env"
    engines = [svc for svc, spec in doc["services"].items() if "/health" in " ".join(spec["healthcheck"]["test"])
               and svc != "litellm-proxy"]
    for svc, spec in doc["services"].items():
        assert spec["restart"] == "unless-stopped", svc
        assert spec["container_name"] == svc
        assert spec["runtime"] == "runc", "every service names its runtime (a nvidia default-runtime gives no GPU by accident)"
        assert "healthcheck" in spec, svc
        assert spec["logging"] == {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}, svc
        if "deploy" not in spec:
            assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void", svc
    gateway = doc["services"]["litellm-proxy"]
    assert gateway["depends_on"] == {svc: {"condition": "service_healthy"} for svc in [*engines, "redis-cache", "litellm-db"]}
    assert gateway["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert gateway["environment"]["LITELLM_LOG"] == "ERROR"
    assert "/health/liveliness" in " ".join(gateway["healthcheck"]["test"])
    assert {"type": "bind", "source": str(stack / "config" / "litellm.yaml"), "target": "/app/config.yaml", "read_only": True} in gateway["volumes"]
    assert gateway["env_file"] == [str(stack / "secrets" / "litellm-proxy.env")]
    redis = doc["services"]["redis-cache"]
    assert "--requirepass" in redis["command"][-1] and "$${REDIS_PASSWORD}" in redis["command"][-1]
    assert "--appendonly yes" in redis["command"][-1]
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][1]
    assert redis["env_file"] == [str(stack / "secrets" / "redis-cache.env")]
    database = doc["services"]["litellm-db"]
    assert database["env_file"] == [str(stack / "secrets" / "litellm-db.env")]
    assert "ports" not in database
    assert database["volumes"] == [{"type": "bind", "source": str(stack / "data" / "postgres"), "target": "/var/lib/postgresql"}]
    assert gateway["environment"]["DATABASE_HOST"] == "litellm-db:5432"


@pytest.mark.parametrize("name", VARIANTS)
def test_secret_env_files(rendered, name):
    """One 0600 env file per service group, holding only what it reads; no secret anywhere else."""
    stack = rendered[name]
    moderation = VARIANTS[name].get("moderation_enabled", False)
    assert sf.mode(stack / "secrets") == 0o700
    files = secrets(stack)
    assert {path.name: sf.mode(path) for path in (stack / "secrets").iterdir()} == {f"{f}.env": 0o600 for f in files}
    expected = {
        "engine": {"VLLM_API_KEY": SECRETS["inference_engine_api_key"]},
        "redis-cache": {"REDIS_PASSWORD": SECRETS["gateway_redis_password"]},
        "litellm-db": {"POSTGRES_PASSWORD": SECRETS["gateway_database_password"]},
        "litellm-proxy": {"LITELLM_MASTER_KEY": SECRETS["gateway_master_key"], "REDIS_PASSWORD": SECRETS["gateway_redis_password"],
                          "DATABASE_PASSWORD": SECRETS["gateway_database_password"], "LITELLM_SALT_KEY": SECRETS["gateway_salt_key"],
                          "VLLM_API_KEY": SECRETS["inference_engine_api_key"], **({"MODERATION_API_KEY": GUARD_KEY} if moderation else {})},
        **({"moderation-engine": {"VLLM_API_KEY": GUARD_KEY}} if moderation else {}),
    }
    assert files == expected
    for path in stack.rglob("*"):
        if path.is_file() and path.parent != stack / "secrets":
            content = path.read_text(encoding="utf-8", errors="replace")
            assert not any(secret in content for secret in ALL_SECRETS), path


def test_no_secret_in_the_run_output(rendered_run):
    proc = rendered_run[1]
    assert not any(secret in proc.stdout + proc.stderr for secret in ALL_SECRETS)


def test_workers_and_multiproc_dir(rendered):
    two = compose(rendered["gpu-all"])["services"]["litellm-proxy"]
    assert flag(two["command"], "--num_workers") == "2"
    assert two["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus_multiproc"
    assert two["tmpfs"] == ["/tmp/prometheus_multiproc"]
    one = compose(rendered["settings"])["services"]["litellm-proxy"]
    assert flag(one["command"], "--num_workers") == "1"
    assert "PROMETHEUS_MULTIPROC_DIR" not in one["environment"] and "tmpfs" not in one


def test_prometheus_switch(rendered):
    off = rendered["settings"]
    assert "prometheus" not in compose(off)["services"]
    assert not (off / "config" / "prometheus").exists() and not (off / "data" / "prometheus").exists()
    prom = compose(rendered["gpu-all"])["services"]["prometheus"]
    assert prom["user"] == "65534:65534"
    assert "--storage.tsdb.retention.time=15d" in prom["command"]
    assert (rendered["gpu-all"] / "data" / "prometheus").stat().st_uid == 65534
    # another uid: the folder belongs to it (the role alone owns it, so a second run changes nothing)
    assert compose(rendered["moderation"])["services"]["prometheus"]["user"] == "1234:1234"
    data = rendered["moderation"] / "data" / "prometheus"
    assert (data.stat().st_uid, data.stat().st_gid) == (1234, 1234)


def test_registry_prefix(rendered):
    images = {svc: spec["image"] for svc, spec in compose(rendered["gpu-count"])["services"].items()}
    assert images == {
        "inference-engine": f"registry.internal:5000/vllm/vllm-openai:v{VLLM}",
        "litellm-proxy": f"registry.internal:5000/berriai/litellm:v{LITELLM}",
        "redis-cache": f"registry.internal:5000/{REDIS_IMAGE}",
        "litellm-db": f"registry.internal:5000/{DEFAULTS['gateway']['gateway_database_image']}",
        "prometheus": f"registry.internal:5000/{PROMETHEUS_IMAGE}",
    }
    assert compose(rendered["gpu-all"])["services"]["litellm-proxy"]["image"] == f"ghcr.io/berriai/litellm:v{LITELLM}"


def test_prometheus_scrapes_the_three_jobs(rendered):
    prom = sf.load_yaml(rendered["gpu-all"] / "config" / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"litellm-proxy", "inference-engine", "prometheus"}
    assert jobs["litellm-proxy"]["metrics_path"] == "/metrics/"
    assert jobs["litellm-proxy"]["static_configs"] == [{"targets": ["litellm-proxy:4000"], "labels": {"llmops_host": "gpu-all"}}]
    assert jobs["inference-engine"]["static_configs"] == [
        {"targets": ["inference-engine:8001"], "labels": {"llmops_host": "gpu-all", "engine": "inference-engine"}}]
    assert prom["global"]["external_labels"] == {"host": "gpu-all"}
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
            # id: <inventory host>/<engine>, as every gateway of a fleet names the deployment (docs/multi-host.md)
            "model_info": {"id": "gpu-all/inference-engine", "mode": "chat", "max_input_tokens": 32768},
        }
    ]
    assert cfg["litellm_settings"] == {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False}
    assert cfg["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY", "allow_requests_on_db_unavailable": False}
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
    assert compose(stack)["services"]["inference-engine"]["volumes"][0]["source"] == str(stack.parent / "models" / "qwen3-8b-custom")
    assert flag(args, "--max-model-len") == "8192"
    assert args[-3:] == ["--enable-prefix-caching", "--max-num-seqs", "64"]


# ---------------------------------------------------------------- several engines on one host


def test_several_engines_on_one_gpu_host(rendered):
    stack = rendered["engines"]
    services = compose(stack)["services"]
    assert sorted(services) == ["big", "inference-engine", "inference-engine-2", "litellm-db", "litellm-proxy", "prometheus", "redis-cache"]
    expected = {"inference-engine": (["0", "1"], "8001", "2", "qwen3-8b", "/models/Qwen3-8B"),
                "inference-engine-2": (["2", "3"], "8002", "2", "qwen3-8b", "/models/Qwen3-8B"),
                "big": (["4", "5", "6", "7"], "9000", "4", "qwen3-32b", "/models/Qwen3-32B")}
    for name, (ids, port, tp, alias, model) in expected.items():
        engine = services[name]
        assert engine["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ids
        args = engine["command"]
        assert (args[0], flag(args, "--served-model-name"), flag(args, "--port"), flag(args, "--tensor-parallel-size")) == (model, alias, port, tp)
        assert engine["healthcheck"]["test"][-1].count(f"'127.0.0.1', {port}") == 1
        assert engine["env_file"] == [str(stack / "secrets" / "engine.env")], "the engines share the engine key"
        assert {"type": "bind", "source": str(stack / "config" / "vllm-logging.json"), "target": "/etc/vllm/logging.json",
                "read_only": True} in engine["volumes"]
        assert "ports" not in engine
    # one deployment per engine: LiteLLM balances the replicas of qwen3-8b
    deployments = [(m["model_name"], m["litellm_params"]["api_base"], m["model_info"]["id"], m["model_info"].get("allowed_fails"))
                   for m in litellm_config(stack)["model_list"]]
    assert deployments == [
        ("qwen3-8b", "http://inference-engine:8001/v1", "engines/inference-engine", 0),
        ("qwen3-8b", "http://inference-engine-2:8002/v1", "engines/inference-engine-2", 0),
        ("qwen3-32b", "http://big:9000/v1", "engines/big", None),
    ]
    assert services["litellm-proxy"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("inference-engine", "inference-engine-2", "big", "redis-cache", "litellm-db")}
    prom = sf.load_yaml(stack / "config" / "prometheus" / "prometheus.yml")
    (engines,) = [job for job in prom["scrape_configs"] if job["job_name"] == "inference-engine"]
    assert [(c["targets"], c["labels"]["engine"]) for c in engines["static_configs"]] == [
        (["inference-engine:8001"], "inference-engine"), (["inference-engine-2:8002"], "inference-engine-2"), (["big:9000"], "big")]


def test_two_cpu_engines_behind_one_alias(rendered):
    stack = rendered["cpu"]
    services = compose(stack)["services"]
    assert [flag(services[name]["command"], "--port") for name in ("inference-engine", "inference-engine-2")] == ["8001", "8002"]
    assert all("deploy" not in services[name] for name in ("inference-engine", "inference-engine-2"))
    assert [(m["model_name"], m["litellm_params"]["api_base"], m["model_info"]["allowed_fails"]) for m in litellm_config(stack)["model_list"]] == [
        ("qwen2.5-0.5b", "http://inference-engine:8001/v1", 0), ("qwen2.5-0.5b", "http://inference-engine-2:8002/v1", 0)]


# ---------------------------------------------------------------- second run, check mode


def test_second_run_changes_nothing(rendered_run):
    """The variant that writes every kind of file (the guard, Prometheus as another uid: the owner of
    its data folder), rendered again onto the same root."""
    proc = render(rendered_run[0], {"moderation": VARIANTS["moderation"]}, inventory="again")
    assert sf.stats(proc)["moderation"]["changed"] == 0


def test_check_mode_on_a_fresh_root_runs_to_the_end(runs):
    root, run = runs["check-mode"]
    proc = run.result()
    assert sf.stats(proc)["moderation"]["failures"] == 0
    # it would write compose.yaml and litellm.yaml (their diffs are shown) but writes nothing
    assert "litellm-proxy" in proc.stdout and "model_list" in proc.stdout
    assert not (root / "moderation" / "stack").exists()
    assert not any(secret in proc.stdout + proc.stderr for secret in ALL_SECRETS), "secret files show no diff"


# ---------------------------------------------------------------- the roles' own checks


def test_the_roles_check_every_file_with_the_real_tools(rendered_run, compose_env, test_images):
    """gpu_stack_validate true (variant CHECKED): docker compose config, LiteLLM --validate_config (with
    the guardrail files) and promtool in the stack's own images checked each file before it replaced
    the live one; a file the tool refuses fails the run there and leaves the live one alone."""
    root, first = rendered_run
    written = [name for name, result in sf.host_results(first, CHECKED) if result.get("changed") and "Write" in name]
    assert "llmops.gpu_stack.gateway : Write the LiteLLM configuration" in written
    assert any("compose.yaml" in name for name in written)
    assert any("Prometheus configuration" in name for name in written) and any("alert rules" in name for name in written)
    live = root / CHECKED / "stack" / "config" / "litellm.yaml"
    before = live.read_text(encoding="utf-8")

    # LiteLLM refuses an unknown routing strategy (the extras merge past the plan's own check)
    variant = {**VARIANTS[CHECKED], "gateway_router_settings": {"routing_strategy": "no-such-strategy"}}
    proc = render(root, {CHECKED: variant}, "--tags", "gateway_configure", inventory="refused-config",
                  extra={CHECKED: checked_vars(test_images)}, env_extra=compose_env, check=False)
    assert proc.returncode != 0
    (failed,) = [(name, result) for name, result in sf.host_results(proc, CHECKED) if result.get("failed")]
    assert failed[0] == "llmops.gpu_stack.gateway : Write the LiteLLM configuration"
    assert "failed to validate" in failed[1]["msg"], failed[1]
    assert live.read_text(encoding="utf-8") == before


# ---------------------------------------------------------------- the validation phase


REFUSED = {
    # host: (variables, what its line of the report says: the variable and value given, then, after
    # where the value came from, what would be accepted)
    "old-flag": ({"inference_engine_gpus": 1, "inference_engine_extra_args": ["--disable-log-requests"]},
                 ('inference_engine_extra_args = ["--disable-log-requests"]', "expected no --disable-log-requests")),
    "no-gpus": ({"inference_engine_gpus": 0}, ("inference_engine_gpus = 0", "expected all, a GPU count")),
    "master-key": ({"inference_engine_gpus": 1, "gateway_master_key": "no-prefix-master-key"},
                   ("gateway_master_key = (secret, 20 characters; value not shown)", "expected a key starting with sk-")),
    "cpu-shm": ({"gpu_stack_accelerator": "cpu", "inference_engine_shm_size": "1g"},
                ('inference_engine_shm_size = "1g"', "expected at least 4g on the CPU profile")),
    "no-alias": ({"inference_engine_gpus": 1, "inference_engine_model": "nope"},
                 ('inference_engine_model = "nope"', "expected the alias of an entry of gpu_stack_models (qwen3-8b)")),
    **{f"no-{name.replace('_', '-')}": ({"inference_engine_gpus": 1, name: None},
                                        (f"{name} = not set: expected a secret of at least 16 characters",))
       for name in sorted(SECRETS)},
    "guard-share": ({**VARIANTS["moderation"], "moderation_gpu_memory_utilization": 0.3},
                    ("moderation_gpu_memory_utilization = 0.3", "expected memory shares of the services sharing a GPU to sum below 1 "
                     "(inference-engine 0.8 + moderation-engine 0.3 = 1.1)")),
    "guard-is-engine": ({**VARIANTS["moderation"], "moderation_gpus": ["2"], "moderation_alias": "qwen3-8b"},
                        ('moderation_alias = "qwen3-8b"', "expected a guard model other than the models the engines serve")),
    "guard-unknown": ({**VARIANTS["moderation"], "moderation_alias": "nope"},
                      ('moderation_alias = "nope"', "expected the alias of a gpu_stack_models entry")),
    "guard-no-key": ({**VARIANTS["moderation"], "moderation_api_key": None}, ("moderation_api_key = not set",)),
    "guard-action": ({**VARIANTS["moderation"], "moderation_action": "mask"},
                     # One line per problem: the plan's rule (it says what is accepted), not the spec's on top.
                     ('moderation_action = "mask"', "expected one of block, log")),
}


def refused_run(root):
    """Every case of REFUSED is a host of one run: the validation phase reports them all at once."""
    hosts = {}
    for name, (variant, _expected) in REFUSED.items():
        hosts[name] = {k: v for k, v in host_vars(root, name, variant).items() if v is not None}
    # a name no role knows: a warning with the likely one, not a refusal
    hosts["typo"] = {**host_vars(root, "typo", {"inference_engine_gpus": 1}), "inference_engine_prot": 8001}
    return sf.playbook(sf.write_inventory(root / "hosts.yml", hosts), check=False, background=True)


@pytest.fixture(scope="module")
def refused(runs):
    root, run = runs["refused"]
    proc = run.result()
    hosts = [*REFUSED, "typo"]
    (report,) = [result["msg"] for host in hosts for name, result in sf.host_results(proc, host)
                 if name.startswith("Check every input") and result.get("failed")]
    by_host, host = {}, None
    for line in report.splitlines()[1:]:
        if not line.startswith(" "):
            host = line.rstrip(":")
        else:
            by_host.setdefault(host, []).append(line.strip()[2:])
    return root, proc, report, by_host


def test_the_report_covers_every_refused_host(refused):
    root, proc, report, by_host = refused
    assert proc.returncode != 0
    assert report.startswith(f"{len(sum(by_host.values(), []))} problem(s) with the inputs of {len(REFUSED)} of {len(REFUSED) + 1} host(s); "
                             "nothing was changed on any host:")
    assert sorted(by_host) == sorted(REFUSED)
    assert not any((root / name).exists() for name in [*REFUSED, "typo"]), "refused before anything is written"
    assert not any(secret in proc.stdout + proc.stderr for secret in ALL_SECRETS)
    assert "typo: inference_engine_prot is not a variable of any role of llmops.gpu_stack (did you mean inference_engine_port?)" in proc.stdout


@pytest.mark.parametrize("host", REFUSED)
def test_wrong_inputs_are_refused_naming_the_variable(refused, host):
    lines = refused[3][host]
    assert any(all(part in line for part in REFUSED[host][1]) for line in lines), lines
    if REFUSED[host][0].get("gateway_master_key"):
        assert not any(REFUSED[host][0]["gateway_master_key"] in line for line in lines), "a secret's value is never shown"


# ---------------------------------------------------------------- what only the host can tell


QWEN3_8B_CONFIG = {"num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 36, "hidden_size": 4096}
ON_THE_HOST = {
    # host: (fake nvidia-smi scenario or None, variables)
    "tp-unknown": (None, {}),
    "no-model-dirs": (None, {"inference_engine_gpus": 1, "render_model_dirs": False}),
    "h100x8": ("h100x8", {}),
    "h100x8-six": ("h100x8", {"inference_engine_gpus": [0, 1, 2, 3, 4, 5]}),
    "rtx4090": ("rtx4090", {"inference_engine_max_model_len": 40960}),
    "h100-ids": ("h100", {"inference_engine_gpus": [0, 3]}),
    "no-driver": ("no_driver", {}),
}


def on_the_host_run(root):
    """The cases of ON_THE_HOST in one run of the engine role (--tags inference_engine): with a
    scenario, inference_engine_gpu_check is on, nvidia-smi is the fixture, and the model directory
    holds a Qwen3-8B-sized model (its config.json and a sparse 16.4 GB weights file)."""
    hosts = {}
    for name, (scenario, variant) in ON_THE_HOST.items():
        hosts[name] = host_vars(root, name, variant)
        if scenario:
            model = root / name / "models" / "Qwen3-8B"
            model.mkdir(parents=True)
            (model / "config.json").write_text(json.dumps(QWEN3_8B_CONFIG), encoding="utf-8")
            with open(model / "model.safetensors", "wb") as handle:
                handle.truncate(16_400_000_000)
            hosts[name].update(inference_engine_gpu_check=True, render_environment={
                "PATH": f"{FAKE_NVIDIA_SMI}:{os.environ['PATH']}", "FAKE_NVIDIA_SMI_SCENARIO": scenario})
    return sf.playbook(sf.write_inventory(root / "hosts.yml", hosts), "--tags", "inference_engine", check=False, background=True)


@pytest.fixture(scope="module")
def on_the_host(runs):
    root, run = runs["on-the-host"]
    return root, run.result()


def host_outcome(on_the_host, host):
    root, proc = on_the_host
    return sf.stats(proc)[host]["failures"] > 0, sf.messages(proc, host), root / host / "stack"


def test_tensor_parallel_auto_needs_the_gpu_count(on_the_host):
    failed, text, _stack = host_outcome(on_the_host, "tp-unknown")
    assert failed and "is auto over gpus all, but inference_engine_gpu_check is false" in text, text[-3000:]


def test_a_missing_model_directory_is_refused(on_the_host):
    failed, text, stack = host_outcome(on_the_host, "no-model-dirs")
    assert failed and "has no config.json: run the model_store role first" in text, text[-3000:]
    assert not (stack / "compose.yaml").exists()


def test_tensor_parallel_follows_the_gpus_the_host_reports(on_the_host):
    failed, text, stack = host_outcome(on_the_host, "h100x8")
    assert not failed, text[-3000:]
    assert flag(engine_args(stack), "--tensor-parallel-size") == "8"
    assert "probably does not fit" not in text


def test_tensor_parallel_is_a_power_of_two_that_divides_the_heads(on_the_host):
    failed, text, stack = host_outcome(on_the_host, "h100x8-six")
    assert not failed, text[-3000:]
    engine = compose(stack)["services"]["inference-engine"]
    assert flag(engine["command"], "--tensor-parallel-size") == "4"
    assert engine["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1", "2", "3", "4", "5"]


def test_fit_warning_on_a_24_gb_gpu(on_the_host):
    failed, text, stack = host_outcome(on_the_host, "rtx4090")
    assert not failed, text[-3000:]
    assert "WARNING: qwen3-8b on inference-engine probably does not fit" in text, text[-3000:]
    assert flag(engine_args(stack), "--tensor-parallel-size") == "1"


def test_gpu_ids_the_host_does_not_have(on_the_host):
    failed, text, _stack = host_outcome(on_the_host, "h100-ids")
    assert failed and "inference_engine_gpus asks for [0, 3], but h100-ids has 1 GPU(s)" in text, text[-3000:]


def test_no_driver_fails_clearly(on_the_host):
    failed, text, _stack = host_outcome(on_the_host, "no-driver")
    assert failed and "nvidia" in text.lower(), text[-3000:]


# ---------------------------------------------------------------- the real proxy on loopback


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
def live_proxy(rendered, litellm_venv, tmp_path, monkeypatch):
    """redis-server, the stand-in engine and the LiteLLM proxy (two workers) with the rendered config
    (api_base and Redis pointed at loopback), with the environment of secrets/litellm-proxy.env."""
    sp.ensure_debs("redis-server")
    for name, value in secrets(rendered["gpu-all"])["litellm-proxy"].items():
        monkeypatch.setenv(name, value)
    engine = sp.standin_engine(tmp_path, api_key=SECRETS["inference_engine_api_key"], engine_id="render-test-engine")
    redis = sp.redis_server(tmp_path, password=SECRETS["gateway_redis_password"])
    cfg = litellm_config(rendered["gpu-all"])
    cfg["model_list"][0]["litellm_params"]["api_base"] = f"{engine.url}/v1"
    cfg["router_settings"].update(redis_host=sp.LOOPBACK, redis_port=redis.port)
    proxy = sp.litellm_proxy(tmp_path, engine_url=engine.url, engine_key=None, master_key=SECRETS["gateway_master_key"],
                             venv=litellm_venv, workers=2, config=cfg)
    with engine, redis, proxy:
        yield proxy.url


def test_real_proxy_serves_the_rendered_config(live_proxy):
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    status, text = http("POST", f"{live_proxy}/v1/chat/completions", body, key=SECRETS["gateway_master_key"])
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
    stack = rendered["gpu-all"]
    assert "moderation-engine" not in compose(stack)["services"]
    assert "guardrails" not in litellm_config(stack)
    assert not (stack / "config" / "guardrails").exists()
    assert "MODERATION_API_KEY" not in secrets(stack)["litellm-proxy"] and "moderation-engine" not in secrets(stack)


def test_moderation_gpu_variant(rendered):
    stack = rendered["moderation"]
    doc = compose(stack)
    guard = doc["services"]["moderation-engine"]
    assert guard["command"][:4] == ["/models/Qwen3Guard-Gen-0.6B", "--served-model-name", "qwen3guard", "--port"]
    assert flag(guard["command"], "--gpu-memory-utilization") == "0.1"
    assert guard["env_file"] == [str(stack / "secrets" / "moderation-engine.env")]
    assert "VLLM_API_KEY" not in guard["environment"] and "NVIDIA_VISIBLE_DEVICES" not in guard["environment"]
    assert guard["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
    assert guard["volumes"][0]["source"] == str(stack.parent / "models" / "Qwen3Guard-Gen-0.6B") and guard["volumes"][0]["read_only"] is True
    assert guard["depends_on"] == {"inference-engine": {"condition": "service_healthy"}}
    assert "ports" not in guard, "the guard stays on the stack network"
    gateway = doc["services"]["litellm-proxy"]
    assert "MODERATION_API_KEY" not in gateway["environment"]
    for name in ("llmops_guard.py", "guard_parser.py"):
        assert {"type": "bind", "source": str(stack / "config" / "guardrails" / name), "target": f"/app/{name}", "read_only": True} in gateway["volumes"]
        assert (stack / "config" / "guardrails" / name).read_bytes() == (GUARDRAILS / name).read_bytes()
    assert GUARD_KEY not in (stack / "compose.yaml").read_text(encoding="utf-8")
    assert secrets(stack)["moderation-engine"] == {"VLLM_API_KEY": GUARD_KEY}
    assert secrets(stack)["litellm-proxy"]["MODERATION_API_KEY"] == GUARD_KEY
    (rail,) = litellm_config(stack)["guardrails"]
    assert rail["guardrail_name"] == "llmops-moderation"
    assert rail["litellm_params"] == {
        "guardrail": "llmops_guard.LlmopsGuard", "mode": ["pre_call", "post_call"], "default_on": True,
        "api_base": "http://moderation-engine:8001/v1", "api_key": "os.environ/MODERATION_API_KEY", "guard_model": "qwen3guard",
        "moderation_action": "block", "screen_input": True, "screen_output": True, "screen_stream": True,
        "on_error": "closed", "controversial": "strict", "timeout": 10,
    }
    prom = sf.load_yaml(stack / "config" / "prometheus" / "prometheus.yml")
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
