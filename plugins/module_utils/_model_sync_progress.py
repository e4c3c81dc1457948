# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Download progress: the file a running model_sync job writes, and the progress lines read from it.

Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

A job writes <target_dir>/.llmops-progress.json once a second (state, bytes done and total, rate);
model_sync_wait reads those files and the jobs' Ansible async results files and turns them into one
progress line. Standard library only.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_dir import read_json, write_json_atomic


def human(nbytes: float) -> str:
    """1536 -> '1.5 KiB' (bytes below 1 KiB without a decimal)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return ("%.1f %s" % (nbytes, unit)) if unit != "B" else "%d B" % int(nbytes)
        nbytes /= 1024
    return "%.1f TiB" % nbytes


class Progress:
    """Shared byte counters, written to <target>/.llmops-progress.json once a second."""

    def __init__(self, path: Path, spec: dict, clock=time.time):
        self.path = path
        self.spec = spec
        self.clock = clock
        self.lock = threading.Lock()
        self.state = "starting"
        self.total = 0
        self.files_total = 0
        self.positions = {}  # bytes of each file already on disk / received
        self.sizes = {}
        self.received = 0  # bytes that came over the network (or were copied) in this run
        self.network_files = set()  # files that received bytes
        self.error = None
        self.started = clock()
        self._samples = []
        self._stop = threading.Event()
        self._thread = None

    def plan(self, files: dict, already: dict):
        with self.lock:
            self.sizes = {path: int(entry.get("size") or 0) for path, entry in files.items()}
            self.total = sum(self.sizes.values())
            self.files_total = len(files)
            self.positions = {path: min(already.get(path, 0), self.sizes[path]) for path in files}

    def set_position(self, path: str, position: int):
        with self.lock:
            if path in self.sizes:
                self.positions[path] = max(0, min(position, self.sizes[path]))

    def set_received(self, nbytes: int):
        with self.lock:
            self.received = max(0, nbytes)

    def add_received(self, nbytes: int, path: str | None = None):
        with self.lock:
            self.received += nbytes
            if path and nbytes > 0:
                self.network_files.add(path)

    def snapshot(self) -> dict:
        with self.lock:
            done = sum(self.positions.values())
            now = self.clock()
            self._samples.append((now, self.received))
            self._samples = [sample for sample in self._samples if now - sample[0] <= 10]
            first = self._samples[0]
            rate = (self.received - first[1]) / (now - first[0]) if now - first[0] > 0.5 else 0.0
            return {
                "alias": self.spec.get("alias"),
                "source": self.spec.get("source"),
                "repo_id": self.spec.get("repo_id") or self.spec.get("local_src"),
                "revision": self.spec.get("revision"),
                "state": self.state,
                "bytes_done": done,
                "bytes_total": self.total,
                "files_done": sum(1 for path, size in self.sizes.items() if self.positions.get(path, 0) >= size),
                "files_total": self.files_total,
                "bytes_downloaded": self.received,
                "rate_bytes_per_s": round(rate),
                "pid": os.getpid(),
                "started_at": self.started,
                "updated_at": now,
                "error": self.error,
            }

    def write(self):
        try:
            write_json_atomic(self.path, self.snapshot())
        except OSError:
            pass

    def start(self):
        def loop():
            while not self._stop.wait(1.0):
                self.write()

        self._thread = threading.Thread(target=loop, name="progress", daemon=True)
        self._thread.start()

    def finish(self, state: str, error: str | None = None):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.lock:
            self.state = state
            self.error = error
            if state == "complete":
                self.positions = dict(self.sizes)
        self.write()


# ------------------------------------------------------------------------------------ waiting
def job_finished(results_file: str | None) -> bool:
    """An Ansible async job is finished when its results file holds the final result."""
    if not results_file:
        return False
    data = read_json(Path(os.path.expanduser(results_file)))
    if not isinstance(data, dict):
        return False
    return "started" not in data or bool(data.get("finished"))


def job_line(job: dict, finished: bool, data: dict) -> tuple[str, dict]:
    """('alias: 12.0 MiB / 120.0 MiB (10%) downloading 30.0 MiB/s', the job's figures)."""
    total, current = data.get("bytes_total") or 0, data.get("bytes_done") or 0
    percent = (100 * current / total) if total else None
    state = "finished" if finished else data.get("state", "starting")
    rate = data.get("rate_bytes_per_s") or 0
    line = "%s: %s / %s (%s) %s" % (job.get("alias"), human(current), human(total),
                                    ("%.0f%%" % percent) if percent is not None else "?", state)
    if rate and not finished:
        line += " %s/s" % human(rate)
    figures = {"alias": job.get("alias"), "state": state, "finished": finished, "bytes_done": current,
               "bytes_total": total, "percent": None if percent is None else round(percent, 1),
               "rate_bytes_per_s": rate, "error": data.get("error")}
    return line, figures


def wait_round(jobs: list, interval: float, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Block until every job finished or ``interval`` seconds passed; then one progress line of all."""
    deadline = clock() + interval
    while True:
        done = all(job_finished(job.get("results_file")) for job in jobs)
        if done or clock() >= deadline:
            break
        sleep(min(1.0, max(0.0, deadline - clock())))
    parts, figures = [], []
    for job in jobs:
        progress_file = job.get("progress_file")
        data = (read_json(Path(progress_file)) if progress_file else None) or {}
        line, numbers = job_line(job, job_finished(job.get("results_file")), data)
        parts.append(line)
        figures.append(numbers)
    return {"done": done, "summary": " | ".join(parts) or "nothing to wait for", "jobs": figures}
