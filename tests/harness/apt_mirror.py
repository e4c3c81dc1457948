"""Find the Debian mirror this machine's apt already uses.

The test harness bootstraps Debian 13 images from the same mirror the host
uses, so no registry host name is ever written into this repository.
Reads one-line ``.list`` files and deb822 ``.sources`` files.

Usage: python3 apt_mirror.py [--root /]   -> prints the mirror URI (no trailing slash)
The environment variable LLMOPS_DEBIAN_MIRROR overrides the detection.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

SKIP_SUITE_SUFFIXES = ("-security", "-updates", "-backports", "-proposed-updates")


def _main_archive(uri: str, suites: list[str], components: list[str]) -> bool:
    if not uri.startswith(("http://", "https://")):
        return False
    if "main" not in components:
        return False
    if uri.rstrip("/").endswith("-security"):
        return False
    return any(not s.endswith(SKIP_SUITE_SUFFIXES) and "/" not in s for s in suites)


def parse_one_line(text: str) -> list[str]:
    """Mirrors from one-line ``deb [opts] URI SUITE COMPONENT...`` entries."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            rest = rest.split("]", 1)[1].strip() if "]" in rest else ""
        parts = rest.split()
        if len(parts) < 3:
            continue
        uri, suite, components = parts[0], parts[1], parts[2:]
        if _main_archive(uri, [suite], components):
            found.append(uri.rstrip("/"))
    return found


def parse_deb822(text: str) -> list[str]:
    """Mirrors from deb822 paragraphs (Types/URIs/Suites/Components)."""
    found = []
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for raw in para.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            if _main_archive(uri, suites, components):
                found.append(uri.rstrip("/"))
    return found


def debian_mirror(root: str = "/") -> str:
    override = os.environ.get("LLMOPS_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    candidates: list[str] = []
    apt_dir = os.path.join(root, "etc/apt")
    one_line = [os.path.join(apt_dir, "sources.list"), *sorted(glob.glob(os.path.join(apt_dir, "sources.list.d/*.list")))]
    deb822 = sorted(glob.glob(os.path.join(apt_dir, "sources.list.d/*.sources")))
    for path in deb822:
        with open(path, encoding="utf-8") as handle:
            candidates += parse_deb822(handle.read())
    for path in one_line:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                candidates += parse_one_line(handle.read())
    # Prefer an entry that really is a Debian archive (path ends in /debian).
    debian = [c for c in candidates if c.endswith("/debian")]
    if debian:
        return debian[0]
    raise LookupError(
        f"no Debian archive found in {apt_dir}; set LLMOPS_DEBIAN_MIRROR to your Debian mirror's URI"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/")
    args = parser.parse_args()
    try:
        print(debian_mirror(args.root))
    except LookupError as exc:
        print(f"apt_mirror: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
