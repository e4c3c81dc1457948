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


def test_noop_play_time_is_taken_from_its_play_line(tmp_path, capsys):
    """side_effect.yml runs the no-op play and then a re-converge: only the no-op play counts."""
    log = tmp_path / "m.log"
    log.write_text(
        "INFO     default \u279c idempotence: Executing\n"
        "  | llmops-timer playbook=site.yml seconds=9.500\n"
        "INFO     default \u279c side_effect: Executing\n"
        '  | llmops-timer play="No-op play that only gathers facts" seconds=2.000\n'
        '  | llmops-timer play="Converge again with one changed LiteLLM setting" seconds=40.000\n'
        "  | llmops-timer playbook=side_effect.yml seconds=45.000\n"
    )
    times = timings.parse(log.read_text().splitlines())
    assert times[("default", "noop")] == 2.0
    assert times[("default", "side_effect")] == 45.0
    assert timings.main(["x", str(log)]) == 0
    assert "| default | n/a | 9.5 | 2.0 | 4.75x |" in capsys.readouterr().out


def test_slowest_tasks_are_listed_by_stage(tmp_path, capsys):
    log = tmp_path / "m.log"
    log.write_text(
        "INFO     default \u279c converge: Executing\n"
        '  | llmops-timer task="Start the services" seconds=80.500\n'
        '  | llmops-timer task="Pull the images" seconds=12.000\n'
        "  | llmops-timer playbook=site.yml seconds=100.000\n"
        "INFO     [multihost > verify] Executing\n"
        '  | llmops-timer task="Wait for \\"the\\" gateway" seconds=95.250\n'
    )
    tasks = timings.slowest(log.read_text().splitlines(), count=2)
    assert tasks == [(95.25, "multihost", "verify", 'Wait for "the" gateway'), (80.5, "default", "converge", "Start the services")]
    assert timings.main(["x", str(log)]) == 0
    out = capsys.readouterr().out
    assert "| 95.2 | multihost | verify | Wait for \"the\" gateway |" in out
    assert "| 12.0 | default | converge | Pull the images |" in out
