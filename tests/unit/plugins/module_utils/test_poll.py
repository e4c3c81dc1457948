"""plugins/module_utils/_poll.py: rounds (threads) and the polling loop (clock and sleep injected)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import threading

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _health_checks as hc
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _poll


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*outcomes):
    """A check that returns ok/failed per call from ``outcomes`` (the last one repeats)."""
    calls = []

    def check():
        ok = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(ok)
        return hc.component(ok, 1.0, {}, None if ok else "down")

    check.calls = calls
    return check


def sequential(funcs):
    return {name: func() for name, func in funcs.items()}


def test_poll_all_ok_in_one_round():
    clock = Clock()
    checks = {"engine": scripted(True), "redis": scripted(True)}
    result = _poll.poll(checks, wait_timeout=10, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["healthy"] and result["attempts"] == 1 and result["failing"] == [] and clock.sleeps == []


def test_poll_single_round_without_wait():
    clock = Clock()
    checks = {"engine": scripted(True), "redis": scripted(False, True)}
    result = _poll.poll(checks, wait_timeout=0, clock=clock, sleep=clock.sleep, runner=sequential)
    assert not result["healthy"] and result["attempts"] == 1 and result["failing"] == ["redis"]
    assert result["components"]["redis"]["error"] == "down"


def test_poll_reruns_only_failing_then_confirms_the_others():
    clock = Clock()
    engine, redis = scripted(True), scripted(False, False, True)
    result = _poll.poll({"engine": engine, "redis": redis}, wait_timeout=10, poll_interval=0.2, clock=clock, sleep=clock.sleep,
                        runner=sequential)
    assert result["healthy"]
    # round 1: both; rounds 2-3: redis only; round 4: engine confirmed
    assert result["attempts"] == 4
    assert len(redis.calls) == 3 and len(engine.calls) == 2
    assert clock.sleeps == [0.2, 0.2]
    assert list(result["components"]) == ["engine", "redis"]


def test_poll_confirmation_catches_a_component_that_went_down():
    clock = Clock()
    engine, redis = scripted(True, False, True), scripted(False, True)
    result = _poll.poll({"engine": engine, "redis": redis}, wait_timeout=10, poll_interval=0.2, clock=clock, sleep=clock.sleep,
                        runner=sequential)
    assert result["healthy"]
    # 1: engine ok, redis down; 2: redis ok; 3: confirm engine -> down; 4: engine ok; 5: confirm redis
    assert result["attempts"] == 5
    assert engine.calls == [True, False, True] and redis.calls == [False, True, True]


def test_poll_times_out():
    clock = Clock()
    result = _poll.poll({"redis": scripted(False)}, wait_timeout=1.0, poll_interval=0.3, clock=clock, sleep=clock.sleep, runner=sequential)
    assert not result["healthy"] and result["failing"] == ["redis"]
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert result["attempts"] == 5 and result["elapsed"] == pytest.approx(1.0)


def test_poll_does_not_run_a_dependent_check_while_a_dependency_fails():
    clock = Clock()
    engine, gateway, chat = scripted(False, False, True), scripted(True), scripted(True)
    result = _poll.poll({"engine": engine, "gateway": gateway, "chat": chat}, wait_timeout=10, poll_interval=0.2,
                        clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["healthy"]
    # rounds 1-2: engine fails, chat not sent; round 3: engine ok, chat sent in the same round;
    # round 4: gateway confirmed
    assert result["attempts"] == 4
    assert engine.calls == [False, False, True] and chat.calls == [True] and gateway.calls == [True, True]


def test_poll_reports_why_a_dependent_check_did_not_run():
    clock = Clock()
    result = _poll.poll({"engine": scripted(False), "gateway": scripted(False), "chat": scripted(True)}, clock=clock, sleep=clock.sleep,
                        runner=sequential)
    assert result["failing"] == ["engine", "gateway", "chat"]
    assert result["components"]["chat"] == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "not run: engine, gateway failing"}


def test_poll_dependencies_only_among_requested_checks():
    clock = Clock()
    chat = scripted(True)
    result = _poll.poll({"redis": scripted(False), "chat": chat}, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["failing"] == ["redis"] and chat.calls == [True]
    result = _poll.poll({"engine": scripted(False), "chat": scripted(True)}, depends={}, clock=clock, sleep=clock.sleep, runner=sequential)
    assert result["failing"] == ["engine"]


def test_run_round_is_parallel_and_survives_a_raising_check():
    barrier = threading.Barrier(3, timeout=5)

    def waits():
        barrier.wait()  # only passes when all three checks run at the same time
        return hc.component(True)

    def raises():
        barrier.wait()
        raise KeyError("boom")

    results = _poll.run_round({"a": waits, "b": waits, "c": raises})
    assert results["a"]["ok"] and results["b"]["ok"]
    assert results["c"] == {"ok": False, "latency_ms": 0.0, "detail": {}, "error": "check raised KeyError: 'boom'"}
