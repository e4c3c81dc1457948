"""Whole-host checks for molecule/default (pytest-testinfra)."""


def test_systemd_is_pid1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_debian_13(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("13")
