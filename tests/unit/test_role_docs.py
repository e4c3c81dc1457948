"""tools/role_docs.py: the README variable blocks are generated from meta/argument_specs.yml and never stale.

test_readmes_are_up_to_date fails when a role's spec changed without `make docs`; the others test the
renderer on a small inline spec and the command line on a throw-away tree.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_role_docs():
    if "role_docs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("role_docs", ROOT / "tools" / "role_docs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["role_docs"] = module
        spec.loader.exec_module(module)
    return sys.modules["role_docs"]


role_docs = _load_role_docs()

SPEC = {
    "verify": {"short_description": "Check it", "options": {"demo_timeout": {"type": "int", "default": 5, "description": "Seconds."}}},
    "main": {
        "short_description": "A demo role",
        "description": ["First paragraph.", "Second one names <models_root>/<name> and C(code)."],
        "options": {
            "demo_name": {"type": "str", "default": "a|b", "description": "A pipe | here\nand a newline."},
            "demo_count": {"type": "int", "default": 3, "description": "A count."},
            "demo_plain": {"description": "No type given: Ansible takes str."},
            "demo_mode": {"type": "str", "choices": ["fast", "safe"], "default": "safe", "description": "Mode."},
            "demo_paths": {"type": "list", "elements": "path", "default": ["/a", "/b"], "description": "Paths."},
            "demo_long": {"type": "list", "elements": "str", "default": ["x" * 30, "y" * 30], "description": "Long list."},
            "demo_settings": {"type": "dict", "default": {}, "description": ["Settings,", "merged last."]},
            "demo_token": {"type": "str", "no_log": True, "description": "Token."},
            "demo_password": {"type": "str", "description": "Redis password (secret: use Ansible Vault)."},
            "demo_required": {"type": "str", "required": True, "description": "Keep `a<b>|c` as code."},
            "demo_models": {
                "type": "list",
                "elements": "dict",
                "default": [{"alias": "a", "source": "local"}],
                "description": "Models.",
                "options": {
                    "alias": {"type": "str", "required": True, "description": "Name."},
                    "engine": {
                        "type": "dict",
                        "description": "Engine settings.",
                        "options": {"gpus": {"type": "raw", "default": "all", "description": "GPUs."}},
                    },
                },
            },
        },
    },
    "teardown": {"short_description": "Remove it", "description": "Only this project.", "options": {}},
}


@pytest.fixture(name="block")
def fixture_block():
    return role_docs.render_block(SPEC)


def row(block, name):
    return next(line for line in block.splitlines() if line.startswith(f"| `{name}` |"))


def test_readmes_are_up_to_date():
    stale = role_docs.check(ROOT)
    if stale:
        names = ", ".join(item[0] for item in stale)
        diffs = "\n".join(item[1] for item in stale)
        pytest.fail(f"stale generated variables block in {names}; run `make docs` (python tools/role_docs.py)\n{diffs}", pytrace=False)


def test_markers_note_and_entry_point_order(block):
    lines = block.splitlines()
    assert lines[0] == role_docs.BEGIN_MARKER
    assert lines[1] == role_docs.NOTE
    assert lines[-1] == role_docs.END_MARKER
    titles = [line for line in lines if line.startswith("### ")]
    assert titles == ["### Entry point `main`: A demo role", "### Entry point `teardown`: Remove it", "### Entry point `verify`: Check it"]
    assert "No variables." in block.split("`teardown`")[1]


def test_description_paragraphs_markup_and_html(block):
    assert "\nFirst paragraph.\n\nSecond one names &lt;models_root&gt;/&lt;name&gt; and `code`.\n" in block


def test_table_header(block):
    assert "| variable | type | default | choices | required | description |\n| --- | --- | --- | --- | --- | --- |" in block


def test_types_with_element_type(block):
    assert row(block, "demo_count").split(" | ")[1] == "int"
    assert row(block, "demo_plain").split(" | ")[1] == "str"
    assert row(block, "demo_paths").split(" | ")[1] == "list of path"
    assert row(block, "demo_settings").split(" | ")[1] == "dict"
    assert row(block, "demo_models").split(" | ")[1] == "list of dict, keys below"


def test_defaults_inline_as_json(block):
    assert row(block, "demo_count") == "| `demo_count` | int | `3` |  | no | A count. |"
    assert row(block, "demo_paths").split(" | ")[2] == '`["/a", "/b"]`'
    assert row(block, "demo_settings").split(" | ")[2] == "`{}`"
    assert row(block, "demo_timeout").split(" | ")[2] == "`5`"


def test_pipes_and_newlines_escaped_in_cells(block):
    assert row(block, "demo_name") == '| `demo_name` | str | `"a\\|b"` |  | no | A pipe \\| here<br>and a newline. |'
    assert row(block, "demo_settings").endswith("| Settings,<br>merged last. |")
    assert row(block, "demo_required").endswith("| yes | Keep `a<b>\\|c` as code. |")


def test_choices(block):
    assert row(block, "demo_mode") == '| `demo_mode` | str | `"safe"` | `"fast"`, `"safe"` | no | Mode. |'


def test_secrets_have_no_default_shown(block):
    assert row(block, "demo_token").split(" | ")[2] == "secret, no default"
    assert row(block, "demo_password").split(" | ")[2] == "secret, no default"
    assert row(block, "demo_required").split(" | ")[2] == ""


def test_long_default_below_the_table(block):
    assert row(block, "demo_long").split(" | ")[2] == "(see below)"
    section = block.split("#### `demo_long`", 1)[1].split("####", 1)[0]
    assert f"Default:\n\n```yaml\ndemo_long:\n  - {'x' * 30}\n  - {'y' * 30}\n```" in section
    assert yaml.safe_load(section.split("```yaml\n")[1].split("```")[0]) == {"demo_long": SPEC["main"]["options"]["demo_long"]["default"]}


def test_nested_options_tables(block):
    assert row(block, "demo_models").split(" | ")[2] == "(see below)"
    section = block.split("#### `demo_models`", 1)[1]
    assert "```yaml\ndemo_models:\n  - alias: a\n    source: local\n```" in section
    assert "Keys of each element:\n\n| key | type | default | choices | required | description |" in section
    assert "| `alias` | str |  |  | yes | Name. |" in section
    assert "| `engine` | dict, keys below |  |  | no | Engine settings. |" in section
    deeper = section.split("##### `demo_models[].engine`", 1)[1]
    assert deeper.startswith("\n\nKeys:\n\n| key |")
    assert '| `gpus` | raw | `"all"` |  | no | GPUs. |' in deeper


def test_inline_limits():
    assert role_docs.inline_value({"live-restore": True}) == '{"live-restore": true}'
    assert role_docs.inline_value([{"a": 1}]) is None
    assert role_docs.inline_value("one\ntwo") is None
    assert role_docs.inline_value(["z" * role_docs.INLINE_LIMIT]) is None
    assert role_docs.inline_value("z" * role_docs.INLINE_LIMIT) == '"' + "z" * role_docs.INLINE_LIMIT + '"'
    assert role_docs.inline_value(None) == "null"
    assert role_docs.code("a`b") == "`` a`b ``"


def test_output_is_deterministic():
    shuffled = dict(reversed(list(SPEC.items())))
    assert role_docs.render_block(SPEC) == role_docs.render_block(shuffled) == role_docs.render_block(SPEC)


def test_update_keeps_prose_outside_the_markers():
    readme = f"# title\n\nhand-written\n\n{role_docs.BEGIN_MARKER}\nold table\n{role_docs.END_MARKER}\n\n## More\n\ntext\n"
    updated = role_docs.update_readme(readme, "demo", SPEC)
    assert updated.startswith("# title\n\nhand-written\n\n" + role_docs.BEGIN_MARKER)
    assert updated.endswith(role_docs.END_MARKER + "\n\n## More\n\ntext\n")
    assert "old table" not in updated
    assert role_docs.update_readme(updated, "demo", SPEC) == updated


def test_new_and_unmarked_readmes():
    created = role_docs.update_readme(None, "demo", SPEC, "ns.coll")
    assert created.startswith("# ns.coll.demo\n\nA demo role.\n\n## Variables\n\n" + role_docs.BEGIN_MARKER)
    appended = role_docs.update_readme("# demo\n\nprose\n", "demo", SPEC)
    assert appended.startswith("# demo\n\nprose\n\n## Role variables\n\n" + role_docs.BEGIN_MARKER)
    with pytest.raises(role_docs.SpecError):
        role_docs.update_readme(f"{role_docs.END_MARKER}\n{role_docs.BEGIN_MARKER}\n", "demo", SPEC)


def write_role(root, name, spec):
    meta = root / "roles" / name / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": spec}, sort_keys=False), encoding="utf-8")


def test_command_line_check_and_write(tmp_path, capsys):
    (tmp_path / "galaxy.yml").write_text("namespace: ns\nname: coll\n", encoding="utf-8")
    write_role(tmp_path, "demo", SPEC)
    (tmp_path / "roles" / "bare" / "tasks").mkdir(parents=True)
    assert role_docs.main(["--root", str(tmp_path), "--check"]) == 1
    out, err = capsys.readouterr()
    assert "roles/demo/README.md: generated variables block is stale" in out
    assert "+++ b/roles/demo/README.md" in out and "+" + role_docs.BEGIN_MARKER in out
    assert "roles/bare: no meta/argument_specs.yml" in err
    assert not (tmp_path / "roles" / "demo" / "README.md").exists()

    assert role_docs.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "roles" / "demo" / "README.md").read_text(encoding="utf-8").startswith("# ns.coll.demo\n")
    assert role_docs.main(["--root", str(tmp_path), "--check"]) == 0

    changed = {**SPEC, "main": {**SPEC["main"], "short_description": "Renamed"}}
    write_role(tmp_path, "demo", changed)
    capsys.readouterr()
    assert role_docs.main(["--root", str(tmp_path), "--check", "demo"]) == 1
    out = capsys.readouterr().out
    assert "-### Entry point `main`: A demo role" in out and "+### Entry point `main`: Renamed" in out
    assert "1 of 1 READMEs stale: roles/demo/README.md" in out
    assert role_docs.main(["--root", str(tmp_path), "nosuchrole"]) == 2
