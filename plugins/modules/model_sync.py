#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_sync
short_description: Bring one model's files into its directory (ModelScope, Hugging Face or a local copy), complete only with a manifest
version_added: "0.2.0"
description:
  - Makes O(target_dir) hold the files of one model, checked against the source's sizes and SHA-256, and
    records them in C(<target_dir>/.llmops-manifest.json). A model is complete only when that manifest is there
    and matches the inputs (source, repository, revision, include/exclude, local source) and every file has its
    recorded size (and SHA-256 with O(verify_hashes)). A complete model costs no network access at all.
  - The manifest is removed before anything in the directory changes and written only after every file was
    verified, so an interrupted or failed download never looks complete; the next run resumes it (the
    ModelScope client continues a file from C(<file>.incomplete) or its range parts with HTTP Range requests).
  - A changed revision fetches only the files whose SHA-256 changed and removes the files the new revision no
    longer has. Owner, group and modes (directories 0755, files 0644) are set on the whole directory.
  - ModelScope models are fetched by the pinned C(modelscope)/C(modelscope-hub) client, Hugging Face models by
    C(huggingface_hub); both are imported only when files must be listed or fetched, so the status (check mode)
    runs with any Python 3. Run the task with the download virtualenv's interpreter
    (C(ansible_python_interpreter) set to C(<model_store_venv>/bin/python), as the P(llmops.gpu_stack.model_store#role)
    role does); without the client a download fails with a message that names C(model_store_modelscope_version).
  - While a download runs, C(<target_dir>/.llmops-progress.json) holds its state, bytes done and total, and rate,
    once a second. Start downloads with C(async) and C(poll=0) and follow them with
    M(llmops.gpu_stack.model_sync_wait).
  - >-
    A local source on the controller (O(local_src_on=controller)) is read by this module's action plugin on the
    controller: it fingerprints the directory for the status, and when the model is not complete it hashes the
    files, copies the ones that differ with the C(copy) action, and hands the file list to the module, which
    verifies every copy before it writes the manifest.
author:
  - llmops.gpu_stack maintainers (!UNKNOWN)
options:
  alias:
    description: The model's alias (the served model name); recorded in the manifest and the progress file.
    type: str
    required: true
  target_dir:
    description: Absolute directory of the model's files (created when missing).
    type: path
    required: true
  source:
    description: Where the files come from.
    type: str
    choices: [modelscope, huggingface, local]
    default: modelscope
  repo_id:
    description: Repository as C(owner/name), e.g. C(Qwen/Qwen3-8B); required for V(modelscope) and V(huggingface).
    type: str
  revision:
    description: Branch, tag or commit; default V(master) on ModelScope and V(main) on Hugging Face.
    type: str
  include:
    description: Glob patterns of the files to fetch (the client's C(allow_patterns)); empty means all.
    type: list
    elements: str
    default: []
  exclude:
    description: Glob patterns of files to leave out.
    type: list
    elements: str
    default: []
  endpoint:
    description:
      - The hub's endpoint, e.g. an internal mirror C(http://mirror:8080); a bare host name gets C(https://).
      - Empty keeps the client's default (ModelScope resolves C(modelscope.cn) or C(modelscope.ai) as its CLI does;
        Hugging Face uses E(HF_ENDPOINT) or C(huggingface.co)).
    type: str
    default: ""
  token:
    description:
      - Access token of a private or gated repository. Never logged, never on a command line.
      - Prefer O(token_file) for background jobs; without either, E(LLMOPS_MODEL_TOKEN) is used when set.
    type: str
  token_file:
    description: A file (mode 0600) holding the access token.
    type: path
  local_src:
    description: O(source=local) only. Absolute directory to copy the model from.
    type: path
  local_src_on:
    description:
      - O(source=local) only. V(host) copies from a directory on the managed host (e.g. an NFS mount);
        V(controller) copies from the Ansible controller (through the action plugin; prefer V(host) for big models).
    type: str
    choices: [host, controller]
    default: host
  verify_hashes:
    description:
      - V(true) re-reads every file of a complete model and compares its SHA-256 with the manifest; files that
        differ are fetched again. Slow for big models.
      - V(false) takes a model as complete when its manifest matches and every file has its recorded size. Fetched
        files are always checked against the source's SHA-256 before the manifest is written.
    type: bool
    default: false
  owner:
    description: Owner (user name or uid) of the directory and its files; not set leaves the owner alone.
    type: str
  group:
    description: Group (name or gid) of the directory and its files; not set leaves the group alone.
    type: str
  workers:
    description: Files fetched in parallel (the client's C(max_workers)).
    type: int
    default: 4
  source_fingerprint:
    description: Set by the action plugin for O(local_src_on=controller) (file list, sizes and times of the controller's directory).
    type: str
  local_files:
    description:
      - Set by the action plugin for O(local_src_on=controller) (the files it copied, each C(path), C(size),
        C(sha256) and C(copied)).
    type: list
    elements: dict
extends_documentation_fragment:
  - llmops.gpu_stack._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads only. Reports whether the model is complete and, when it is not, why and what a real run would
        fetch (RV(fetched), RV(bytes_to_fetch), RV(pruned)). The file list of a remote source needs its client;
        without it (a fresh host whose virtualenv does not exist yet) the module says so instead of failing.
  diff_mode:
    support: full
    details: The directory's state before and after (manifest, files fetched or to fetch, files removed).
  async:
    description: Can run in the background (C(async)).
    support: full
    details: Meant to run with C(async) and C(poll=0); follow the jobs with M(llmops.gpu_stack.model_sync_wait).
  action:
    description: Has an action plugin that runs on the controller first.
    support: full
    details: The action plugin reads controller-side local sources and copies their files.
notes:
  - The model's directory holds the manifest C(.llmops-manifest.json), the progress file C(.llmops-progress.json)
    and the ModelScope client's lock files in C(.llmops-cache/).
  - Files are verified against the hub's listing; a hub that lists no SHA-256 for a file gets its size checked and
    the SHA-256 computed here recorded.
seealso:
  - module: llmops.gpu_stack.model_sync_wait
  - plugin: llmops.gpu_stack.model_entries
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Download Qwen3-8B the role's way, with the download virtualenv's Python, in the background
  llmops.gpu_stack.model_sync:
    alias: qwen3-8b
    repo_id: Qwen/Qwen3-8B
    revision: master
    target_dir: /Models/Pretrained_Models/Qwen3-8B
  vars:
    ansible_python_interpreter: /opt/llmops/modelscope-venv/bin/python
  async: 14400
  poll: 0
  register: job

- name: Follow it (a progress line every 15 seconds)
  llmops.gpu_stack.model_sync_wait:
    jobs: ["{{ job }}"]
    interval: 15
  loop: "{{ range(1000) | list }}"
  loop_control:
    label: "{{ wait.summary | default('waiting') }}"
    break_when: wait.done | default(false)
  register: wait

- name: Is it complete? (reads only)
  llmops.gpu_stack.model_sync:
    alias: qwen3-8b
    repo_id: Qwen/Qwen3-8B
    target_dir: /Models/Pretrained_Models/Qwen3-8B
  check_mode: true
  register: status

- name: Copy a model from the controller, verified, with a manifest
  llmops.gpu_stack.model_sync:
    alias: my-finetune
    source: local
    local_src: /srv/exports/my-finetune
    local_src_on: controller
    target_dir: /Models/Pretrained_Models/my-finetune
    owner: root
    group: root
"""

RETURN = r"""
alias:
  description: The model's alias.
  returned: always
  type: str
  sample: qwen3-8b
target_dir:
  description: The model's directory.
  returned: always
  type: str
  sample: /Models/Pretrained_Models/Qwen3-8B
complete:
  description: Whether the model is complete (after a real run always V(true); in check mode, whether it is now).
  returned: always
  type: bool
content_complete:
  description: Whether the files match the manifest (the owner or modes may still differ).
  returned: always
  type: bool
reason:
  description: Why the model is (or was) not complete, or V(complete).
  returned: always
  type: str
  sample: "inputs changed: revision: 'master' -> 'v2'"
files:
  description: Number of files of the model (null in check mode when the file list is not known).
  returned: always
  type: int
  sample: 12
bytes_total:
  description: Bytes of the model's files (null in check mode when the file list is not known).
  returned: always
  type: int
  sample: 16400000000
bytes_downloaded:
  description: Bytes that came over the network (local sources - copied) in this run; 0 in check mode.
  returned: always
  type: int
fetched:
  description:
    - Files fetched (or copied) in this run.
    - In check mode, the files a real run would fetch; null when that is not known (no client yet, or a
      controller-side source).
  returned: always
  type: list
  elements: str
  sample: [config.json, model.safetensors]
bytes_to_fetch:
  description: In check mode, the bytes of RV(fetched); null when not known.
  returned: check mode
  type: int
pruned:
  description: Files of the previous manifest that the new file set no longer has, removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: [generation_config.json]
attributes_fixed:
  description: Number of paths whose owner, group or mode were set (in check mode, that differ).
  returned: always
  type: int
note:
  description: In check mode, why RV(fetched) is not known.
  returned: when it is not known
  type: str
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_dir import (
    CLIENT_CACHE,
    DEFAULT_REVISION,
    FORMAT,
    MANIFEST,
    PROGRESS,
    SyncError,
    attribute_drift,
    check_complete,
    fingerprint,
    fix_attributes,
    inputs_of,
    manifest_bytes,
    partial_bytes,
    prune,
    read_json,
    resolve_ids,
    safe_relpath,
    scan_dir,
    sha256_of,
    to_prune,
    trusted_files,
    unchanged_local_files,
    write_json_atomic,
)
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_progress import Progress, human
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_sources import (
    FETCHERS,
    ClientMissing,
    list_huggingface,
    list_modelscope,
    modelscope_api,
)

ARGUMENT_SPEC = dict(
    alias=dict(type="str", required=True),
    target_dir=dict(type="path", required=True),
    source=dict(type="str", default="modelscope", choices=["modelscope", "huggingface", "local"]),
    repo_id=dict(type="str"),
    revision=dict(type="str"),
    include=dict(type="list", elements="str", default=[]),
    exclude=dict(type="list", elements="str", default=[]),
    endpoint=dict(type="str", default=""),
    token=dict(type="str", no_log=True),
    token_file=dict(type="path", no_log=False),
    local_src=dict(type="path"),
    local_src_on=dict(type="str", default="host", choices=["host", "controller"]),
    verify_hashes=dict(type="bool", default=False),
    owner=dict(type="str"),
    group=dict(type="str"),
    workers=dict(type="int", default=4),
    source_fingerprint=dict(type="str"),
    local_files=dict(type="list", elements="dict"),
)


# ------------------------------------------------------------------------------------ inputs
def normalise(params: dict) -> dict:
    """The module's parameters as the functions below read them (defaults filled, paths checked)."""
    spec = dict(params)
    spec["source"] = spec.get("source") or "modelscope"
    spec["include"] = list(spec.get("include") or [])
    spec["exclude"] = list(spec.get("exclude") or [])
    if spec["source"] != "local":
        spec["revision"] = spec.get("revision") or DEFAULT_REVISION[spec["source"]]
    for key in ("target_dir", "local_src"):
        value = spec.get(key)
        if value is not None and not str(value).startswith("/"):
            raise SyncError("%s must be an absolute path, got %r" % (key, value))
    if spec["source"] == "local" and spec.get("local_src_on") == "controller" and spec.get("source_fingerprint") is None:
        raise SyncError("local_src_on=controller: the action plugin of llmops.gpu_stack.model_sync reads the controller's "
                        "directory; run the module through it (a task named llmops.gpu_stack.model_sync)")
    if spec["source"] != "local" and not spec.get("repo_id"):
        raise SyncError("source %s needs repo_id (owner/name)" % spec["source"])
    return spec


def host_local_source(spec: dict) -> tuple[dict, list | None]:
    """For a local source on the host: the spec with its fingerprint, and the source's files."""
    if spec["source"] != "local" or spec.get("local_src_on") == "controller":
        return spec, None
    entries = scan_dir(Path(spec["local_src"]), spec["include"], spec["exclude"], False)
    return dict(spec, source_fingerprint=fingerprint(entries)), entries


# ------------------------------------------------------------------------------------ status
def status(spec: dict, warn=None, scanned: bool = False) -> tuple[dict, dict | None]:
    """(the status result, the manifest) of the model's directory; reads only.

    ``scanned``: the spec already has the fingerprint of a host-side local source.
    """
    target = Path(spec["target_dir"])
    result = {"alias": spec["alias"], "target_dir": str(target), "changed": False, "complete": False,
              "content_complete": False, "attributes_fixed": 0, "files": None, "bytes_total": None,
              "bytes_downloaded": 0, "fetched": [], "pruned": []}
    if not target.is_dir():
        result["reason"] = "%s does not exist" % target
        return result, None
    if not scanned:
        spec = host_local_source(spec)[0]
    complete, reason, manifest = check_complete(spec, target, bool(spec.get("verify_hashes")))
    result.update(content_complete=complete, reason=reason)
    if not complete:
        return result, manifest
    result.update(files=len(manifest["files"]), bytes_total=manifest_bytes(manifest))
    try:
        uid, gid = resolve_ids(spec.get("owner"), spec.get("group"))
    except SyncError as exc:
        if warn is None:
            raise
        warn("%s; a real run fails unless it exists by then" % exc)
        result.update(reason="owner/group to set (%s)" % exc, attributes_fixed=1)
        return result, manifest
    drift = attribute_drift(target, uid, gid)
    if drift:
        result.update(reason="owner/group/mode differ on %d path(s), e.g. %s" % (len(drift), drift[0]), attributes_fixed=len(drift))
    else:
        result["complete"] = True
    return result, manifest


def list_files(spec: dict, cache_dir: Path, local_entries=None):
    """(the source's files {path: {path, size, sha256}}, the client API or None)."""
    if spec["source"] == "modelscope":
        api = modelscope_api(spec, cache_dir)
        return list_modelscope(spec, api), api
    if spec["source"] == "huggingface":
        return list_huggingface(spec), None
    if spec.get("local_src_on") == "controller":
        if spec.get("local_files") is None:
            raise SyncError("local_src_on=controller: no local_files from the action plugin")
        return {safe_relpath(e["path"]): {"path": e["path"], "size": int(e["size"]), "sha256": e.get("sha256")}
                for e in spec["local_files"]}, None
    return {e["path"]: {"path": e["path"], "size": e["size"], "sha256": None} for e in local_entries or []}, None


def fetch_plan(spec: dict, target: Path, files: dict, manifest: dict | None) -> tuple[set, set]:
    """(files already in place and verified, files to fetch)."""
    if spec["source"] == "local" and spec.get("local_src_on") == "controller":
        return set(), set()  # the action plugin has copied them; every file is verified below
    if spec["source"] == "local":
        trusted = unchanged_local_files(target, Path(spec["local_src"]), manifest, files) if target.is_dir() else set()
    else:
        trusted = trusted_files(target, manifest, files, bool(spec.get("verify_hashes")))
    return trusted, set(files) - trusted


def would_fetch(spec: dict, result: dict, manifest: dict | None) -> None:
    """Check mode: add what a real run would fetch and remove to ``result`` (reads only)."""
    result.update(fetched=None, bytes_to_fetch=None, pruned=[])
    if result["content_complete"]:
        result.update(fetched=[], bytes_to_fetch=0)
        return
    if spec["source"] == "local" and spec.get("local_src_on") == "controller":
        result["note"] = "a controller-side source: the files to copy are known when the copy runs"
        return
    target = Path(spec["target_dir"])
    spec, local_entries = host_local_source(spec)
    cache = tempfile.mkdtemp(prefix="llmops-model-sync-")
    try:
        files = list_files(spec, Path(cache), local_entries)[0]
    except ClientMissing:
        result["note"] = "the file list is not known: the %s client is not installed yet (no virtualenv)" % spec["source"]
        return
    except Exception as exc:  # noqa: BLE001 - check mode reports, the real run fails
        result["note"] = "the file list is not known: listing failed (%s: %s)" % (type(exc).__name__, exc)
        return
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    to_fetch = sorted(fetch_plan(spec, target, files, manifest)[1])
    result.update(fetched=to_fetch, bytes_to_fetch=sum(files[rel]["size"] for rel in to_fetch), files=len(files),
                  bytes_total=sum(entry["size"] for entry in files.values()), pruned=to_prune(manifest, set(files)))


def _some(paths: list, shown: int = 20) -> str:
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (" and %d more" % more if more > 0 else "")


def diff_of(spec: dict, result: dict, manifest: dict | None) -> dict:
    """--diff: the directory's state before and after, a few lines each."""
    where = spec["repo_id"] if spec["source"] != "local" else spec.get("local_src")
    rev = ("@" + spec["revision"]) if spec["source"] != "local" else " (%s)" % spec.get("local_src_on")
    before = ["target_dir: %s" % result["target_dir"]]
    if manifest:
        count = len(manifest.get("files") or [])
        before.append("manifest: %s files, %s, %s" % (count, human(manifest_bytes(manifest)), result["reason"]))
    else:
        before.append("manifest: none (%s)" % result["reason"])
    after = ["target_dir: %s" % result["target_dir"], "manifest: complete, %s %s%s" % (spec["source"], where, rev)]
    if result.get("fetched"):
        size = result["bytes_to_fetch"] if result.get("bytes_to_fetch") is not None else result.get("bytes_downloaded") or 0
        after.append("fetch: %d file(s), %s: %s" % (len(result["fetched"]), human(size), _some(result["fetched"])))
    elif result.get("fetched") is None:
        after.append("fetch: %s" % result.get("note", "not known"))
    if result.get("pruned"):
        after.append("remove: " + _some(result["pruned"]))
    return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}


# ------------------------------------------------------------------------------------ sync
def sync(spec: dict) -> dict:
    """Make the model complete: fetch what is missing or changed, verify, prune, write the manifest."""
    target = Path(spec["target_dir"])
    uid, gid = resolve_ids(spec.get("owner"), spec.get("group"))
    spec, local_entries = host_local_source(spec)
    result, manifest = status(spec, scanned=True)
    if result["content_complete"]:
        fixed = fix_attributes(target, uid, gid)
        result.update(complete=True, changed=fixed > 0, attributes_fixed=fixed,
                      reason="complete" + ("; fixed owner/mode of %d path(s)" % fixed if fixed else ""))
        return result

    # From here on the directory changes: first make sure it cannot look complete.
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST).unlink(missing_ok=True)
    result["changed"] = True
    progress = Progress(target / PROGRESS, spec)
    progress.state = "listing"
    progress.write()
    progress.start()
    try:
        files, api = list_files(spec, target / CLIENT_CACHE, local_entries)
        if not files:
            raise SyncError("no files to download: the source lists none, or include/exclude match none")
        trusted, to_fetch = fetch_plan(spec, target, files, manifest)
        already = {rel: files[rel]["size"] for rel in trusted}
        for rel in to_fetch:
            dest = target / rel
            already[rel] = files[rel]["size"] if dest.is_file() and dest.stat().st_size == files[rel]["size"] else partial_bytes(target, rel)
        progress.plan(files, already)
        check_space(target, sum(max(files[rel]["size"] - already[rel], 0) for rel in to_fetch))
        progress.state = "downloading" if spec["source"] != "local" else "copying"
        progress.write()
        if to_fetch:
            FETCHERS[spec["source"]](spec, target, to_fetch, files, progress, api=api)

        progress.state = "verifying"
        progress.write()
        manifest_files = [verified(spec, target, rel, files[rel], trusted=rel in trusted, fetched=rel in to_fetch) for rel in sorted(files)]
        result["pruned"] = prune(target, manifest, set(files))
        result["attributes_fixed"] = fix_attributes(target, uid, gid)
        new = {
            "format": FORMAT,
            "tool": "llmops.gpu_stack.model_sync",
            "alias": spec["alias"],
            "inputs": inputs_of(spec),
            "endpoint": spec.get("endpoint") or None,
            "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bytes_total": sum(entry["size"] for entry in manifest_files),
            "files": manifest_files,
        }
        write_json_atomic(target / MANIFEST, new)
        if uid >= 0 or gid >= 0:
            for name in (MANIFEST, PROGRESS):
                if (target / name).exists():
                    os.chown(target / name, uid, gid)
        progress.finish("complete")
        if spec["source"] == "local" and spec.get("local_src_on") == "controller":
            copied = sorted(e["path"] for e in spec["local_files"] if e.get("copied"))
            fetched, downloaded = copied, sum(files[rel]["size"] for rel in copied)
        else:
            fetched, downloaded = sorted(progress.network_files), progress.received
        result.update(complete=True, content_complete=True, fetched=fetched, files=len(manifest_files),
                      bytes_total=new["bytes_total"], bytes_downloaded=downloaded)
        return result
    except BaseException as exc:
        progress.finish("failed", "%s: %s" % (type(exc).__name__, exc))
        raise


def check_space(target: Path, needed: int) -> None:
    """Refuse to start a download that cannot fit (the hub's listing gives the sizes; nothing is fetched yet)."""
    stat = os.statvfs(target)
    free = stat.f_bavail * stat.f_frsize
    if needed > free:
        raise SyncError("not enough space for %s: %.1f GB still to fetch, %.1f GB free on its file system; free some space "
                        "or move gpu_stack_models_root (or the model's target_dir) to a larger disk"
                        % (target, needed / 1e9, free / 1e9))


def verified(spec: dict, target: Path, rel: str, entry: dict, *, trusted: bool, fetched: bool) -> dict:
    """The manifest entry of one file after checking its size (and SHA-256 where it is not known to be right)."""
    path = target / rel
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SyncError("%s is missing after the download" % rel) from exc
    if size != entry["size"]:
        raise SyncError("%s has %d bytes, the source lists %d" % (rel, size, entry["size"]))
    verify = bool(spec.get("verify_hashes"))
    if entry.get("sha256") and not verify and (trusted or (spec["source"] == "modelscope" and fetched)):
        # Trusted: verified when it was fetched (previous manifest), sizes match. Fetched by the modelscope
        # client: it moves a file into place only after its SHA-256 matched the Sha256 passed in file_list
        # (tests/integration/test_model_store.py, corrupted body, guards this).
        return {"path": rel, "size": size, "sha256": entry["sha256"]}
    digest = sha256_of(path)
    if entry.get("sha256") and digest != entry["sha256"]:
        raise SyncError("%s: SHA-256 %s does not match the source's %s" % (rel, digest, entry["sha256"]))
    return {"path": rel, "size": size, "sha256": digest}


# ------------------------------------------------------------------------------------ main
def run_module(module) -> dict:
    spec = normalise(module.params)
    if not module.check_mode:
        before = read_json(Path(spec["target_dir"]) / MANIFEST) if module._diff else None
        result = sync(spec)
        if module._diff and result["changed"]:
            result["diff"] = diff_of(spec, result, before)
        return result
    result, manifest = status(spec, warn=module.warn)
    would_fetch(spec, result, manifest)
    result["changed"] = not result["complete"]
    if module._diff and result["changed"]:
        result["diff"] = diff_of(spec, result, manifest)
    return result


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("source", "modelscope", ["repo_id"]), ("source", "huggingface", ["repo_id"]),
                     ("source", "local", ["local_src"])],
        mutually_exclusive=[("token", "token_file")],
    )
    try:
        result = run_module(module)
    except SyncError as exc:
        module.fail_json(msg=str(exc), alias=module.params["alias"], target_dir=module.params["target_dir"], complete=False)
    except Exception as exc:  # noqa: BLE001 - the client's errors, reported with their type
        module.fail_json(msg="%s: %s" % (type(exc).__name__, exc), alias=module.params["alias"],
                         target_dir=module.params["target_dir"], complete=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
