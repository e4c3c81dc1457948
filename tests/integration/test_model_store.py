"""The model_store role and the llmops.gpu_stack.model_sync module against the stand-in ModelScope hub on loopback.

The real, pinned modelscope client (modelscope 1.40 / modelscope-hub 0.5, in the virtualenv of
tests/harness/modelscope_venv.sh, or $LLMOPS_MODELSCOPE_VENV) talks to
tests/fixtures/modelscope_hub/standin_hub.py, which answers only the paths that client calls and
counts every body byte it serves. Every client run here also checks that the hub saw no path it
does not know, so a client that changes its API fails these tests. The module runs with that
virtualenv's Python, as the role runs it: in-process through its main() for the module tests
(`module()`), through Ansible (AnsiballZ, the action plugin) in the ad-hoc test and the role tests.
Proven here:

- the real `modelscope download --model ... --endpoint http://127.0.0.1:PORT` works against the stand-in;
- a full download through the module writes the manifest (sizes and SHA-256 equal the hub's);
- a re-run downloads nothing, makes no request at all and reports changed: false;
- a download killed (SIGKILL) midway leaves no manifest; the re-run completes, and the bytes fetched
  twice are < 10 % of the model (the client resumes from <file>.incomplete);
- a corrupted file (same size) passes the size check, is caught with verify_hashes and re-fetched alone;
- a body the hub corrupts in transit (listing right, bytes wrong) is rejected by the client: the
  module fails and writes no manifest (the module relies on this check instead of re-reading files);
- a changed revision re-syncs only the files that differ and removes the ones the revision dropped,
  and check mode says exactly that beforehand (files to fetch, files to remove) without a change;
- a token-protected repository fails cleanly without the token and works with it (token from a file,
  or the no_log token option), the token in no result and no manifest;
- a local source on the host is copied and verified; a changed source file is copied again;
- the huggingface path lists, fetches and verifies (huggingface_hub replaced by a stub module);
- check mode without the client (a fresh host's interpreter) reports instead of failing;
- through ansible (ad-hoc): check mode reports what would be fetched, the real run downloads;
- the role with ansible-playbook -c local: the models root and file modes, downloads with progress
  lines, a token-protected hub (token file removed afterwards, token never printed), a
  controller-side local source, idempotence (changed=0), --check --diff clean on a fresh and on a
  converged host, a changed controller-side source copied again;
- --check on a fresh host whose virtualenv does not exist yet runs to the end, says what would be
  downloaded and creates nothing;
- which models a host downloads: model_store_aliases, else gpu_stack_plan.models, else all;
- model_store_download: false creates the models root and the model directories only;
- preflight: relative or non-normalised paths, unknown source, duplicate or malformed alias, missing
  repo id, an unknown alias in model_store_aliases fail with messages that name the variable and the
  entry (all problems in one message), before anything is created.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request

import ansible
import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
HUB = ROOT / "tests" / "fixtures" / "modelscope_hub" / "standin_hub.py"
VENV_SH = ROOT / "tests" / "harness" / "modelscope_venv.sh"
COLLECTIONS = ROOT / "collections"
ANSIBLE_SITE = pathlib.Path(ansible.__file__).resolve().parents[1]  # the site-packages that hold ansible-core
BIN = pathlib.Path(shutil.which("ansible-playbook") or pathlib.Path(sys.executable).with_name("ansible-playbook")).parent
REPO = "Qwen/Qwen3-8B"
MIB = 1024 * 1024
TOKEN = "test-only-token-0123456789"  # noqa: S105 - the stand-in hub's test token
RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# Runs plugins/modules/model_sync.py's main() with the download virtualenv's Python: the venv's own
# packages first, ansible-core (module_utils.basic) appended after them, the collection from collections/.
RUNNER = textwrap.dedent("""\
    import json, sys
    collections, site, args = sys.argv[1:4]
    sys.path.insert(0, collections)
    sys.path.append(site)
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.llmops.gpu_stack.plugins.modules import model_sync
    with patch_module_args(json.loads(args)):
        model_sync.main()
    """)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def venv():
    path = os.environ.get("LLMOPS_MODELSCOPE_VENV")
    if path and pathlib.Path(path, "bin", "python").exists():
        return pathlib.Path(path)
    out = subprocess.run([str(VENV_SH)], capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, f"modelscope_venv.sh failed:\n{out.stderr}"
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


class Hub:
    """One stand-in hub process on 127.0.0.1 (a free port), stopped by its pid."""

    def __init__(self, tmp: pathlib.Path, *args: str):
        self.port_file = tmp / f"hub-{os.getpid()}-{time.monotonic_ns()}.port"
        self.log = open(tmp / "hub.log", "ab")  # noqa: SIM115 - closed in stop()
        self.token = args[args.index("--token") + 1] if "--token" in args else None
        self.proc = subprocess.Popen(
            [sys.executable, str(HUB), "--port", "0", "--port-file", str(self.port_file), *args],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            assert self.proc.poll() is None, "stand-in hub exited at start"
            assert time.monotonic() < deadline, "stand-in hub did not start"
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port_file.read_text().strip()}"

    def get(self, path):
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self):
        return self.get("/__stats")

    def reset(self):
        req = urllib.request.Request(self.url + "/__reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def listing(self, revision="master"):
        data = self.get(f"/api/v1/models/{REPO}/repo/files?Revision={revision}&Recursive=True")
        self.reset()
        return {f["Path"]: f for f in data["Data"]["Files"] if f["Type"] == "blob"}

    def assert_no_unknown(self):
        unknown = self.stats()["unknown"]
        assert unknown == [], f"the client called paths the stand-in does not implement: {unknown}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def hub_factory(tmp_path):
    hubs = []

    def start(*args):
        hub = Hub(tmp_path, *args)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="module")
def hub64(tmp_path_factory):
    """A shared hub with a 64 MiB weights file (the tests that do not interrupt anything)."""
    hub = Hub(tmp_path_factory.mktemp("hub64"), "--large-size-mb", "64")
    yield hub
    hub.stop()


def spec_for(hub, target, **extra):
    spec = {"alias": "qwen3-8b", "source": "modelscope", "repo_id": REPO, "revision": "master",
            "target_dir": str(target), "endpoint": hub.url if hub else ""}
    spec.update(extra)
    return spec


def module_argv(venv, spec, check=False):
    args = {**spec, "_ansible_check_mode": check, "_ansible_diff": check}
    return [str(venv / "bin" / "python"), "-c", RUNNER, str(COLLECTIONS), str(ANSIBLE_SITE), json.dumps(args)]


def module(venv, spec, check=False, env=None, timeout=600):
    """(exit status, result) of llmops.gpu_stack.model_sync with these parameters (check: check mode)."""
    out = subprocess.run(module_argv(venv, spec, check), capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})}, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from the module (rc {out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.returncode, json.loads(lines[-1])


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


def manifest_of(target):
    return json.loads((pathlib.Path(target) / ".llmops-manifest.json").read_text())


def ansible_env(**extra):
    return {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **extra}


# ------------------------------------------------------------------------------------ the client itself
def test_real_cli_downloads_from_the_standin(venv, hub64, tmp_path):
    """The stand-in implements what `modelscope download` calls (nothing unknown, files identical)."""
    hub64.reset()
    listing = hub64.listing()
    out = subprocess.run(
        [str(venv / "bin" / "modelscope"), "download", "--model", REPO, "--revision", "master",
         "--local_dir", str(tmp_path / "cli"), "--endpoint", hub64.url],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    hub64.assert_no_unknown()
    for rel, entry in listing.items():
        assert sha256(tmp_path / "cli" / rel) == entry["Sha256"], rel


# ------------------------------------------------------------------------------------ the module
def test_full_download_writes_manifest_and_rerun_fetches_nothing(venv, hub64, tmp_path):
    target = tmp_path / "models" / "Qwen3-8B"
    listing = hub64.listing()
    total = sum(entry["Size"] for entry in listing.values())
    rc, result = module(venv, spec_for(hub64, target), check=True)
    assert rc == 0 and result["complete"] is False and result["changed"] is True
    assert sorted(result["fetched"]) == sorted(listing) and result["bytes_to_fetch"] == total
    assert not target.exists(), "check mode created the directory"
    hub64.reset()

    rc, result = module(venv, spec_for(hub64, target))
    assert rc == 0, result
    assert result["changed"] is True and result["complete"] is True and result["files"] == len(listing)
    stats = hub64.stats()
    assert stats["bytes_served"] == total == result["bytes_downloaded"] == result["bytes_total"]
    assert sorted(result["fetched"]) == sorted(listing) and result["pruned"] == []
    hub64.assert_no_unknown()

    manifest = manifest_of(target)
    assert manifest["inputs"]["revision"] == "master" and manifest["inputs"]["repo_id"] == REPO
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        rel: (entry["Size"], entry["Sha256"]) for rel, entry in listing.items()}
    for rel in listing:
        assert stat.S_IMODE((target / rel).stat().st_mode) == 0o644
    progress = json.loads((target / ".llmops-progress.json").read_text())
    assert progress["state"] == "complete" and progress["bytes_done"] == progress["bytes_total"] == total

    hub64.reset()
    rc, result = module(venv, spec_for(hub64, target))
    assert rc == 0 and result["changed"] is False and result["bytes_downloaded"] == 0 and result["fetched"] == []
    assert hub64.stats()["requests"] == 0, "a complete model must not cost a single request"
    rc, result = module(venv, spec_for(hub64, target), check=True)
    assert result["complete"] is True and result["changed"] is False and result["fetched"] == []
    assert hub64.stats()["requests"] == 0, "check mode of a complete model must not cost a request either"


def test_interrupted_download_resumes(venv, hub_factory, tmp_path):
    """SIGKILL midway: no manifest; the re-run fetches only what is missing."""
    hub = hub_factory("--large-size-mb", "200", "--rate-limit-mbps", "480")  # ~60 MB/s
    total = sum(entry["Size"] for entry in hub.listing().values())
    target = tmp_path / "m"
    proc = subprocess.Popen(module_argv(venv, spec_for(hub, target)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while hub.stats()["bytes_served"] < 90 * MIB:
        assert proc.poll() is None, "the download ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = hub.stats()["bytes_served"]
    assert not (target / ".llmops-manifest.json").exists(), "an interrupted download must not look complete"
    assert module(venv, spec_for(hub, target), check=True)[1]["complete"] is False
    partial = (target / "model.safetensors.incomplete").stat().st_size
    assert partial > 50 * MIB

    hub.reset()
    rc, result = module(venv, spec_for(hub, target))
    assert rc == 0, result
    second = hub.stats()["bytes_served"]
    hub.assert_no_unknown()
    refetched = first + second - total
    print(f"total {total}, first run {first}, second run {second}, fetched twice {refetched} ({100 * refetched / total:.2f} %)")
    assert second < total - partial + 2 * MIB, "the second run started the big file over"
    assert refetched < 0.10 * total
    assert result["bytes_downloaded"] == second
    assert manifest_of(target)["bytes_total"] == total


def test_corrupted_file_is_caught_with_hash_verification(venv, hub64, tmp_path):
    target = tmp_path / "m"
    assert module(venv, spec_for(hub64, target))[0] == 0
    weights = target / "model.safetensors"
    with open(weights, "r+b") as handle:  # flip 16 bytes in the middle, same size
        handle.seek(weights.stat().st_size // 2)
        data = handle.read(16)
        handle.seek(-16, os.SEEK_CUR)
        handle.write(bytes(b ^ 0xFF for b in data))

    assert module(venv, spec_for(hub64, target), check=True)[1]["complete"] is True  # sizes only (documented)
    rc, status = module(venv, spec_for(hub64, target, verify_hashes=True), check=True)
    assert status["complete"] is False and "model.safetensors" in status["reason"]
    assert status["fetched"] == ["model.safetensors"], "check mode names the one file a real run fetches"

    hub64.reset()
    rc, result = module(venv, spec_for(hub64, target, verify_hashes=True))
    assert rc == 0 and result["changed"] is True and result["fetched"] == ["model.safetensors"]
    stats = hub64.stats()
    assert list(stats["by_file"]) == [f"{REPO}/model.safetensors"]
    files = {f["path"]: f["sha256"] for f in manifest_of(target)["files"]}
    assert sha256(weights) == files["model.safetensors"]
    assert module(venv, spec_for(hub64, target, verify_hashes=True), check=True)[1]["complete"] is True


@pytest.mark.parametrize("lfs_redirect", [True, False], ids=["lfs-redirect", "direct"])
def test_corrupted_body_is_rejected_by_the_client(venv, hub_factory, tmp_path, lfs_redirect):
    args = ["--large-size-mb", "8", "--corrupt", "model.safetensors", "--corrupt", "config.json"]
    hub = hub_factory(*args, *([] if lfs_redirect else ["--no-lfs-redirect"]))
    target = tmp_path / "m"
    rc, result = module(venv, spec_for(hub, target), timeout=300)
    assert rc == 1 and result["failed"] and result["complete"] is False, result
    assert "hash" in result["msg"].lower() or "sha" in result["msg"].lower(), result["msg"]
    assert not (target / ".llmops-manifest.json").exists()
    assert not (target / "model.safetensors").exists() and not (target / "config.json").exists()
    assert json.loads((target / ".llmops-progress.json").read_text())["state"] == "failed"
    hub.assert_no_unknown()


def test_changed_revision_resyncs_only_what_differs(venv, hub64, tmp_path):
    target = tmp_path / "m"
    assert module(venv, spec_for(hub64, target))[0] == 0
    assert (target / "generation_config.json").exists()
    hub64.reset()
    rc, status = module(venv, spec_for(hub64, target, revision="v2"), check=True)
    assert status["complete"] is False and "revision" in status["reason"] and status["changed"] is True
    assert sorted(status["fetched"]) == ["config.json", "docs/CHANGELOG.md"] and status["pruned"] == ["generation_config.json"]
    assert "generation_config.json" in status["diff"]["after"] and "v2" in status["diff"]["after"]
    assert (target / "generation_config.json").exists() and manifest_of(target)["inputs"]["revision"] == "master"
    assert hub64.stats()["bytes_served"] < 10_000, "check mode lists, it fetches no file"

    hub64.reset()
    rc, result = module(venv, spec_for(hub64, target, revision="v2"))
    assert rc == 0 and result["changed"] is True
    assert sorted(result["fetched"]) == ["config.json", "docs/CHANGELOG.md"]
    assert result["pruned"] == ["generation_config.json"]
    assert not (target / "generation_config.json").exists()
    assert hub64.stats()["bytes_served"] < 10_000
    assert json.loads((target / "config.json").read_text())["standin_revision"] == "v2"
    assert manifest_of(target)["inputs"]["revision"] == "v2"


def test_unknown_revision_fails_without_manifest(venv, hub64, tmp_path):
    target = tmp_path / "m"
    rc, result = module(venv, spec_for(hub64, target, revision="no-such-branch"))
    assert rc == 1 and result["failed"] and "no-such-branch" in result["msg"]
    assert not (target / ".llmops-manifest.json").exists()


def test_token_protected_repository(venv, hub_factory, tmp_path):
    hub = hub_factory("--large-size-mb", "4", "--token", TOKEN)
    target = tmp_path / "m"
    rc, result = module(venv, spec_for(hub, target))
    assert rc == 1 and not (target / ".llmops-manifest.json").exists()
    assert "401" in result["msg"] or "uthori" in result["msg"]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    rc, result = module(venv, spec_for(hub, target, token_file=str(token_file)))
    assert rc == 0 and result["changed"] is True
    assert TOKEN not in json.dumps(result)
    assert TOKEN not in (target / ".llmops-manifest.json").read_text()
    # The token option (no_log): masked in the module's invocation, in no result.
    shutil.rmtree(target)
    rc, result = module(venv, spec_for(hub, target, token=TOKEN))
    assert rc == 0 and result["changed"] is True and result["invocation"]["module_args"]["token"] != TOKEN
    assert TOKEN not in json.dumps(result)


def test_local_source_on_the_host(venv, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text('{"a": 1}')
    (source / "sub" / "weights.bin").write_bytes(os.urandom(3 * MIB))
    (source / "skip.tmp.log").write_text("left out by exclude")
    spec = {"alias": "loc", "source": "local", "local_src": str(source), "local_src_on": "host",
            "target_dir": str(tmp_path / "models" / "loc"), "exclude": ["*.log"]}
    rc, status = module(venv, spec, check=True)
    assert status["complete"] is False and sorted(status["fetched"]) == ["config.json", "sub/weights.bin"]
    rc, result = module(venv, spec)
    assert rc == 0 and result["changed"] is True, result
    target = pathlib.Path(spec["target_dir"])
    assert (target / "sub" / "weights.bin").read_bytes() == (source / "sub" / "weights.bin").read_bytes()
    assert not (target / "skip.tmp.log").exists()
    assert {f["path"] for f in manifest_of(target)["files"]} == {"config.json", "sub/weights.bin"}
    assert module(venv, spec)[1]["changed"] is False

    time.sleep(0.01)
    (source / "config.json").write_text('{"a": 2}')
    rc, status = module(venv, spec, check=True)
    assert status["complete"] is False and "local source changed" in status["reason"] and status["fetched"] == ["config.json"]
    rc, result = module(venv, spec)
    assert rc == 0 and result["fetched"] == ["config.json"]
    assert (target / "config.json").read_text() == '{"a": 2}'


def test_huggingface_path_with_a_stub_client(venv, tmp_path):
    """Lightly: the module's huggingface code against a stub huggingface_hub (no HF stand-in)."""
    stub = tmp_path / "stub" / "huggingface_hub"
    stub.mkdir(parents=True)
    weights = os.urandom(MIB)
    (stub / "__init__.py").write_text(textwrap.dedent(f"""
        import hashlib, json, os, pathlib, types
        FILES = {{"config.json": b'{{"x": 1}}', "model.safetensors": {weights!r}}}
        CALLS = pathlib.Path({str(tmp_path / "calls.jsonl")!r})
        class HfApi:
            def __init__(self, endpoint=None, token=None):
                self.endpoint = endpoint
            def model_info(self, repo_id, revision=None, files_metadata=False):
                CALLS.open("a").write(json.dumps({{"call": "model_info", "repo_id": repo_id, "revision": revision,
                                                   "endpoint": self.endpoint, "env": os.environ.get("HF_ENDPOINT")}}) + "\\n")
                sib = []
                for name, data in FILES.items():
                    lfs = {{"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}} if name.endswith(".safetensors") else None
                    sib.append(types.SimpleNamespace(rfilename=name, size=len(data), lfs=lfs))
                return types.SimpleNamespace(siblings=sib)
        def snapshot_download(repo_id, revision=None, local_dir=None, allow_patterns=None, token=None, endpoint=None, max_workers=8):
            CALLS.open("a").write(json.dumps({{"call": "snapshot_download", "allow": allow_patterns, "endpoint": endpoint,
                                               "revision": revision}}) + "\\n")
            for name in allow_patterns:
                pathlib.Path(local_dir, name).write_bytes(FILES[name])
            return local_dir
    """))
    spec = {"alias": "hf", "source": "huggingface", "repo_id": "org/model", "target_dir": str(tmp_path / "hf"),
            "endpoint": "http://127.0.0.1:9/hf-mirror"}
    env = {"PYTHONPATH": str(tmp_path / "stub")}
    rc, result = module(venv, spec, env=env)
    assert rc == 0 and result["changed"] is True, result
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls[0]["revision"] == "main" and calls[0]["endpoint"] == spec["endpoint"] == calls[0]["env"]
    assert sorted(calls[1]["allow"]) == ["config.json", "model.safetensors"]
    assert sorted(result["fetched"]) == ["config.json", "model.safetensors"]
    assert manifest_of(spec["target_dir"])["inputs"]["revision"] == "main"
    assert module(venv, spec, env=env)[1]["changed"] is False


def test_check_mode_without_the_client_reports(tmp_path):
    """A fresh host: the module runs with an interpreter that has no modelscope client (here: this one)."""
    code = RUNNER.replace("collections, site, args = sys.argv[1:4]", "collections, args = sys.argv[1:3]").replace(
        "sys.path.append(site)\n", "")
    args = {**spec_for(None, tmp_path / "fresh" / "Qwen3-8B", endpoint="http://127.0.0.1:9"), "_ansible_check_mode": True}
    out = subprocess.run([sys.executable, "-c", code, str(COLLECTIONS), json.dumps(args)], capture_output=True, text=True,
                         timeout=120, check=False)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and result["changed"] is True and result["complete"] is False, result
    assert result["fetched"] is None and "not installed" in result["note"]
    assert not (tmp_path / "fresh").exists()
    # A real run with that interpreter says which variable pins the client.
    out = subprocess.run([sys.executable, "-c", code, str(COLLECTIONS), json.dumps({**args, "_ansible_check_mode": False})],
                         capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1 and "model_store_modelscope_version" in result["msg"] and "model_store_venv" in result["msg"]
    assert not (tmp_path / "fresh" / "Qwen3-8B" / ".llmops-manifest.json").exists()


def test_module_through_ansible(venv, hub64, tmp_path):
    """AnsiballZ with the module_utils, the action plugin and the venv interpreter: check mode, then the download."""
    target = tmp_path / "adhoc" / "Qwen3-8B"
    args = json.dumps({"alias": "qwen3-8b", "repo_id": REPO, "target_dir": str(target), "endpoint": hub64.url})
    results = []
    for extra in (["--check", "--diff"], []):
        out = subprocess.run(
            [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "llmops.gpu_stack.model_sync",
             "-a", args, "-e", f"ansible_python_interpreter={venv / 'bin' / 'python'}", *extra],
            capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
            env=ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"))
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        results.append(json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"])
    check, real = results
    assert check["changed"] is True and check["complete"] is False and len(check["fetched"]) == real["files"]
    assert "fetch:" in check["diff"]["after"]
    assert real["changed"] is True and real["complete"] is True and manifest_of(target)["files"]


# ------------------------------------------------------------------------------------ the role
def write_play(tmp, variables):
    """The play, its inventory (the interpreter there: task vars must be able to override it) and -e vars."""
    (tmp / "vars.json").write_text(json.dumps(variables))
    (tmp / "inventory.yml").write_text(textwrap.dedent("""\
        all:
          hosts:
            localhost:
              ansible_connection: local
              ansible_python_interpreter: "{{ ansible_playbook_python }}"
        """))
    (tmp / "play.yml").write_text(textwrap.dedent("""\
        - name: model_store on this machine
          hosts: localhost
          gather_facts: false
          roles:
            - role: llmops.gpu_stack.model_store
        """))


def play(tmp, *extra, check=True, timeout=900):
    out = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"),
         "-e", f"@{tmp / 'vars.json'}", *extra],
        capture_output=True, text=True, timeout=timeout, env=ansible_env(), cwd=ROOT, check=False,
    )
    text = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, text[-6000:]
    recap = RECAP.search(out.stdout)
    # The YAML callback folds long messages: the text comes back with all whitespace as single spaces.
    return out.returncode, re.sub(r"\s+", " ", text), (tuple(int(x) for x in recap.groups()) if recap else None)


def base_vars(tmp, venv, hub, **extra):
    data = {
        "gpu_stack_models_root": str(tmp / "root" / "models"),
        "gpu_stack_root": str(tmp / "root" / "stack"),
        "model_store_venv": str(venv),
        "model_store_modelscope_endpoint": hub.url if hub else "",
        "model_store_progress_interval": 1,
        "model_store_owner": str(os.getuid()),
        "model_store_group": str(os.getgid()),
    }
    data.update(extra)
    return data


def test_role_downloads_with_progress_and_is_idempotent(venv, hub_factory, tmp_path):
    hub = hub_factory("--large-size-mb", "120", "--rate-limit-mbps", "240", "--token", TOKEN)  # ~30 MB/s: several progress lines
    local_src = tmp_path / "controller-model"
    local_src.mkdir()
    (local_src / "config.json").write_text('{"architectures": ["Local"]}')
    (local_src / "sub").mkdir()
    (local_src / "sub" / "weights.bin").write_bytes(os.urandom(2 * MIB))
    models = [
        {"alias": "qwen3-8b", "source": "modelscope", "repo_id": REPO, "revision": "master", "token": TOKEN},
        {"alias": "qwen3-8b-configs", "repo_id": REPO, "revision": "v2", "include": ["*.json"], "token": TOKEN,
         "target_dir": str(tmp_path / "root" / "models" / "configs-v2")},
        {"alias": "from-controller", "source": "local", "local_src": str(local_src), "local_src_on": "controller",
         "target_dir": str(tmp_path / "elsewhere" / "from-controller")},
    ]
    write_play(tmp_path, base_vars(tmp_path, venv, hub, gpu_stack_models=models))

    rc, text, recap = play(tmp_path, "--check", "--diff")
    assert recap[3] == 0 and recap[1] > 0 and "check mode: qwen3-8b would be synced" in text
    assert re.search(r"check mode: qwen3-8b-configs would be synced .*fetch 4 of 4 file\(s\)", text), text[-4000:]
    assert not (tmp_path / "root").exists() and not (tmp_path / "elsewhere").exists(), "check mode created something"

    hub.reset()
    rc, text, recap = play(tmp_path)
    assert recap[1] > 0
    progress_lines = re.findall(r"\(item=qwen3-8b: [\d.]+ \w+ / [\d.]+ MiB \(\d+%\) downloading", text)
    assert progress_lines, "no progress line while the download ran:\n" + text[-4000:]
    assert TOKEN not in text, "the token was printed"
    hub.assert_no_unknown()
    assert stat.S_IMODE((tmp_path / "root" / "models").stat().st_mode) == 0o755
    assert not (tmp_path / "root" / "stack").exists(), "model_store creates no stack folders any more"
    qwen = tmp_path / "root" / "models" / "Qwen3-8B"
    assert (qwen / ".llmops-manifest.json").exists()
    assert all(stat.S_IMODE((qwen / f["path"]).stat().st_mode) == 0o644 for f in manifest_of(qwen)["files"])
    assert stat.S_IMODE((qwen / "docs").stat().st_mode) == 0o755
    assert {f["path"] for f in manifest_of(tmp_path / "root" / "models" / "configs-v2")["files"]} == {
        "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"}
    controller_copy = tmp_path / "elsewhere" / "from-controller"
    assert (controller_copy / "sub" / "weights.bin").read_bytes() == (local_src / "sub" / "weights.bin").read_bytes()
    assert {f["path"] for f in manifest_of(controller_copy)["files"]} == {"config.json", "sub/weights.bin"}
    tokens = venv / "tokens"
    assert not tokens.exists() or not any(tokens.iterdir()), "the token files outlived the downloads"

    hub.reset()
    rc, text, recap = play(tmp_path)
    assert recap[1] == 0, "second run changed something:\n" + text[-4000:]
    assert hub.stats()["requests"] == 0
    rc, text, recap = play(tmp_path, "--check", "--diff")
    assert recap[1] == 0 and recap[3] == 0
    assert hub.stats()["requests"] == 0

    # A changed controller-side source is copied again on the next run (that file only).
    (local_src / "config.json").write_text('{"architectures": ["Local2"]}')
    rc, text, recap = play(tmp_path)
    assert recap[1] > 0 and (controller_copy / "config.json").read_text() == '{"architectures": ["Local2"]}'
    assert re.search(r"from-controller: 2 files .* [\d.]+ Bytes fetched; synced because: inputs changed: the local source changed", text), text[-3000:]


def test_role_check_mode_on_a_fresh_host(tmp_path):
    """No virtualenv yet (its path does not exist): --check --diff runs to the end and creates nothing."""
    models = [{"alias": "qwen3-8b", "repo_id": REPO}, {"alias": "tiny", "repo_id": "Qwen/Qwen3-0.6B", "revision": "v1"}]
    write_play(tmp_path, base_vars(tmp_path, tmp_path / "opt" / "venv", None, gpu_stack_models=models,
                                   model_store_modelscope_endpoint="http://127.0.0.1:9"))
    rc, text, recap = play(tmp_path, "--check", "--diff")
    assert recap[3] == 0 and recap[1] > 0
    for alias in ("qwen3-8b", "tiny"):
        assert re.search(rf"check mode: {alias} would be synced into .* does not exist\); the file list is not known: "
                         r"the modelscope client is not installed yet", text), text[-4000:]
    assert not (tmp_path / "root").exists() and not (tmp_path / "opt").exists(), "check mode created something"


def test_role_picks_the_models_of_the_host(venv, tmp_path):
    """model_store_aliases, else gpu_stack_plan.models, else every entry (directories only, to be quick)."""
    models = [{"alias": name, "repo_id": f"Qwen/{name}"} for name in ("a", "b", "c")]
    cases = [({}, {"a", "b", "c"}), ({"gpu_stack_plan": {"models": ["b"]}}, {"b"}),
             ({"gpu_stack_plan": {"models": ["b"]}, "model_store_aliases": ["c", "a"]}, {"a", "c"})]
    for extra, want in cases:
        shutil.rmtree(tmp_path / "root", ignore_errors=True)
        write_play(tmp_path, base_vars(tmp_path, venv, None, gpu_stack_models=models, model_store_download=False, **extra))
        rc, text, recap = play(tmp_path)
        assert {p.name for p in (tmp_path / "root" / "models").iterdir()} == want, (extra, text[-2000:])


def test_role_directories_only(venv, tmp_path):
    write_play(tmp_path, base_vars(tmp_path, venv, None, model_store_download=False,
                                   gpu_stack_models=[{"alias": "qwen3-8b", "repo_id": REPO}]))
    rc, text, recap = play(tmp_path)
    model_dir = tmp_path / "root" / "models" / "Qwen3-8B"
    assert model_dir.is_dir() and not any(model_dir.iterdir())
    assert stat.S_IMODE(model_dir.stat().st_mode) == 0o755
    rc, text, recap = play(tmp_path)
    assert recap[1] == 0


@pytest.mark.parametrize(
    ("models", "extra", "expected"),
    [
        ([{"alias": "a", "repo_id": REPO, "target_dir": "relative/dir"}], {},
         [r"gpu_stack_models\[0\] \(alias \"a\"\): target_dir must be an absolute path, got \"relative/dir\""]),
        ([{"alias": "a", "repo_id": REPO, "source": "s3"}], {},
         # _common's argument spec (a dependency of the role) refuses it first, before model_store's preflight.
         [r"value of source must be one of: modelscope, huggingface, local, got: s3 found in gpu_stack_models"]),
        ([{"alias": "a", "repo_id": REPO}, {"alias": "a", "repo_id": "Qwen/Other"}], {},
         [r"gpu_stack_models\[1\] \(alias \"a\"\): alias \"a\" appears more than once"]),
        ([{"alias": "a", "source": "modelscope"}], {},
         [r"gpu_stack_models\[0\] \(alias \"a\"\): source modelscope needs repo_id as owner/name \(e.g. Qwen/Qwen3-8B\), got null"]),
        ([{"alias": "a", "repo_id": REPO}], {"gpu_stack_models_root": "models"},
         [r"gpu_stack_models_root must be an absolute path, got \"models\""]),
        ([{"alias": "a b", "repo_id": REPO}, {"alias": "c", "repo_id": REPO, "target_dir": "/srv/m/c/"}],
         {"model_store_download_workers": 0, "model_store_venv": "/opt/venv/../x"},
         [r"model_store: 4 problem\(s\)", r"gpu_stack_models\[0\] \(alias \"a b\"\): alias is required",
          r"gpu_stack_models\[1\] \(alias \"c\"\): target_dir must be a normalised path .*write \"/srv/m/c\"",
          r"model_store_venv must be an absolute, normalised path", r"model_store_download_workers must be 1 or more"]),
        ([{"alias": "a", "repo_id": REPO}], {"model_store_aliases": ["a", "guard"]},
         [r"model_store_aliases: \"guard\" is not an alias of gpu_stack_models \(a\)"]),
    ],
    ids=["relative-target", "unknown-source", "duplicate-alias", "missing-repo-id", "relative-root", "several-at-once",
         "unknown-alias"],
)
def test_preflight_refuses_bad_settings_before_any_change(venv, tmp_path, models, extra, expected):
    variables = base_vars(tmp_path, venv, None, gpu_stack_models=models)
    variables.update(extra)
    write_play(tmp_path, variables)
    rc, text, recap = play(tmp_path, check=False)
    assert rc != 0
    for pattern in expected:
        assert re.search(pattern, text), pattern + "\n" + text[-3000:]
    assert not (tmp_path / "root").exists(), "preflight let something change"
