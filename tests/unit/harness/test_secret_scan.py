"""secret_scan.py finds each secret's value in a log, names the variable, never prints the value."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("secret_scan", ROOT / "tests" / "harness" / "secret_scan.py")
scan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scan)

VALUES = ROOT / "molecule" / "_shared" / "group_vars" / "shared.yml"


def test_the_names_are_the_collections_secrets():
    assert scan.secret_names() == ("inference_engine_api_key", "gateway_master_key", "gateway_redis_password",
                                   "gateway_database_password", "gateway_salt_key", "moderation_api_key")


def test_a_clean_log_passes(tmp_path, capsys):
    log = tmp_path / "clean.log"
    log.write_text("TASK [x]\nok: [host] => {\"censored\": \"the output has been hidden\"}\n")
    assert scan.main(["--values", str(VALUES), str(log)]) == 0
    assert "2 lines, no secret value" in capsys.readouterr().out


def test_a_leak_names_the_variable_and_the_line_not_the_value(tmp_path, capsys):
    log = tmp_path / "leak.log"
    log.write_text('ok\n"Env": ["VLLM_API_KEY=molecule-test-only-engine-key", "X=1"]\nok\n'
                   '"REDIS_PASSWORD=molecule-test-only-redis-password"\n')
    assert scan.main(["--values", str(VALUES), str(log)]) == 1
    out = capsys.readouterr().out
    assert "leak.log:2: the value of inference_engine_api_key" in out
    assert "leak.log:4: the value of gateway_redis_password" in out
    assert "molecule-test-only" not in out


def test_a_missing_log_or_value_is_an_error_not_a_pass(tmp_path, capsys):
    assert scan.main(["--values", str(VALUES), str(tmp_path / "none.log")]) == 2
    values = tmp_path / "values.yml"
    values.write_text("gateway_master_key: sk-long-enough-value-1\n")
    log = tmp_path / "a.log"
    log.write_text("x\n")
    assert scan.main(["--values", str(values), str(log)]) == 2
    assert "sets no value for inference_engine_api_key" in capsys.readouterr().err
