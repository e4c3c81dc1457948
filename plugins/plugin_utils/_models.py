# -*- coding: utf-8 -*-
# Copyright: llmops.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""The model rules: what an entry of gpu_stack_models may say, its defaults, and where its files go.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking changes at any time.
Do not use this from other collections or standalone plugins/modules!

The one place of these rules (controller side, pure Python): model_store downloads the entries,
the engines and the guard mount their directories, the plan and the validation phase report their
problems. A model's directory is ``target_dir`` or ``<models_root>/<last part of repo_id>``
(:func:`model_dir`); inside a container it is ``/models/<basename>`` (:func:`container_path`).

Every problem is one sentence that names the variable and the entry, e.g.
``gpu_stack_models[1] (alias "qwen3guard"): source modelscope needs repo_id as owner/name
(e.g. Qwen/Qwen3-8B), got null``; a token's value is never shown.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence

SOURCES = ("modelscope", "huggingface", "local")
LOCAL_SRC_ON = ("host", "controller")
DEFAULT_SOURCE = "modelscope"
DEFAULT_REVISION = {"modelscope": "master", "huggingface": "main"}
# The keys of an entry (roles/_common/meta/argument_specs.yml, gpu_stack_models.options).
KEYS = ("alias", "source", "repo_id", "revision", "include", "exclude", "target_dir", "token", "local_src",
        "local_src_on", "litellm_model_info", "size_gb")
# What LiteLLM model names and vLLM served model names take safely.
ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_ID = re.compile(r"^[^/\s]+/[^/\s]+$")
CONTAINER_ROOT = "/models"


def shown(value) -> str:
    """A value as the messages show it (JSON: null, "text", [..])."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def path_problem(value) -> str | None:
    """None for an absolute, normalised path; else what is wrong with it (a sentence tail)."""
    if not isinstance(value, str) or not value.startswith("/"):
        return "must be an absolute path, got %s" % shown(value)
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    parts = value.split("/")[1:]
    if value != normal or ".." in parts:
        return ("must be a normalised path (no trailing /, no // and no . or .. parts), got %s; write %s"
                % (shown(value), shown(normal)))
    return None


def model_dir(entry: Mapping, models_root: str) -> str:
    """The model's directory: its target_dir, else <models_root>/<last part of repo_id>.

    Raises ValueError for an entry that has neither (model_entries reports that as a problem).
    """
    target = entry.get("target_dir")
    if target:
        return str(target)
    repo_id = entry.get("repo_id")
    if not isinstance(repo_id, str) or not repo_id.strip("/"):
        raise ValueError("the entry has neither target_dir nor repo_id")
    root = str(models_root).rstrip("/")
    return "%s/%s" % (root, repo_id.rstrip("/").rsplit("/", 1)[-1])


def container_path(target_dir: str) -> str:
    """Where a model's directory is mounted in the engine's container: /models/<basename>."""
    name = posixpath.basename(str(target_dir).rstrip("/"))
    if not name:
        raise ValueError("target_dir %s has no last part to name the mount" % shown(target_dir))
    return "%s/%s" % (CONTAINER_ROOT, name)


def _inside(path: str, parent: str) -> bool:
    """path is parent or below it."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _where(variable: str, index: int, given: Mapping) -> str:
    alias = given.get("alias")
    if isinstance(alias, str) and alias:
        return "%s[%d] (alias %s)" % (variable, index, shown(alias))
    return "%s[%d]" % (variable, index)


def _check_entry(given: Mapping, where: str) -> list[str]:
    """The problems of one entry taken alone."""
    out = []
    add = out.append
    unknown = sorted(str(key) for key in given if key not in KEYS)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        add("%s: unknown key%s %s; an entry takes %s" % (where, plural, ", ".join(unknown), ", ".join(KEYS)))
    alias = given.get("alias")
    if not isinstance(alias, str) or not ALIAS.match(alias):
        add("%s: alias is required: the served model name, letters, digits and . _ - starting with a letter or digit "
            "(e.g. qwen3-8b), got %s" % (where, shown(alias)))
    source = given.get("source") or DEFAULT_SOURCE
    if source not in SOURCES:
        add("%s: unknown source %s; use one of %s" % (where, shown(source), ", ".join(SOURCES)))
    repo_id = given.get("repo_id")
    repo_ok = isinstance(repo_id, str) and REPO_ID.match(repo_id) and not {".", ".."} & set(repo_id.split("/"))
    if source in ("modelscope", "huggingface") and not repo_ok:
        add("%s: source %s needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got %s" % (where, source, shown(repo_id)))
    elif repo_id is not None and not repo_ok:
        add("%s: repo_id must be owner/name (e.g. Qwen/Qwen3-8B), got %s" % (where, shown(repo_id)))
    if "revision" in given and (not isinstance(given["revision"], str) or not given["revision"].strip()):
        add("%s: revision must be a non-empty string (a branch, tag or commit), got %s" % (where, shown(given["revision"])))
    for key in ("include", "exclude"):
        value = given.get(key)
        if value is None:
            continue
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not all(
                isinstance(item, str) and item for item in value):
            add("%s: %s must be a list of glob patterns (non-empty strings), got %s" % (where, key, shown(value)))
    if given.get("target_dir") is not None:
        problem = path_problem(given["target_dir"])
        if problem:
            add("%s: target_dir %s" % (where, problem))
    if source == "local":
        local_src = given.get("local_src")
        if not isinstance(local_src, str) or not local_src.startswith("/"):
            add("%s: source local needs local_src, an absolute path, got %s" % (where, shown(local_src)))
        else:
            problem = path_problem(local_src)
            if problem:
                add("%s: local_src %s" % (where, problem))
        if not given.get("target_dir") and not repo_id:
            add("%s: source local needs target_dir, or repo_id to name the directory <models_root>/<name>" % where)
    if (given.get("local_src_on") or "host") not in LOCAL_SRC_ON:
        add("%s: local_src_on must be controller or host, got %s" % (where, shown(given.get("local_src_on"))))
    token = given.get("token")
    if token is not None and not isinstance(token, str):
        add("%s: token must be a string (its value is not shown)" % where)
    info = given.get("litellm_model_info")
    if info is not None and not isinstance(info, Mapping):
        add("%s: litellm_model_info must be a dict (LiteLLM's model_info), got %s" % (where, shown(info)))
    size = given.get("size_gb")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0):
        add("%s: size_gb must be a number of GB above 0 (the download size the hub's model page gives), got %s"
            % (where, shown(size)))
    return out


def _entry(given: Mapping, index: int, models_root: str) -> dict:
    """The entry with its defaults filled in (values of the wrong type become the default)."""
    source = given.get("source") or DEFAULT_SOURCE
    info = given.get("litellm_model_info")
    try:
        target = model_dir(given, models_root)
    except ValueError:
        target = None
    return {
        "index": index,
        "alias": given.get("alias"),
        "source": source,
        "repo_id": given.get("repo_id"),
        "revision": given.get("revision") or DEFAULT_REVISION.get(source),
        "include": _list(given.get("include")),
        "exclude": _list(given.get("exclude")),
        "target_dir": target,
        "local_src": given.get("local_src"),
        "local_src_on": given.get("local_src_on") or "host",
        "has_token": isinstance(given.get("token"), str) and bool(given["token"]),
        "litellm_model_info": dict(info) if isinstance(info, Mapping) else {},
        "size_gb": given.get("size_gb") if isinstance(given.get("size_gb"), (int, float)) and not isinstance(given.get("size_gb"), bool) else None,
    }


def _list(value) -> list:
    if value is None or isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        return []
    return list(value)


def model_entries(models, models_root, *, variable: str = "gpu_stack_models", root_variable: str = "gpu_stack_models_root",
                  stack_root: str | None = None) -> tuple[list[dict], list[str]]:
    """(entries with their defaults filled in, every problem of every entry).

    An entry has the keys index (its place in ``models``), alias, source, repo_id, revision,
    include, exclude, target_dir, local_src, local_src_on, has_token, litellm_model_info and size_gb (never
    the token itself). An entry with problems is still listed when its alias is usable (so that
    what refers to it by alias reports nothing more), with the values as given; only the problems
    say it is wrong. ``stack_root`` (gpu_stack_root), when given, may not be a model's directory either.
    """
    problems = []
    root_problem = path_problem(models_root)
    if root_problem:
        problems.append("%s %s" % (root_variable, root_problem))
    if models is None or isinstance(models, (str, bytes, Mapping)) or not isinstance(models, Sequence):
        problems.append("%s must be a list of dicts (one per model), got %s" % (variable, shown(models)))
        return [], problems
    entries, aliases, targets = [], {}, {}
    for index, given in enumerate(models):
        if not isinstance(given, Mapping):
            problems.append("%s[%d] must be a dict (alias, source, repo_id, ...), got %s" % (variable, index, shown(given)))
            continue
        where = _where(variable, index, given)
        own = _check_entry(given, where)
        alias = given.get("alias")
        if isinstance(alias, str) and alias in aliases:
            own.append("%s: alias %s appears more than once in %s (also %s[%d]); aliases must be unique"
                       % (where, shown(alias), variable, variable, aliases[alias]))
        elif isinstance(alias, str):
            aliases[alias] = index
        problems.extend(own)
        if not (isinstance(alias, str) and aliases.get(alias) == index):
            continue  # no usable alias: nothing can refer to this entry
        entry = _entry(given, index, models_root)
        if not own and not root_problem:
            problems.extend(_check_target(entry, where, variable=variable, models_root=models_root, stack_root=stack_root,
                                          targets=targets))
        entries.append(entry)
    return entries, problems


def _check_target(entry: dict, where: str, *, variable: str, models_root: str, stack_root, targets: dict) -> list[str]:
    """The directory rules between entries and against the roots (records the entry's directory)."""
    target = entry["target_dir"]
    out = []
    problem = path_problem(target)
    if problem:  # a repo_id whose last part is . or .. cannot get here (repo_id rule), but be sure
        return ["%s: its directory %s %s" % (where, shown(target), problem)]
    roots = [("/", "/"), (models_root, "the models root")] + ([(stack_root, "the stack root")] if stack_root else [])
    for root, name in roots:
        if isinstance(root, str) and _inside(root.rstrip("/") or "/", target):
            out.append("%s: target_dir %s must be a directory of its own (not %s or a folder above it)" % (where, shown(target), name))
            return out
    for other, (index, alias) in targets.items():
        if other == target:
            out.append("%s: target_dir %s is used by %s[%d] (alias %s) too; give each model its own directory"
                       % (where, shown(target), variable, index, shown(alias)))
        elif _inside(target, other) or _inside(other, target):
            out.append("%s: target_dir %s and the directory %s of %s[%d] (alias %s) are inside one another; "
                       "model directories must not nest" % (where, shown(target), shown(other), variable, index, shown(alias)))
    if entry["source"] == "local" and entry["local_src_on"] == "host" and isinstance(entry["local_src"], str) and (
            _inside(entry["local_src"], target) or _inside(target, entry["local_src"])):
        out.append("%s: local_src %s and target_dir %s are inside one another; copy from a directory outside the "
                   "model's directory" % (where, shown(entry["local_src"]), shown(target)))
    targets.setdefault(target, (entry["index"], entry["alias"]))
    return out


def alias_list(value) -> list | None:
    """Aliases from a list of names, a list of entries (dicts with alias) or a dict keyed by alias."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return list(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return [item.get("alias") if isinstance(item, Mapping) else item for item in value]


def select_entries(entries: list[dict], aliases, *, variable: str = "model_store_aliases",
                   models_variable: str = "gpu_stack_models") -> tuple[list[dict], list[str]]:
    """(the entries named by ``aliases``, in the order of the models list; problems for names that are none).

    ``aliases`` None means every entry.
    """
    wanted = alias_list(aliases)
    if wanted is None:
        return list(entries), []
    known = [entry["alias"] for entry in entries]
    problems = []
    for name in wanted:
        if name not in known:
            problems.append("%s: %s is not an alias of %s (%s)" % (variable, shown(name), models_variable,
                                                                   ", ".join(known) or "none is defined"))
    return [entry for entry in entries if entry["alias"] in wanted], problems
