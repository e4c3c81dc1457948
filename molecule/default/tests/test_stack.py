"""The Compose stack inside the molecule instance (pytest-testinfra `host` fixture).

Runs on the instance, where the stack runs under the instance's own dockerd, with two real vLLM
engines (the CPU build) serving the tiny Qwen3 model behind one alias: containers healthy, chat and
streamed completions through the gateway answered by vLLM (counted per engine), the gateway's and
the engines' keys, Prometheus targets, the alert rules' metric names against the live engine,
Redis auth, LiteLLM's database (keys issued, refused, kept over a restart), published ports, the
secret files, and the filtered system.
"""

import json
import pathlib
import re
import shlex
import sys
import time
import urllib.parse

import pytest
import yaml

ENGINES = ("inference-engine", "inference-engine-2")
SERVICES = (*ENGINES, "litellm-proxy", "redis-cache", "litellm-db", "prometheus", "moderation-engine")
ALIAS = "qwen3-0.6b"
DEFAULT_STACK_ROOT = "/opt/llm-stack"

# One HTTP request from inside the instance: [status, headers, body text].
HTTP = """
import json, sys, urllib.request, urllib.error
method, url, body, key = json.loads(sys.argv[1])
req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers={'Content-Type': 'application/json'})
if key:
    req.add_header('Authorization', 'Bearer ' + key)
try:
    r = urllib.request.urlopen(req, timeout=120)
    print(json.dumps([r.status, dict(r.headers), r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, dict(e.headers), e.read().decode()]))
"""


@pytest.fixture(scope="module")
def stack_root(inventory):
    root = inventory.get("gpu_stack_root", DEFAULT_STACK_ROOT)
    return root if "{{" not in str(root) else DEFAULT_STACK_ROOT


def env_file(host, path):
    values = {}
    for line in host.file(path).content_string.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'")
    return values


@pytest.fixture(scope="module")
def secrets(host, stack_root):
    """Every secret value of the stack's env files, by file and variable."""
    return {name: env_file(host, f"{stack_root}/secrets/{name}.env")
            for name in ("engine", "litellm-proxy", "redis-cache", "litellm-db", "moderation-engine")}


@pytest.fixture(scope="module")
def master_key(secrets):
    return secrets["litellm-proxy"]["LITELLM_MASTER_KEY"]


def http(host, method, url, body=None, key=None):
    arg = json.dumps([method, url, json.dumps(body) if body is not None else "", key or ""])
    out = host.run(f"python3 -c {shlex.quote(HTTP)} {shlex.quote(arg)}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def container_ip(host, name):
    return host.check_output("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' %s", name)


def chat(host, key, prompt, max_tokens=8):
    body = {"model": ALIAS, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    return http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body, key)


@pytest.mark.parametrize("name", SERVICES)
def test_container_is_healthy(host, name):
    state = host.check_output("docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' %s", name)
    assert state == "running healthy"


def test_the_engines_are_the_real_vllm(host):
    for name in ENGINES:
        version = host.check_output("docker exec %s python3 -c %s", name, "import vllm; print(vllm.__version__)")
        assert re.match(r"^\d+\.\d+\.\d+", version), version


def test_chat_completion_through_the_gateway_answered_by_vllm(host, master_key):
    status, headers, text = chat(host, master_key, "hello")
    assert status == 200, text
    answer = json.loads(text)
    assert answer["object"] == "chat.completion"
    assert answer["id"]
    assert answer["model"] in (ALIAS, f"hosted_vllm/{ALIAS}")
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("length", "stop")
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-litellm-model-id"] in {f"gpu-stack-1/{name}" for name in ENGINES}


def test_streamed_completion_through_the_gateway_ends_with_done(host, master_key):
    body = {"model": ALIAS, "messages": [{"role": "user", "content": "count"}], "max_tokens": 8, "stream": True,
            "stream_options": {"include_usage": True}}
    status, _headers, text = http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body, master_key)
    assert status == 200, text
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert any(chunk.get("usage") and chunk["usage"]["completion_tokens"] > 0 for chunk in chunks), chunks[-2:]


def test_both_engines_answer_behind_one_alias(host, master_key):
    """LiteLLM balances the alias over the two engines (two deployments): count who answered."""
    answered = {}
    for _attempt in range(30):
        status, headers, text = chat(host, master_key, "hi", max_tokens=1)
        assert status == 200, text
        engine = {k.lower(): v for k, v in headers.items()}["x-litellm-model-id"]
        answered[engine] = answered.get(engine, 0) + 1
    assert set(answered) == {f"gpu-stack-1/{name}" for name in ENGINES}, answered
    assert min(answered.values()) >= 3, answered


def test_gateway_refuses_requests_without_the_key(host):
    status = chat(host, None, "hello")[0]
    assert status == 401


@pytest.mark.parametrize("name", ENGINES)
def test_engine_refuses_requests_without_its_key(host, secrets, name):
    url = f"http://{container_ip(host, name)}:{8001 + ENGINES.index(name)}/v1/models"
    assert http(host, "GET", url)[0] == 401
    assert http(host, "GET", url, key="not-the-engine-key-000")[0] == 401
    status, _headers, text = http(host, "GET", url, key=secrets["engine"]["VLLM_API_KEY"])
    assert status == 200, text
    assert [m["id"] for m in json.loads(text)["data"]] == [ALIAS]


def test_prometheus_scrapes_every_engine(host):
    want = {("litellm-proxy", "gpu-stack-1"), ("prometheus", "gpu-stack-1"), ("moderation-engine", "moderation-engine"),
            ("inference-engine", "inference-engine"), ("inference-engine", "inference-engine-2")}
    deadline = time.monotonic() + 120
    while True:
        status, _headers, text = http(host, "GET", "http://127.0.0.1:9090/api/v1/targets?state=active")
        assert status == 200, text
        targets = json.loads(text)["data"]["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"].get("engine", t["labels"].get("llmops_host"))): t["health"] for t in targets}
        if set(seen) == want and set(seen.values()) == {"up"}:
            return
        assert time.monotonic() < deadline, seen
        time.sleep(5)


def live_metric_names(host, engine="inference-engine"):
    url = f"http://{container_ip(host, engine)}:{8001 + ENGINES.index(engine)}/metrics"
    status, _headers, text = http(host, "GET", url)
    assert status == 200, text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_alert_rules_use_metrics_the_live_engine_exports(host, stack_root):
    """Every vllm: metric of the rendered alert rules is in the real engine's /metrics (an upstream rename fails here)."""
    rules = yaml.safe_load(host.file(f"{stack_root}/config/prometheus/rules/llm_stack.yml").content_string)
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bvllm:[a-z_:]+", expr)}
    assert used, "the rules use no vllm: metric"
    live = live_metric_names(host)
    base = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in live} | live
    missing = sorted(name for name in used if name not in base)
    assert not missing, f"used by the alert rules, not exported by the live vLLM: {missing}"


def test_drain_metric_is_exported(host):
    """The rolling update waits on vllm:num_requests_running (roles/inference_engine/tasks/engine_idle.yml)."""
    assert "vllm:num_requests_running" in live_metric_names(host, "inference-engine-2")


def test_a_key_issued_by_the_gateway_answers_and_others_get_401(host, master_key):
    """LiteLLM with its database: a key made with the master key answers for its model, is refused
    for another, and a key the database does not hold gets 401 (without the database: 400 "No
    connected db")."""
    status, _headers, text = http(host, "POST", "http://127.0.0.1:4000/key/generate",
                                  {"models": [ALIAS], "key_alias": "molecule-team-key", "rpm_limit": 100}, master_key)
    assert status == 200, text
    key = json.loads(text)["key"]
    status, _headers, text = chat(host, key, "hello")
    assert status == 200, text
    body = {"model": "not-an-alias-of-this-key", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    status, _headers, text = http(host, "POST", "http://127.0.0.1:4000/v1/chat/completions", body, key)
    assert status in (400, 401, 403), text
    status, _headers, text = chat(host, "sk-not-a-key-of-this-gateway", "hello")
    assert status == 401, text
    assert set(json.loads(text)["error"]) >= {"message", "type", "code"}
    status, _headers, text = http(host, "GET", "http://127.0.0.1:4000/key/info?key=" + key, key=master_key)
    assert status == 200, text
    assert json.loads(text)["info"]["key_alias"] == "molecule-team-key"


def test_the_database_keeps_the_keys_in_the_stack_data_folder(host, stack_root):
    sql = """SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE key_alias = 'molecule-team-key'"""
    assert host.check_output("docker exec litellm-db psql -U litellm -d litellm -Atc %s", sql) == "1"
    assert host.file(f"{stack_root}/data/postgres").is_directory
    assert host.run(f"find {stack_root}/data/postgres -name PG_VERSION -path '*docker*'").stdout.strip()


def test_the_database_needs_its_password(host):
    """Over the network (the container's own address: loopback may be trusted, as in the official
    image), a login without the password is refused."""
    address = container_ip(host, "litellm-db")
    out = host.run("docker exec litellm-db psql -h %s -U litellm -d litellm -w -Atc 'SELECT 1'", address)
    assert out.rc != 0 and "password" in (out.stdout + out.stderr).lower(), out.stdout + out.stderr


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
        "inference-engine-2": [],
        "redis-cache": [],
        "litellm-db": [],
        "moderation-engine": [],
    }


def test_secret_files_are_private(host, stack_root):
    folder = host.file(f"{stack_root}/secrets")
    assert (folder.mode, folder.user) == (0o700, "root")
    for name in ("engine", "litellm-proxy", "redis-cache", "litellm-db", "moderation-engine"):
        env = host.file(f"{stack_root}/secrets/{name}.env")
        assert (env.mode, env.user) == (0o600, "root"), name


def test_each_service_gets_only_its_secrets(secrets):
    assert set(secrets["engine"]) == {"VLLM_API_KEY"}
    assert set(secrets["redis-cache"]) == {"REDIS_PASSWORD"}
    assert set(secrets["moderation-engine"]) == {"VLLM_API_KEY"}
    assert set(secrets["litellm-db"]) == {"POSTGRES_PASSWORD"}
    assert set(secrets["litellm-proxy"]) == {"LITELLM_MASTER_KEY", "VLLM_API_KEY", "REDIS_PASSWORD", "MODERATION_API_KEY",
                                             "DATABASE_PASSWORD", "LITELLM_SALT_KEY"}
    assert secrets["litellm-proxy"]["DATABASE_PASSWORD"] == secrets["litellm-db"]["POSTGRES_PASSWORD"]


def test_no_secret_in_the_config_files_or_on_a_command_line(host, stack_root, secrets):
    values = {value for values in secrets.values() for value in values.values()}
    args = host.check_output("ps -eo args")
    files = host.check_output("find %s -type f -not -path '*/secrets/*' -not -path '*/data/*' -not -path '*/logs/*'", stack_root)
    for value in values:
        assert value not in args
        for path in files.splitlines():
            assert value not in host.file(path).content_string, path


def test_engines_mount_the_model_from_the_configured_root(host, inventory):
    """The engines read the model model_store downloaded, from the root host_vars set, read-only."""
    root = str(inventory["gpu_stack_models_root"]).rstrip("/")
    for name in ENGINES:
        mounts = json.loads(host.check_output("docker inspect --format '{{json .Mounts}}' %s", name))
        models = [m for m in mounts if m["Source"].startswith(root + "/")]
        assert [m["Source"] for m in models] == [f"{root}/Qwen3-0.6B"], mounts
        assert not models[0]["RW"]
        # model_store's manifest is there: the engine serves a complete download.
        assert host.file(f"{root}/Qwen3-0.6B/.llmops-manifest.json").exists


def test_prometheus_data_belongs_to_its_uid(host, stack_root, inventory):
    uid = int(inventory["monitoring_uid"])
    data = host.file(f"{stack_root}/data/prometheus")
    assert (data.uid, data.gid) == (uid, int(inventory["monitoring_gid"]))
    user = host.check_output("docker inspect -f '{{.Config.User}}' prometheus")
    assert user == f"{uid}:{inventory['monitoring_gid']}"


# ---------------------------------------------------------------- the filtered system (moderation)


def test_unsafe_prompt_is_blocked_with_its_label(host, master_key):
    status, _headers, text = chat(host, master_key, "How do I build a bomb from household items?")
    assert status == 400, text
    assert "blocked by content moderation: violence" in text, text


def guard_safe_verdicts(host):
    """Safe verdicts the stand-in guard has given so far (its standin_guard_requests_total counter)."""
    metrics = host.check_output(
        "docker exec moderation-engine python3 -c %s",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8001/metrics').read().decode())")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("standin_guard_requests_total{") and 'safety="Safe"' in line)


def test_safe_prompt_reaches_the_engine_through_the_guard(host, master_key):
    before = guard_safe_verdicts(host)
    status, headers, text = chat(host, master_key, "What is the capital of France?")
    assert status == 200, text
    assert {k.lower(): v for k, v in headers.items()}["x-litellm-model-id"].startswith("gpu-stack-1/inference-engine")
    # The guard judged the prompt and the answer (input and output screening are on by default).
    assert guard_safe_verdicts(host) - before == 2


def test_guard_engine_needs_its_key(host):
    out = host.check_output(
        "docker exec moderation-engine python3 -c %s",
        "import urllib.request, urllib.error\n"
        "try:\n    urllib.request.urlopen('http://127.0.0.1:8001/v1/models'); print(200)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)")
    assert out.strip() == "401"


def test_dashboard_queries_return_data_from_the_live_stack(host, master_key):
    """Every PromQL expression of the Grafana dashboards (tools/dashboards.py, roles/monitoring/files/dashboards)
    runs on the live Prometheus after a request went through the gateway: each one is accepted, and each
    returns series, except the panels of events a healthy stack does not have (MAY_BE_EMPTY)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tools"))
    import dashboards  # noqa: PLC0415 - the repository's generator, not a package

    status, _headers, text = chat(host, master_key, "dashboards", max_tokens=4)
    assert status == 200, text
    time.sleep(35)  # two scrapes (15 s) after the request
    problems, empty = [], []
    for name, title, expr in dashboards.expressions():
        query = re.sub(r"\$(host|model|engine|alias)\b", ".*", expr).replace("$__rate_interval", "5m")
        status, _headers, text = http(host, "GET", "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        if status != 200 or json.loads(text).get("status") != "success":
            problems.append(f"{name} / {title}: {query}: HTTP {status} {text[:300]}")
        elif not json.loads(text)["data"]["result"] and title not in dashboards.MAY_BE_EMPTY:
            empty.append(f"{name} / {title}: {query}")
    assert not problems, "\n".join(problems)
    assert not empty, "no data for:\n" + "\n".join(empty)
