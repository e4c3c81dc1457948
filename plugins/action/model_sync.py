# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of llmops.gpu_stack.model_sync: the controller side of local_src_on=controller.

For every other source it only runs the module (with async when the task asks for it). For a local
source on the controller it first reads that directory here: its fingerprint (file list, sizes,
modification times) goes to the module for the status; when the model is not complete and this is
not check mode, the files are hashed, the old manifest is removed, every file is copied with the
copy action (which skips files that are already identical), and the file list with the
controller's sizes and SHA-256 goes to the module, which verifies every copy and writes the
manifest. The module's documentation is in plugins/modules/model_sync.py.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_sync_dir import (
    MANIFEST,
    PROGRESS,
    SyncError,
    fingerprint,
    scan_dir,
)


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        args = dict(self._task.args)
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        if args.get("source") == "local" and args.get("local_src_on") == "controller":
            try:
                failed = self._controller_source(args, task_vars)
            except SyncError as exc:
                failed = {"failed": True, "msg": "%s (on the controller)" % exc}
            if failed:
                self._remove_tmp_path(self._connection._shell.tmpdir)
                return merge_hash(result, dict(failed, alias=args.get("alias"), target_dir=args.get("target_dir"), complete=False))
        result = merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars, wrap_async=wrap_async))
        if wrap_async:
            # What llmops.gpu_stack.model_sync_wait reads to follow the job.
            target = str(args.get("target_dir") or "")
            result.update(alias=args.get("alias"), target_dir=target, progress_file=posixpath.join(target, PROGRESS))
        else:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    # -------------------------------------------------------------------------------- controller side
    def _controller_source(self, args, task_vars):
        """Fingerprint (always) and copy (a real run of an incomplete model); a failed result or None."""
        source, target = args.get("local_src"), args.get("target_dir")
        if not isinstance(source, str) or not source.startswith("/"):
            raise SyncError("local_src must be an absolute path, got %r" % (source,))
        if not isinstance(target, str) or not target.startswith("/"):
            raise SyncError("target_dir must be an absolute path, got %r" % (target,))
        include, exclude = list(args.get("include") or []), list(args.get("exclude") or [])
        args["source_fingerprint"] = fingerprint(scan_dir(Path(source), include, exclude, False))
        if self._task.check_mode:
            return None
        status = self._status(args, task_vars)
        if status.get("failed") or status.get("content_complete"):
            return status if status.get("failed") else None
        files = scan_dir(Path(source), include, exclude, True)
        if not files:
            raise SyncError("no files to copy from %s: the directory has none, or include/exclude match none" % source)
        # No manifest while files change: an interrupted copy never looks complete.
        removed = self._execute_module(module_name="ansible.legacy.file", module_args={"path": posixpath.join(target, MANIFEST),
                                       "state": "absent"}, task_vars=task_vars)
        if removed.get("failed"):
            return removed
        local_files = []
        for entry in files:
            copied = self._copy(posixpath.join(source, entry["path"]), target, entry["path"], args, task_vars)
            if copied.get("failed"):
                return dict(copied, msg="copying %s to %s: %s" % (entry["path"], target, copied.get("msg")))
            local_files.append({"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"],
                                "copied": bool(copied.get("changed"))})
        args["local_files"] = local_files
        return None

    def _status(self, args, task_vars):
        """The module's status (check mode), whatever mode the task runs in."""
        saved = self._task.check_mode
        self._task.check_mode = True
        try:
            return self._execute_module(module_args=dict(args), task_vars=task_vars, wrap_async=False)
        finally:
            self._task.check_mode = saved

    def _copy(self, src, target, rel, args, task_vars):
        """One file with the copy action (it creates the folders and skips an identical file)."""
        folder = posixpath.dirname(rel)
        new_task = self._task.copy()
        new_task.async_val = 0
        new_task.args.clear()
        new_task.args.update({"src": src, "dest": posixpath.join(target, folder, ""), "mode": "0644", "directory_mode": "0755"})
        for key in ("owner", "group"):
            if args.get(key) not in (None, ""):
                new_task.args[key] = str(args[key])
        action = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.copy", task=new_task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        return action.run(task_vars=task_vars)
