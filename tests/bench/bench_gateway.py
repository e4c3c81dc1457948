"""Gateway benchmark: the real LiteLLM proxy with llm_stack's rendered defaults vs the seed's config.

Everything runs on loopback: the stand-in engine (tests/fixtures/standin_engine), a real
redis-server, and the pinned LiteLLM proxy from .cache/litellm-venv (tests/harness/litellm_venv.sh).
Load comes from wrk (Debian) with a Lua POST script, bounded by --duration. For each setup:

  * saturation: --connections concurrent connections (default 16) -> requests/s, p50/p99
  * light load: 1 connection -> p50/p99; "added latency" = proxy minus the engine measured directly

Setups: the engine directly (baseline), the seed's LiteLLM config (set_verbose: true, openai/
provider; api_base added because the seed's example has none, its master key given as
LITELLM_MASTER_KEY because 1.106 checks it before applying environment_variables, 1 worker =
LiteLLM's default), and
the role's rendered litellm.yaml (tests/integration/playbooks/render_llm_stack.yml) with each of
--workers (default 1 2).

Usage: python3 tests/bench/bench_gateway.py [--duration 20] [--connections 16] [--workers 1 2]
       [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "render_llm_stack.yml"
STANDIN = ROOT / "tests" / "fixtures" / "standin_engine" / "standin_engine.py"
MASTER_KEY = "sk-bench-only-master-key"
ENGINE_KEY = "bench-only-engine-key"
REDIS_PASSWORD = "bench-only-redis-password"  # noqa: S105 (bench-only value)
SEED_MASTER_KEY = "sk-your-master-key-here"  # the seed's own example value
BODY = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def render_role_config(work: pathlib.Path) -> dict:
    """litellm.yaml as llm_stack renders it with its defaults (gpu profile, one GPU)."""
    playbook_bin = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook"))
    varfile = work / "vars.yml"
    varfile.write_text(
        yaml.safe_dump({
            "llm_stack_litellm_master_key": MASTER_KEY,
            "llm_stack_engine_api_key": ENGINE_KEY,
            "llm_stack_redis_password": REDIS_PASSWORD,
            "llm_stack_engine_gpus": 1,
        }),
        encoding="utf-8",
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    subprocess.run(
        [playbook_bin, "-c", "local", "-i", "localhost,", PLAYBOOK, "--tags", "llm_stack_configure",
         "-e", f"@{varfile}", "-e", f"render_root={work / 'render'}"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )
    return yaml.safe_load((work / "render" / "stack" / "config" / "litellm.yaml").read_text(encoding="utf-8"))


def seed_config(engine_port: int) -> dict:
    """The seed's "standard" LiteLLM example, verbatim but for api_base (it has none)."""
    return {
        "model_list": [
            {
                "model_name": "qwen3-8b",
                "litellm_params": {
                    "model": "openai/qwen3-8b",
                    "api_key": "os.environ/OPENAI_API_KEY",
                    "api_base": f"http://127.0.0.1:{engine_port}/v1",
                },
            }
        ],
        "litellm_settings": {
            "set_verbose": True,
            "fallbacks": [{"gpt-4-prod": ["qwen3-8b-backup", "deepseek-r1-0528-qwen3-8b"]}],
        },
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 3},
        "environment_variables": {"LITELLM_MASTER_KEY": SEED_MASTER_KEY},
    }


def wrk(url: str, key: str, *, connections: int, threads: int, duration: int, work: pathlib.Path) -> dict:
    script = work / f"post-{abs(hash(key))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n',
        encoding="utf-8",
    )
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True, timeout=duration + 60,
    ).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "50" not in pct or "99" not in pct:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": ms(pct["50"]),
        "p99_ms": ms(pct["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def measure(name: str, url: str, key: str, args, work: pathlib.Path) -> dict:
    wrk(url, key, connections=args.connections, threads=args.threads, duration=3, work=work)  # warm-up, not counted
    loaded = wrk(url, key, connections=args.connections, threads=args.threads, duration=args.duration, work=work)
    light = wrk(url, key, connections=1, threads=1, duration=max(5, args.duration // 2), work=work)
    result = {"setup": name, "loaded": loaded, "light": light}
    print(f"  {name}: {loaded['rps']:.0f} req/s at {args.connections} conns (p50 {loaded['p50_ms']:.1f} ms, "
          f"p99 {loaded['p99_ms']:.1f} ms); 1 conn p50 {light['p50_ms']:.2f} ms p99 {light['p99_ms']:.2f} ms; "
          f"non-2xx {loaded['non_2xx'] + light['non_2xx']}", flush=True)
    return result


def run_proxy(venv: pathlib.Path, config: dict, *, workers: int, env_extra: dict, work: pathlib.Path, label: str):
    port = free_port()
    path = work / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", **env_extra)
    if workers > 1:  # as the role's compose.yaml does: a per-container tmpfs only with several workers
        multiproc = work / f"{label}-multiproc"
        multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    log = (work / f"{label}.log").open("w")
    proc = subprocess.Popen(
        [venv / "bin" / "litellm", "--config", path, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)],
        env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per setup (saturation run)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LiteLLM workers for the role's config")
    parser.add_argument("--engine", type=pathlib.Path, default=STANDIN, help="stand-in engine script")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args()

    subprocess.run([HARNESS / "ensure-debs.sh", "wrk", "redis-server"], check=True)
    venv = pathlib.Path(subprocess.run([HARNESS / "litellm_venv.sh"], check=True, capture_output=True, text=True).stdout.split()[-1])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = pathlib.Path(tmp)
        role_cfg = render_role_config(work)
        redis_port, engine_port = free_port(), free_port()
        procs = [
            subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
                              "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, args.engine, "/models/Qwen3-8B", "--served-model-name", "qwen3-8b", "--host", "127.0.0.1",
                              "--port", str(engine_port)], env=dict(os.environ, VLLM_API_KEY=ENGINE_KEY, STANDIN_ENGINE_ID="bench"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            wait_http(f"http://127.0.0.1:{engine_port}/health", procs[1], timeout=30)
            print(f"LiteLLM from {venv}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; {os.cpu_count()} CPUs", flush=True)
            engine_url = f"http://127.0.0.1:{engine_port}/v1/chat/completions"
            results.append(measure("engine-direct", engine_url, ENGINE_KEY, args, work))

            # LiteLLM 1.106 refuses to start without a master key at boot, and the seed's
            # environment_variables entry is applied too late for that check: give the same value
            # through the environment, as a container would.
            seed_env = {"OPENAI_API_KEY": ENGINE_KEY, "LITELLM_MASTER_KEY": SEED_MASTER_KEY}
            proc, url = run_proxy(venv, seed_config(engine_port), workers=1, env_extra=seed_env, work=work, label="seed")
            try:
                results.append(measure("seed-config-1-worker", url, SEED_MASTER_KEY, args, work))
            finally:
                stop(proc)

            role_cfg["model_list"][0]["litellm_params"]["api_base"] = f"http://127.0.0.1:{engine_port}/v1"
            role_cfg["router_settings"].update(redis_host="127.0.0.1", redis_port=redis_port)
            role_env = {"LITELLM_MASTER_KEY": MASTER_KEY, "VLLM_API_KEY": ENGINE_KEY, "REDIS_PASSWORD": REDIS_PASSWORD, "LITELLM_LOG": "ERROR"}
            for workers in args.workers:
                proc, url = run_proxy(venv, role_cfg, workers=workers, env_extra=role_env, work=work, label=f"role-{workers}")
                try:
                    results.append(measure(f"role-defaults-{workers}-worker", url, MASTER_KEY, args, work))
                finally:
                    stop(proc)
        finally:
            for proc in procs:
                stop(proc)

    direct = results[0]
    seed = results[1]
    print("\nsetup                      req/s  x seed  p50(16c)  p99(16c)  added p50(1c)  added p99(1c)")
    for res in results:
        loaded, light = res["loaded"], res["light"]
        res["x_seed_rps"] = round(loaded["rps"] / seed["loaded"]["rps"], 2)
        res["added_p50_ms_1conn"] = round(light["p50_ms"] - direct["light"]["p50_ms"], 2)
        res["added_p99_ms_1conn"] = round(light["p99_ms"] - direct["light"]["p99_ms"], 2)
        res["added_p50_ms_loaded"] = round(loaded["p50_ms"] - direct["loaded"]["p50_ms"], 2)
        res["added_p99_ms_loaded"] = round(loaded["p99_ms"] - direct["loaded"]["p99_ms"], 2)
        print(f"{res['setup']:<25} {loaded['rps']:7.0f}  {res['x_seed_rps']:6.2f}  {loaded['p50_ms']:7.1f}ms {loaded['p99_ms']:7.1f}ms"
              f"  {res['added_p50_ms_1conn']:11.2f}ms  {res['added_p99_ms_1conn']:11.2f}ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    bad = [r["setup"] for r in results if r["loaded"]["non_2xx"] or r["light"]["non_2xx"]]
    if bad:
        print(f"non-2xx answers in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
