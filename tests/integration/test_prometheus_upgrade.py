"""An existing 2.x deployment keeps its data when the role's default moves it to Prometheus 3.

The role's default image went from prom/prometheus:v2.53.2 to the 3.13 LTS line; a deployment that
re-runs site.yml recreates the container on the same data folder (data/prometheus). This test does
that with real binaries on loopback: Debian's prometheus 2.x (the system package the suite installs;
2.42 on Debian 12) fills a TSDB two ways, a persisted block (promtool 2.x `tsdb create-blocks-from
openmetrics`, samples 3 to 2 hours old) and its own write-ahead log (it scrapes itself), and stops
cleanly; then Prometheus 3 (tests/harness/prometheus3.sh) starts on the same folder and must answer
for both: every sample of the block, and 2.x's own series from the log it replays.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_processes as sp  # noqa: E402  (a helper module beside this file)

pytestmark = pytest.mark.integration

SYSTEM_PROMETHEUS = pathlib.Path("/usr/bin/prometheus")
SYSTEM_PROMTOOL = pathlib.Path("/usr/bin/promtool")
BLOCK_SAMPLES = 60


def version(binary) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    return match.group(1)


def query(server: sp.Service, promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"http://{server.host}:{server.port}/api/v1/query?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(server: sp.Service, promql: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(server, promql)
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{server.name}: no result for {promql} within {timeout:.0f} s\n{server.log_tail()}")


def test_prometheus_3_reads_the_data_of_a_2x_deployment(tmp_path):
    sp.ensure_debs("prometheus")
    old = version(SYSTEM_PROMETHEUS)
    assert old.startswith("2."), f"the system's prometheus is {old}, not the 2.x an upgrade starts from"
    new_binary = sp.prometheus3_bin() / "prometheus"
    new = version(new_binary)
    assert new.startswith("3."), new

    # A block written by 2.x: one sample a minute from 3 h to 2 h ago.
    storage = tmp_path / "prometheus-data"
    storage.mkdir()
    start = int(time.time()) - 3 * 3600
    samples = [(start + 60 * i, i + 1) for i in range(BLOCK_SAMPLES)]
    openmetrics = tmp_path / "probe.om"
    openmetrics.write_text("# TYPE llmops_upgrade_probe gauge\n"
                           + "".join(f'llmops_upgrade_probe{{written_by="{old}"}} {value} {ts}\n' for ts, value in samples)
                           + "# EOF\n")
    made = subprocess.run([str(SYSTEM_PROMTOOL), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(storage)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stdout + made.stderr

    # 2.x runs on that folder, scrapes itself into its write-ahead log, and stops cleanly.
    with sp.prometheus_server(tmp_path, jobs={}, binary=str(SYSTEM_PROMETHEUS), keep_storage=True) as v2:
        assert query(v2, "count_over_time(llmops_upgrade_probe[1h])", at=samples[-1][0])[0]["value"][1] == str(BLOCK_SAMPLES)
        wait_for(v2, 'count_over_time(prometheus_build_info{job="prometheus"}[1m]) >= 3')
        v2_ran_until = time.time()

    # Prometheus 3 on the same folder: the block and the log of 2.x, and its own samples after them.
    with sp.prometheus_server(tmp_path, jobs={}, binary=str(new_binary), keep_storage=True) as v3:
        block = query(v3, "count_over_time(llmops_upgrade_probe[1h])", at=samples[-1][0])
        assert [(r["metric"], r["value"][1]) for r in block] == [({"written_by": old}, str(BLOCK_SAMPLES))]
        last = query(v3, "llmops_upgrade_probe", at=samples[-1][0])
        assert [r["value"][1] for r in last] == [str(samples[-1][1])]
        from_wal = query(v3, 'last_over_time(prometheus_build_info{job="prometheus"}[5m])', at=v2_ran_until)
        assert [r["metric"]["version"].split("+")[0] for r in from_wal] == [old], from_wal
        own = wait_for(v3, f'prometheus_build_info{{job="prometheus", version=~`{re.escape(new)}.*`}}')
        assert len(own) == 1, own
