"""Moderation overhead: the real LiteLLM proxy with the llmops guardrail vs the same proxy without it.

Everything runs on loopback: the stand-in engine (tests/fixtures/standin_engine, NOT vLLM), the stand-in
guard (tests/fixtures/standin_guard, NOT a model; STANDIN_GUARD_DELAY_MS=0, so the figure is the
gateway's own cost of moderation, not a guard model's inference time), and the pinned LiteLLM proxy
(.cache/litellm-venv or $LLMOPS_LITELLM_VENV). The guardrail screens input and output (two guard
calls per request, logprobs requested), moderation_action block, on_error closed, all prompts safe.

Both proxies (same engine, one with the guardrail) run side by side and are measured in alternating
blocks, so a change in the machine's background load hits both alike:
  * sequential: --requests requests per setup on one keep-alive connection, in blocks of --block
    -> p50 / p99 / mean latency
  * concurrent: --rounds rounds per setup of --concurrency connections x --requests-per-connection
    -> requests/s (requests / time in those rounds), p50 / p99
Added latency = guardrail minus baseline. The load generator is Python in this process and shares
the CPU with the proxy and the stand-ins (the harness machine has 2 cores): compare the two rows with
each other, not with other machines.

Usage: python3 tests/bench/bench_moderation.py [--requests 300] [--block 50] [--concurrency 16]
       [--requests-per-connection 10] [--rounds 4] [--workers 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import stack_processes as sp  # noqa: E402  (tests/integration is not a package)

GUARDRAIL_FILES = ROOT / "roles" / "moderation" / "files" / "guardrails"
STANDIN_GUARD = ROOT / "tests" / "fixtures" / "standin_guard" / "standin_guard.py"
MASTER_KEY = "sk-bench-only-master-key"
ENGINE_KEY = "bench-only-engine-key"
GUARD_KEY = "bench-only-guard-key"
BODY = json.dumps({"model": "qwen3-8b", "messages": [{"role": "user", "content": "Write a haiku about autumn."}],
                   "max_tokens": 16}).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Client:
    """One keep-alive HTTP/1.1 connection to the proxy."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection(sp.LOOPBACK, port, timeout=60)

    def post(self) -> float:
        start = time.perf_counter()
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v1/chat/completions", body=BODY,
                                  headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(sp.LOOPBACK, self.port, timeout=60)
                if attempt:
                    raise
        if resp.status != 200:
            raise RuntimeError(f"proxy answered {resp.status}: {data[:300]!r}")
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def sequential(port: int, count: int) -> list[float]:
    client = Client(port)
    try:
        return [client.post() for _request in range(count)]
    finally:
        client.close()


def concurrent(port: int, connections: int, per_connection: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(connections + 1)

    def worker() -> None:
        client = Client(port)
        mine = []
        try:
            barrier.wait()
            for _request in range(per_connection):
                mine.append(client.post())
        except BaseException as err:  # noqa: BLE001 - reported after the run
            errors.append(err)
        finally:
            client.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _connection in range(connections)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} connection(s) failed: {errors[0]}")
    return len(latencies) / elapsed, latencies


def guard_calls(guard: sp.Service) -> float:
    with urllib.request.urlopen(guard.url + "/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("standin_guard_requests_total{"))


def proxy_config(engine_url: str, guard_url: str | None) -> dict:
    config = sp.litellm_config(engine_url=engine_url, engine_key=ENGINE_KEY, master_key=MASTER_KEY)
    if guard_url:
        config["guardrails"] = [{"guardrail_name": "llmops-moderation", "litellm_params": {
            "guardrail": "llmops_guard.LlmopsGuard", "mode": ["pre_call", "post_call"], "default_on": True,
            "api_base": guard_url + "/v1", "api_key": "os.environ/MODERATION_API_KEY", "guard_model": "qwen3guard",
            "moderation_action": "block", "on_error": "closed", "controversial": "strict", "timeout": 10}}]
    return config


def start_proxy(name: str, work: pathlib.Path, venv: pathlib.Path, config: dict, workers: int) -> sp.Service:
    workdir = work / name
    workdir.mkdir(parents=True)
    for source in GUARDRAIL_FILES.glob("*.py"):
        shutil.copy(source, workdir / source.name)
    proxy = sp.litellm_proxy(workdir, engine_url="", engine_key=None, master_key=MASTER_KEY, venv=venv, config=config,
                             workers=workers, name="litellm")
    return proxy.start()


def measure(proxies: dict[str, sp.Service], args, guard: sp.Service) -> list[dict]:
    """Both proxies run side by side; their measurements alternate in blocks, so a change in the
    machine's background load hits both alike."""
    seq: dict[str, list[float]] = {name: [] for name in proxies}
    conc: dict[str, list[float]] = {name: [] for name in proxies}
    conc_time: dict[str, float] = dict.fromkeys(proxies, 0.0)
    calls: dict[str, float] = dict.fromkeys(proxies, 0.0)
    for proxy in proxies.values():
        sequential(proxy.port, args.warmup)
    remaining = args.requests
    while remaining > 0:
        block = min(args.block, remaining)
        for name, proxy in proxies.items():
            before = guard_calls(guard)
            seq[name] += sequential(proxy.port, block)
            calls[name] += guard_calls(guard) - before
        remaining -= block
    for _round in range(args.rounds):
        for name, proxy in proxies.items():
            before = guard_calls(guard)
            started = time.perf_counter()
            _rps, latencies = concurrent(proxy.port, args.concurrency, args.requests_per_connection)
            conc_time[name] += time.perf_counter() - started
            conc[name] += latencies
            calls[name] += guard_calls(guard) - before
    rows = []
    for name in proxies:
        total = len(seq[name]) + len(conc[name])
        rows.append({
            "setup": name,
            "seq_n": len(seq[name]),
            "seq_p50_ms": statistics.median(seq[name]) * 1000, "seq_p99_ms": percentile(seq[name], 99) * 1000,
            "seq_mean_ms": statistics.fmean(seq[name]) * 1000,
            "conc_n": len(conc[name]), "conc_rps": len(conc[name]) / conc_time[name],
            "conc_p50_ms": statistics.median(conc[name]) * 1000, "conc_p99_ms": percentile(conc[name], 99) * 1000,
            "guard_calls_per_request": calls[name] / total,
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per setup")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests-per-connection", type=int, default=10, help="per connection and concurrent round")
    parser.add_argument("--rounds", type=int, default=4, help="concurrent rounds per setup (alternating)")
    parser.add_argument("--block", type=int, default=50, help="sequential requests per alternating block")
    parser.add_argument("--workers", type=int, default=1, help="LiteLLM --num_workers")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    venv = sp.litellm_venv()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    os.environ["MODERATION_API_KEY"] = GUARD_KEY
    with tempfile.TemporaryDirectory(prefix="bench-moderation-") as tmp:
        work = pathlib.Path(tmp)
        engine = sp.standin_engine(work, api_key=ENGINE_KEY)
        gport = sp.free_port()
        genv = dict(os.environ, STANDIN_GUARD_DELAY_MS="0")
        guard = sp.Service("guard", [sys.executable, STANDIN_GUARD, "Qwen/Qwen3Guard-Gen-0.6B", "--served-model-name", "qwen3guard",
                                     "--host", sp.LOOPBACK, "--port", str(gport), "--api-key", GUARD_KEY],
                           port=gport, workdir=work, env=genv, ready=lambda: sp.http_status(f"http://{sp.LOOPBACK}:{gport}/health") == 200)
        with engine, guard:
            proxies: dict[str, sp.Service] = {}
            try:
                proxies["no guardrail"] = start_proxy("baseline", work, venv, proxy_config(engine.url, None), args.workers)
                proxies["guardrail (input+output)"] = start_proxy("guardrail", work, venv, proxy_config(engine.url, guard.url), args.workers)
                rows = measure(proxies, args, guard)
            finally:
                for proxy in proxies.values():
                    proxy.stop()
    base, mod = rows
    print(f"\nLiteLLM proxy, {args.workers} worker(s); stand-in engine and stand-in guard (delay 0) on loopback; "
          f"sequential n={args.requests} (blocks of {args.block}, alternating), concurrent {args.concurrency} connections x "
          f"{args.requests_per_connection} requests x {args.rounds} alternating rounds; load average before: {load_before}\n")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| setup | seq p50 ms | seq p99 ms | seq mean ms | 16-conc req/s | conc p50 ms | conc p99 ms | guard calls/req |"
          .replace("16-conc", f"{args.concurrency}-conc"))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['setup']} | {r['seq_p50_ms']:.1f} | {r['seq_p99_ms']:.1f} | {r['seq_mean_ms']:.1f} | {r['conc_rps']:.1f} | "
              f"{r['conc_p50_ms']:.1f} | {r['conc_p99_ms']:.1f} | {r['guard_calls_per_request']:.2f} |")
    print(f"| added by moderation | {mod['seq_p50_ms'] - base['seq_p50_ms']:+.1f} | {mod['seq_p99_ms'] - base['seq_p99_ms']:+.1f} | "
          f"{mod['seq_mean_ms'] - base['seq_mean_ms']:+.1f} | {100 * (mod['conc_rps'] / base['conc_rps'] - 1):+.0f} % | "
          f"{mod['conc_p50_ms'] - base['conc_p50_ms']:+.1f} | {mod['conc_p99_ms'] - base['conc_p99_ms']:+.1f} | |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"args": vars(args), "load_before": load_before, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
