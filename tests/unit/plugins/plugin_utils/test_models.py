"""plugins/plugin_utils/_models.py (the model rules) and its filter llmops.gpu_stack.model_entries.

Every rule with its exact message, the defaults, the directory rule, the container path, the choice of
a host's models, and the filter's strict and non-strict forms.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.filter import models as models_filter
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _models

ROOT = "/Models/Pretrained_Models"
QWEN = {"alias": "qwen3-8b", "source": "modelscope", "repo_id": "Qwen/Qwen3-8B", "revision": "master"}


def problems_of(models, root=ROOT, **kwargs):
    return _models.model_entries(models, root, **kwargs)[1]


def only_problem(models, root=ROOT, **kwargs):
    found = problems_of(models, root, **kwargs)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------------ defaults
def test_the_default_model_gets_its_defaults():
    entries, problems = _models.model_entries([QWEN], ROOT)
    assert problems == []
    assert entries == [{
        "index": 0, "alias": "qwen3-8b", "source": "modelscope", "repo_id": "Qwen/Qwen3-8B", "revision": "master",
        "include": [], "exclude": [], "target_dir": ROOT + "/Qwen3-8B", "local_src": None, "local_src_on": "host",
        "has_token": False, "litellm_model_info": {}, "size_gb": None,
    }]


@pytest.mark.parametrize(("given", "source", "revision"), [
    ({"repo_id": "o/n"}, "modelscope", "master"),
    ({"repo_id": "o/n", "source": None}, "modelscope", "master"),
    ({"repo_id": "o/n", "source": ""}, "modelscope", "master"),
    ({"repo_id": "o/n", "source": "huggingface"}, "huggingface", "main"),
    ({"repo_id": "o/n", "source": "huggingface", "revision": "v1.0"}, "huggingface", "v1.0"),
    ({"source": "local", "local_src": "/src/m", "target_dir": "/m/x"}, "local", None),
])
def test_source_and_revision_defaults(given, source, revision):
    entries, problems = _models.model_entries([{"alias": "m", **given}], ROOT)
    assert problems == []
    assert (entries[0]["source"], entries[0]["revision"]) == (source, revision)


def test_lists_token_flag_and_model_info():
    given = {**QWEN, "include": ["*.json"], "exclude": None, "token": "secret-token-value", "litellm_model_info": {"a": 1}}
    entry = _models.model_entries([given], ROOT)[0][0]
    assert entry["include"] == ["*.json"] and entry["exclude"] == []
    assert entry["has_token"] is True and "token" not in entry
    assert entry["litellm_model_info"] == {"a": 1}
    assert _models.model_entries([{**QWEN, "token": ""}], ROOT)[0][0]["has_token"] is False


def test_the_index_is_the_place_in_the_list():
    models = [QWEN, {"alias": "guard", "repo_id": "Qwen/Qwen3Guard-Gen-0.6B"}]
    assert [(e["index"], e["alias"]) for e in _models.model_entries(models, ROOT)[0]] == [(0, "qwen3-8b"), (1, "guard")]


# ------------------------------------------------------------------------------------ the directory rule
@pytest.mark.parametrize(("entry", "root", "expected"), [
    ({"repo_id": "Qwen/Qwen3-8B"}, ROOT, ROOT + "/Qwen3-8B"),
    ({"repo_id": "Qwen/Qwen3-8B"}, ROOT + "/", ROOT + "/Qwen3-8B"),
    ({"repo_id": "Qwen/Qwen3-8B", "target_dir": "/data/q"}, ROOT, "/data/q"),
    ({"repo_id": None, "target_dir": "/data/q"}, ROOT, "/data/q"),
    ({"repo_id": "org/name/"}, "/", "/name"),
])
def test_model_dir(entry, root, expected):
    assert _models.model_dir(entry, root) == expected


def test_model_dir_needs_target_dir_or_repo_id():
    with pytest.raises(ValueError, match="neither target_dir nor repo_id"):
        _models.model_dir({"alias": "x"}, ROOT)


def test_entries_use_the_directory_rule():
    entries = _models.model_entries([QWEN, {"alias": "b", "repo_id": "o/b", "target_dir": "/srv/b"}], "/srv/models")[0]
    assert [e["target_dir"] for e in entries] == ["/srv/models/Qwen3-8B", "/srv/b"]


@pytest.mark.parametrize(("target", "expected"), [
    ("/Models/Pretrained_Models/Qwen3-8B", "/models/Qwen3-8B"),
    ("/srv/b/", "/models/b"),
])
def test_container_path(target, expected):
    assert _models.container_path(target) == expected


def test_container_path_of_the_root_is_refused():
    with pytest.raises(ValueError, match="no last part"):
        _models.container_path("/")


# ------------------------------------------------------------------------------------ paths
@pytest.mark.parametrize(("value", "problem"), [
    ("/a/b", None),
    ("/", None),
    ("a/b", 'must be an absolute path, got "a/b"'),
    ("", 'must be an absolute path, got ""'),
    (None, "must be an absolute path, got null"),
    (5, "must be an absolute path, got 5"),
    ("/a/b/", 'must be a normalised path (no trailing /, no // and no . or .. parts), got "/a/b/"; write "/a/b"'),
    ("/a//b", 'must be a normalised path (no trailing /, no // and no . or .. parts), got "/a//b"; write "/a/b"'),
    ("//a", 'must be a normalised path (no trailing /, no // and no . or .. parts), got "//a"; write "/a"'),
    ("/a/./b", 'must be a normalised path (no trailing /, no // and no . or .. parts), got "/a/./b"; write "/a/b"'),
    ("/a/../b", 'must be a normalised path (no trailing /, no // and no . or .. parts), got "/a/../b"; write "/b"'),
])
def test_path_problem(value, problem):
    assert _models.path_problem(value) == problem


def test_models_root_must_be_absolute_and_normalised():
    assert only_problem([QWEN], "models") == 'gpu_stack_models_root must be an absolute path, got "models"'
    assert only_problem([QWEN], "/m/", root_variable="roots") == (
        'roots must be a normalised path (no trailing /, no // and no . or .. parts), got "/m/"; write "/m"')


def test_a_bad_root_still_lists_the_entries():
    entries, problems = _models.model_entries([QWEN], "models")
    assert [e["alias"] for e in entries] == ["qwen3-8b"] and len(problems) == 1


# ------------------------------------------------------------------------------------ every rule of an entry
W = 'gpu_stack_models[0] (alias "a")'


@pytest.mark.parametrize(("given", "message"), [
    ({"alias": "a", "repo_id": "o/n", "engine": {}},
     W + ": unknown key engine; an entry takes alias, source, repo_id, revision, include, exclude, target_dir, token, "
         "local_src, local_src_on, litellm_model_info, size_gb"),
    ({"alias": "a", "repo_id": "o/n", "engine": {}, "gpus": 1},
     W + ": unknown keys engine, gpus; an entry takes alias, source, repo_id, revision, include, exclude, target_dir, "
         "token, local_src, local_src_on, litellm_model_info, size_gb"),
    ({"repo_id": "o/n"},
     "gpu_stack_models[0]: alias is required: the served model name, letters, digits and . _ - starting with a letter "
     "or digit (e.g. qwen3-8b), got null"),
    ({"alias": "", "repo_id": "o/n"},
     'gpu_stack_models[0]: alias is required: the served model name, letters, digits and . _ - starting with a letter '
     'or digit (e.g. qwen3-8b), got ""'),
    ({"alias": 7, "repo_id": "o/n"},
     "gpu_stack_models[0]: alias is required: the served model name, letters, digits and . _ - starting with a letter "
     "or digit (e.g. qwen3-8b), got 7"),
    ({"alias": "a b", "repo_id": "o/n"},
     'gpu_stack_models[0] (alias "a b"): alias is required: the served model name, letters, digits and . _ - starting '
     'with a letter or digit (e.g. qwen3-8b), got "a b"'),
    ({"alias": "-a", "repo_id": "o/n"},
     'gpu_stack_models[0] (alias "-a"): alias is required: the served model name, letters, digits and . _ - starting '
     'with a letter or digit (e.g. qwen3-8b), got "-a"'),
    ({"alias": "a/b", "repo_id": "o/n"},
     'gpu_stack_models[0] (alias "a/b"): alias is required: the served model name, letters, digits and . _ - starting '
     'with a letter or digit (e.g. qwen3-8b), got "a/b"'),
    ({"alias": "a", "repo_id": "o/n", "source": "s3"}, W + ': unknown source "s3"; use one of modelscope, huggingface, local'),
    ({"alias": "a"}, W + ": source modelscope needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got null"),
    ({"alias": "a", "source": "huggingface", "repo_id": "name"},
     W + ': source huggingface needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got "name"'),
    ({"alias": "a", "repo_id": "o/n/x"}, W + ': source modelscope needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got "o/n/x"'),
    ({"alias": "a", "repo_id": "Qwen/.."}, W + ': source modelscope needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got "Qwen/.."'),
    ({"alias": "a", "repo_id": "o n/x"}, W + ': source modelscope needs repo_id as owner/name (e.g. Qwen/Qwen3-8B), got "o n/x"'),
    ({"alias": "a", "source": "local", "local_src": "/s", "repo_id": "bad"},
     W + ': repo_id must be owner/name (e.g. Qwen/Qwen3-8B), got "bad"'),
    ({"alias": "a", "repo_id": "o/n", "revision": ""},
     W + ': revision must be a non-empty string (a branch, tag or commit), got ""'),
    ({"alias": "a", "repo_id": "o/n", "revision": None},
     W + ": revision must be a non-empty string (a branch, tag or commit), got null"),
    ({"alias": "a", "repo_id": "o/n", "revision": 2}, W + ": revision must be a non-empty string (a branch, tag or commit), got 2"),
    ({"alias": "a", "repo_id": "o/n", "include": "*.json"},
     W + ': include must be a list of glob patterns (non-empty strings), got "*.json"'),
    ({"alias": "a", "repo_id": "o/n", "exclude": {"a": 1}},
     W + ': exclude must be a list of glob patterns (non-empty strings), got {"a": 1}'),
    ({"alias": "a", "repo_id": "o/n", "exclude": ["*.bin", ""]},
     W + ': exclude must be a list of glob patterns (non-empty strings), got ["*.bin", ""]'),
    ({"alias": "a", "repo_id": "o/n", "target_dir": "relative/dir"}, W + ': target_dir must be an absolute path, got "relative/dir"'),
    ({"alias": "a", "repo_id": "o/n", "target_dir": "/m/a/"},
     W + ': target_dir must be a normalised path (no trailing /, no // and no . or .. parts), got "/m/a/"; write "/m/a"'),
    ({"alias": "a", "source": "local", "target_dir": "/m/a"}, W + ": source local needs local_src, an absolute path, got null"),
    ({"alias": "a", "source": "local", "local_src": "src", "target_dir": "/m/a"},
     W + ': source local needs local_src, an absolute path, got "src"'),
    ({"alias": "a", "source": "local", "local_src": "/src/../x", "target_dir": "/m/a"},
     W + ': local_src must be a normalised path (no trailing /, no // and no . or .. parts), got "/src/../x"; write "/x"'),
    ({"alias": "a", "source": "local", "local_src": "/src"},
     W + ": source local needs target_dir, or repo_id to name the directory <models_root>/<name>"),
    ({"alias": "a", "repo_id": "o/n", "local_src_on": "nas"}, W + ': local_src_on must be controller or host, got "nas"'),
    ({"alias": "a", "repo_id": "o/n", "token": 1234}, W + ": token must be a string (its value is not shown)"),
    ({"alias": "a", "repo_id": "o/n", "litellm_model_info": ["x"]},
     W + ': litellm_model_info must be a dict (LiteLLM\'s model_info), got ["x"]'),
])
def test_each_rule_and_its_message(given, message):
    assert only_problem([given]) == message


def test_a_token_value_is_never_shown():
    found = problems_of([{"alias": "a", "repo_id": "o/n", "token": ["sekrit-value"]}, {"alias": "b", "token": "sekrit-2"}])
    assert found and not any("sekrit" in text for text in found)


@pytest.mark.parametrize(("models", "message"), [
    ("qwen", 'gpu_stack_models must be a list of dicts (one per model), got "qwen"'),
    ({"alias": "a"}, 'gpu_stack_models must be a list of dicts (one per model), got {"alias": "a"}'),
    (None, "gpu_stack_models must be a list of dicts (one per model), got null"),
    (["qwen"], 'gpu_stack_models[0] must be a dict (alias, source, repo_id, ...), got "qwen"'),
])
def test_the_list_itself(models, message):
    assert only_problem(models) == message


def test_the_variable_name_is_the_callers():
    assert only_problem(["x"], variable="models") == 'models[0] must be a dict (alias, source, repo_id, ...), got "x"'


def test_every_problem_of_every_entry_at_once():
    models = [
        {"alias": "a", "source": "s3", "target_dir": "rel"},
        "not a dict",
        {"alias": "a", "repo_id": "o/n"},
        {"repo_id": "o/m"},
    ]
    found = problems_of(models, "root")
    assert found == [
        'gpu_stack_models_root must be an absolute path, got "root"',
        'gpu_stack_models[0] (alias "a"): unknown source "s3"; use one of modelscope, huggingface, local',
        'gpu_stack_models[0] (alias "a"): target_dir must be an absolute path, got "rel"',
        'gpu_stack_models[1] must be a dict (alias, source, repo_id, ...), got "not a dict"',
        'gpu_stack_models[2] (alias "a"): alias "a" appears more than once in gpu_stack_models (also gpu_stack_models[0]); '
        "aliases must be unique",
        "gpu_stack_models[3]: alias is required: the served model name, letters, digits and . _ - starting with a letter "
        "or digit (e.g. qwen3-8b), got null",
    ]


def test_entries_with_problems_are_listed_by_their_first_alias_only():
    models = [{"alias": "a", "repo_id": "o/n", "revision": ""}, {"alias": "a", "repo_id": "o/m"}, {"repo_id": "o/x"}]
    entries, problems = _models.model_entries(models, ROOT)
    assert [(e["index"], e["alias"]) for e in entries] == [(0, "a")] and len(problems) == 3


# ------------------------------------------------------------------------------------ directories between entries
def test_duplicate_directories():
    models = [QWEN, {"alias": "again", "repo_id": "Other/Qwen3-8B"}]
    assert only_problem(models) == (
        'gpu_stack_models[1] (alias "again"): target_dir "/Models/Pretrained_Models/Qwen3-8B" is used by '
        'gpu_stack_models[0] (alias "qwen3-8b") too; give each model its own directory')


def test_nested_directories():
    models = [{"alias": "a", "repo_id": "o/a", "target_dir": "/m/a"}, {"alias": "b", "repo_id": "o/b", "target_dir": "/m/a/b"}]
    assert only_problem(models) == (
        'gpu_stack_models[1] (alias "b"): target_dir "/m/a/b" and the directory "/m/a" of gpu_stack_models[0] (alias "a") '
        "are inside one another; model directories must not nest")
    assert problems_of([{"alias": "x", "repo_id": "o/x", "target_dir": "/m/ab"}, models[0]]) == [], "a prefix is not a parent"


@pytest.mark.parametrize(("target", "name"), [
    ("/", "/"),
    (ROOT, "the models root"),
    ("/Models", "the models root"),
    ("/opt/llm-stack", "the stack root"),
    ("/opt", "the stack root"),
])
def test_a_directory_of_its_own(target, name):
    found = only_problem([{**QWEN, "target_dir": target}], stack_root="/opt/llm-stack")
    assert found == f'gpu_stack_models[0] (alias "qwen3-8b"): target_dir "{target}" must be a directory of its own (not {name} or a folder above it)'


def test_without_a_stack_root_only_root_and_models_root_count():
    assert problems_of([{**QWEN, "target_dir": "/opt/llm-stack"}]) == []
    assert problems_of([{**QWEN, "target_dir": "/opt/llm-stack/models/q"}], stack_root="/opt/llm-stack") == []


def test_local_source_and_target_must_not_overlap_on_the_host():
    base = {"alias": "l", "source": "local", "target_dir": "/m/l"}
    assert only_problem([{**base, "local_src": "/m/l/src"}]) == (
        'gpu_stack_models[0] (alias "l"): local_src "/m/l/src" and target_dir "/m/l" are inside one another; copy from a '
        "directory outside the model's directory")
    assert problems_of([{**base, "local_src": "/m/l", "local_src_on": "controller"}]) == [], "the controller is another machine"
    assert problems_of([{**base, "local_src": "/exports/l"}]) == []


def test_directory_rules_wait_for_entries_without_problems():
    models = [{**QWEN, "revision": ""}, {"alias": "b", "repo_id": "Other/Qwen3-8B"}]
    assert problems_of(models) == ['gpu_stack_models[0] (alias "qwen3-8b"): revision must be a non-empty string '
                                   '(a branch, tag or commit), got ""']


# ------------------------------------------------------------------------------------ a host's models
def entries3():
    return _models.model_entries([{"alias": n, "repo_id": "o/" + n} for n in ("a", "b", "c")], ROOT)[0]


@pytest.mark.parametrize(("aliases", "expected"), [
    (None, ["a", "b", "c"]),
    ([], []),
    (["c", "a"], ["a", "c"]),
    ([{"alias": "b"}], ["b"]),
    ({"b": {}, "c": {}}, ["b", "c"]),
    ("b", ["b"]),
])
def test_select_entries(aliases, expected):
    selected, problems = _models.select_entries(entries3(), aliases)
    assert [e["alias"] for e in selected] == expected and problems == []


def test_select_entries_names_what_is_missing():
    selected, problems = _models.select_entries(entries3(), ["a", "guard"], variable="gpu_stack_plan.models")
    assert [e["alias"] for e in selected] == ["a"]
    assert problems == ['gpu_stack_plan.models: "guard" is not an alias of gpu_stack_models (a, b, c)']
    assert _models.select_entries([], ["x"])[1] == ['model_store_aliases: "x" is not an alias of gpu_stack_models (none is defined)']


# ------------------------------------------------------------------------------------ the filter
def test_filter_returns_the_entries():
    assert models_filter.model_entries_filter([QWEN], ROOT) == _models.model_entries([QWEN], ROOT)[0]
    plugin = models_filter.FilterModule().filters()["model_entries"]
    assert plugin is models_filter.model_entries_filter


def test_filter_raises_with_every_problem():
    with pytest.raises(AnsibleFilterError) as err:
        models_filter.model_entries_filter([{"alias": "a"}, {"alias": "a", "repo_id": "o/n"}], "rel", aliases=["zz"])
    text = str(err.value)
    assert text.startswith("model_entries: 4 problem(s): gpu_stack_models_root must be an absolute path")
    assert 'source modelscope needs repo_id' in text and 'appears more than once' in text
    assert 'model_store_aliases: "zz" is not an alias of gpu_stack_models (a)' in text


def test_filter_not_strict_returns_the_problems():
    result = models_filter.model_entries_filter([QWEN, {"alias": "g", "repo_id": "o/g"}], ROOT, aliases=["g"],
                                                stack_root="/opt/llm-stack", strict=False)
    assert [e["alias"] for e in result["entries"]] == ["g"] and result["problems"] == []
    result = models_filter.model_entries_filter("x", ROOT, strict=False, variable="models")
    assert result == {"entries": [], "problems": ['models must be a list of dicts (one per model), got "x"']}
