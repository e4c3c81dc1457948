"""Every role documents exactly its defaults in meta/argument_specs.yml, all role-prefixed."""

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()) if (ROOT / "roles").is_dir() else []


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", [r for r in ROLES if not r.startswith("_")])
def test_defaults_match_argument_specs(role):
    role_dir = ROOT / "roles" / role
    defaults = load(role_dir / "defaults" / "main.yml")
    specs = load(role_dir / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert all(name.startswith(role + "_") for name in defaults), "unprefixed default"
    assert all(name.startswith(role + "_") for name in specs), "unprefixed argument"
    missing_in_spec = sorted(set(defaults) - set(specs))
    assert not missing_in_spec, f"defaults not documented in argument_specs: {missing_in_spec}"
    # Options without a default must be required (secrets) or documented as optional.
    for name, spec in specs.items():
        assert spec.get("description"), f"{name} has no description"
        if name not in defaults and not spec.get("required"):
            assert "default" not in spec, f"{name}: spec default but none in defaults/main.yml"


@pytest.mark.parametrize("role", [r for r in ROLES if not r.startswith("_")])
def test_defaults_have_a_comment_each(role):
    lines = (ROOT / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-", "---")) and ":" in line:
            previous = lines[index - 1].strip() if index else ""
            assert previous.startswith("#"), f"{role}: '{line.split(':')[0]}' has no comment line above it"
