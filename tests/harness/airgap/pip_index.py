"""TEST TOOL (molecule/default's air-gap proof): a site's PyPI mirror, as a folder.

Downloads, on the controller, the wheels that a hash lock of the collection names for the test
instance's Python (``pip download --require-hashes --only-binary :all:`` with the instance's version
and platform, so pip checks every file against the lock), and lays them out as a PEP 503 "simple"
index: ``simple/<project>/index.html`` linking ``files/<wheel>#sha256=...``. Any static web server
serves it; the instance runs ``python3 -m http.server`` on its loopback and the role's
``model_store_pip_index_url`` points at it, so the download client installs with no other source.

    pip_index.py --lock roles/model_store/files/pip/modelscope.txt --python-version 3.13 --glibc 2.41 --out DIR

Also writes DIR.tar (one file to copy into the instance). Prints the number of wheels on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile


def project(wheel: str) -> str:
    """The PEP 503 name of a wheel's project (its file name's first field)."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


def platforms(glibc: str, arch: str) -> list[str]:
    """The manylinux tags a host with this glibc accepts, newest first (pip does not widen --platform)."""
    major, minor = (int(p) for p in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", "linux_" + arch, "any"]


def build(lock: pathlib.Path, python_version: str, glibc: str, out: pathlib.Path) -> int:
    files = out / "files"
    if out.exists():
        shutil.rmtree(out)
    files.mkdir(parents=True)
    major, minor = python_version.split(".")[:2]
    subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                    "--require-hashes", "--no-deps", "--only-binary", ":all:",
                    "--python-version", f"{major}.{minor}", "--implementation", "cp",
                    "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none",
                    *[arg for tag in platforms(glibc, "x86_64") for arg in ("--platform", tag)],
                    "-r", str(lock), "-d", str(files)], check=True, timeout=1200)
    wheels = sorted(p.name for p in files.glob("*.whl"))
    by_project: dict[str, list[str]] = {}
    for wheel in wheels:
        by_project.setdefault(project(wheel), []).append(wheel)
    simple = out / "simple"
    for name, names in by_project.items():
        (simple / name).mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{html.escape(w)}#sha256={hashlib.sha256((files / w).read_bytes()).hexdigest()}">'
            f"{html.escape(w)}</a><br>\n" for w in names)
        (simple / name / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    (simple / "index.html").write_text("<!DOCTYPE html>\n<html><body>\n"
                                       + "".join(f'<a href="{n}/">{n}</a><br>\n' for n in sorted(by_project))
                                       + "</body></html>\n")
    with tarfile.open(f"{out}.tar", "w") as tar:
        for path in sorted(out.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(out)), recursive=False)
    return len(wheels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=pathlib.Path, required=True)
    parser.add_argument("--python-version", required=True, help="the instance's Python, e.g. 3.13")
    parser.add_argument("--glibc", default="2.41", help="the instance's glibc (Debian 13: 2.41)")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    print(build(args.lock, args.python_version, args.glibc, args.out))


if __name__ == "__main__":
    main()
