"""molecule_timings.py sets the idempotent re-run beside the no-op play."""

import importlib.util
import pathlib

HARNESS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "harness"
spec = importlib.util.spec_from_file_location("molecule_timings", HARNESS / "molecule_timings.py")
timings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timings)

LOG = """\x1b[36mINFO    \x1b[0m \x1b[32mdefault\x1b[0m \u279c \x1b[33mconverge\x1b[0m: \x1b[36mExecuting\x1b[0m
  | llmops-timer playbook=site.yml seconds=61.250
INFO     default \u279c idempotence: Executing
  | llmops-timer playbook=site.yml seconds=9.500
INFO     default \u279c side_effect: Executing
  | llmops-timer playbook=noop.yml seconds=5.000
INFO     [multihost > converge] Executing
  | llmops-timer playbook=site.yml seconds=30.000
"""


def test_parse_assigns_times_to_stages():
    times = timings.parse(LOG.splitlines())
    assert times[("default", "converge")] == 61.25
    assert times[("default", "idempotence")] == 9.5
    assert times[("default", "side_effect")] == 5.0
    assert times[("multihost", "converge")] == 30.0


def test_table_prints_ratio(tmp_path, capsys):
    log = tmp_path / "m.log"
    log.write_text(LOG)
    assert timings.main(["x", str(log)]) == 0
    out = capsys.readouterr().out
    assert "| default | 61.2 | 9.5 | 5.0 | 1.90x |" in out
    assert "| multihost | 30.0 | n/a | n/a | n/a |" in out
