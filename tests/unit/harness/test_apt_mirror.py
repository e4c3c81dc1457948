"""The harness derives the Debian mirror from the machine's own apt sources."""

import importlib.util
import pathlib

import pytest

HARNESS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "harness"
spec = importlib.util.spec_from_file_location("apt_mirror", HARNESS / "apt_mirror.py")
apt_mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(apt_mirror)

DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example.net/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.net/debian-security
Suites: bookworm-security
Components: main
"""


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_main_archive(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMOPS_DEBIAN_MIRROR", raising=False)
    write(tmp_path, "etc/apt/sources.list.d/debian.sources", DEB822)
    assert apt_mirror.debian_mirror(str(tmp_path)) == "http://mirror.example.net/debian"


def test_one_line_with_options_and_third_party_repos(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMOPS_DEBIAN_MIRROR", raising=False)
    write(tmp_path, "etc/apt/sources.list.d/vendor.list", "deb https://vendor.example/apt stable main\n")
    write(
        tmp_path,
        "etc/apt/sources.list",
        "# comment\ndeb [signed-by=/x.gpg arch=amd64] http://ftp.example.org/debian/ bookworm main contrib\n"
        "deb http://ftp.example.org/debian-security bookworm-security main\n",
    )
    assert apt_mirror.debian_mirror(str(tmp_path)) == "http://ftp.example.org/debian"


def test_disabled_and_security_only_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMOPS_DEBIAN_MIRROR", raising=False)
    write(tmp_path, "etc/apt/sources.list.d/d.sources", DEB822.replace("Components: main\nSigned", "Enabled: no\nComponents: main\nSigned"))
    with pytest.raises(LookupError, match="LLMOPS_DEBIAN_MIRROR"):
        apt_mirror.debian_mirror(str(tmp_path))


def test_environment_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_DEBIAN_MIRROR", "http://internal.example/debian/")
    assert apt_mirror.debian_mirror(str(tmp_path)) == "http://internal.example/debian"
