"""meta/argument_specs.yml is the only description of a role's variables; defaults/main.yml carries their values.

One test per rule, run for every directory under roles/ (whatever roles exist); a failure lists every
problem of that role, each naming the role, the entry point and the variable:

- test_role_has_argument_specs: a role with defaults/main.yml, and every role not named `_...` (except
  _common), has meta/argument_specs.yml with an entry point `main`. Internal roles such as _compose
  may have no user-facing variables (no defaults, no spec) as long as nothing includes them with tasks_from.
- test_defaults_match_main_spec: the options of entry point main are exactly the variables of
  defaults/main.yml, except required options and secrets (no_log: true), which have no default.
- test_spec_defaults_equal_role_defaults: a spec `default:` equals the defaults/main.yml value after YAML
  load (type and value, not only the name; Ansible takes a role's defaults only from defaults/main.yml,
  the spec's are documentation). A literal defaults value must be in the spec as `default:`; a Jinja
  expression may be left out of the spec (the description says what it computes) or given as the same string.
- test_options_are_described_and_typed: every option and sub-option has a description and a type,
  lists have `elements`, `options:` only on dict and list-of-dict options, no unknown keys (a typo such
  as `descripton` would drop the text silently), every entry point has a short_description.
- test_variables_have_the_role_prefix: every variable starts with `<role>_` (`gpu_stack_` for _common).
- test_entry_points_have_task_files: every entry point of the spec is a file tasks/<entry>.yml.
- test_included_task_files_have_entry_points: every `tasks_from:` of an include_role/import_role of this
  role in playbooks/ and roles/ names an entry point of the spec, as Ansible looks it up: by the literal
  value, so `tasks_from: verify.yml` finds no spec `verify` and skips the argument check.
- test_defaults_comments_are_one_line: outside the header block at the top of defaults/main.yml, a
  comment is at most one line (divider lines `# ---- topic` do not count): directly above a variable,
  and anywhere else in the file.
- test_shared_options_are_identical: an option listed by several entry points has one spec, the same in
  all of them (a YAML anchor keeps them in step).
- test_tasks_from_names_existing_roles (once): every include of a role of this collection names a role
  that exists and a tasks_from that can be read without templating.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re
import shlex
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if p.is_dir() and not p.name.startswith(".")) if ROLES_DIR.is_dir() else []

# TEMPORARY allow-list: roles/llm_stack and roles/model_store are being replaced by the 0.2.0 roles
# (docs/architecture.md). Their breaches of the rules named here are reported as XFAIL, with the full
# list in the reason (pytest -ra prints it), instead of failing the run. Remove an entry as soon as
# its role is deleted or rewritten; no other role may be added.
LEGACY_ALLOWED = {
    "llm_stack": {"included_task_files", "defaults_comments"},
    "model_store": {"included_task_files", "defaults_comments"},
}

TYPES = {"str", "int", "float", "bool", "list", "dict", "path", "raw", "jsonarg", "json", "bytes", "bits", "sid"}
OPTION_KEYS = {
    "type", "elements", "default", "choices", "required", "description", "options", "no_log", "aliases", "version_added",
    "apply_defaults", "mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by",
    "deprecated_aliases", "removed_in_version", "removed_at_date", "removed_from_collection", "fallback",
}  # fmt: skip
INCLUDE_KEYS = {f"{prefix}{verb}_role" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for verb in ("include", "import")}
DIVIDER = re.compile(r"^\s*#\s*[-=#*]{4,}")
TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _role_docs():
    """tools/role_docs.py, for the YAML loader and the spec lookup Ansible uses (meta/argument_specs.yml|yaml, meta/main.yml)."""
    if "role_docs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("role_docs", ROOT / "tools" / "role_docs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["role_docs"] = module
        spec.loader.exec_module(module)
    return sys.modules["role_docs"]


def prefix(role):
    return "gpu_stack_" if role == "_common" else f"{role}_"


def internal(role):
    return role.startswith("_") and role != "_common"


def is_jinja(value):
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_jinja(item) for item in value.values())
    if isinstance(value, list):
        return any(is_jinja(item) for item in value)
    return False


def same(left, right):
    """Equal as YAML values: same types all the way down (1 is not 1.0 nor true), dict order ignored."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return left == right


def show(value):
    return repr(value) if not isinstance(value, (dict, list)) else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


class Role:
    """What the rules read of one role: its specs, its defaults, and the problems of reading them."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.name = name = self.path.name
        self.errors = []
        self.specs = None
        try:
            self.specs = _role_docs().load_specs(self.path)
        except Exception as exc:  # noqa: BLE001 - any unreadable spec is a finding of its own
            self.errors.append(f"{name}: meta/argument_specs.yml cannot be read: {exc}")
        self.defaults_path = next((p for p in (self.path / "defaults" / "main.yml", self.path / "defaults" / "main.yaml") if p.is_file()), None)
        self.defaults = {}
        self.defaults_text = ""
        if self.defaults_path:
            self.defaults_text = self.defaults_path.read_text(encoding="utf-8")
            try:
                data = _role_docs().load_yaml(self.defaults_path)
            except yaml.YAMLError as exc:
                self.errors.append(f"{name}: defaults/main.yml is not YAML: {exc}")
                data = {}
            if data is not None and not isinstance(data, dict):
                self.errors.append(f"{name}: defaults/main.yml is not a mapping of variables")
            self.defaults = data if isinstance(data, dict) else {}

    def entry_points(self):
        return list(self.specs or {})

    def options(self, entry):
        spec = (self.specs or {}).get(entry) or {}
        return spec.get("options") or {}


@functools.cache
def role(name):
    return Role(ROLES_DIR / name)


def report(name, rule, problems):
    problems = list(dict.fromkeys(problems))
    if not problems:
        return
    if rule in LEGACY_ALLOWED.get(name, ()):
        pytest.xfail(f"temporary allow-list, {name} is being replaced ({len(problems)}): " + " | ".join(problems))
    pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(problems), pytrace=False)


def walk_options(options, path=""):
    """(dotted path, option) of every option and sub-option, depth first."""
    for key, option in (options or {}).items():
        here = f"{path}.{key}" if path else str(key)
        yield here, option
        if isinstance(option, dict) and isinstance(option.get("options"), dict):
            yield from walk_options(option["options"], here + ("[]" if option.get("type") == "list" else ""))


# ---------------------------------------------------------------- includes with tasks_from


def collection(root):
    galaxy = _role_docs().load_yaml(root / "galaxy.yml") or {}
    return f"{galaxy.get('namespace')}.{galaxy.get('name')}"


def yaml_files(root):
    files = sorted(root.glob("*.yml")) + sorted(root.glob("playbooks/**/*.y*ml"))
    for path in sorted((root / "roles").glob("**/*.y*ml")):
        if not {"templates", "files"} & set(path.relative_to(root / "roles").parts[1:-1]):
            files.append(path)
    return [path for path in files if path.suffix in {".yml", ".yaml"}]


def _includes(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in INCLUDE_KEYS:
                yield value
            yield from _includes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _includes(item)


def _line(text, value):
    for number, line in enumerate(text.splitlines(), 1):
        if "tasks_from" in line and str(value) in line and not line.lstrip().startswith("#"):
            return number
    return "?"


@functools.cache
def tasks_from_includes(root=ROOT):
    """({role: [(where, tasks_from)]}, [problems that belong to no role of this collection]) for playbooks/ and roles/ of *root*."""
    ours, problems = {}, []
    name_prefix = collection(root) + "."
    roles = {p.name for p in (root / "roles").iterdir() if p.is_dir()} if (root / "roles").is_dir() else set()
    for path in yaml_files(root):
        where = str(path.relative_to(root))
        text = path.read_text(encoding="utf-8")
        if "_role" not in text:
            continue
        try:
            documents = list(yaml.load_all(text, Loader=_role_docs()._Loader))  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            problems.append(f"{where}: not YAML, its includes cannot be checked: {exc}")
            continue
        for found in _includes(documents):
            args = dict(part.split("=", 1) for part in shlex.split(found) if "=" in part) if isinstance(found, str) else found
            if not isinstance(args, dict) or "tasks_from" not in args:
                continue
            name, tasks_from = str(args.get("name", "")), str(args["tasks_from"])
            at = f"{where}:{_line(text, tasks_from)}"
            if "{{" in name or "{{" in tasks_from:
                problems.append(f"{at}: include of role {name!r} with tasks_from {tasks_from!r} is templated; its entry point cannot be checked")
                continue
            target = name[len(name_prefix) :] if name.startswith(name_prefix) else name
            if target in roles:
                ours.setdefault(target, []).append((at, tasks_from))
            elif name.startswith(name_prefix):
                problems.append(f"{at}: includes role {name} (tasks_from {tasks_from}), which does not exist under roles/")
    return ours, problems


# ---------------------------------------------------------------- the rules (each returns its problems)


def rule_argument_specs(r):
    problems = list(r.errors)
    needs_spec = r.defaults_path is not None or not internal(r.name)
    if r.specs is None and needs_spec and not r.errors:
        problems.append(f"{r.name}: no meta/argument_specs.yml (the only place its variables are described; entry point main at least)")
    elif r.specs is not None and "main" not in r.specs and (needs_spec or task_file(r, "main")):
        problems.append(f"{r.name}: meta/argument_specs.yml has no entry point main")
    return problems


def rule_defaults_match(r):
    if r.specs is None and r.defaults:
        names = ", ".join(map(str, r.defaults))
        return [f"{r.name}: no meta/argument_specs.yml, so no variable of defaults/main.yml is described ({len(r.defaults)}): {names}"]
    options = r.options("main")
    where = f"{r.name}: entry point main"
    problems = [f"{where}: {var}: in defaults/main.yml but not described in meta/argument_specs.yml" for var in r.defaults if var not in options]
    for var, option in options.items():
        secret = isinstance(option, dict) and (option.get("required") or option.get("no_log") is True)
        if var not in r.defaults and not secret:
            problems.append(f"{where}: {var}: in the spec but not in defaults/main.yml, and neither required nor a secret (no_log: true)")
    return problems


def rule_spec_defaults(r):
    problems = []
    for entry in r.entry_points():
        for var, option in r.options(entry).items():
            if not isinstance(option, dict):
                continue
            where = f"{r.name}: entry point {entry}: {var}"
            if "default" in option:
                if var not in r.defaults:
                    problems.append(f"{where}: spec default {show(option['default'])} but none in defaults/main.yml (Ansible reads defaults only from there)")
                elif not same(option["default"], r.defaults[var]):
                    problems.append(f"{where}: spec default {show(option['default'])} != defaults/main.yml {show(r.defaults[var])}")
            elif var in r.defaults and r.defaults[var] is not None and not is_jinja(r.defaults[var]):
                problems.append(f"{where}: defaults/main.yml sets {show(r.defaults[var])} but the spec has no `default:` (write the same value there)")
    return problems


def _option_problems(where, option):
    if not isinstance(option, dict):
        return [f"{where}: not a mapping"]
    problems = []
    description = option.get("description")
    if not any(str(text or "").strip() for text in (description if isinstance(description, list) else [description])):
        problems.append(f"{where}: no description")
    kind, elements = option.get("type"), option.get("elements")
    if kind is None:
        problems.append(f"{where}: no type")
    elif kind not in TYPES:
        problems.append(f"{where}: unknown type {kind!r}")
    if kind == "list" and not elements:
        problems.append(f"{where}: type list without elements")
    if elements is not None and elements not in TYPES:
        problems.append(f"{where}: unknown elements {elements!r}")
    if "options" in option and not (kind == "dict" or (kind == "list" and elements == "dict")):
        problems.append(f"{where}: options: on a {kind} option (only dict or list of dict)")
    unknown = sorted(set(option) - OPTION_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {unknown}")
    return problems


def rule_described_and_typed(r):
    problems = []
    for entry in r.entry_points():
        spec = r.specs[entry]
        if not str(spec.get("short_description") or "").strip():
            problems.append(f"{r.name}: entry point {entry}: no short_description")
        for path, option in walk_options(spec.get("options")):
            problems += _option_problems(f"{r.name}: entry point {entry}: {path}", option)
    return problems


def rule_prefix(r):
    want = prefix(r.name)
    problems = [f"{r.name}: defaults/main.yml: {var}: does not start with {want}" for var in r.defaults if not str(var).startswith(want)]
    for entry in r.entry_points():
        # An internal role's other entry points take inputs from the roles that include them (_common_*).
        allowed = (want, f"{r.name}_") if entry != "main" else (want,)
        problems += [f"{r.name}: entry point {entry}: {var}: does not start with {want}" for var in r.options(entry)
                     if not str(var).startswith(allowed)]
    return problems


def task_file(r, entry):
    tasks = r.path / "tasks"
    return next((p for p in (tasks / str(entry), tasks / f"{entry}.yml", tasks / f"{entry}.yaml") if p.is_file()), None)


def rule_entry_points(r):
    return [f"{r.name}: entry point {entry}: no tasks/{entry}.yml" for entry in r.entry_points() if task_file(r, entry) is None]


def rule_included_task_files(r, includes):
    """*includes*: (where, tasks_from) of every include of this role."""
    problems = []
    for at, tasks_from in includes:
        stem = re.sub(r"\.ya?ml$", "", tasks_from)
        if task_file(r, tasks_from) is None:
            problems.append(f"{at}: includes {r.name} tasks_from {tasks_from}, but roles/{r.name}/tasks/ has no such file")
        if tasks_from in (r.specs or {}):
            continue
        if stem != tasks_from and stem in (r.specs or {}):
            problems.append(
                f"{at}: {r.name} tasks_from {tasks_from}: Ansible looks the entry point up by this literal value, so the spec of "
                f"entry point {stem} is never checked; write tasks_from: {stem}"
            )
        else:
            literal = f" (then write tasks_from: {stem}; Ansible looks the entry point up by the literal value)" if stem != tasks_from else ""
            problems.append(f"{at}: {r.name} tasks_from {tasks_from}: meta/argument_specs.yml has no entry point {stem}{literal}")
    return problems


def rule_defaults_comments(r):
    lines = r.defaults_text.splitlines()
    index = 0
    while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith(("#", "---", "%"))):
        index += 1  # the header block
    problems = []
    while index < len(lines):
        if not lines[index].lstrip().startswith("#"):
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].lstrip().startswith("#"):
            index += 1
        comments = [line for line in lines[start:index] if not DIVIDER.match(line)]
        if len(comments) > 1:
            key = TOP_LEVEL_KEY.match(lines[index]) if index < len(lines) else None
            what = f"{key.group(1)}: {len(comments)} comment lines above it" if key else f"line {start + 1}: a comment of {len(comments)} lines"
            problems.append(f"{r.name}: defaults/main.yml: {what} (at most one; the description belongs in meta/argument_specs.yml)")
    return problems


def rule_shared_options(r):
    seen, problems = {}, []
    for entry in r.entry_points():
        for var, option in r.options(entry).items():
            if var in seen and not same(seen[var][1], option):
                first, other = seen[var]
                keys = sorted(k for k in set(other or {}) | set(option or {}) if not same((other or {}).get(k), (option or {}).get(k)))
                problems.append(f"{r.name}: entry point {entry}: {var}: differs from entry point {first} in {keys}")
            seen.setdefault(var, (entry, option))
    return problems


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", ROLES)
def test_role_has_argument_specs(name):
    report(name, "argument_specs", rule_argument_specs(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_defaults_match_main_spec(name):
    report(name, "defaults_match", rule_defaults_match(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_spec_defaults_equal_role_defaults(name):
    report(name, "spec_defaults", rule_spec_defaults(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_options_are_described_and_typed(name):
    report(name, "described_and_typed", rule_described_and_typed(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_variables_have_the_role_prefix(name):
    report(name, "prefix", rule_prefix(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_entry_points_have_task_files(name):
    report(name, "entry_points", rule_entry_points(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_included_task_files_have_entry_points(name):
    report(name, "included_task_files", rule_included_task_files(role(name), tasks_from_includes()[0].get(name, [])))


@pytest.mark.parametrize("name", ROLES)
def test_defaults_comments_are_one_line(name):
    report(name, "defaults_comments", rule_defaults_comments(role(name)))


@pytest.mark.parametrize("name", ROLES)
def test_shared_options_are_identical(name):
    report(name, "shared_options", rule_shared_options(role(name)))


def test_tasks_from_names_existing_roles():
    problems = tasks_from_includes()[1]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the rules themselves, on a sample role

SAMPLE_DEFAULTS = """---
# demo: a header block,
# two lines long (allowed)
demo_count: 1
# one line
demo_url: "{{ demo_base }}/gpg"
# first line
# second line
demo_list: [x]
# ---------------------------------------------------------------- a divider does not count
# one line under it
demo_models:
  - alias: a
other_flag: true
"""
SAMPLE_SPECS = {
    "main": {
        "short_description": "Demo",
        "options": {
            "demo_count": {"type": "int", "default": 1.0, "description": "Count."},
            "demo_url": {"type": "str", "description": "URL (computed in defaults/main.yml)."},
            "demo_list": {"type": "list", "default": ["x"], "description": "List."},
            "demo_models": {"type": "list", "elements": "dict", "description": "Models.", "options": {"alias": {"type": "str", "descripton": "typo"}}},
            "demo_token": {"type": "str", "no_log": True, "description": "Token."},
            "demo_orphan": {"type": "str", "description": "In no defaults."},
        },
    },
    "verify": {"options": {"demo_count": {"type": "int", "default": 1, "description": "Other text."}}},
}


@pytest.fixture(name="sample")
def fixture_sample(tmp_path):
    path = tmp_path / "roles" / "demo"
    (path / "defaults").mkdir(parents=True)
    (path / "meta").mkdir()
    (path / "tasks").mkdir()
    (path / "defaults" / "main.yml").write_text(SAMPLE_DEFAULTS, encoding="utf-8")
    (path / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": SAMPLE_SPECS}), encoding="utf-8")
    (path / "tasks" / "main.yml").write_text("---\n[]\n", encoding="utf-8")
    (path / "tasks" / "verify.yml").write_text("---\n[]\n", encoding="utf-8")
    (tmp_path / "galaxy.yml").write_text("namespace: ns\nname: coll\n", encoding="utf-8")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "verify.yml").write_text(
        "---\n- hosts: all\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: ns.coll.demo, tasks_from: verify.yml}\n"
        "    - ansible.builtin.import_role: {name: demo, tasks_from: drain}\n"
        "    - ansible.builtin.include_role: name=ns.coll.gone tasks_from=x\n"
        "    - ansible.builtin.include_role: {name: other.coll.role, tasks_from: x}\n",
        encoding="utf-8",
    )
    return Role(path)


def test_rules_name_role_entry_point_and_variable(sample):
    assert rule_argument_specs(sample) == []
    assert rule_defaults_match(sample) == [
        "demo: entry point main: other_flag: in defaults/main.yml but not described in meta/argument_specs.yml",
        "demo: entry point main: demo_orphan: in the spec but not in defaults/main.yml, and neither required nor a secret (no_log: true)",
    ]
    spec_defaults = rule_spec_defaults(sample)
    assert "demo: entry point main: demo_count: spec default 1.0 != defaults/main.yml 1" in spec_defaults
    assert not any("demo_url" in problem or "demo_list" in problem for problem in spec_defaults)
    assert any(problem.startswith("demo: entry point main: demo_models: defaults/main.yml sets") for problem in spec_defaults)
    typed = rule_described_and_typed(sample)
    assert "demo: entry point main: demo_list: type list without elements" in typed
    assert "demo: entry point main: demo_models[].alias: no description" in typed
    assert "demo: entry point main: demo_models[].alias: unknown keys ['descripton']" in typed
    assert "demo: entry point verify: no short_description" in typed
    assert rule_prefix(sample) == ["demo: defaults/main.yml: other_flag: does not start with demo_"]
    assert rule_entry_points(sample) == []
    assert rule_defaults_comments(sample) == [
        "demo: defaults/main.yml: demo_list: 2 comment lines above it (at most one; the description belongs in meta/argument_specs.yml)"
    ]
    assert rule_shared_options(sample) == ["demo: entry point verify: demo_count: differs from entry point main in ['default', 'description']"]


def test_tasks_from_scan_and_entry_points(sample):
    root = sample.path.parents[1]
    includes, problems = tasks_from_includes(root)
    assert includes == {"demo": [("playbooks/verify.yml:4", "verify.yml"), ("playbooks/verify.yml:5", "drain")]}
    assert problems == ["playbooks/verify.yml:6: includes role ns.coll.gone (tasks_from x), which does not exist under roles/"]
    found = rule_included_task_files(sample, includes["demo"])
    assert found[0].startswith("playbooks/verify.yml:4: demo tasks_from verify.yml: Ansible looks the entry point up by this literal value")
    assert found[1:] == [
        "playbooks/verify.yml:5: includes demo tasks_from drain, but roles/demo/tasks/ has no such file",
        "playbooks/verify.yml:5: demo tasks_from drain: meta/argument_specs.yml has no entry point drain",
    ]
    assert rule_included_task_files(sample, [("x.yml:1", "settings.yml")]) == [
        "x.yml:1: includes demo tasks_from settings.yml, but roles/demo/tasks/ has no such file",
        "x.yml:1: demo tasks_from settings.yml: meta/argument_specs.yml has no entry point settings "
        "(then write tasks_from: settings; Ansible looks the entry point up by the literal value)",
    ]


def test_values_compare_by_type():
    assert same({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not same(1, 1.0)
    assert not same(1, True)
    assert not same("1", 1)
    assert is_jinja(["{{ x }}"])
    assert not is_jinja("plain")
