# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Where a model's files come from: the pinned ModelScope client, huggingface_hub, a local directory.

Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

The clients are imported inside the functions that use them, never when this file is imported, so
that the model_sync module runs (status, check mode) with an interpreter that has no client; the
download itself needs the virtualenv the model_store role installs (run the task with
ansible_python_interpreter: <model_store_venv>/bin/python).

ModelScope downloads go through modelscope_hub.HubApi.download_repo in local_dir mode. The client
resumes an interrupted file from <file>.incomplete (single stream) or its range part files
(parallel mode) with HTTP Range requests, and renames a file into place only after its SHA-256
matched the listing (the file_list passed here carries size and SHA-256).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_dir import (
    CLIENT_CACHE,
    HASH_BLOCK,
    PARTIAL,
    SyncError,
    partial_bytes,
    safe_relpath,
    selected,
)

TOKEN_ENV = "LLMOPS_MODEL_TOKEN"  # noqa: S105 - the variable's name, not a secret
CLIENT_PACKAGES = {"modelscope": "modelscope_hub", "huggingface": "huggingface_hub"}


class ClientMissing(SyncError):
    """The download client cannot be imported by this interpreter."""


def client_missing(source: str, exc: Exception) -> ClientMissing:
    package = CLIENT_PACKAGES.get(source, source)
    pins = ("modelscope==<model_store_modelscope_version> and modelscope-hub==<model_store_modelscope_hub_version>"
            if source == "modelscope" else "huggingface_hub==<model_store_huggingface_hub_version>")
    return ClientMissing(
        "the %s client (%s) cannot be imported by %s (%s: %s). Run this task with the download virtualenv's "
        "Python (ansible_python_interpreter: <model_store_venv>/bin/python), which the model_store role fills "
        "with %s" % (source, package, sys.executable, type(exc).__name__, exc, pins))


def token_of(spec: dict) -> str | None:
    """The access token: the token option, else token_file (a 0600 file), else $LLMOPS_MODEL_TOKEN."""
    if spec.get("token"):
        return spec["token"]
    if spec.get("token_file"):
        try:
            return Path(spec["token_file"]).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SyncError("cannot read the token file %s: %s" % (spec["token_file"], exc.strerror)) from exc
    return os.environ.get(TOKEN_ENV) or None


# ------------------------------------------------------------------------------------ ModelScope
def modelscope_api(spec: dict, cache_dir: Path):
    os.environ.setdefault("MODELSCOPE_CACHE", str(cache_dir))
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the job's output; see .llmops-progress.json
    try:
        from modelscope_hub import HubApi  # noqa: PLC0415 - imported only where the client is used
    except ImportError as exc:
        raise client_missing("modelscope", exc) from exc

    token = token_of(spec)
    endpoint = (spec.get("endpoint") or "").strip().rstrip("/") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        endpoint = "https://" + endpoint  # like `modelscope download --endpoint`
    agent = {"invoked_by": "llmops.gpu_stack.model_sync"}
    api = HubApi(token=token, endpoint=endpoint, user_agent=agent)
    if endpoint is None:
        try:  # what the CLI does without --endpoint: modelscope.cn, else modelscope.ai
            api = HubApi(token=token, endpoint=api.resolve_endpoint_for_read(spec["repo_id"], repo_type="model"), user_agent=agent)
        except Exception as exc:  # noqa: BLE001 - keep the client's default endpoint, as the CLI does
            sys.stderr.write("endpoint probe failed (%s); using the client's default endpoint\n" % type(exc).__name__)
    return api


def list_modelscope(spec: dict, api) -> dict:
    files = {}
    for info in api.list_repo_files(spec["repo_id"], "model", revision=spec["revision"], recursive=True):
        if info.type == "tree" or not info.path:
            continue
        rel = safe_relpath(info.path)
        if selected(rel, spec["include"], spec["exclude"]):
            files[rel] = {"path": rel, "size": int(info.size or 0), "sha256": (info.sha256 or "").lower() or None}
    return files


def make_callback(progress, target: Path):
    """A modelscope ProgressCallback class feeding Progress (per-file instances, any thread)."""
    from modelscope_hub import ProgressCallback  # noqa: PLC0415 - the client is imported only where it is used

    class Callback(ProgressCallback):
        def __init__(self, filename, file_size):
            super().__init__(filename, file_size)
            # The client reports bytes resumed from disk as a first update; they are not network bytes.
            self._resumed_left = partial_bytes(target, filename)
            self._position = 0

        def update(self, size):
            self._position += size
            if size < 0:
                self._resumed_left = 0  # the client started this file over
            else:
                from_disk = min(size, self._resumed_left)
                self._resumed_left -= from_disk
                progress.add_received(size - from_disk, self.filename)
            progress.set_position(self.filename, self._position)

    return Callback


def fetch_modelscope(spec, target: Path, to_fetch, files, progress, *, api=None):
    file_list = [{"Path": rel, "Name": rel.rsplit("/", 1)[-1], "Size": files[rel]["size"], "Sha256": files[rel]["sha256"],
                  "Type": "blob"} for rel in sorted(to_fetch)]
    api.download_repo(
        spec["repo_id"],
        "model",
        revision=spec["revision"],
        local_dir=target,
        cache_dir=target / CLIENT_CACHE,
        allow_patterns=spec["include"] or None,
        ignore_patterns=spec["exclude"] or None,
        max_workers=int(spec.get("workers") or 4),
        progress_callbacks=[make_callback(progress, target)],
        file_list=file_list,
    )


# ------------------------------------------------------------------------------------ Hugging Face
def hf_api(spec: dict):
    endpoint = (spec.get("endpoint") or "").strip().rstrip("/") or None
    if endpoint:
        os.environ["HF_ENDPOINT"] = endpoint  # read by huggingface_hub when it is imported
    try:
        from huggingface_hub import HfApi  # noqa: PLC0415 - only for source huggingface
    except ImportError as exc:
        raise client_missing("huggingface", exc) from exc
    return HfApi(endpoint=endpoint, token=token_of(spec)), endpoint


def list_huggingface(spec: dict) -> dict:
    api = hf_api(spec)[0]
    info = api.model_info(spec["repo_id"], revision=spec["revision"], files_metadata=True)
    files = {}
    for sibling in info.siblings or []:
        rel = safe_relpath(sibling.rfilename)
        if not selected(rel, spec["include"], spec["exclude"]):
            continue
        lfs = getattr(sibling, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        if isinstance(lfs, dict):
            sha = lfs.get("sha256")
        files[rel] = {"path": rel, "size": int(sibling.size or 0), "sha256": sha}
    return files


def fetch_huggingface(spec, target: Path, to_fetch, files, progress, *, api=None):
    endpoint = hf_api(spec)[1]
    from huggingface_hub import snapshot_download  # noqa: PLC0415 - only for source huggingface

    stop = threading.Event()
    incomplete_dir = target / ".cache" / "huggingface" / "download"

    base = sum(partial_bytes(target, rel) for rel in to_fetch)

    def poll():  # huggingface_hub has no byte callback: follow the files on disk
        while not stop.wait(1.0):
            for rel in to_fetch:
                path = target / rel
                size = path.stat().st_size if path.exists() else 0
                if incomplete_dir.is_dir():
                    size = max(size, sum(p.stat().st_size for p in incomplete_dir.glob(rel + ".*.incomplete") if p.is_file()))
                progress.set_position(rel, size)
            progress.set_received(sum(progress.positions.get(rel, 0) for rel in to_fetch) - base)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        for rel in to_fetch:  # a stale copy must not pass huggingface_hub's own metadata check
            (target / rel).unlink(missing_ok=True)
        snapshot_download(
            spec["repo_id"],
            revision=spec["revision"],
            local_dir=str(target),
            allow_patterns=sorted(to_fetch),
            token=token_of(spec),
            endpoint=endpoint,
            max_workers=int(spec.get("workers") or 4),
        )
    finally:
        stop.set()
        thread.join(timeout=5)
    for rel in to_fetch:
        progress.network_files.add(rel)
    progress.set_received(sum(files[rel]["size"] for rel in to_fetch) - base)


# ------------------------------------------------------------------------------------ local, on the host
def copy_local(spec, target: Path, to_fetch, files, progress, *, api=None):
    source = Path(spec["local_src"])
    for rel in sorted(to_fetch):
        src, dest = source / rel, target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + PARTIAL)
        digest = hashlib.sha256()
        copied = 0
        with open(src, "rb") as reader, open(partial, "wb") as writer:
            block = reader.read(HASH_BLOCK)
            while block:
                writer.write(block)
                digest.update(block)
                copied += len(block)
                progress.add_received(len(block), rel)
                progress.set_position(rel, copied)
                block = reader.read(HASH_BLOCK)
            writer.flush()
            os.fsync(writer.fileno())
        files[rel]["sha256"] = digest.hexdigest()  # the source's content, checked against the copy afterwards
        os.replace(partial, dest)


FETCHERS = {"modelscope": fetch_modelscope, "huggingface": fetch_huggingface, "local": copy_local}
