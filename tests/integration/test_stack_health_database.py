"""stack_health's database check against Debian's real Postgres on loopback (scram-sha-256, the
official image's default for host connections): a login with the right credentials passes and
names the method and version; a wrong password, an unknown database, an unknown user and a stopped
server each fail with their own reason."""

from __future__ import annotations

import pathlib
import secrets
import sys

import pytest
from ansible_collections.llmops.gpu_stack.plugins.module_utils._health_checks import check_database

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = sp.postgres_server(tmp_path_factory.mktemp("pg-health"), password=f"pw {secrets.token_urlsafe(12)}/:@%")
    with server:
        sp.psql(server, 'CREATE DATABASE "litellm"', database="postgres")
        yield server


def check(server, **overrides):
    args = {"host": sp.LOOPBACK, "port": server.port, "user": "postgres", "password": server.password, "database": "litellm"}
    args.update(overrides)
    return check_database(args["host"], args["port"], args["user"], args["password"], args["database"], timeout=5)


def test_the_right_credentials_log_in(postgres):
    result = check(postgres)
    assert result["ok"], result
    assert result["detail"]["auth"] == "scram-sha-256"
    assert result["detail"]["server_version"].split(".")[0].isdigit()
    assert result["detail"]["address"] == f"127.0.0.1:{postgres.port}"


def test_a_wrong_password_is_named(postgres):
    result = check(postgres, password="not-the-password-0123")  # noqa: S106 (a wrong one on purpose)
    assert not result["ok"]
    assert result["error"].startswith("login refused (28P01): database_password is wrong for user postgres")
    assert "not-the-password" not in result["error"]


def test_an_unknown_database_and_user(postgres):
    assert check(postgres, database="nokeys")["error"] == "database nokeys does not exist (3D000)"
    assert check(postgres, user="nobody")["error"].startswith("login refused (28P01)")


def test_a_stopped_server_is_connection_refused(postgres):
    postgres.stop()
    try:
        result = check(postgres)
    finally:
        postgres.start()
    assert not result["ok"]
    assert "connection refused" in result["error"].lower(), result
    assert check(postgres)["ok"]
