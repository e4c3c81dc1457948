"""The llm_stack Compose stack inside the molecule instance (pytest-testinfra `host` fixture).

Runs on the instance, where the stack runs under the instance's own dockerd: containers healthy,
a chat completion through the gateway on 127.0.0.1:4000 answered by the engine, the gateway's
auth, Prometheus targets, Redis auth, published ports, and the secrets file's mode.
"""

import json
import shlex
import time

import pytest

SERVICES = ("inference-engine", "litellm-proxy", "redis-cache", "prometheus")
DEFAULT_STACK_ROOT = "/opt/llm-stack"


@pytest.fixture(scope="module")
def stack_root(host):
    try:
        root = host.ansible.get_variables().get("model_store_stack_root", DEFAULT_STACK_ROOT)
    except (AttributeError, RuntimeError):  # not the ansible backend
        root = DEFAULT_STACK_ROOT
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
def test_container_is_healthy(host, name):
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


def test_prometheus_targets_are_up(host):
    deadline = time.monotonic() + 90
    while True:
        status, text = http(host, "GET", "http://127.0.0.1:9090/api/v1/targets")
        assert status == 200, text
        targets = json.loads(text)["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if set(health) == {"litellm-proxy", "inference-engine", "prometheus"} and set(health.values()) == {"up"}:
            return
        assert time.monotonic() < deadline, health
        time.sleep(5)


def test_redis_needs_its_password(host):
    out = host.run("docker exec redis-cache redis-cli ping")
    assert "NOAUTH" in out.stdout + out.stderr


def test_published_ports_are_exactly_the_expected_ones(host):
    lines = host.check_output("docker ps --format '{{.Names}}|{{.Ports}}'").splitlines()
    ports = dict(line.split("|", 1) for line in lines)
    published = {name: sorted(p.strip() for p in spec.split(",") if "->" in p) for name, spec in ports.items()}
    assert published == {
        "litellm-proxy": ["0.0.0.0:4000->4000/tcp"],
        "prometheus": ["127.0.0.1:9090->9090/tcp"],
        "inference-engine": [],
        "redis-cache": [],
    }


def test_secrets_file_is_private(host, stack_root):
    env = host.file(f"{stack_root}/.env")
    assert env.mode == 0o600
    assert env.user == "root"


def test_no_secret_on_a_command_line(host, dotenv):
    args = host.check_output("ps -eo args")
    for value in dotenv.values():
        assert value not in args
