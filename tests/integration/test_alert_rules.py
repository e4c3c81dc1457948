"""The alert rules fire on the series they are written for, and stay quiet otherwise (promtool test rules).

The role's template (roles/monitoring/templates/llm_stack.rules.yml.j2) is rendered by Ansible's own
template module with the role's defaults (and once with other thresholds), then ``promtool test
rules`` evaluates each alert against synthetic series: one that must fire it (with the labels and
the annotations a person reads), one just below the threshold or too short for its ``for:``, which
must not. promtool is 3.x, the major version of the role's default image (Debian sid's, from
tests/harness/prometheus3.sh; LLMOPS_PROMTOOL overrides it). A rule whose expression, threshold, duration or text changes makes this test fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (tests/integration is not a package)


def slow_tail(fast, slow):
    """Values for minutes 13-20 of a counter that grew by FAST's step for 12 minutes, then by SLOW's."""
    fast_step = int(fast.split("+")[1].split("x")[0])
    slow_step = int(slow.split("+")[1].split("x")[0])
    return " ".join(str(12 * fast_step + slow_step * minute) for minute in range(1, 9))


pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "monitoring" / "templates" / "llm_stack.rules.yml.j2"
DEFAULTS = ROOT / "roles" / "monitoring" / "defaults" / "main.yml"
ANSIBLE = pathlib.Path(sys.executable).parent / "ansible"


def promtool():
    return os.environ.get("LLMOPS_PROMTOOL") or str(sp.prometheus3_bin() / "promtool")


def render(tmp_path, **overrides):
    """The rules file as the role writes it: Ansible's template module, the role's defaults, overrides."""
    dest = tmp_path / "llm_stack.yml"
    extra = [arg for key, value in overrides.items() for arg in ("-e", f"{key}={value}")]
    proc = subprocess.run([str(ANSIBLE), "localhost", "-c", "local", "-m", "ansible.builtin.template",
                           "-a", f"src={TEMPLATE} dest={dest} mode=0644", "-e", f"@{DEFAULTS}", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


def runbooks(rules):
    """{alert: its runbook annotation} of a rendered rules file (the text is not what these tests check)."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    return {rule["alert"]: rule["annotations"]["runbook"] for group in groups for rule in group["rules"]}


def with_runbooks(rules, tests):
    """Add each alert's runbook to its expected annotations (promtool compares the whole set)."""
    books = runbooks(rules)
    for test in tests:
        for case in test["alert_rule_test"]:
            for alert in case["exp_alerts"]:
                alert["exp_annotations"].setdefault("runbook", books[case["alertname"]])
    return tests


def run_tests(tmp_path, rules, tests):
    tests = with_runbooks(rules, tests)
    spec = tmp_path / "tests.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    proc = subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def alert_test(series, name, eval_time, alerts):
    return {"interval": "1m", "input_series": series,
            "alert_rule_test": [{"eval_time": eval_time, "alertname": name, "exp_alerts": alerts}]}


def target_down(up_values):
    return alert_test([{"series": 'up{job="vllm", instance="inference-engine:8001"}', "values": up_values}],
                      "LLMStackTargetDown", "3m",
                      [{"exp_labels": {"severity": "critical", "job": "vllm", "instance": "inference-engine:8001"},
                        "exp_annotations": {"summary": "vllm on inference-engine:8001 is down",
                                            "description": "Prometheus could not scrape vllm for 1 minute."}}])


def queue(waiting_per_engine, threshold=10):
    series = [{"series": f'vllm:num_requests_waiting{{model_name="qwen3-8b", instance="e{i}:8001"}}', "values": values}
              for i, values in enumerate(waiting_per_engine)]
    return alert_test(series, "LLMStackRequestQueueGrowing", "10m",
                      [{"exp_labels": {"severity": "warning", "model_name": "qwen3-8b"},
                        "exp_annotations": {
                            "summary": f"vLLM queue of qwen3-8b above {threshold} for 5 minutes",
                            "description": "12 requests are waiting: the engine cannot keep up; add GPUs or lower max_model_len."}}])


def kv_cache(usage, percent=90):
    return alert_test([{"series": 'vllm:kv_cache_usage_perc{model_name="qwen3-8b", instance="e0:8001"}', "values": usage}],
                      "LLMStackKVCacheNearlyFull", "10m",
                      [{"exp_labels": {"severity": "warning", "model_name": "qwen3-8b"},
                        "exp_annotations": {"summary": f"vLLM KV cache of qwen3-8b above {percent}% for 5 minutes",
                                            "description": "KV cache usage is 95%: requests get preempted."}}])


def ttft(per_minute):
    """vLLM's time-to-first-token histogram with these per-minute increments per bucket (le -> count)."""
    series = [{"series": f'vllm:time_to_first_token_seconds_bucket{{model_name="qwen3-8b", instance="e0:8001", le="{le}"}}',
               "values": values} for le, values in per_minute.items()]
    return alert_test(series, "LLMStackTimeToFirstTokenHigh", "20m",
                      [{"exp_labels": {"severity": "warning", "model_name": "qwen3-8b"},
                        "exp_annotations": {"summary": "p95 time to first token of qwen3-8b above 2.0 s for 10 minutes",
                                            "description": "The 95th percentile of vLLM's time to first token is 4.792s."}}])


SLOW = {"0.5": "0+10x20", "1.0": "0+20x20", "2.5": "0+40x20", "5.0": "0+100x20", "+Inf": "0+100x20"}  # p95 4.79 s
FAST = {"0.5": "0+50x20", "1.0": "0+90x20", "2.5": "0+100x20", "5.0": "0+100x20", "+Inf": "0+100x20"}  # p95 1.75 s
# Fast for 12 minutes, then slow for 8 (less than the rule's 10 minutes).
SLOW_LATE = {le: f"0+{FAST[le].split('+')[1].split('x')[0]}x12 {slow_tail(FAST[le], SLOW[le])}" for le in FAST}


def gateway(failed_per_minute, total_per_minute=100):
    series = [{"series": 'litellm_proxy_failed_requests_metric_total{requested_model="qwen3-8b", exception_status="500"}',
               "values": f"0+{failed_per_minute}x20"},
              {"series": 'litellm_proxy_total_requests_metric_total{requested_model="qwen3-8b"}',
               "values": f"0+{total_per_minute}x20"}]
    return alert_test(series, "LLMStackGatewayErrorRatio", "15m",
                      [{"exp_labels": {"severity": "critical"},
                        "exp_annotations": {"summary": "More than 5.0% of the gateway's requests fail",
                                            "description": "6% of the requests through LiteLLM failed over the last 5 minutes."}}])


def fallbacks(successful, failed="0x20"):
    series = [{"series": 'litellm_deployment_successful_fallbacks_total{requested_model="qwen3-8b", fallback_model="qwen3-8b-backup"}',
               "values": successful},
              {"series": 'litellm_deployment_failed_fallbacks_total{requested_model="qwen3-8b", fallback_model="qwen3-8b-backup"}',
               "values": failed}]
    return alert_test(series, "LLMStackGatewayFallbacks", "15m",
                      [{"exp_labels": {"severity": "warning", "requested_model": "qwen3-8b"},
                        "exp_annotations": {
                            "summary": "Requests for qwen3-8b have been going to fallbacks for 5 minutes",
                            "description": "0.05 fallbacks a second: every deployment of qwen3-8b failed for these requests."}}])


def quiet(test):
    """The same input, expecting no alert at the evaluation time."""
    for case in test["alert_rule_test"]:
        case["exp_alerts"] = []
    return test


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return render(tmp_path_factory.mktemp("rules"))


@pytest.mark.parametrize(("test", "why"), [
    (target_down("1 0 0 0"), "down for 2 minutes"),
    (queue(["6x10", "6x10"]), "12 waiting over two engines of one model, above 10 for 10 minutes"),
    (kv_cache("0.95x10"), "95 % for 10 minutes"),
    (ttft(SLOW), "p95 4.79 s for 20 minutes"),
    (gateway(6), "6 % of the requests fail for 20 minutes"),
    (fallbacks("0+3x20"), "3 successful fallbacks a minute for 20 minutes"),
    (fallbacks("0x20", "0+3x20"), "3 failed fallbacks a minute for 20 minutes"),
], ids=["target-down", "queue", "kv-cache", "ttft", "gateway-errors", "fallbacks", "failed-fallbacks"])
def test_alert_fires(tmp_path, rules, test, why):
    rc, out = run_tests(tmp_path, rules, [test])
    assert rc == 0, f"{why}: {out}"


@pytest.mark.parametrize(("test", "why"), [
    (quiet(target_down("1 1 1 1")), "always up"),
    (quiet(target_down("1 1 1 0")), "down for less than the rule's 1 minute at the evaluation"),
    (quiet(queue(["5x10", "5x10"])), "10 waiting is not above 10"),
    (quiet(queue(["1x6 12 12 12 12"])), "above the threshold for the last 3 minutes only"),
    (quiet(kv_cache("0.9x10")), "90 % is not above 0.9"),
    (quiet(kv_cache("0.5x6 0.95 0.95 0.95 0.95")), "above for the last 3 minutes only"),
    (quiet(ttft(FAST)), "p95 1.75 s"),
    (quiet(ttft(SLOW_LATE)), "slow for the last 8 minutes only"),
    (quiet(gateway(4)), "4 % fail"),
    (quiet(gateway(0, 0)), "no traffic at all (0/0 is no alert)"),
    (quiet(fallbacks("5x20")), "a counter that stopped growing"),
    (quiet(fallbacks("0x12 1 2 3 4 5 6 7 8")), "fallbacks in the last 8 minutes only, the rate above 0 for less than 5 at 15m"),
], ids=["up", "down-briefly", "queue-at-threshold", "queue-short", "kv-at-threshold", "kv-short",
        "ttft-fast", "ttft-short", "gateway-few-errors", "gateway-idle", "fallbacks-none", "fallbacks-short"])
def test_alert_stays_quiet(tmp_path, rules, test, why):
    rc, out = run_tests(tmp_path, rules, [test])
    assert rc == 0, f"{why}: {out}"


def test_a_firing_expectation_on_a_quiet_series_fails(tmp_path, rules):
    """Control: promtool really compares (a firing expectation on a quiet series is reported)."""
    rc, out = run_tests(tmp_path, rules, [kv_cache("0.5x10")])
    assert rc != 0 and "LLMStackKVCacheNearlyFull" in out, out


def test_thresholds_come_from_the_variables(tmp_path):
    rules = render(tmp_path, monitoring_alert_queue_waiting_threshold=20, monitoring_alert_kv_cache_threshold=0.97,
                   monitoring_alert_ttft_p95_seconds=5, monitoring_alert_gateway_error_ratio=0.1)
    rc, out = run_tests(tmp_path, rules, [quiet(queue(["6x10", "6x10"])), quiet(kv_cache("0.95x10")), quiet(ttft(SLOW)),
                                          quiet(gateway(6))])
    assert rc == 0, out
    rc, out = run_tests(tmp_path, rules, [queue(["11x10", "1x10"], threshold=20)])
    assert rc != 0, "12 waiting must not fire with the threshold at 20"
    fired = quiet(queue(["21x10"], threshold=20))
    fired["alert_rule_test"][0]["exp_alerts"] = [{
        "exp_labels": {"severity": "warning", "model_name": "qwen3-8b"},
        "exp_annotations": {"summary": "vLLM queue of qwen3-8b above 20 for 5 minutes",
                            "description": "21 requests are waiting: the engine cannot keep up; add GPUs or lower max_model_len."}}]
    rc, out = run_tests(tmp_path, rules, [fired])
    assert rc == 0, out


def test_the_litellm_metrics_named_are_defined_by_the_pinned_litellm(rules):
    """Every LiteLLM metric of the rules (expressions and runbooks) is one the pinned release defines
    (its DEFINED_PROMETHEUS_METRICS), so a rename upstream fails here. The vLLM names are held against
    a live engine in test_vllm_engine.py and molecule."""
    used = sorted({re.sub(r"_total$", "", name) for name in re.findall(r"\blitellm_[a-z_]+", rules.read_text())})
    assert "litellm_deployment_successful_fallbacks" in used and len(used) >= 5, used
    venv = sp.litellm_venv()
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import json, typing\n"
                           "from litellm.types.integrations.prometheus import DEFINED_PROMETHEUS_METRICS as names\n"
                           "print(json.dumps(typing.get_args(names)))"],
                          capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"))
    assert proc.returncode == 0, proc.stderr
    defined = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert len(defined) > 50
    assert [name for name in used if name not in defined] == []
