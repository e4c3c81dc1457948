"""Fail when the value of a secret appears in a log: the check behind "secrets never in Ansible output".

The secrets are the collection's own (plugins/plugin_utils/_settings.py SECRETS), their values read
from the test inventory (molecule/_shared/group_vars/shared.yml, TEST-ONLY values). For each log it
prints how many lines were read and, for each leak, the file, the line number and the variable's
name; never the value, and never the line (it holds the value).
Usage: python3 secret_scan.py --values molecule/_shared/group_vars/shared.yml LOG [LOG ...]
Exit status: 0 when no value appears in any log, 1 when one does, 2 on bad input (a log or a value
missing: a scan of nothing must not pass).
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "plugins" / "plugin_utils" / "_settings.py"


def secret_names(path: pathlib.Path = SETTINGS) -> tuple:
    """The SECRETS tuple of _settings.py, read without importing the collection."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SECRETS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ValueError(f"no SECRETS in {path}")


def secret_values(values_file: pathlib.Path, names) -> dict:
    data = yaml.safe_load(values_file.read_text()) or {}
    missing = [name for name in names if not str(data.get(name) or "")]
    if missing:
        raise ValueError(f"{values_file} sets no value for {', '.join(missing)}")
    short = [name for name in names if len(str(data[name])) < 12]
    if short:
        # A short value would match unrelated text; the test inventory's values are long and unique.
        raise ValueError(f"{values_file}: the values of {', '.join(short)} are too short to scan for")
    return {name: str(data[name]) for name in names}


def leaks(lines, values: dict):
    """(line number, variable name) for every line holding a value."""
    for number, line in enumerate(lines, 1):
        for name, value in values.items():
            if value in line:
                yield number, name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", required=True, type=pathlib.Path, help="YAML file with the secrets' test values")
    parser.add_argument("logs", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        values = secret_values(args.values, secret_names())
    except (OSError, ValueError) as exc:
        print(f"secret_scan: {exc}", file=sys.stderr)
        return 2
    found = 0
    for log in args.logs:
        if not log.is_file():
            print(f"secret_scan: {log}: no such log", file=sys.stderr)
            return 2
        lines = log.read_text(errors="replace").splitlines()
        hits = list(leaks(lines, values))
        for number, name in hits:
            print(f"{log}:{number}: the value of {name}")
        print(f"secret_scan: {log}: {len(lines)} lines, " + (f"{len(hits)} leaks" if hits else "no secret value"))
        found += len(hits)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
