# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""A model directory: its manifest, its files, their owner and mode, and local source scans.

Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

<target_dir>/.llmops-manifest.json is what makes a download complete: it records the inputs
(source, repo_id, revision, include/exclude, local source) and every file with its size and
SHA-256. A model is complete when the manifest matches the inputs and every file has its recorded
size (and SHA-256 with verify_hashes). Standard library only; used on the managed host by the
model_sync module and on the controller by its action plugin (scans of controller-side sources).
"""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import json
import os
import pwd
import stat
from pathlib import Path, PurePosixPath

MANIFEST = ".llmops-manifest.json"
PROGRESS = ".llmops-progress.json"
CLIENT_CACHE = ".llmops-cache"  # the modelscope client's lock files (cache_dir); inside the model directory
PARTIAL = ".llmops-partial"  # suffix of a local copy in progress
OWN_NAMES = frozenset((MANIFEST, PROGRESS, ".llmops-expected.json"))
FORMAT = 1
HASH_BLOCK = 8 * 1024 * 1024
DEFAULT_REVISION = {"modelscope": "master", "huggingface": "main"}
DIR_MODE, FILE_MODE = 0o755, 0o644


class SyncError(Exception):
    """A failure with a message meant for the operator."""


# ------------------------------------------------------------------------------------ files
def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        block = handle.read(HASH_BLOCK)
        while block:
            digest.update(block)
            block = handle.read(HASH_BLOCK)
    return digest.hexdigest()


def matches(path: str, patterns) -> bool:
    """The modelscope client's glob semantics: fnmatch, plus legacy '.*' written as regex."""
    for pattern in patterns or []:
        if fnmatch.fnmatch(path, pattern):
            return True
        if ".*" in pattern and fnmatch.fnmatch(path, pattern.replace(".*", "*")):
            return True
    return False


def selected(path: str, include, exclude) -> bool:
    if include and not matches(path, include):
        return False
    return not (exclude and matches(path, exclude))


def safe_relpath(path: str) -> str:
    parts = PurePosixPath(path) if isinstance(path, str) else None
    if not path or parts is None or parts.is_absolute() or ".." in parts.parts or "\\" in path or "\0" in path:
        raise SyncError("unsafe file path %r in the file list" % (path,))
    return str(parts)


def partial_bytes(target: Path, rel: str) -> int:
    """Bytes of an interrupted download of rel that the client will resume from."""
    file_path = target / rel
    total = 0
    incomplete = file_path.with_name(file_path.name + ".incomplete")
    if incomplete.exists():
        total += incomplete.stat().st_size
    if file_path.parent.is_dir():
        prefix = file_path.name + "_"
        for sibling in file_path.parent.iterdir():
            tail = sibling.name[len(prefix):].split("_")
            if sibling.name.startswith(prefix) and len(tail) == 2 and all(part.isdigit() for part in tail):
                total += sibling.stat().st_size  # a range part of the client's parallel mode
    return total


# ------------------------------------------------------------------------------------ owner and mode
def resolve_ids(owner, group) -> tuple[int, int]:
    """Numeric uid/gid for owner/group (names or numbers); -1 keeps the current one."""
    uid = gid = -1
    if owner not in (None, ""):
        if str(owner).isdigit():
            uid = int(owner)
        else:
            try:
                uid = pwd.getpwnam(str(owner)).pw_uid
            except KeyError as exc:
                raise SyncError("owner %r is not a user on this host" % (owner,)) from exc
    if group not in (None, ""):
        if str(group).isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(str(group)).gr_gid
            except KeyError as exc:
                raise SyncError("group %r is not a group on this host" % (group,)) from exc
    return uid, gid


def walk_all(target: Path):
    """Yield target and everything below it (directories and files, symlinks not followed)."""
    yield target
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            yield Path(root) / name


def attribute_drift(target: Path, uid: int, gid: int) -> list[str]:
    """Paths whose owner/group/mode differ from the wanted ones (directories 0755, files 0644)."""
    drift = []
    for path in walk_all(target):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        want = DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
        if stat.S_IMODE(info.st_mode) != want or (uid >= 0 and info.st_uid != uid) or (gid >= 0 and info.st_gid != gid):
            drift.append(str(path))
    return drift


def fix_attributes(target: Path, uid: int, gid: int) -> int:
    fixed = 0
    for name in attribute_drift(target, uid, gid):
        path = Path(name)
        info = path.lstat()
        want = DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
        if stat.S_IMODE(info.st_mode) != want:
            os.chmod(path, want)
        if (uid >= 0 and info.st_uid != uid) or (gid >= 0 and info.st_gid != gid):
            os.chown(path, uid, gid, follow_symlinks=False)
        fixed += 1
    return fixed


# ------------------------------------------------------------------------------------ local sources
def scan_dir(root: Path, include, exclude, with_hash: bool) -> list[dict]:
    """The files of a local source (path, size, mtime_ns and, with_hash, sha256), sorted by path."""
    if not root.is_dir():
        raise SyncError("local source %s is not a directory" % root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not (rel_dir == "." and d in (CLIENT_CACHE, ".git", ".cache")))
        for name in sorted(filenames):
            rel = name if rel_dir == "." else ("%s/%s" % (rel_dir, name)).replace(os.sep, "/")
            if rel in OWN_NAMES or name.endswith((PARTIAL, ".tmp")) or not selected(rel, include, exclude):
                continue
            full = Path(dirpath) / name
            if not full.is_file():
                continue
            info = full.stat()
            entry = {"path": rel, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
            if with_hash:
                entry["sha256"] = sha256_of(full)
            entries.append(entry)
    return entries


def fingerprint(entries) -> str:
    """One hash of a source's file list, sizes and modification times (no contents)."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item["path"]):
        digest.update(("%s\0%s\0%s\n" % (entry["path"], entry["size"], entry["mtime_ns"])).encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ the manifest
def inputs_of(spec: dict) -> dict:
    """What identifies the content of a model directory (compared with the manifest)."""
    source = spec.get("source") or "modelscope"
    data = {
        "source": source,
        "include": sorted(spec.get("include") or []),
        "exclude": sorted(spec.get("exclude") or []),
    }
    if source == "local":
        data["local_src"] = spec.get("local_src")
        data["local_src_on"] = spec.get("local_src_on") or "host"
        data["source_fingerprint"] = spec.get("source_fingerprint")
    else:
        data["repo_id"] = spec.get("repo_id")
        data["revision"] = spec.get("revision") or DEFAULT_REVISION[source]
    return data


def describe_difference(old: dict, new: dict) -> str:
    keys = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if keys == ["source_fingerprint"]:
        return "the local source changed (file list, sizes or modification times)"
    return ", ".join("%s: %r -> %r" % (key, old.get(key), new.get(key)) for key in keys)


def check_complete(spec: dict, target: Path, verify_hashes: bool) -> tuple[bool, str, dict | None]:
    """(complete, reason, the manifest as read or None)."""
    manifest = read_json(target / MANIFEST)
    if manifest is None:
        return False, "no manifest (never downloaded, or interrupted)", None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        return False, "manifest of an unknown format", manifest
    wanted = inputs_of(spec)
    if manifest.get("inputs") != wanted:
        return False, "inputs changed: " + describe_difference(manifest.get("inputs") or {}, wanted), manifest
    for entry in manifest["files"]:
        path = target / entry["path"]
        try:
            size = path.stat().st_size
        except OSError:
            return False, "%s is missing" % entry["path"], manifest
        if size != entry["size"]:
            return False, "%s has %d bytes, the manifest says %d" % (entry["path"], size, entry["size"]), manifest
        if verify_hashes and sha256_of(path) != entry["sha256"]:
            return False, "%s does not match its SHA-256" % entry["path"], manifest
    return True, "complete", manifest


def manifest_bytes(manifest: dict | None) -> int:
    return sum(int(entry.get("size") or 0) for entry in (manifest or {}).get("files") or [])


def trusted_files(target: Path, old_manifest: dict | None, files: dict, verify_hashes: bool) -> set:
    """Files the previous manifest verified with the same size and SHA-256 the source lists now."""
    trusted = set()
    old = {entry["path"]: entry for entry in (old_manifest or {}).get("files") or [] if "path" in entry}
    for rel, entry in files.items():
        previous = old.get(rel)
        if not previous or not entry.get("sha256") or previous.get("sha256") != entry["sha256"]:
            continue
        path = target / rel
        try:
            if path.stat().st_size != entry["size"] or previous.get("size") != entry["size"]:
                continue
        except OSError:
            continue
        if verify_hashes and sha256_of(path) != entry["sha256"]:
            continue
        trusted.add(rel)
    return trusted


def unchanged_local_files(target: Path, source: Path, old_manifest: dict | None, files: dict) -> set:
    """Files of a host-side local source whose copy is already in place (same size, same SHA-256).

    Sets each such entry's sha256 (the source's content).
    """
    old = {entry["path"] for entry in (old_manifest or {}).get("files") or [] if "path" in entry}
    same = set()
    for rel, entry in files.items():
        dest = target / rel
        if rel in old and dest.is_file() and dest.stat().st_size == entry["size"]:
            src_hash = sha256_of(source / rel)  # same size as before: compare contents, cheaper than a blind copy
            if sha256_of(dest) == src_hash:
                entry["sha256"] = src_hash
                same.add(rel)
    return same


def to_prune(old_manifest: dict | None, keep) -> list[str]:
    """Files the previous manifest recorded that the new file set no longer has."""
    return sorted(entry["path"] for entry in (old_manifest or {}).get("files") or []
                  if entry.get("path") and entry["path"] not in keep)


def prune(target: Path, old_manifest: dict | None, keep) -> list[str]:
    """Remove the files of to_prune (and the folders they leave empty); returns what was removed."""
    removed = []
    for rel in to_prune(old_manifest, keep):
        path = target / safe_relpath(rel)
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(rel)
            parent = path.parent
            while parent != target and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed
