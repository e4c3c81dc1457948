"""Gateway benchmark: the real LiteLLM proxy with the gateway role's rendered defaults vs the seed's config.

Everything runs on loopback: the stand-in engine (tests/fixtures/standin_engine), a real
redis-server, and the pinned LiteLLM proxy from .cache/litellm-venv (tests/harness/litellm_venv.sh).
Load comes from wrk (Debian) with a Lua POST script, bounded by --duration.

What "the role's defaults" means here: litellm.yaml AND the litellm-proxy service of compose.yaml
as tests/integration/playbooks/render_stack.yml renders them with the roles' defaults (the same
playbook tests/integration/test_stack_render.py uses). The bench takes the proxy's CLI flags
(--num_workers and any other flag the template adds) and its literal environment (LITELLM_LOG, ...)
from the rendered compose service, and only rewires the addresses to loopback: the deployment's
api_base to the stand-in engine, Redis to the local redis-server. A role change to either template
is therefore measured without editing this file.

Setups (one run, same machine, same stand-in engine):
  engine-direct          the stand-in engine without the proxy (baseline for "added latency")
  seed-w1                the seed's LiteLLM config (set_verbose: true, openai/ provider), 1 worker =
                         LiteLLM's default; api_base added because the seed's example has none, its
                         master key given as LITELLM_MASTER_KEY because 1.106 checks it before
                         applying environment_variables
  role-wN                the role's rendered config with N workers for N in --workers (default 1 2 3;
                         the role's own default is marked "(role default)")
  <variant>-wN           opt-in (--variants): the role rendered with extra role variables and/or
                         extra proxy flags, at --variant-workers (default: the role's worker count)

Method, built for a shared 2-core machine whose other load comes and goes: all proxies start side by
side (an idle one costs next to no CPU) and take turns under load, --rounds times in a new random
order each round, --duration seconds each at --connections connections. Per setup the bench reports
the median requests/s, the median of the per-round ratios to the seed's run of the same round, the
proxy's CPU time per request (user+system of the proxy and all its worker processes from /proc,
divided by the requests served) and how that CPU time was split over the worker processes (uneven =
the server gave most long-lived connections to one worker). Then one 1-connection run per setup:
"added latency" = proxy minus the engine measured directly. The load average and CPU pressure
(PSI) are recorded with every run.

Usage: python3 tests/bench/bench_gateway.py [--rounds 4] [--duration 5] [--workers 1 2 3]
       [--variants prom-trim granian ...] [--variant-workers 1 2] [--json results.json]
Needs ansible-playbook on PATH (e.g. PATH=.venv/bin:$PATH) and root for ensure-debs (wrk, redis).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "render_stack.yml"
STANDIN = ROOT / "tests" / "fixtures" / "standin_engine" / "standin_engine.py"
MASTER_KEY = "sk-bench-only-master-key"
ENGINE_KEY = "bench-only-engine-key-0123"
REDIS_PASSWORD = "bench-only-redis-password"  # noqa: S105 (bench-only value)
SEED_MASTER_KEY = "sk-your-master-key-here"  # the seed's own example value
BODY = {"model": "qwen3-8b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
SECRET_ENV = {"LITELLM_MASTER_KEY": MASTER_KEY, "VLLM_API_KEY": ENGINE_KEY, "REDIS_PASSWORD": REDIS_PASSWORD}

# Prometheus metrics a master-key-only gateway without a database can never fill in (budgets, spend,
# virtual-key/team/project rate limits), but which LiteLLM 1.106.2 still computes label sets for on
# every request. Names from DEFINED_PROMETHEUS_METRICS (litellm/types/integrations/prometheus.py).
# Beware: an unknown name makes 1.106.2 skip the whole prometheus logger (a "Non-Blocking Error" in
# the log, /metrics/ nearly empty) and `litellm --validate_config` does not catch it; the bench's
# /metrics/ check (metrics_ok) does.
UNUSED_PROMETHEUS_METRICS = [
    "litellm_spend_metric",
    "litellm_remaining_requests_metric",
    "litellm_remaining_tokens_metric",
    "litellm_remaining_api_key_requests_for_model",
    "litellm_remaining_api_key_tokens_for_model",
    "litellm_remaining_team_budget_metric",
    "litellm_team_max_budget_metric",
    "litellm_team_budget_remaining_hours_metric",
    "litellm_team_members_metric",
    "litellm_remaining_org_budget_metric",
    "litellm_org_max_budget_metric",
    "litellm_org_budget_remaining_hours_metric",
    "litellm_remaining_api_key_budget_metric",
    "litellm_api_key_max_budget_metric",
    "litellm_api_key_budget_remaining_hours_metric",
    "litellm_remaining_user_budget_metric",
    "litellm_user_max_budget_metric",
    "litellm_user_budget_remaining_hours_metric",
    "litellm_remaining_customer_budget_metric",
    "litellm_customer_max_budget_metric",
    "litellm_customer_budget_remaining_hours_metric",
    "litellm_api_key_rate_limit_allowed_metric",
    "litellm_api_key_rate_limit_used_metric",
    "litellm_team_rate_limit_allowed_metric",
    "litellm_team_rate_limit_used_metric",
    "litellm_project_model_rate_limit_allowed_metric",
    "litellm_project_model_rate_limit_used_metric",
    "litellm_zero_cost_requests_total",
    "litellm_spend_capture_rate",
]

# Opt-in variants: role variables passed to the render (so the role's own template renders them) and
# extra proxy flags (for settings the compose template has no variable for). "note" says what the
# variant changes; the REFERENCE ONLY ones drop something the role needs, to size its cost.
VARIANTS = {
    "prom-trim": {
        "vars": {"gateway_litellm_settings": {"prometheus_exclude_metrics": UNUSED_PROMETHEUS_METRICS}},
        "args": [],
        "note": "litellm_settings.prometheus_exclude_metrics: budget/spend/rate-limit metrics (keeps /metrics)",
    },
    "granian": {
        "vars": {},
        "args": ["--run_granian"],
        "note": "proxy flag --run_granian (Granian instead of uvicorn; granian is in litellm[proxy])",
    },
    "prom-trim-granian": {
        "vars": {"gateway_litellm_settings": {"prometheus_exclude_metrics": UNUSED_PROMETHEUS_METRICS}},
        "args": ["--run_granian"],
        "note": "both of the above",
    },
    "no-prometheus": {
        "vars": {"gateway_litellm_settings": {"callbacks": []}},
        "args": [],
        "note": "REFERENCE ONLY: no prometheus callback (loses the gateway's /metrics)",
    },
    "no-redis": {
        "vars": {"gateway_router_settings": {"redis_host": None, "redis_port": None, "redis_password": None}},
        "args": [],
        "note": "REFERENCE ONLY: router state per worker, not in Redis (wrong with several workers/hosts)",
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
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


# ------------------------------------------------------------------ /proc: CPU time, load, pressure
def descendants(pid: int) -> list[int]:
    """pid and every process below it (uvicorn/granian workers, their helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that ended: its time is lost, which only under-counts
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return float(pathlib.Path("/proc/loadavg").read_text(encoding="ascii").split()[0])


def cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (PSI), or None without PSI."""
    try:
        line = pathlib.Path("/proc/pressure/cpu").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    return int(line.split("total=")[1])


# ------------------------------------------------------------------ rendering the role
def render_role(work: pathlib.Path, label: str, extra_vars: dict) -> tuple[dict, dict]:
    """litellm.yaml and compose's litellm-proxy service as the gateway role renders them (gpu profile, one GPU)."""
    playbook_bin = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook"))
    root = work / f"render-{label}"
    inventory = work / f"hosts-{label}.yml"
    host = {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "gpu_stack_root": str(root / "stack"), "gpu_stack_models_root": str(root / "models"),
        "gpu_stack_start": False, "gpu_stack_validate": False, "gpu_stack_host_checks": False, "inference_engine_gpu_check": False,
        "gateway_master_key": MASTER_KEY,
        "inference_engine_api_key": ENGINE_KEY,
        "gateway_redis_password": REDIS_PASSWORD,
        "inference_engine_gpus": 1,
        **extra_vars,
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {"bench": host}}}}}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    done = subprocess.run(
        [playbook_bin, "-i", inventory, PLAYBOOK, "--tags", "inference_engine_configure,gateway"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"render of {label} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    config = yaml.safe_load((root / "stack" / "config" / "litellm.yaml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((root / "stack" / "compose.yaml").read_text(encoding="utf-8"))
    return config, compose["services"]["litellm-proxy"]


def proxy_cli(service: dict) -> tuple[int, list[str], dict]:
    """(workers, other flags, literal environment) of the rendered litellm-proxy service."""
    command = [str(part) for part in service["command"]]
    workers, flags, i = 1, [], 0
    while i < len(command):
        part = command[i]
        takes_value = i + 1 < len(command) and not command[i + 1].startswith("--")
        if part in ("--config", "--port", "--host"):
            i += 2
            continue
        if part == "--num_workers":
            workers = int(command[i + 1])
            i += 2
            continue
        flags.extend(command[i:i + 2] if takes_value else [part])
        i += 2 if takes_value else 1
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    literal = {key: str(value) for key, value in environment.items()
               if "${" not in str(value) and key != "PROMETHEUS_MULTIPROC_DIR"}
    return workers, flags, literal


def loopback(config: dict, engine_port: int, redis_port: int) -> dict:
    """The rendered config with its addresses pointed at the loopback engine and Redis; nothing else changed."""
    config = copy.deepcopy(config)
    for deployment in config["model_list"]:
        deployment["litellm_params"]["api_base"] = f"http://127.0.0.1:{engine_port}/v1"
    router = config.get("router_settings") or {}
    if router.get("redis_host"):
        router.update(redis_host="127.0.0.1", redis_port=redis_port)
    cache = (config.get("litellm_settings") or {}).get("cache_params") or {}
    if cache.get("host"):
        cache.update(host="127.0.0.1", port=redis_port)
    return config


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


# ------------------------------------------------------------------ load
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
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": ms(pct["50"]),
        "p99_ms": ms(pct["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    }


def burst(url: str, key: str, args, work: pathlib.Path, *, proc: subprocess.Popen | None) -> dict:
    """One saturation run (--connections, --duration) with the proxy's CPU time, load and CPU pressure."""
    pids = descendants(proc.pid) if proc else []
    per_pid_before = {pid: cpu_seconds([pid]) for pid in pids}
    load_before, psi_before, cpu_before, t0 = load1(), cpu_pressure_us(), cpu_seconds(pids), time.monotonic()
    loaded = wrk(url, key, connections=args.connections, threads=args.threads, duration=args.duration, work=work)
    elapsed, cpu_used, psi_after = time.monotonic() - t0, cpu_seconds(pids) - cpu_before, cpu_pressure_us()
    restarted = bool(proc) and set(descendants(proc.pid)) != set(pids)  # a replaced worker's CPU time is missing
    # CPU seconds per proxy process during the run, busiest first: shows how evenly the server
    # spread the long-lived client connections over its workers.
    split = sorted((round(cpu_seconds([pid]) - before, 1) for pid, before in per_pid_before.items()), reverse=True)
    return {
        **loaded,
        "proxy_cpu_ms_per_request": round(1000 * cpu_used / max(loaded["requests"], 1), 2) if proc else None,
        "proxy_cpu_cores_busy": round(cpu_used / elapsed, 2) if proc else None,
        "proxy_cpu_seconds_per_process": [x for x in split if x >= 0.1],
        "proxy_processes_changed": restarted,
        "load1_before": load_before,
        "cpu_pressure_pct": round((psi_after - psi_before) / elapsed / 1e4, 1) if psi_before is not None and psi_after is not None else None,
    }


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def start_proxy(venv: pathlib.Path, config: dict, *, workers: int, flags: list[str], env_extra: dict, work: pathlib.Path, label: str):
    port = free_port()
    path = work / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.update(env_extra)
    if workers > 1:  # as the role's compose.yaml does: a per-container tmpfs only with several workers
        multiproc = work / f"{label}-multiproc"
        multiproc.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    with (work / f"{label}.log").open("w") as log:
        proc = subprocess.Popen(
            [venv / "bin" / "litellm", "--config", path, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers), *flags],
            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        )
    return proc, port


def wait_proxy(proc: subprocess.Popen, port: int, work: pathlib.Path, label: str) -> None:
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc)
    except RuntimeError:
        sys.stderr.write((work / f"{label}.log").read_text(encoding="utf-8", errors="replace")[-3000:])
        raise


def check_metrics(port: int) -> bool:
    """The gateway's /metrics/ answers without a key and carries LiteLLM's request counter."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=10) as answer:
            return "litellm_proxy_total_requests_metric" in answer.read().decode("utf-8", "replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def main() -> int:  # noqa: C901, PLR0912, PLR0914, PLR0915 (one linear script)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="saturation runs per setup, interleaved in a new random order each round")
    parser.add_argument("--duration", type=int, default=5, help="seconds of each saturation run")
    parser.add_argument("--light-duration", type=int, default=5, help="seconds of the 1-connection run per setup")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="LiteLLM workers for the role's config")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS), help="extra setups (see VARIANTS)")
    parser.add_argument("--variant-workers", type=int, nargs="+", help="workers for the variants (default: the role's default)")
    parser.add_argument("--engine", type=pathlib.Path, default=STANDIN, help="stand-in engine script")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args()

    subprocess.run([HARNESS / "ensure-debs.sh", "wrk", "redis-server"], check=True)
    venv = pathlib.Path(subprocess.run([HARNESS / "litellm_venv.sh"], check=True, capture_output=True, text=True).stdout.split()[-1])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = pathlib.Path(tmp)
        role_cfg, role_service = render_role(work, "role", {})
        role_workers, role_flags, role_env = proxy_cli(role_service)
        rendered = {name: render_role(work, name, VARIANTS[name]["vars"]) for name in args.variants}
        print(f"role defaults: --num_workers {role_workers} {' '.join(role_flags)}; env {role_env}; "
              f"litellm_settings {json.dumps(role_cfg.get('litellm_settings'))}", flush=True)
        redis_port, engine_port = free_port(), free_port()
        procs = [
            subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
                              "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, args.engine, "/models/Qwen3-8B", "--served-model-name", "qwen3-8b", "--host", "127.0.0.1",
                              "--port", str(engine_port)], env=dict(os.environ, VLLM_API_KEY=ENGINE_KEY, STANDIN_ENGINE_ID="bench"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        # Every proxy setup: (name, config, workers, flags, env, key). LiteLLM 1.106 refuses to start
        # without a master key at boot, and the seed's environment_variables entry is applied too late
        # for that check: the seed gets the same value through the environment, as a container would.
        setups = [("seed-w1", seed_config(engine_port), 1, [], {"OPENAI_API_KEY": ENGINE_KEY, "LITELLM_MASTER_KEY": SEED_MASTER_KEY},
                   SEED_MASTER_KEY)]
        setups += [(f"role-w{n}", loopback(role_cfg, engine_port, redis_port), n, role_flags, {**role_env, **SECRET_ENV}, MASTER_KEY)
                   for n in args.workers]
        for name in args.variants:
            config, service = rendered[name]
            flags, env = proxy_cli(service)[1:]
            setups += [(f"{name}-w{n}", loopback(config, engine_port, redis_port), n, flags + VARIANTS[name]["args"], {**env, **SECRET_ENV},
                        MASTER_KEY) for n in args.variant_workers or [role_workers]]
        proxies: dict[str, dict] = {}
        try:
            wait_http(f"http://127.0.0.1:{engine_port}/health", procs[1], timeout=30)
            # All proxies run side by side and take turns under load (an idle proxy costs next to no
            # CPU), so a change in the machine's other load hits every setup alike instead of one.
            for name, config, workers, flags, env, key in setups:
                proc, port = start_proxy(venv, config, workers=workers, flags=flags, env_extra=env, work=work, label=name)
                proxies[name] = {"proc": proc, "port": port, "key": key, "workers": workers, "flags": flags, "config": config,
                                 "url": f"http://127.0.0.1:{port}/v1/chat/completions"}
            for name, proxy in proxies.items():
                wait_proxy(proxy["proc"], proxy["port"], work, name)
            print(f"LiteLLM from {venv}; {len(proxies)} proxies up; wrk -t{args.threads} -c{args.connections} -d{args.duration}s x "
                  f"{args.rounds} rounds; {os.cpu_count()} CPUs; load average "
                  f"{pathlib.Path('/proc/loadavg').read_text(encoding='ascii').split()[:3]}", flush=True)
            engine_url = f"http://127.0.0.1:{engine_port}/v1/chat/completions"
            direct = {"loaded": burst(engine_url, ENGINE_KEY, args, work, proc=None),
                      "light": wrk(engine_url, ENGINE_KEY, connections=1, threads=1, duration=args.light_duration, work=work)}
            print(f"  engine-direct: {direct['loaded']['rps']:.0f} req/s; 1 conn p50 {direct['light']['p50_ms']:.2f} ms "
                  f"p99 {direct['light']['p99_ms']:.2f} ms", flush=True)
            for proxy in proxies.values():  # warm-up, not counted
                wrk(proxy["url"], proxy["key"], connections=args.connections, threads=args.threads, duration=3, work=work)
            runs: dict[str, list[dict]] = {name: [] for name in proxies}
            for round_no in range(args.rounds):
                order = list(proxies)
                random.shuffle(order)
                for name in order:
                    run = burst(proxies[name]["url"], proxies[name]["key"], args, work, proc=proxies[name]["proc"])
                    run["round"] = round_no
                    runs[name].append(run)
                    print(f"  round {round_no + 1} {name}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.0f} ms, proxy CPU "
                          f"{run['proxy_cpu_ms_per_request']} ms/req on {run['proxy_cpu_cores_busy']} cores "
                          f"(s per process {run['proxy_cpu_seconds_per_process']}){' PROCESSES CHANGED' if run['proxy_processes_changed'] else ''}"
                          f"; load {run['load1_before']:.2f}", flush=True)
            results = []
            for name, proxy in proxies.items():
                light = wrk(proxy["url"], proxy["key"], connections=1, threads=1, duration=args.light_duration, work=work)
                prometheus = "prometheus" in json.dumps((proxy["config"].get("litellm_settings") or {}).get("callbacks"))
                seed_by_round = {run["round"]: run["rps"] for run in runs["seed-w1"]}
                results.append({
                    "setup": name,
                    "workers": proxy["workers"],
                    "flags": proxy["flags"],
                    "runs": runs[name],
                    "light": light,
                    "rps_median": median([run["rps"] for run in runs[name]]),
                    "x_seed_median": median([run["rps"] / seed_by_round[run["round"]] for run in runs[name]]),
                    "x_seed_per_round": [round(run["rps"] / seed_by_round[run["round"]], 2) for run in runs[name]],
                    "p50_ms_loaded_median": median([run["p50_ms"] for run in runs[name]]),
                    "p99_ms_loaded_median": median([run["p99_ms"] for run in runs[name]]),
                    "cpu_ms_per_request_median": median([run["proxy_cpu_ms_per_request"] for run in runs[name]]),
                    "load1_median": median([run["load1_before"] for run in runs[name]]),
                    "added_p50_ms_1conn": round(light["p50_ms"] - direct["light"]["p50_ms"], 2),
                    "added_p99_ms_1conn": round(light["p99_ms"] - direct["light"]["p99_ms"], 2),
                    "metrics_ok": check_metrics(proxy["port"]) if prometheus else None,
                    "non_2xx": sum(run["non_2xx"] for run in runs[name]) + light["non_2xx"],
                    "processes_changed": any(run["proxy_processes_changed"] for run in runs[name]),
                })
        finally:
            for proxy in proxies.values():
                stop(proxy["proc"])
            for proc in procs:
                stop(proc)

    print(f"\n{'setup':<28} {'req/s':>6} {'x seed':>6} {'p99(16c)':>9} {'added p50(1c)':>13} {'added p99(1c)':>13} {'CPU ms/req':>10} {'load1':>5}"
          "  x seed per round")
    print(f"{'engine-direct':<28} {direct['loaded']['rps']:6.0f} {'':>6} {direct['loaded']['p99_ms']:7.1f}ms {0:11.2f}ms {0:11.2f}ms")
    for res in results:
        mark = " (role default)" if res["setup"] == f"role-w{role_workers}" else ""
        print(f"{res['setup'] + mark:<28} {res['rps_median']:6.0f} {res['x_seed_median']:6.2f} {res['p99_ms_loaded_median']:7.1f}ms"
              f" {res['added_p50_ms_1conn']:11.2f}ms {res['added_p99_ms_1conn']:11.2f}ms {res['cpu_ms_per_request_median']:10.2f}"
              f" {res['load1_median']:5.2f}  {res['x_seed_per_round']}")
    default = next((r for r in results if r["setup"] == f"role-w{role_workers}"), None)
    if default is not None:
        met = default["x_seed_median"] >= 2 and default["added_p99_ms_1conn"] <= 25
        print(f"\ngoal (role default, {role_workers} workers: >= 2x the seed's req/s (median of the per-round ratios) and added p99 "
              f"<= 25 ms at 1 connection): {'MET' if met else 'NOT met'} ({default['x_seed_median']}x, added p99 "
              f"{default['added_p99_ms_1conn']} ms)")
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"role_default_workers": role_workers, "role_flags": role_flags, "engine_direct": direct,
                                         "results": results}, indent=2), encoding="utf-8")
    bad = [r["setup"] for r in results if r["non_2xx"] or r["metrics_ok"] is False]
    if bad:
        print(f"non-2xx answers or no /metrics/ in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
