"""The gateway with its database: LiteLLM's keys, teams, limits, budgets and spend, asserted through
the gateway as a client sees them.

Real parts: the pinned LiteLLM proxy (the gateway image's version, from tests/harness/litellm_venv.sh),
Debian's Postgres 15 (a private cluster on loopback, password auth), LiteLLM's own migration files.
Stand-ins: the engine behind the gateway (tests/fixtures/standin_engine) and Prisma's native
query-engine binary, whose transport tests/harness/prisma-standin replaces (Prisma's WebAssembly
build of the same engine runs the queries; docs/testing.md says exactly what is replaced).

Each case is a claim of docs/gateway-keys.md and fails when the gateway stops enforcing it: a key
whose model list, rpm, tpm, team limit, budget, block, expiry or deletion were ignored would get 200
where a refusal is asserted, and a spend that were not recorded would leave 0 where it is asserted.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration

MASTER = "sk-llmops-test-master-0001"
ENGINE_KEY = "engine-key-0001"
COST = 0.001  # per prompt and per completion token: every request costs a few thousandths


def gateway_config(engine_url: str) -> dict:
    base = engine_url.rstrip("/") + "/v1"
    deployment = {"api_base": base, "api_key": ENGINE_KEY, "input_cost_per_token": COST, "output_cost_per_token": COST}
    return {
        "model_list": [
            {"model_name": "qwen3-8b", "litellm_params": {"model": "hosted_vllm/qwen3-8b", **deployment}},
            {"model_name": "other-model", "litellm_params": {"model": "hosted_vllm/other-model", **deployment}},
        ],
        # spend reaches the database within a second (LiteLLM batches its writes; 10 s by default)
        "general_settings": {"master_key": MASTER, "proxy_batch_write_at": 1},
        "litellm_settings": {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False},
    }


def call(gateway: sp.Service, path: str, body: dict | None = None, *, key: str = MASTER, method: str | None = None,
         timeout: float = 30.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(gateway.url + path, data=data, method=method or ("POST" if data else "GET"),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"raw": raw.decode(errors="replace")}


def chat(gateway: sp.Service, key: str, model: str = "qwen3-8b", words: int = 3) -> tuple[int, dict]:
    return call(gateway, "/v1/chat/completions", {"model": model, "max_tokens": 8,
                                                  "messages": [{"role": "user", "content": " ".join(["hello"] * words)}]},
                key=key)


def new_key(gateway: sp.Service, **fields) -> str:
    status, body = call(gateway, "/key/generate", {"models": ["qwen3-8b"], **fields})
    assert status == 200, body
    return body["key"]


def new_team(gateway: sp.Service, **fields) -> str:
    status, body = call(gateway, "/team/new", fields)
    assert status == 200, body
    return body["team_id"]


def until(predicate, timeout: float = 15.0, interval: float = 0.25):
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def message(body: dict) -> str:
    error = body.get("error", body)
    return json.dumps(error)[:600]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gateway-db")
    venv = sp.litellm_venv()
    # a password with the characters a URL must escape
    postgres = sp.postgres_server(workdir, password=f"pg {secrets.token_urlsafe(12)}/:@%")
    with postgres:
        migrations = sp.litellm_migrate(postgres, venv)
        assert migrations > 100  # LiteLLM 1.108's package ships 220
        env = sp.litellm_db_env(postgres.database_url, venv)
        with sp.standin_engine(workdir, api_key=ENGINE_KEY, served=("qwen3-8b", "other-model")) as engine:
            gateway = sp.litellm_proxy(workdir, engine_url=engine.url, engine_key=ENGINE_KEY, master_key=MASTER,
                                       venv=venv, config=gateway_config(engine.url), env=env)
            with gateway:
                yield type("Stack", (), {"gateway": gateway, "postgres": postgres, "engine": engine})


def test_the_gateway_reports_its_database_connected(stack):
    status, body = call(stack.gateway, "/health/readiness", key="")
    assert status == 200 and body["db"] == "connected", body


def test_a_key_answers_for_its_models_and_is_refused_for_others(stack):
    key = new_key(stack.gateway, key_alias="models-only-qwen")
    status, body = chat(stack.gateway, key)
    assert status == 200, message(body)
    status, body = chat(stack.gateway, key, model="other-model")
    assert status == 403, message(body)
    assert "other-model" in message(body)
    master_status = chat(stack.gateway, MASTER, model="other-model")[0]
    assert master_status == 200  # the model itself answers: the refusal is the key's


def test_a_wrong_key_gets_401_in_openai_error_shape(stack):
    status, body = chat(stack.gateway, "sk-not-a-key-of-this-gateway")
    assert status == 401, message(body)
    assert set(body["error"]) >= {"message", "type", "code"}


def test_key_rpm_limit_refuses_the_third_request_of_a_minute(stack):
    key = new_key(stack.gateway, key_alias="rpm-2", rpm_limit=2)
    statuses = [chat(stack.gateway, key)[0] for _attempt in range(3)]
    assert statuses == [200, 200, 429]
    other = new_key(stack.gateway, key_alias="rpm-2-neighbour", rpm_limit=2)
    assert chat(stack.gateway, other)[0] == 200  # the limit is the key's, not the gateway's


def test_key_tpm_limit_refuses_once_the_tokens_of_a_minute_are_spent(stack):
    key = new_key(stack.gateway, key_alias="tpm-60", tpm_limit=60)
    answered, refusal = [], None
    for _attempt in range(10):
        status, body = chat(stack.gateway, key, words=3)
        if status != 200:
            refusal = (status, body)
            break
        answered.append(body["usage"]["total_tokens"])
    assert answered, "the first request was refused"
    assert refusal, f"never refused: {len(answered)} requests, {sum(answered)} tokens"
    assert refusal[0] == 429 and "tokens" in message(refusal[1]), message(refusal[1])
    # refused once the minute's tokens (what was answered, plus what this request asks for) pass 60
    assert 60 - 2 * max(answered) - 8 <= sum(answered) <= 60, answered


def test_team_rpm_limit_applies_to_every_key_of_the_team(stack):
    team = new_team(stack.gateway, team_alias="team-rpm-1", models=["qwen3-8b"], rpm_limit=1)
    first = new_key(stack.gateway, key_alias="team-rpm-a", team_id=team)
    second = new_key(stack.gateway, key_alias="team-rpm-b", team_id=team)
    assert chat(stack.gateway, first)[0] == 200
    status, body = chat(stack.gateway, second)
    assert status == 429, message(body)


def test_a_team_key_is_held_to_the_team_models(stack):
    team = new_team(stack.gateway, team_alias="team-models", models=["qwen3-8b"])
    key = new_key(stack.gateway, key_alias="team-models-key", team_id=team, models=[])
    assert chat(stack.gateway, key)[0] == 200
    status, body = chat(stack.gateway, key, model="other-model")
    assert status == 403, message(body)


def test_a_key_over_its_budget_is_refused(stack):
    key = new_key(stack.gateway, key_alias="budget-tiny", max_budget=0.001)
    status, body = chat(stack.gateway, key)
    assert status == 200, message(body)  # the first request is allowed, and costs more than the budget

    def refused():
        status, body = chat(stack.gateway, key)
        return (status, body) if status != 200 else None

    outcome = until(refused, timeout=15)
    assert outcome, "the key kept answering past its budget"
    status, body = outcome
    assert status == 422 and body["error"]["type"] == "budget_exceeded", message(body)


def test_blocked_expired_and_deleted_keys_get_401(stack):
    blocked = new_key(stack.gateway, key_alias="to-block")
    assert chat(stack.gateway, blocked)[0] == 200
    status, body = call(stack.gateway, "/key/block", {"key": blocked})
    assert status == 200, body
    status, body = chat(stack.gateway, blocked)
    assert status == 401, message(body)

    expiring = new_key(stack.gateway, key_alias="expires-in-2s", duration="2s")
    assert chat(stack.gateway, expiring)[0] == 200
    time.sleep(2.5)
    status, body = chat(stack.gateway, expiring)
    assert status == 401, message(body)

    deleted = new_key(stack.gateway, key_alias="to-delete")
    assert chat(stack.gateway, deleted)[0] == 200
    status, body = call(stack.gateway, "/key/delete", {"keys": [deleted]})
    assert status == 200, body
    status, body = chat(stack.gateway, deleted)
    assert status == 401, message(body)


def test_spend_and_tokens_are_recorded_per_key_and_team(stack):
    team = new_team(stack.gateway, team_alias="team-spend", models=["qwen3-8b"])
    key = new_key(stack.gateway, key_alias="spend-key", team_id=team)
    usage = []
    for _attempt in range(3):
        status, body = chat(stack.gateway, key, words=5)
        assert status == 200, message(body)
        usage.append(body["usage"]["total_tokens"])
    expected = sum(usage) * COST

    def key_spend():
        status, body = call(stack.gateway, f"/key/info?key={key}")
        return body["info"]["spend"] if status == 200 and body["info"]["spend"] >= expected * 0.999 else None

    spend = until(key_spend)
    assert spend == pytest.approx(expected, rel=1e-3)

    def team_spend():
        status, body = call(stack.gateway, f"/team/info?team_id={team}")
        return body["team_info"]["spend"] if status == 200 and body["team_info"]["spend"] >= expected * 0.999 else None

    assert until(team_spend) == pytest.approx(expected, rel=1e-3)

    def logs():
        status, body = call(stack.gateway, "/spend/logs?api_key=" + key)
        return body if status == 200 and isinstance(body, list) and len(body) >= 3 else None

    entries = until(logs)
    assert entries, "no spend logs for the key"
    assert sorted(entry["total_tokens"] for entry in entries) == sorted(usage)
    assert {entry["team_id"] for entry in entries} == {team}
    assert len({entry["request_id"] for entry in entries}) == 3
    assert re.fullmatch(r"[0-9a-f-]{36}", team), team  # a UUID: safe to put in the SQL text
    sql = f"""SELECT count(*), sum(total_tokens) FROM "LiteLLM_SpendLogs" WHERE team_id = '{team}'"""  # noqa: S608
    rows = sp.psql(stack.postgres, sql).strip()
    assert rows == f"3|{sum(usage)}"

    # the same per key and team in the gateway's Prometheus metrics
    def metric(name):
        with urllib.request.urlopen(stack.gateway.url + "/metrics/", timeout=30) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and f'team="{team}"' in line and 'api_key_alias="spend-key"' in line)

    assert metric("litellm_total_tokens_metric_total") == sum(usage)
    assert metric("litellm_spend_metric_total") == pytest.approx(expected, rel=1e-3)


def test_an_update_changes_a_key_in_place(stack):
    key = new_key(stack.gateway, key_alias="update-me", rpm_limit=1)
    assert [chat(stack.gateway, key)[0] for _attempt in range(2)] == [200, 429]
    status, body = call(stack.gateway, "/key/update", {"key": key, "rpm_limit": 100, "models": ["qwen3-8b", "other-model"]})
    assert status == 200, body
    assert until(lambda: chat(stack.gateway, key)[0] == 200, timeout=10)
    assert chat(stack.gateway, key, model="other-model")[0] == 200


def test_the_seeds_cli_issues_a_key_and_lists_models(stack, tmp_path):
    """The seed's `litellm-proxy keys generate --models ... --spend 100 --duration 24h` and `models list`
    (LiteLLM's CLI, deprecated in favour of `lite` with the same commands) against the gateway.

    The seed's `--spend 100` does not set a budget: the CLI's help says "Maximum spend limit" but it
    sends `spend`, the amount already spent, so the key starts at 100 spent with no budget at all
    (`--config` sets the key's `config` field, not a budget either). A budget from the CLI is
    `http request POST /key/generate -j '{"max_budget": 100, ...}'` (docs/gateway-keys.md says so)."""
    venv = sp.litellm_venv()
    environ = dict(os.environ, LITELLM_PROXY_URL=stack.gateway.url, LITELLM_PROXY_API_KEY=MASTER, HOME=str(tmp_path),
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

    def cli(program, *args):
        proc = subprocess.run([venv / "bin" / program, *args], env=environ, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def issued(output):
        found = re.search(r"sk-[A-Za-z0-9_-]{16,}", output)
        assert found, output
        status, body = call(stack.gateway, f"/key/info?key={found.group(0)}")
        assert status == 200, body
        return found.group(0), body["info"]

    for program in ("litellm-proxy", "lite"):
        key, info = issued(cli(program, "keys", "generate", "--models", "qwen3-8b", "--spend", "100", "--duration",
                               "24h", "--key-alias", f"seed-{program}"))
        assert (info["spend"], info["max_budget"]) == (100, None)  # the seed's pitfall, see above
        assert info["models"] == ["qwen3-8b"] and info["key_alias"] == f"seed-{program}" and info["expires"]
        assert chat(stack.gateway, key)[0] == 200
        key, info = issued(cli(program, "keys", "generate", "--models", "qwen3-8b", "--config",
                               json.dumps({"max_budget": 100})))
        assert (info["max_budget"], info["config"]) == (None, {"max_budget": 100})  # not a budget either
        key, info = issued(cli(program, "http", "request", "POST", "/key/generate", "-j",
                               json.dumps({"models": ["qwen3-8b"], "max_budget": 100, "duration": "24h",
                                           "key_alias": f"budget-{program}"})))
        assert (info["spend"], info["max_budget"], info["key_alias"]) == (0, 100, f"budget-{program}")
        assert chat(stack.gateway, key)[0] == 200
        listed = cli(program, "models", "list")
        assert "qwen3-8b" in listed and "other-model" in listed, listed


def test_database_down_keys_seen_recently_still_answer_others_are_refused(stack):
    """The documented behaviour (docs/gateway-keys.md) with allow_requests_on_db_unavailable off (the
    role's choice): keys the gateway verified within its key cache's lifetime keep answering, keys it
    has not seen get 401, the master key answers; when the database is back, every valid key answers
    again without a restart of the gateway."""
    seen = new_key(stack.gateway, key_alias="seen-before-outage")
    unseen = new_key(stack.gateway, key_alias="unseen-before-outage")
    assert chat(stack.gateway, seen)[0] == 200
    stack.postgres.stop()
    try:
        assert chat(stack.gateway, seen)[0] == 200
        status, body = chat(stack.gateway, unseen)
        assert status == 401, message(body)
        assert chat(stack.gateway, "sk-not-a-key-of-this-gateway")[0] == 401
        assert chat(stack.gateway, MASTER)[0] == 200
    finally:
        stack.postgres.start()
    assert until(lambda: chat(stack.gateway, unseen)[0] == 200, timeout=30), "the gateway did not reconnect"


def test_keys_and_spend_survive_a_restart_of_gateway_and_database(stack):
    key = new_key(stack.gateway, key_alias="survivor")
    status, body = chat(stack.gateway, key)
    assert status == 200, message(body)
    spent = until(lambda: call(stack.gateway, f"/key/info?key={key}")[1]["info"]["spend"])
    assert spent > 0
    time.sleep(1.5)  # one more batch write
    stack.gateway.stop()
    stack.postgres.stop()
    stack.postgres.start()
    stack.gateway.start()
    status, body = call(stack.gateway, f"/key/info?key={key}")
    assert status == 200 and body["info"]["spend"] == pytest.approx(spent), body
    assert chat(stack.gateway, key)[0] == 200


def test_a_dump_restores_keys_and_spend_into_a_new_database(stack, tmp_path):
    """docs/gateway-keys.md's backup and restore: pg_dump -Fc, pg_restore into an empty database, a
    gateway on the restored database knows the key and its spend."""
    key = new_key(stack.gateway, key_alias="backed-up")
    assert chat(stack.gateway, key)[0] == 200
    spent = until(lambda: call(stack.gateway, f"/key/info?key={key}")[1]["info"]["spend"])
    time.sleep(1.5)  # the batch write
    dump = tmp_path / "litellm.dump"
    environ = dict(os.environ, PGPASSWORD=stack.postgres.password)
    target = ["-h", sp.LOOPBACK, "-p", str(stack.postgres.port), "-U", "postgres"]
    subprocess.run(["pg_dump", *target, "-d", "litellm", "-Fc", "-f", dump], env=environ, check=True, timeout=120)
    sp.psql(stack.postgres, 'CREATE DATABASE "restored"', database="postgres")
    subprocess.run(["pg_restore", *target, "-d", "restored", "--no-owner", dump], env=environ, check=True, timeout=120,
                   capture_output=True)
    url = stack.postgres.database_url.rsplit("/", 1)[0] + "/restored"
    venv = sp.litellm_venv()
    restored = sp.litellm_proxy(tmp_path, engine_url=stack.engine.url, engine_key=ENGINE_KEY, master_key=MASTER, venv=venv,
                                config=gateway_config(stack.engine.url), env=sp.litellm_db_env(url, venv), name="restored")
    with restored:
        status, body = call(restored, f"/key/info?key={key}")
        assert status == 200 and body["info"]["spend"] == pytest.approx(spent), body
        assert chat(restored, key)[0] == 200
