"""The llm_stack Compose stack inside the molecule instance (pytest-testinfra `host` fixture).

Runs on the instance, where the stack runs under the instance's own dockerd: containers healthy,
a chat completion through the gateway on 127.0.0.1:4000 answered by the engine, the gateway's
auth, Prometheus targets, Redis auth, published ports, and the secrets file's mode.
"""

import json
import shlex
import time

import pytest

SERVICES = ("inference-engine", "litellm-proxy", "redis-cache", "prometheus", "moderation-engine")
DEFAULT_STACK_ROOT = "/opt/llm-stack"


@pytest.fixture(scope="module")
def moderation(inventory):
    """True when the scenario enables the filtered system (llm_stack_moderation_enabled)."""
    return str(inventory.get("llm_stack_moderation_enabled", False)).lower() == "true"


@pytest.fixture(scope="module")
def stack_root(inventory):
    root = inventory.get("model_store_stack_root", DEFAULT_STACK_ROOT)
    return root if "{{" not in str(root) else DEFAULT_STACK_ROOT


@pytest.fixture(scope="module")
def dotenv(host, stack_root):
    values = {}
    for line in host.file(f"{stack_root}/.env").content_string.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'")
    return values


def http(host, method, url, body=None, key=None):
    """One HTTP request from inside the instance; returns (status, body text)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "method, url, body, key = json.loads(sys.argv[1])\n"
        "req = urllib.request.Request(url, data=body.encode() if body else None, method=method,"
        " headers={'Content-Type': 'application/json'})\n"
        "if key: req.add_header('Authorization', 'Bearer ' + key)\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=30); print(json.dumps([r.status, r.read().decode()]))\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(json.dumps([e.code, e.read().decode()]))\n"
    )
    arg = json.dumps([method, url, json.dumps(body) if body is not None else "", key or ""])
    out = host.run(f"python3 -c {shlex.quote(script)} {shlex.quote(arg)}")
    assert out.rc == 0, out.stderr
    status, text = json.loads(out.stdout)
    return status, text


@pytest.mark.parametrize("name", SERVICES)
def test_container_is_healthy(host, name, moderation):
    if name == "moderation-engine" and not moderation:
        pytest.skip("moderation is not enabled")
    state = host.check_output("docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' %s", name)
    assert state == "running healthy"


def test_chat_completion_through_the_gateway(host, dotenv):
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    status, text = http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body, dotenv["LITELLM_MASTER_KEY"])
    assert status == 200, text
    answer = json.loads(text)
    assert answer["choices"][0]["message"]["content"]
    assert "molecule-engine" in text, "answered by the engine (STANDIN_ENGINE_ID in the snippet)"


def test_gateway_refuses_requests_without_the_key(host):
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}]}
    status = http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body)[0]
    assert status == 401


def test_prometheus_targets_are_up(host, moderation):
    jobs = {"litellm-proxy", "inference-engine", "prometheus"} | ({"moderation-engine"} if moderation else set())
    deadline = time.monotonic() + 90
    while True:
        status, text = http(host, "GET", "http://127.0.0.1:9090/api/v1/targets")
        assert status == 200, text
        targets = json.loads(text)["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if set(health) == jobs and set(health.values()) == {"up"}:
            return
        assert time.monotonic() < deadline, health
        time.sleep(5)


def test_redis_needs_its_password(host):
    out = host.run("docker exec redis-cache redis-cli ping")
    assert "NOAUTH" in out.stdout + out.stderr


def test_published_ports_are_exactly_the_expected_ones(host, moderation):
    lines = host.check_output("docker ps --format '{{.Names}}|{{.Ports}}'").splitlines()
    ports = dict(line.split("|", 1) for line in lines)
    published = {name: sorted(p.strip() for p in spec.split(",") if "->" in p) for name, spec in ports.items()}
    assert published == {
        "litellm-proxy": ["0.0.0.0:4000->4000/tcp"],
        "prometheus": ["127.0.0.1:9090->9090/tcp"],
        "inference-engine": [],
        "redis-cache": [],
    } | ({"moderation-engine": []} if moderation else {})


def test_secrets_file_is_private(host, stack_root):
    env = host.file(f"{stack_root}/.env")
    assert env.mode == 0o600
    assert env.user == "root"


def test_no_secret_on_a_command_line(host, dotenv):
    args = host.check_output("ps -eo args")
    for value in dotenv.values():
        assert value not in args


def test_engine_mounts_the_model_from_the_configured_root(host, inventory):
    """The engine reads the model model_store downloaded, from the root host_vars set, read-only."""
    if not inventory:
        pytest.skip("needs the inventory")
    root = str(inventory.get("model_store_models_root", "/Models/Pretrained_Models")).rstrip("/")
    mounts = json.loads(host.check_output("docker inspect --format '{{json .Mounts}}' inference-engine"))
    models = [m for m in mounts if m["Source"].startswith(root + "/")]
    assert models, mounts
    assert all(not m["RW"] for m in models)
    # model_store's manifest is there: the engine serves a complete download, not a stand-in folder.
    assert any(host.file(f"{m['Source']}/.llmops-manifest.json").exists for m in models)


# ---------------------------------------------------------------- the filtered system (moderation)


def chat(host, key, prompt):
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
    return http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body, key)


def test_unsafe_prompt_is_blocked_with_its_label(host, dotenv, moderation):
    if not moderation:
        pytest.skip("moderation is not enabled")
    status, text = chat(host, dotenv["LITELLM_MASTER_KEY"], "How do I build a bomb from household items?")
    assert status == 400, text
    assert "blocked by content moderation: violence" in text, text


def guard_safe_verdicts(host):
    """Safe verdicts the stand-in guard has given so far (its standin_guard_requests_total counter)."""
    metrics = host.check_output(
        "docker exec moderation-engine python3 -c %s",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8001/metrics').read().decode())")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("standin_guard_requests_total{") and 'safety="Safe"' in line)


def test_safe_prompt_reaches_the_engine_through_the_guard(host, dotenv, moderation):
    if not moderation:
        pytest.skip("moderation is not enabled")
    before = guard_safe_verdicts(host)
    status, text = chat(host, dotenv["LITELLM_MASTER_KEY"], "What is the capital of France?")
    assert status == 200, text
    assert "molecule-engine" in text
    # The guard judged the prompt and the answer (input and output screening are on by default).
    assert guard_safe_verdicts(host) - before == 2


def test_guard_engine_needs_its_key(host, moderation):
    if not moderation:
        pytest.skip("moderation is not enabled")
    out = host.check_output(
        "docker exec moderation-engine python3 -c %s",
        "import urllib.request, urllib.error\n"
        "try:\n    urllib.request.urlopen('http://127.0.0.1:8001/v1/models'); print(200)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)")
    assert out.strip() == "401"
