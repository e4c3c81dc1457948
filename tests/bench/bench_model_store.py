"""Benchmark of the model_store download module against the stand-in ModelScope hub on loopback.

  python3 tests/bench/bench_model_store.py [--large-size-mb 300] [--runs 3] [--workers 4]
                                           [--interrupt-rate-mbps 800] [--venv PATH]

1. Throughput: plugins/modules/model_sync.py, run with the virtualenv's Python as the role runs it
   (its main() in-process: the pinned modelscope client plus listing, SHA-256 verification and the
   manifest), against a plain parallel HTTP fetch of the same files from the same hub: N threads of
   urllib with 16 MiB Range chunks written at their offsets, no verification (goal: the module >= 90 %
   of the plain fetch). Both run as their own Python process and are timed from start to exit, so
   both pay interpreter start-up; the module also pays for importing ansible's module_utils and the
   client (about 1 s here), which only small models notice. Also the module with the client's own
   ranged parallel streams (MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS=N), for reference.
   Each is run --runs times into a fresh directory; the table shows the median.
2. Resume: the hub throttled to --interrupt-rate-mbps, the module killed (SIGKILL) at half the
   model, then run again; "fetched twice" is what both runs fetched together minus the model's size
   (goal: <= 5 % of the total).
The virtualenv comes from $LLMOPS_MODELSCOPE_VENV, --venv or tests/harness/modelscope_venv.sh.
Loopback only; everything runs on this machine. Prints a markdown table.
Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

ROOT = pathlib.Path(__file__).resolve().parents[2]
HUB = ROOT / "tests" / "fixtures" / "modelscope_hub" / "standin_hub.py"
COLLECTIONS = ROOT / "collections"
# plugins/modules/model_sync.py's main() with the virtualenv's Python: its packages first, ansible-core after them.
RUNNER = """\
import json, sys
collections, site, args = sys.argv[1:4]
sys.path.insert(0, collections)
sys.path.append(site)
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.modules import model_sync
with patch_module_args(json.loads(args)):
    model_sync.main()
"""
VENV_SH = ROOT / "tests" / "harness" / "modelscope_venv.sh"
REPO = "Qwen/Qwen3-8B"
MIB = 1024 * 1024
CHUNK = 16 * MIB


class Hub:
    def __init__(self, workdir: pathlib.Path, *args: str):
        port_file = workdir / f"hub-{time.monotonic_ns()}.port"
        self.log = open(workdir / "hub.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, str(HUB), "--port", "0", "--port-file", str(port_file), *args],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-in hub did not start; see hub.log")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def json(self, path, data=None):
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def served(self):
        return self.json("/__stats")["bytes_served"]

    def reset(self):
        self.json("/__reset", b"")

    def listing(self):
        data = self.json(f"/api/v1/models/{REPO}/repo/files?Revision=master&Recursive=True")
        return [f for f in data["Data"]["Files"] if f["Type"] == "blob"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def spec(hub, target, workers):
    return json.dumps({"alias": "bench", "source": "modelscope", "repo_id": REPO, "revision": "master",
                       "target_dir": str(target), "endpoint": hub.url, "workers": workers})


def run_plain(hub, target, threads):
    start = time.monotonic()
    subprocess.run([sys.executable, __file__, "--plain-fetch", hub.url, str(target), str(threads)], check=True, timeout=3600)
    return time.monotonic() - start


def module_command(venv, hub, target, workers):
    import ansible  # noqa: PLC0415 - only to find ansible-core for the module's runner

    site = pathlib.Path(ansible.__file__).resolve().parents[1]
    return [str(venv / "bin" / "python"), "-c", RUNNER, str(COLLECTIONS), str(site), spec(hub, target, workers)]


def run_helper(venv, hub, target, workers, env=None):
    start = time.monotonic()
    out = subprocess.run(module_command(venv, hub, target, workers),
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=3600, check=False)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        raise RuntimeError(f"model_sync failed: {out.stdout}\n{out.stderr[-2000:]}")
    return elapsed


def plain_fetch(hub, files, target, threads):
    """Range-chunked parallel fetch of every file with urllib; no hashing, no manifest."""
    target.mkdir(parents=True, exist_ok=True)
    jobs = []
    for entry in files:
        path = target / entry["Path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(entry["Size"])
        url = f"{hub.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath={quote(entry['Path'], safe='')}"
        for offset in range(0, max(entry["Size"], 1), CHUNK):
            jobs.append((url, path, offset, min(entry["Size"], offset + CHUNK) - 1))
    local = threading.local()

    def fetch(job):
        url, path, first, last = job
        if last < first:
            return 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={first}-{last}"})
        if not hasattr(local, "files"):
            local.files = {}
        handle = local.files.get(path) or open(path, "r+b")  # noqa: SIM115 - closed below
        local.files[path] = handle
        got = 0
        with urllib.request.urlopen(request, timeout=60) as resp:
            handle.seek(first)
            while block := resp.read(MIB):
                handle.write(block)
                got += len(block)
        return got

    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        received = sum(pool.map(fetch, jobs))
    elapsed = time.monotonic() - start
    if received != sum(entry["Size"] for entry in files):
        raise RuntimeError(f"plain fetch got {received} bytes")
    return elapsed


def interrupt_and_resume(venv, hub, target, total, workers):
    proc = subprocess.Popen(module_command(venv, hub, target, workers),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while hub.served() < total // 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the download ended before it could be interrupted")
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = hub.served()
    on_disk = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.name.startswith(".llmops"))
    hub.reset()
    run_helper(venv, hub, target, workers)
    second = hub.served()
    return first, second, on_disk


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--large-size-mb", type=float, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="plain-fetch threads, helper max_workers and parallel streams")
    parser.add_argument("--interrupt-rate-mbps", type=float, default=800)
    parser.add_argument("--venv", default=os.environ.get("LLMOPS_MODELSCOPE_VENV"))
    parser.add_argument("--plain-fetch", nargs=3, metavar=("URL", "TARGET", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_fetch:  # the baseline, as its own process
        url, target, threads = args.plain_fetch
        hub = Hub.__new__(Hub)
        hub.url = url
        plain_fetch(hub, hub.listing(), pathlib.Path(target), int(threads))
        return
    if args.venv:
        venv = pathlib.Path(args.venv)
    else:
        out = subprocess.run([str(VENV_SH)], capture_output=True, text=True, check=True, timeout=900)
        venv = pathlib.Path(out.stdout.strip().splitlines()[-1])
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('modelscope'), m.version('modelscope-hub'))"],
                             capture_output=True, text=True, check=True).stdout.split()

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-model-store-"))
    rows = []
    try:
        hub = Hub(work, "--large-size-mb", str(args.large_size_mb))
        files = hub.listing()
        total = sum(entry["Size"] for entry in files)
        times = {"helper": [], "plain": [], "helper_ranged": []}
        parallel_env = {"MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS": str(args.workers), "MODELSCOPE_DOWNLOAD_PARALLEL_THRESHOLD_MB": "64",
                        "MODELSCOPE_DOWNLOAD_PART_SIZE_MB": "32"}
        for run in range(args.runs):
            for name in ("plain", "helper", "helper_ranged"):
                target = work / f"{name}-{run}"
                if name == "plain":
                    times[name].append(run_plain(hub, target, args.workers))
                else:
                    times[name].append(run_helper(venv, hub, target, args.workers, parallel_env if name == "helper_ranged" else None))
                shutil.rmtree(target)
        hub.stop()

        def rate(seconds):
            return total / seconds / MIB

        plain = statistics.median(times["plain"])
        for name, label in (("plain", f"plain fetch: urllib, {args.workers} threads, 16 MiB Range chunks"),
                            ("helper", "model_sync module (client defaults: one stream per file; + SHA-256 check, manifest)"),
                            ("helper_ranged", f"model_sync module, MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS={args.workers}")):
            median = statistics.median(times[name])
            rows.append((label, f"{median:.2f} s", f"{rate(median):.0f} MiB/s", f"{100 * plain / median:.0f} %",
                         ", ".join(f"{t:.2f}" for t in times[name])))

        hub = Hub(work, "--large-size-mb", str(args.large_size_mb), "--rate-limit-mbps", str(args.interrupt_rate_mbps))
        first, second, on_disk = interrupt_and_resume(venv, hub, work / "resume", total, args.workers)
        hub.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmodel_store download benchmark: modelscope {version[0]}, modelscope-hub {version[1]}, "
          f"{len(files)} files, {total / MIB:.1f} MiB ({args.large_size_mb:g} MiB weights), loopback, "
          f"{os.cpu_count()} CPUs, {args.runs} runs each\n")
    print("| download | median time | throughput | vs plain fetch | runs (s) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    refetched = first + second - total
    print(f"\nResume after SIGKILL at half the model (hub throttled to {args.interrupt_rate_mbps:g} Mbit/s):\n")
    print("| first run (killed) | on disk after the kill | second run | fetched twice | goal |")
    print("| ---: | ---: | ---: | ---: | --- |")
    print(f"| {first / MIB:.1f} MiB | {on_disk / MIB:.1f} MiB | {second / MIB:.1f} MiB | "
          f"{refetched / MIB:.2f} MiB ({100 * refetched / total:.2f} % of {total / MIB:.1f} MiB) | <= 5 % |")


if __name__ == "__main__":
    main()
