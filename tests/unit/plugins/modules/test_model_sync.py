"""plugins/modules/model_sync.py, model_sync_wait.py and their module_utils, without a download client.

The pure parts: globs, paths, the manifest and the complete check, trusted files, pruning, owner and
mode, local source scans and fingerprints, progress figures and lines, the waiter (injected clock),
tokens, and the module itself in-process for local sources on the host (check mode, sync, re-run,
changed source) and from the controller (the action plugin's file list). The real ModelScope
client and the stand-in hub are in tests/integration/test_model_store.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import stat
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_sync_dir as mdir
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_sync_progress as mprogress
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_sync_sources as msources
from ansible_collections.llmops.gpu_stack.plugins.modules import model_sync, model_sync_wait

MIB = 1024 * 1024
TOKEN = "sekrit-token-value"  # noqa: S105 - a test value


def run(capsys, module, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "weights.bin").write_bytes(os.urandom(MIB // 2))
    (src / "notes.log").write_text("left out")
    return src


def local_spec(src, target, **extra):
    return {"alias": "loc", "source": "local", "local_src": str(src), "local_src_on": "host", "target_dir": str(target),
            "exclude": ["*.log"], **extra}


def write_manifest(target, spec, files):
    target.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    entries = [{"path": rel, "size": len(data), "sha256": mdir.sha256_of(target / rel)} for rel, data in files.items()]
    mdir.write_json_atomic(target / mdir.MANIFEST, {"format": 1, "inputs": mdir.inputs_of(spec), "files": entries})
    return entries


# ------------------------------------------------------------------------------------ globs and paths
@pytest.mark.parametrize(("path", "include", "exclude", "expected"), [
    ("config.json", [], [], True),
    ("config.json", ["*.json"], [], True),
    ("model.bin", ["*.json"], [], False),
    ("model.bin", [], ["*.bin"], False),
    ("docs/a.md", ["docs/*"], [], True),
    ("model.safetensors", [".*safetensors"], [], True),  # legacy regex-style pattern of the client
    ("config.json", ["*.json"], ["config.*"], False),
])
def test_selected(path, include, exclude, expected):
    assert mdir.selected(path, include, exclude) is expected


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../up", "a/../../b", "a\\b", "a\0b"])
def test_safe_relpath_refuses(bad):
    with pytest.raises(mdir.SyncError, match="unsafe file path"):
        mdir.safe_relpath(bad)


def test_safe_relpath_normalises():
    assert mdir.safe_relpath("a//b/./c") == "a/b/c"


def test_partial_bytes_counts_incomplete_and_range_parts(tmp_path):
    (tmp_path / "m.bin.incomplete").write_bytes(b"x" * 10)
    (tmp_path / "m.bin_0_99").write_bytes(b"x" * 5)
    (tmp_path / "m.bin_100_199").write_bytes(b"x" * 7)
    (tmp_path / "m.bin_other").write_bytes(b"x" * 100)
    assert mdir.partial_bytes(tmp_path, "m.bin") == 22
    assert mdir.partial_bytes(tmp_path, "missing/x.bin") == 0


# ------------------------------------------------------------------------------------ the manifest
def test_inputs_of_remote_and_local():
    assert mdir.inputs_of({"repo_id": "o/n", "include": ["b", "a"]}) == {
        "source": "modelscope", "include": ["a", "b"], "exclude": [], "repo_id": "o/n", "revision": "master"}
    assert mdir.inputs_of({"source": "huggingface", "repo_id": "o/n"})["revision"] == "main"
    assert mdir.inputs_of({"source": "local", "local_src": "/s", "source_fingerprint": "f"}) == {
        "source": "local", "include": [], "exclude": [], "local_src": "/s", "local_src_on": "host", "source_fingerprint": "f"}


def test_describe_difference():
    assert mdir.describe_difference({"revision": "master", "repo_id": "o/n"}, {"revision": "v2", "repo_id": "o/n"}) == (
        "revision: 'master' -> 'v2'")
    assert mdir.describe_difference({"source_fingerprint": "a"}, {"source_fingerprint": "b"}) == (
        "the local source changed (file list, sizes or modification times)")


def test_check_complete_every_reason(tmp_path):
    spec = {"repo_id": "o/n", "revision": "master"}
    target = tmp_path / "m"
    target.mkdir()
    assert mdir.check_complete(spec, target, False)[:2] == (False, "no manifest (never downloaded, or interrupted)")
    (target / mdir.MANIFEST).write_text('{"format": 9}')
    assert mdir.check_complete(spec, target, False)[:2] == (False, "manifest of an unknown format")
    write_manifest(target, spec, {"a.json": b"{}", "w.bin": b"0123456789"})
    assert mdir.check_complete(spec, target, False)[:2] == (True, "complete")
    assert mdir.check_complete({**spec, "revision": "v2"}, target, False)[1] == "inputs changed: revision: 'master' -> 'v2'"
    (target / "w.bin").write_bytes(b"9123456789")  # same size, other bytes
    assert mdir.check_complete(spec, target, False)[0] is True, "sizes only without verify_hashes"
    assert mdir.check_complete(spec, target, True)[1] == "w.bin does not match its SHA-256"
    (target / "w.bin").write_bytes(b"short")
    assert mdir.check_complete(spec, target, False)[1] == "w.bin has 5 bytes, the manifest says 10"
    (target / "a.json").unlink()
    assert mdir.check_complete(spec, target, False)[1] == "a.json is missing"


def test_trusted_files(tmp_path):
    spec = {"repo_id": "o/n"}
    old = write_manifest(tmp_path, spec, {"same": b"aaaa", "changed": b"bbbb", "resized": b"cc"})
    manifest = {"files": old}
    sha = {e["path"]: e["sha256"] for e in old}
    listing = {"same": {"size": 4, "sha256": sha["same"]}, "changed": {"size": 4, "sha256": "0" * 64},
               "resized": {"size": 3, "sha256": sha["resized"]}, "new": {"size": 1, "sha256": "1" * 64},
               "nohash": {"size": 4, "sha256": None}}
    assert mdir.trusted_files(tmp_path, manifest, listing, False) == {"same"}
    (tmp_path / "same").write_bytes(b"zzzz")
    assert mdir.trusted_files(tmp_path, manifest, listing, True) == set(), "verify_hashes re-reads"
    assert mdir.trusted_files(tmp_path, None, listing, False) == set()


def test_prune_removes_dropped_files_and_empty_folders(tmp_path):
    old = write_manifest(tmp_path, {"repo_id": "o/n"}, {"keep": b"1", "docs/old.md": b"2", "drop": b"3"})
    assert mdir.to_prune({"files": old}, {"keep"}) == ["docs/old.md", "drop"]
    assert mdir.prune(tmp_path, {"files": old}, {"keep"}) == ["docs/old.md", "drop"]
    assert (tmp_path / "keep").exists() and not (tmp_path / "docs").exists() and not (tmp_path / "drop").exists()


def test_owner_and_mode(tmp_path):
    (tmp_path / "d").mkdir(mode=0o700)
    (tmp_path / "d" / "f").write_text("x")
    os.chmod(tmp_path / "d" / "f", 0o600)
    os.chmod(tmp_path, 0o755)  # noqa: S103 - the mode the module wants
    uid, gid = mdir.resolve_ids(str(os.getuid()), str(os.getgid()))
    assert sorted(mdir.attribute_drift(tmp_path, uid, gid)) == [str(tmp_path / "d"), str(tmp_path / "d" / "f")]
    assert mdir.fix_attributes(tmp_path, uid, gid) == 2
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755 and stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o644
    assert mdir.attribute_drift(tmp_path, uid, gid) == []


def test_resolve_ids():
    assert mdir.resolve_ids(None, "") == (-1, -1)
    assert mdir.resolve_ids("0", "0") == (0, 0)
    assert mdir.resolve_ids("root", "root") == (0, 0)
    with pytest.raises(mdir.SyncError, match="owner 'no-such-user-llmops' is not a user on this host"):
        mdir.resolve_ids("no-such-user-llmops", None)
    with pytest.raises(mdir.SyncError, match="group 'no-such-group-llmops' is not a group on this host"):
        mdir.resolve_ids(None, "no-such-group-llmops")


# ------------------------------------------------------------------------------------ local scans
def test_scan_dir_and_fingerprint(source):
    (source / ".git").mkdir()
    (source / ".git" / "HEAD").write_text("ref")
    (source / mdir.MANIFEST).write_text("{}")
    (source / "x.llmops-partial").write_text("partial")
    entries = mdir.scan_dir(source, [], ["*.log"], False)
    assert [e["path"] for e in entries] == ["config.json", "sub/weights.bin"]
    assert "sha256" not in entries[0]
    hashed = mdir.scan_dir(source, [], ["*.log"], True)
    assert hashed[0]["sha256"] == mdir.sha256_of(source / "config.json")
    first = mdir.fingerprint(entries)
    assert mdir.fingerprint(list(reversed(entries))) == first
    os.utime(source / "config.json", ns=(1, 1))
    assert mdir.fingerprint(mdir.scan_dir(source, [], ["*.log"], False)) != first


def test_scan_dir_of_a_missing_source(tmp_path):
    with pytest.raises(mdir.SyncError, match="is not a directory"):
        mdir.scan_dir(tmp_path / "nope", [], [], False)


# ------------------------------------------------------------------------------------ progress and waiting
@pytest.mark.parametrize(("nbytes", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * MIB, "5.0 MiB"),
                                              (3 * 1024**4, "3.0 TiB"), (5 * 1024**5, "5120.0 TiB")])
def test_human(nbytes, text):
    assert mprogress.human(nbytes) == text


def test_progress_snapshot_and_rate(tmp_path):
    now = [100.0]
    progress = mprogress.Progress(tmp_path / "p.json", {"alias": "a", "source": "modelscope", "repo_id": "o/n"}, clock=lambda: now[0])
    progress.plan({"x": {"size": 100}, "y": {"size": 50}}, {"x": 100, "y": 10})
    first = progress.snapshot()
    assert (first["bytes_done"], first["bytes_total"], first["files_done"], first["files_total"]) == (110, 150, 1, 2)
    now[0] += 2
    progress.add_received(40, "y")
    progress.set_position("y", 50)
    progress.set_position("unknown", 5)
    second = progress.snapshot()
    assert second["rate_bytes_per_s"] == 20 and second["bytes_done"] == 150 and progress.network_files == {"y"}
    progress.finish("complete")
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["state"] == "complete" and data["bytes_done"] == 150 and data["error"] is None


def test_job_finished(tmp_path):
    results = tmp_path / "job"
    assert mprogress.job_finished(None) is False
    assert mprogress.job_finished(str(results)) is False
    results.write_text('{"started": 1, "finished": 0}')
    assert mprogress.job_finished(str(results)) is False
    results.write_text('{"started": 1, "finished": 1}')
    assert mprogress.job_finished(str(results)) is True
    results.write_text('{"changed": true, "complete": true}')  # the module's own result
    assert mprogress.job_finished(str(results)) is True
    results.write_text('{"msg": "Timeout exceeded", "failed": true}')  # async_wrapper after its time limit
    assert mprogress.job_finished(str(results)) is True


def test_job_line():
    data = {"bytes_done": 12 * MIB, "bytes_total": 120 * MIB, "state": "downloading", "rate_bytes_per_s": 30 * MIB}
    line, figures = mprogress.job_line({"alias": "q"}, False, data)
    assert line == "q: 12.0 MiB / 120.0 MiB (10%) downloading 30.0 MiB/s"
    assert figures["percent"] == 10.0 and figures["state"] == "downloading" and figures["finished"] is False
    line, figures = mprogress.job_line({"alias": "q"}, True, {"bytes_done": 5, "bytes_total": 5, "rate_bytes_per_s": 9})
    assert line == "q: 5 B / 5 B (100%) finished"
    assert mprogress.job_line({"alias": "q"}, False, {})[0] == "q: 0 B / 0 B (?) starting"


def test_wait_round_returns_when_done_or_after_the_interval(tmp_path):
    results, progress_file = tmp_path / "r", tmp_path / "p"
    results.write_text('{"started": 1, "finished": 0}')
    progress_file.write_text(json.dumps({"bytes_done": 1, "bytes_total": 4, "state": "downloading"}))
    jobs = [{"alias": "q", "results_file": str(results), "progress_file": str(progress_file)}]
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    out = mprogress.wait_round(jobs, 3, clock=lambda: now[0], sleep=sleep)
    assert out["done"] is False and sum(sleeps) == 3 and out["summary"] == "q: 1 B / 4 B (25%) downloading"
    results.write_text('{"started": 1, "finished": 1}')
    sleeps.clear()
    out = mprogress.wait_round(jobs, 3, clock=lambda: now[0], sleep=sleep)
    assert out["done"] is True and sleeps == [] and out["jobs"][0]["state"] == "finished"
    assert mprogress.wait_round([], 3, clock=lambda: now[0], sleep=sleep) == {"done": True, "summary": "nothing to wait for", "jobs": []}


def test_wait_module(capsys, tmp_path):
    (tmp_path / "r").write_text('{"finished": 1}')
    jobs = [{"alias": "q", "results_file": str(tmp_path / "r"), "progress_file": str(tmp_path / "missing")},
            {"skipped": True, "entry": {"alias": "z"}}]
    rc, result = run(capsys, model_sync_wait, jobs=jobs, interval=5)
    assert rc == 0 and result["done"] is True and result["changed"] is False and result["summary"] == "q: 0 B / 0 B (?) finished"
    rc, result = run(capsys, model_sync_wait, jobs=[], interval=-1)
    assert rc == 1 and "interval must be 0 or more" in result["msg"]


# ------------------------------------------------------------------------------------ tokens and clients
def test_token_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(msources.TOKEN_ENV, "from-env")
    token_file = tmp_path / "t"
    token_file.write_text("from-file\n")
    assert msources.token_of({"token": "given", "token_file": str(token_file)}) == "given"
    assert msources.token_of({"token_file": str(token_file)}) == "from-file"
    assert msources.token_of({}) == "from-env"
    monkeypatch.delenv(msources.TOKEN_ENV)
    assert msources.token_of({}) is None
    with pytest.raises(mdir.SyncError, match="cannot read the token file"):
        msources.token_of({"token_file": str(tmp_path / "missing")})


def test_client_missing_names_the_pins():
    text = str(msources.client_missing("modelscope", ImportError("No module named 'modelscope_hub'")))
    assert "model_store_modelscope_version" in text and "<model_store_venv>/bin/python" in text and "modelscope_hub" in text
    assert "model_store_huggingface_hub_version" in str(msources.client_missing("huggingface", ImportError("x")))


# ------------------------------------------------------------------------------------ the module's parts
def test_normalise():
    spec = model_sync.normalise({"alias": "a", "repo_id": "o/n", "target_dir": "/m/a", "source": None, "include": None})
    assert spec["source"] == "modelscope" and spec["revision"] == "master" and spec["include"] == []
    with pytest.raises(mdir.SyncError, match="target_dir must be an absolute path"):
        model_sync.normalise({"alias": "a", "repo_id": "o/n", "target_dir": "m"})
    with pytest.raises(mdir.SyncError, match="the action plugin of llmops.gpu_stack.model_sync"):
        model_sync.normalise({"alias": "a", "source": "local", "local_src": "/s", "local_src_on": "controller", "target_dir": "/m"})


def test_status_of_a_missing_directory(tmp_path):
    result, manifest = model_sync.status(model_sync.normalise({"alias": "a", "repo_id": "o/n", "target_dir": str(tmp_path / "m")}))
    assert manifest is None and result["complete"] is False and result["reason"] == "%s does not exist" % (tmp_path / "m")


def test_status_reports_owner_drift_and_unknown_owner(tmp_path):
    spec = model_sync.normalise({"alias": "a", "repo_id": "o/n", "target_dir": str(tmp_path / "m")})
    write_manifest(tmp_path / "m", spec, {"f": b"x"})
    os.chmod(tmp_path / "m", 0o755)  # noqa: S103 - the mode the module wants
    os.chmod(tmp_path / "m" / "f", 0o600)
    result = model_sync.status(spec)[0]
    assert result["content_complete"] is True and result["complete"] is False and result["attributes_fixed"] == 1
    assert result["reason"].startswith("owner/group/mode differ on 1 path(s)")
    warnings = []
    result = model_sync.status({**spec, "owner": "no-such-user-llmops"}, warn=warnings.append)[0]
    assert result["complete"] is False and "is not a user" in warnings[0]
    with pytest.raises(mdir.SyncError):
        model_sync.status({**spec, "owner": "no-such-user-llmops"})


def test_module_with_a_local_source_on_the_host(capsys, source, tmp_path):
    target = tmp_path / "models" / "loc"
    spec = local_spec(source, target)
    rc, result = run(capsys, model_sync, **spec, _ansible_check_mode=True, _ansible_diff=True)
    assert rc == 0 and result["changed"] is True and result["complete"] is False
    assert result["fetched"] == ["config.json", "sub/weights.bin"] and result["bytes_to_fetch"] == 8 + MIB // 2
    assert "fetch: 2 file(s)" in result["diff"]["after"] and not target.exists()

    rc, result = run(capsys, model_sync, **spec, _ansible_diff=True)
    assert rc == 0 and result["changed"] is True and result["complete"] is True and result["files"] == 2
    assert result["diff"]["before"].endswith(f"manifest: none ({target} does not exist)\n")
    assert "fetch: 2 file(s), 512.0 KiB: config.json, sub/weights.bin" in result["diff"]["after"]
    assert result["fetched"] == ["config.json", "sub/weights.bin"] and result["bytes_downloaded"] == 8 + MIB // 2
    manifest = json.loads((target / mdir.MANIFEST).read_text())
    assert manifest["tool"] == "llmops.gpu_stack.model_sync" and manifest["inputs"]["source"] == "local"
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        "config.json": mdir.sha256_of(source / "config.json"), "sub/weights.bin": mdir.sha256_of(source / "sub" / "weights.bin")}
    assert json.loads((target / mdir.PROGRESS).read_text())["state"] == "complete"

    rc, result = run(capsys, model_sync, **spec)
    assert rc == 0 and result["changed"] is False and result["reason"] == "complete" and result["fetched"] == []
    rc, result = run(capsys, model_sync, **spec, _ansible_check_mode=True)
    assert result["changed"] is False and result["fetched"] == [] and result["bytes_to_fetch"] == 0

    (source / "config.json").write_text('{"a": 22}')
    (source / "sub" / "weights.bin").unlink()
    rc, result = run(capsys, model_sync, **spec, _ansible_check_mode=True)
    assert result["fetched"] == ["config.json"] and result["pruned"] == ["sub/weights.bin"] and "local source changed" in result["reason"]
    rc, result = run(capsys, model_sync, **spec)
    assert result["fetched"] == ["config.json"] and result["pruned"] == ["sub/weights.bin"] and not (target / "sub").exists()


def test_module_with_files_from_the_controller(capsys, source, tmp_path):
    """What the action plugin hands over after its copies: the module verifies every file, then writes the manifest."""
    target = tmp_path / "m"
    target.mkdir()
    files = []
    for entry in mdir.scan_dir(source, [], ["*.log"], True):
        (target / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        (target / entry["path"]).write_bytes((source / entry["path"]).read_bytes())
        files.append({"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"], "copied": entry["path"] == "config.json"})
    spec = local_spec(source, target, local_src_on="controller", source_fingerprint="fp-1", local_files=files)
    rc, result = run(capsys, model_sync, **spec)
    assert rc == 0 and result["complete"] is True and result["fetched"] == ["config.json"] and result["bytes_downloaded"] == 8
    rc, result = run(capsys, model_sync, **{**spec, "local_files": None}, _ansible_check_mode=True)
    assert result["complete"] is True and result["changed"] is False
    rc, result = run(capsys, model_sync, **{**spec, "source_fingerprint": "fp-2", "local_files": None}, _ansible_check_mode=True)
    assert result["changed"] is True and result["fetched"] is None and "controller-side source" in result["note"]

    (target / "config.json").write_text('{"b": 1}')  # the copy went wrong: same size, other bytes
    rc, result = run(capsys, model_sync, **{**spec, "source_fingerprint": "fp-3"})
    assert rc == 1 and result["failed"] and "config.json: SHA-256" in result["msg"] and result["complete"] is False
    assert not (target / mdir.MANIFEST).exists()
    assert json.loads((target / mdir.PROGRESS).read_text())["state"] == "failed"


def test_module_refuses_what_cannot_be_synced(capsys, tmp_path):
    rc, result = run(capsys, model_sync, alias="a", source="local", local_src=str(tmp_path / "none"), target_dir=str(tmp_path / "m"))
    assert rc == 1 and "is not a directory" in result["msg"]
    (tmp_path / "empty").mkdir()
    rc, result = run(capsys, model_sync, alias="a", source="local", local_src=str(tmp_path / "empty"), target_dir=str(tmp_path / "m"))
    assert rc == 1 and "no files to download" in result["msg"] and not (tmp_path / "m" / mdir.MANIFEST).exists()
    rc, result = run(capsys, model_sync, alias="a", target_dir=str(tmp_path / "m"))
    assert rc == 1 and "repo_id" in result["msg"]
    rc, result = run(capsys, model_sync, alias="a", repo_id="o/n", target_dir=str(tmp_path / "m"), token=TOKEN, token_file=str(tmp_path))
    assert rc == 1 and "mutually exclusive" in result["msg"]


def test_diff_lists_at_most_twenty_paths():
    spec = model_sync.normalise({"alias": "a", "repo_id": "o/n", "target_dir": "/m/a"})
    paths = [f"f{i:02d}" for i in range(25)]
    result = {"target_dir": "/m/a", "reason": "no manifest", "fetched": paths, "bytes_to_fetch": 25, "pruned": paths[:2]}
    after = model_sync.diff_of(spec, result, None)["after"]
    assert "fetch: 25 file(s), 25 B: f00, f01" in after and "f19 and 5 more" in after and "f20" not in after
    assert "manifest: complete, modelscope o/n@master" in after and "remove: f00, f01" in after


def test_token_is_no_log(capsys, tmp_path):
    rc, result = run(capsys, model_sync, alias="a", repo_id="o/n", target_dir=str(tmp_path / "m"), token=TOKEN,
                     _ansible_check_mode=True)
    assert TOKEN not in json.dumps(result)


def test_check_space_refuses_a_download_that_cannot_fit(tmp_path, monkeypatch):
    class Full:
        f_bavail, f_frsize = 1000, 4096  # 4.1 MB free

    monkeypatch.setattr(model_sync.os, "statvfs", lambda _path: Full)
    model_sync.check_space(tmp_path, 4096 * 1000)  # exactly what is free: fits
    with pytest.raises(model_sync.SyncError, match=r"not enough space for .*: 0\.0 GB still to fetch, 0\.0 GB free"):
        model_sync.check_space(tmp_path, 4096 * 1000 + 1)
