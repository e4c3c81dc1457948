"""Start the stack's components as real processes on loopback, for integration tests.

Each factory returns a :class:`Service`: a context manager that starts the process (and waits for
its own readiness probe) on entry and stops it on exit. Inside, ``stop()`` and ``start()`` can be
called again: a service keeps its port, so a test can take a component away and bring it back.

    with redis_server(tmp, password="pw") as redis, standin_engine(tmp, api_key="k") as engine:
        ...
        redis.stop()     # the component is gone
        redis.start()    # back on the same port, ready

Components (all bound to 127.0.0.1, ports picked free unless given):

* :func:`standin_engine` - tests/fixtures/standin_engine (a TEST STAND-IN for vLLM), ready on /health
* :func:`redis_server` - Debian's ``redis-server`` with ``requirepass``, ready on AUTH + PING
* :func:`prometheus_server` - Prometheus 3 (:func:`prometheus3_bin`) scraping the given jobs, ready on /-/ready
* :func:`litellm_proxy` - the pinned LiteLLM proxy from a virtualenv (see :func:`litellm_venv`),
  ready on /health/readiness
* :func:`postgres_server` - Debian's Postgres (a private cluster, password auth), ready on ``pg_isready``;
  :func:`litellm_migrate` applies LiteLLM's migrations to it, :func:`litellm_db_env` gives the
  environment that connects :func:`litellm_proxy` to it through the TEST STAND-IN for Prisma's query
  engine (tests/harness/prisma_standin.sh)
* :func:`local_stack` - all four wired together like the Compose stack (Prometheus jobs
  ``inference-engine``, ``litellm-proxy`` at ``/metrics/`` and ``prometheus``)

Debian packages come from tests/harness/ensure-debs.sh (:func:`ensure_debs`). Logs go to files in
the given directory (``<name>.log``); :meth:`Service.log_tail` reads them for failure messages.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import SimpleNamespace

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
STANDIN_ENGINE = ROOT / "tests" / "fixtures" / "standin_engine" / "standin_engine.py"
LOOPBACK = "127.0.0.1"


# --- small helpers --------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def http_status(url: str, timeout: float = 2.0, headers: dict | None = None) -> int | None:
    """The HTTP status of a GET (None when nothing answers). Never raises."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


def redis_ping(port: int, password: str | None = None, host: str = LOOPBACK, timeout: float = 2.0) -> bool:
    """True when Redis answers +PONG (after AUTH when a password is given)."""
    def command(*args: str) -> bytes:
        return b"".join([f"*{len(args)}\r\n".encode()] + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args])

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            payload = (command("AUTH", password) if password else b"") + command("PING")
            sock.sendall(payload)
            data = b""
            deadline = time.monotonic() + timeout
            while data.count(b"\r\n") < (2 if password else 1) and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.splitlines()[-1:] == [b"+PONG"]
    except OSError:
        return False


def ensure_debs(*packages: str) -> None:
    """Install missing Debian packages with tests/harness/ensure-debs.sh (needs root and apt)."""
    subprocess.run([HARNESS / "ensure-debs.sh", *packages], check=True, timeout=900)


@functools.cache
def prometheus3_bin() -> pathlib.Path:
    """The folder holding ``prometheus`` and ``promtool`` 3.x (the major version of the role's default
    image): Debian sid's packages, unpacked by tests/harness/prometheus3.sh; $LLMOPS_PROMETHEUS3_BIN
    names another folder. Debian 12's and 13's own ``prometheus`` packages are 2.x."""
    given = os.environ.get("LLMOPS_PROMETHEUS3_BIN")
    if given:
        return pathlib.Path(given)
    proc = subprocess.run([HARNESS / "prometheus3.sh"], capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/harness/prometheus3.sh failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return pathlib.Path(proc.stdout.strip().splitlines()[-1])


def litellm_venv() -> pathlib.Path:
    """The LiteLLM virtualenv: $LLMOPS_LITELLM_VENV, else the harness's .cache/litellm-venv
    (created by tests/harness/litellm_venv.sh when missing: a few minutes, about 740 MB)."""
    env = os.environ.get("LLMOPS_LITELLM_VENV")
    if env:
        path = pathlib.Path(env)
        if not (path / "bin" / "litellm").exists():
            raise FileNotFoundError(f"LLMOPS_LITELLM_VENV={env} has no bin/litellm")
        return path
    out = subprocess.run([HARNESS / "litellm_venv.sh"], check=True, capture_output=True, text=True, timeout=1800)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


# --- the service wrapper --------------------------------------------------------------------

class Service:
    """One process on a fixed loopback port, restartable; a context manager (start/stop)."""

    def __init__(self, name: str, argv: Sequence[str | os.PathLike], *, port: int, workdir: pathlib.Path,
                 ready: Callable[[], bool], ready_timeout: float = 30.0, env: dict | None = None,
                 cwd: pathlib.Path | None = None, before_start: Callable[[], None] | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.port = port
        self.host = LOOPBACK
        self.workdir = pathlib.Path(workdir)
        self.ready_probe = ready
        self.ready_timeout = ready_timeout
        self.env = env
        self.cwd = cwd
        self.before_start = before_start
        self.stop_signal = stop_signal
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.ready_at: float | None = None

    # a process of its own group, so stop() also ends any workers it forked
    def start(self, wait: bool = True) -> Service:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.before_start:
            self.before_start()
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.ready_at = None
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None, interval: float = 0.05) -> float:
        """Block until the readiness probe passes; returns (and records) the monotonic time it did."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready_probe():
                self.ready_at = time.monotonic()
                return self.ready_at
            time.sleep(interval)
        raise TimeoutError(f"{self.name} not ready after {timeout or self.ready_timeout} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        return self.running and self.ready_probe()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the process group (``stop_signal``, SIGTERM unless given), SIGKILL after ``timeout``;
        waits until the port is closed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        # a forked worker may still hold the socket for a moment
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._port_open():
            time.sleep(0.05)

    def _port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((self.host, self.port)) == 0

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the components -------------------------------------------------------------------------

def standin_engine(workdir: pathlib.Path, *, api_key: str | None = None, served: Iterable[str] = ("qwen3-8b",),
                   engine_id: str = "standin-engine", port: int | None = None, env: dict | None = None,
                   extra_args: Sequence[str] = (), name: str = "engine") -> Service:
    """The stand-in engine (not vLLM) as `vllm serve` would be started by the stack."""
    port = port or free_port()
    argv = [sys.executable, STANDIN_ENGINE, "/models/Qwen3-8B", "--served-model-name", *served,
            "--host", LOOPBACK, "--port", str(port), *extra_args]
    environ = dict(os.environ, STANDIN_ENGINE_ID=engine_id, **(env or {}))
    environ.pop("VLLM_API_KEY", None)
    if api_key:
        environ["VLLM_API_KEY"] = api_key
    url = f"http://{LOOPBACK}:{port}/health"
    return Service(name, argv, port=port, workdir=workdir, env=environ, ready=lambda: http_status(url, 1.0) == 200,
                   ready_timeout=30)


def redis_server(workdir: pathlib.Path, *, password: str | None, port: int | None = None, name: str = "redis") -> Service:
    """Debian's redis-server on loopback, no persistence, ``requirepass`` when a password is given."""
    binary = shutil.which("redis-server")
    if not binary:
        raise FileNotFoundError("redis-server is not installed (tests/harness/ensure-debs.sh redis-server)")
    port = port or free_port()
    data = pathlib.Path(workdir) / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
            "--dir", str(data), "--daemonize", "no", "--protected-mode", "yes"]
    if password:
        argv += ["--requirepass", password]
    return Service(name, argv, port=port, workdir=workdir, ready=lambda: redis_ping(port, password, timeout=1.0),
                   ready_timeout=20)


def prometheus_config(jobs: dict[str, tuple[str, str]], *, self_port: int, scrape_interval: str = "1s") -> dict:
    """A Prometheus config scraping ``jobs`` (job name -> (host:port, metrics path)) and itself
    (job ``prometheus``)."""
    scrape_configs = [{"job_name": "prometheus", "static_configs": [{"targets": [f"{LOOPBACK}:{self_port}"]}]}]
    for job, (target, path) in jobs.items():
        scrape_configs.append({"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]})
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": scrape_configs,
    }


def prometheus_server(workdir: pathlib.Path, *, jobs: dict[str, tuple[str, str]], scrape_interval: str = "1s",
                      port: int | None = None, name: str = "prometheus", binary: str | None = None,
                      keep_storage: bool = False) -> Service:
    """Prometheus 3 on loopback scraping ``jobs`` (job -> (host:port, metrics path)) and itself;
    ``binary``: another prometheus (test_prometheus_upgrade.py starts Debian's 2.x with it)."""
    binary = binary or str(prometheus3_bin() / "prometheus")
    port = port or free_port()
    workdir = pathlib.Path(workdir)
    config = workdir / f"{name}.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(prometheus_config(jobs, self_port=port, scrape_interval=scrape_interval), sort_keys=False))
    storage = workdir / f"{name}-data"

    def fresh_storage() -> None:
        if not keep_storage:
            shutil.rmtree(storage, ignore_errors=True)
        storage.mkdir(parents=True, exist_ok=True)

    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={storage}", f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn"]
    url = f"http://{LOOPBACK}:{port}/-/ready"
    return Service(name, argv, port=port, workdir=workdir, ready=lambda: http_status(url, 1.0) == 200, ready_timeout=30,
                   before_start=fresh_storage)


def litellm_config(*, engine_url: str, engine_key: str | None, master_key: str, alias: str = "qwen3-8b") -> dict:
    """A minimal LiteLLM proxy config: one hosted_vllm deployment, a master key, Prometheus metrics
    without auth (scrape ``/metrics/``)."""
    params = {"model": f"hosted_vllm/{alias}", "api_base": engine_url.rstrip("/") + "/v1"}
    if engine_key:
        params["api_key"] = engine_key
    return {
        "model_list": [{"model_name": alias, "litellm_params": params}],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False},
    }


def litellm_proxy(workdir: pathlib.Path, *, engine_url: str, engine_key: str | None, master_key: str,
                  alias: str = "qwen3-8b", venv: pathlib.Path | None = None, port: int | None = None,
                  workers: int = 1, config: dict | None = None, name: str = "litellm", env: dict | None = None) -> Service:
    """The real LiteLLM proxy (from :func:`litellm_venv`) in front of ``engine_url``; ``env``: more
    environment (:func:`litellm_db_env` connects it to a database)."""
    venv = pathlib.Path(venv) if venv else litellm_venv()
    port = port or free_port()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config or litellm_config(engine_url=engine_url, engine_key=engine_key,
                                                            master_key=master_key, alias=alias), sort_keys=False))
    multiproc = workdir / f"{name}-prometheus-multiproc"

    def fresh_multiproc() -> None:
        shutil.rmtree(multiproc, ignore_errors=True)
        multiproc.mkdir(parents=True)

    environ = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **(env or {}))
    argv = [venv / "bin" / "litellm", "--config", path, "--host", LOOPBACK, "--port", str(port), "--num_workers", str(workers)]
    url = f"http://{LOOPBACK}:{port}/health/readiness"
    return Service(name, argv, port=port, workdir=workdir, env=environ, cwd=workdir,
                   ready=lambda: http_status(url, 2.0) == 200, ready_timeout=240, before_start=fresh_multiproc)


def postgres_server(workdir: pathlib.Path, *, password: str, port: int | None = None, name: str = "postgres",
                    database: str = "litellm") -> Service:
    """Debian's Postgres server as a private cluster on loopback: user ``postgres`` with ``password``
    (scram-sha-256, also over the socket), database ``database``; its data survives stop()/start().
    ``Service.url`` is the database URL. The cluster lives in a folder the ``postgres`` user owns
    (pytest's tmp folders are closed to other users), removed when the test process ends."""
    ensure_debs("postgresql", "postgresql-client")
    bindir = pathlib.Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         check=True).stdout.strip())
    port = port or free_port()
    cluster = pathlib.Path(tempfile.mkdtemp(prefix=f"llmops-{name}-"))
    atexit.register(shutil.rmtree, cluster, True)
    data, sockets = cluster / "data", cluster / "sockets"
    sockets.mkdir()
    pwfile = cluster / "pwfile"
    pwfile.write_text(password + "\n")
    shutil.chown(cluster, "postgres")
    shutil.chown(sockets, "postgres")
    shutil.chown(pwfile, "postgres")
    pwfile.chmod(0o600)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, timeout=120)
    pwfile.unlink()
    argv = [*as_postgres, bindir / "postgres", "-D", data, "-p", str(port), "-k", sockets,
            "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off"]
    # SIGINT: Postgres's fast shutdown (SIGTERM's smart shutdown waits for every client to leave)
    service = Service(name, argv, port=port, workdir=workdir, ready=lambda: _pg_ready(port), ready_timeout=60,
                      stop_signal=signal.SIGINT)
    service.database_url = f"postgresql://postgres:{urllib.parse.quote(password, safe='')}@{LOOPBACK}:{port}/{database}"
    service.password = password
    return service


def _pg_ready(port: int) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", LOOPBACK, "-p", str(port)], check=False, timeout=10).returncode == 0


def _psql(server: Service, database: str, sql: str | None = None, files: Sequence[pathlib.Path] = ()) -> str:
    """Run ``sql`` (or the ``files``, in order, in one session) on ``server`` with psql; stops at the
    first error."""
    argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", LOOPBACK, "-p", str(server.port), "-U", "postgres",
            "-d", database]
    argv += ["-c", sql] if sql else [arg for path in files for arg in ("-f", str(path))]
    proc = subprocess.run(argv, env=dict(os.environ, PGPASSWORD=server.password), capture_output=True, text=True,
                          check=False, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"psql on {database} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc.stdout


def psql(server: Service, sql: str, database: str = "litellm") -> str:
    """One SQL command on a :func:`postgres_server`; its rows as psql's unaligned text."""
    return _psql(server, database, sql)


def litellm_migrate(server: Service, venv: pathlib.Path | None = None, database: str = "litellm") -> int:
    """Create ``database`` and apply LiteLLM's migrations from the venv's ``litellm_proxy_extras``
    (the files `prisma migrate deploy` would apply), statement by statement like Prisma's schema engine
    (some use CREATE INDEX CONCURRENTLY, which cannot run in a transaction). Returns how many."""
    venv = pathlib.Path(venv) if venv else litellm_venv()
    extras = next((venv / "lib").glob("python3*/site-packages/litellm_proxy_extras/migrations"))
    files = sorted(extras.glob("*/migration.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations under {extras}")
    _psql(server, "postgres", f'CREATE DATABASE "{database}"')
    _psql(server, database, files=files)
    return len(files)


def litellm_db_env(database_url: str, venv: pathlib.Path | None = None) -> dict:
    """The environment that connects :func:`litellm_proxy` to ``database_url`` through the TEST STAND-IN
    for Prisma's query engine (tests/harness/prisma_standin.sh; docs/testing.md)."""
    venv = pathlib.Path(venv) if venv else litellm_venv()
    proc = subprocess.run([HARNESS / "prisma_standin.sh", venv], capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/harness/prisma_standin.sh failed ({proc.returncode}): {proc.stderr[-3000:]}")
    state = pathlib.Path(proc.stdout.strip().splitlines()[-1])
    return {
        "DATABASE_URL": database_url,
        # the schema is LiteLLM's migrations, applied by litellm_migrate (the schema engine is not stood in)
        "DISABLE_SCHEMA_UPDATE": "true",
        "PRISMA_QUERY_ENGINE_BINARY": str(state / "engine" / "query-engine"),
        "PRISMA_SCHEMA_ENGINE_BINARY": str(state / "engine" / "schema-engine"),
        "PRISMA_HOME_DIR": str(state / "prisma-home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(state / "client"), os.environ.get("PYTHONPATH")])),
    }


@contextlib.contextmanager
def local_stack(workdir: pathlib.Path, *, engine_key: str, master_key: str, redis_password: str,
                alias: str = "qwen3-8b", engine_id: str = "standin-engine", venv: pathlib.Path | None = None,
                scrape_interval: str = "1s", wait_targets: float = 60.0) -> Iterator[SimpleNamespace]:
    """Engine, Redis, LiteLLM proxy and Prometheus on loopback, wired like the Compose stack.

    Yields a namespace with ``engine``, ``redis``, ``gateway``, ``prometheus`` (:class:`Service`)
    and ``services`` (name -> Service). Returns once Prometheus has every target up (it loads
    static targets a few seconds after it is ready). Everything is stopped on exit.
    """
    ensure_debs("redis-server")
    venv = venv or litellm_venv()
    engine = standin_engine(workdir, api_key=engine_key, served=(alias,), engine_id=engine_id)
    redis = redis_server(workdir, password=redis_password)
    gateway = litellm_proxy(workdir, engine_url=engine.url, engine_key=engine_key, master_key=master_key, alias=alias, venv=venv)
    prometheus = prometheus_server(
        workdir,
        jobs={"inference-engine": (engine.address, "/metrics"), "litellm-proxy": (gateway.address, "/metrics/")},
        scrape_interval=scrape_interval,
    )
    with contextlib.ExitStack() as stack:
        for service in (engine, redis, gateway, prometheus):
            stack.enter_context(service)
        wait_prometheus_targets(prometheus, ("inference-engine", "litellm-proxy", "prometheus"), "up", timeout=wait_targets)
        yield SimpleNamespace(engine=engine, redis=redis, gateway=gateway, prometheus=prometheus,
                              services={"engine": engine, "redis": redis, "gateway": gateway, "prometheus": prometheus})


def prometheus_job_health(prometheus: Service, job: str) -> list[str]:
    """Prometheus's view of a job: the health of each of its active targets (empty when unknown)."""
    try:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/targets?state=active", timeout=2) as resp:
            data = json.load(resp)
    except (OSError, ValueError):
        return []
    return [t["health"] for t in data["data"]["activeTargets"] if t["labels"].get("job") == job]


def wait_prometheus_targets(prometheus: Service, jobs: Iterable[str], health: str = "up", timeout: float = 30.0) -> None:
    """Wait until every target of each job has ``health`` (up, down) in Prometheus."""
    deadline = time.monotonic() + timeout
    pending = list(jobs)
    while pending and time.monotonic() < deadline:
        pending = [job for job in pending if not (states := prometheus_job_health(prometheus, job)) or any(s != health for s in states)]
        if pending:
            time.sleep(0.1)
    if pending:
        raise TimeoutError(f"Prometheus jobs not {health} after {timeout} s: "
                           + ", ".join(f"{job}={prometheus_job_health(prometheus, job)}" for job in pending))
