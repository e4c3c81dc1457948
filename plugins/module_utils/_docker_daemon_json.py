# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""/etc/docker/daemon.json for the docker_daemon_json module.

Two parts: the merge rules (pure functions on JSON objects) and DaemonJson, which replaces the
file, validates it with ``dockerd --validate``, restarts Docker and rolls back a configuration it
refuses. Every outside effect goes through callables given to DaemonJson (run a command, find a
program, clock, sleep, backup), so the unit tests run it against a temporary directory with fakes.
Python 3.8+ syntax: module_utils run with the managed host's Python.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time

ABSENT = object()
DEFAULT_MODE = 0o644
POLL_INTERVAL = 2.0


class DaemonJsonError(Exception):
    """A failure the module reports with fail_json: a message and result fields."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


# ---------------------------------------------------------------- the merge rules (pure)


def canonical(value):
    """One text per JSON value: key order and layout do not count, types do (1, 1.0 and true differ)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same(left, right):
    return canonical(left) == canonical(right)


def render(doc):
    """The file's text: two-space indent, sorted keys, newline at the end (stable across runs)."""
    return json.dumps(doc, indent=2, sort_keys=True, separators=(",", ": "), ensure_ascii=False) + "\n"


def parse(text, path="daemon.json"):
    """The JSON object in ``text``; an empty (or blank) file counts as {}."""
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise DaemonJsonError(
            "%s is not valid JSON (%s). The file was left untouched. Fix it by hand (`python3 -m json.tool %s` "
            "shows where), then run again." % (path, " ".join(str(err).split()), path)
        ) from None
    if not isinstance(doc, dict):
        shown = canonical(doc)
        raise DaemonJsonError(
            "%s is valid JSON but not an object (%s); Docker needs {...}. The file was left untouched."
            % (path, shown if len(shown) <= 80 else shown[:77] + "...")
        )
    return doc


def deep_merge(base, overlay):
    """``overlay`` merged into a copy of ``base``: objects key by key, any other value (lists too) replaces."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def get_path(doc, key):
    """The value at ``key`` (a list of names, outermost first), or ABSENT."""
    node = doc
    for name in key:
        if not isinstance(node, dict) or name not in node:
            return ABSENT
        node = node[name]
    return node


def set_path(doc, key, value):
    """A copy of ``doc`` with ``value`` merged at ``key`` (as deep_merge does; a non-object on the way is replaced)."""
    for name in reversed(key):
        value = {name: value}
    return deep_merge(doc, value)


def remove_path(doc, key, value):
    """A copy of ``doc`` without ``key`` if it holds exactly ``value``; objects left empty by that go too.

    Returns (doc, removed). Anything else at ``key`` (another value, a missing key) is left alone:
    it is not ours to remove.
    """
    found = get_path(doc, key)
    if found is ABSENT or not same(found, value):
        return copy.deepcopy(doc), False
    result = copy.deepcopy(doc)
    parents = [result]
    for name in key[:-1]:
        parents.append(parents[-1][name])
    del parents[-1][key[-1]]
    # Prune the objects on the path that this removal left empty (never the top level).
    for depth in range(len(key) - 1, 0, -1):
        if parents[depth]:
            break
        del parents[depth - 1][key[depth - 1]]
    return result, True


def desired(current, settings=(), merge=None):
    """What the file must hold: ``current``, then each setting (absent ones first), then ``merge``.

    A setting is a dict with ``key`` (list of names), ``value`` and ``state`` (present or absent).
    present merges ``value`` at ``key``; absent removes ``key`` only where it still holds ``value``.
    ``merge`` is deep-merged last, so it wins over the file and over the settings.
    """
    doc = copy.deepcopy(current)
    ordered = [s for s in settings if s.get("state", "present") == "absent"]
    ordered += [s for s in settings if s.get("state", "present") != "absent"]
    for setting in ordered:
        key = list(setting["key"])
        if setting.get("state", "present") == "absent":
            doc = remove_path(doc, key, setting["value"])[0]
        else:
            doc = set_path(doc, key, setting["value"])
    return deep_merge(doc, merge or {})


def changed_keys(before, after, prefix=""):
    """Dotted paths of the values that differ, down to the first level where one side is not an object."""
    found = []
    for key in sorted(set(before) | set(after)):
        here = prefix + key
        old, new = before.get(key, ABSENT), after.get(key, ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            found += changed_keys(old, new, here + ".")
        elif old is ABSENT or new is ABSENT or not same(old, new):
            found.append(here)
    return found


def check_settings(settings):
    """Reject a setting without a key (the top level is not a setting)."""
    for index, setting in enumerate(settings):
        key = setting.get("key") or []
        if not key or not all(isinstance(name, str) and name for name in key):
            raise DaemonJsonError("settings[%d].key must be a non-empty list of key names, got %r" % (index, setting.get("key")))


# ---------------------------------------------------------------- the file, dockerd and the service


def backup_copy(path):
    """A copy under Ansible's backup name (``<path>.<pid>.<date>~``), keeping mode and times."""
    name = "%s.%s.%s" % (path, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime()))
    shutil.copy2(path, name)
    return name


class DaemonJson:
    """One run: read, compute, validate, replace, restart, roll back.

    run(argv) -> (rc, stdout, stderr); which(name) -> path or None. clock() and sleep(seconds)
    drive the wait for ``docker info``; make_backup(path) -> backup file name. The candidate that
    dockerd validates is written to ``tmpdir`` (the system's default when None).
    """

    def __init__(self, path, run, which, *, settings=(), merge=None, validate=True, dockerd_path=None, backup=True,
                 restart=False, restart_timeout=60, service="docker", check_mode=False,
                 clock=time.monotonic, sleep=time.sleep, make_backup=backup_copy, tmpdir=None):
        self.path = path
        self.run_command = run
        self.which = which
        self.settings = list(settings or [])
        self.merge = merge or {}
        self.validate = validate
        self.dockerd_path = dockerd_path
        self.backup = backup
        self.restart = restart
        self.restart_timeout = restart_timeout
        self.service = service
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.make_backup = make_backup
        self.tmpdir = tmpdir

    # -------------------------------------------------------- reading

    def read(self):
        """(raw text or None when there is no file, its stat or None)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None, None
        except OSError as err:
            raise DaemonJsonError("cannot read %s: %s" % (self.path, err)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DaemonJsonError("%s is not UTF-8 text; the file was left untouched." % self.path) from None
        return text, os.stat(self.path)

    # -------------------------------------------------------- validation

    def _dockerd(self):
        if self.dockerd_path:
            return self.dockerd_path if os.path.isfile(self.dockerd_path) and os.access(self.dockerd_path, os.X_OK) else None
        return self.which("dockerd")

    def check_candidate(self, text):
        """(validated, why). Raises DaemonJsonError when dockerd refuses the candidate."""
        if not self.validate:
            return False, "not validated: validate is false"
        dockerd = self._dockerd()
        if not dockerd:
            return False, "not validated: dockerd not found (%s)" % (self.dockerd_path or "not on PATH")
        rc, out, err = self.run_command([dockerd, "--help"])
        if "--validate" not in (out or "") + (err or ""):
            return False, "not validated: this dockerd has no --validate (Docker older than 23)"
        fd, candidate = tempfile.mkstemp(prefix="daemon.json.", suffix=".candidate", dir=self.tmpdir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            rc, out, err = self.run_command([dockerd, "--validate", "--config-file", candidate])
        finally:
            os.unlink(candidate)
        if rc != 0:
            said = " ".join(((err or "") + " " + (out or "")).replace(candidate, "<candidate>").split())
            raise DaemonJsonError(
                "dockerd --validate refused the new %s (rc=%d): %s. The live file was left untouched and Docker "
                "was not restarted." % (self.path, rc, said or "no output"),
                candidate=text,
            )
        return True, "validated by dockerd --validate"

    # -------------------------------------------------------- writing

    def write(self, text, stat=None):
        """Replace the file atomically (a temporary file in the same folder), keeping its mode and owner."""
        folder = os.path.dirname(self.path) or "."
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        fd, temp = tempfile.mkstemp(prefix=".daemon.json.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, (stat.st_mode & 0o7777) if stat else DEFAULT_MODE)
            if stat and hasattr(os, "chown"):
                try:
                    os.chown(temp, stat.st_uid, stat.st_gid)
                except PermissionError:
                    pass
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    def remove(self):
        if os.path.lexists(self.path):
            os.unlink(self.path)

    # -------------------------------------------------------- the service

    def _program(self, name):
        found = self.which(name)
        return found or name

    def restart_and_wait(self):
        """None when Docker answers again within restart_timeout, else the reason it did not."""
        rc, out, err = self.run_command([self._program("systemctl"), "restart", self.service])
        if rc != 0:
            return "systemctl restart %s failed (rc=%d): %s" % (self.service, rc, " ".join(((err or "") + " " + (out or "")).split()) or "no output")
        docker = self._program("docker")
        deadline = self.clock() + max(0, self.restart_timeout)
        while True:
            rc, out, err = self.run_command([docker, "info", "--format", "{{.ServerVersion}}"])
            if rc == 0:
                return None
            if self.clock() >= deadline:
                last = " ".join(((err or "") + " " + (out or "")).split())
                return "no answer from `docker info` within %d s%s" % (self.restart_timeout, (": " + last) if last else "")
            self.sleep(POLL_INTERVAL)

    def journal(self):
        rc, out, dummy = self.run_command([self._program("journalctl"), "-u", self.service, "-n", "20", "--no-pager", "-o", "cat"])
        return (out or "").splitlines()[-20:] if rc == 0 else []

    def roll_back(self, reason, new_text, old_text, stat, result):
        """Docker refused the new file: keep it as .rejected, put the old one back (or none), start Docker again."""
        rejected = self.path + ".rejected"
        journal = self.journal()
        with open(rejected, "w", encoding="utf-8") as handle:
            handle.write(new_text)
        os.chmod(rejected, (stat.st_mode & 0o7777) if stat else DEFAULT_MODE)
        if old_text is None:
            self.remove()
            previous = "There was no %s before, so the new one was removed" % self.path
        else:
            self.write(old_text, stat)
            previous = "The previous %s was put back" % self.path
        self.run_command([self._program("systemctl"), "reset-failed", self.service + ".service"])
        again = self.restart_and_wait()
        result.update(rolled_back=True, rejected_file=rejected, journal=journal, restarted=True, changed=True)
        hint = ("`journalctl -u %s` says why (a key also given as a dockerd flag in the unit, e.g. \"hosts\" against "
                "-H fd://, is a common cause that dockerd --validate cannot see)." % self.service)
        if again is None:
            outcome = "%s and Docker restarted with it" % previous
        else:
            outcome = "%s, but Docker did not come back with it either (%s)" % (previous, again)
        raise DaemonJsonError(
            "Docker did not come back with the new %s (%s). %s; the refused file is %s. %s"
            % (self.path, reason, outcome, rejected, hint),
            **result
        )

    # -------------------------------------------------------- one run

    def run(self):
        """The module's result (a dict); raises DaemonJsonError for fail_json."""
        check_settings(self.settings)
        old_text, stat = self.read()
        current = parse(old_text or "", self.path)
        wanted = desired(current, self.settings, self.merge)
        result = {
            "changed": False, "path": self.path, "config": wanted, "changed_keys": [], "validated": False,
            "validation": "not needed: no change", "restarted": False, "rolled_back": False,
        }
        # Same content (in any layout; an empty file is {}), or no file and nothing to write: left as it is.
        if same(wanted, current):
            return result
        new_text = render(wanted)
        result.update(
            changed=True,
            changed_keys=changed_keys(current, wanted),
            diff={"before": old_text or "", "after": new_text, "after_header": self.path,
                  "before_header": self.path if old_text is not None else "%s (absent)" % self.path},
        )
        result["validated"], result["validation"] = self.check_candidate(new_text)
        if self.check_mode:
            return result
        if old_text is not None and self.backup:
            result["backup_file"] = self.make_backup(self.path)
        self.write(new_text, stat)
        if self.restart:
            reason = self.restart_and_wait()
            if reason is not None:
                result["config"] = current
                self.roll_back(reason, new_text, old_text, stat, result)
            result["restarted"] = True
        return result
