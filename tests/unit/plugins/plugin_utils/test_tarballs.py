"""plugin_utils._tarballs: the form of gpu_stack_image_tarball_sha256 and the tarballs on the controller."""

from __future__ import annotations

import hashlib

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _tarballs


def test_checksums_must_name_a_tarball_and_be_64_hex_digits():
    found = _tarballs.checksum_problems(["/srv/a.tar"], {"/srv/a.tar": "xyz", "/srv/b.tar": "ab" * 32}, False)
    assert [(v, e.split(" (", maxsplit=1)[0]) for v, _value, e in found] == [
        ("gpu_stack_image_tarball_sha256[/srv/a.tar]", "a SHA-256 of 64 hex digits"),
        ("gpu_stack_image_tarball_sha256[/srv/b.tar]", "a key that is one of gpu_stack_image_tarballs"),
    ]
    assert _tarballs.checksum_problems(["/srv/a.tar"], {"/srv/a.tar": " " + "AB" * 32 + "\n"}, True) == []
    assert _tarballs.checksum_problems(["/srv/a.tar"], ["ab" * 32], False)[0][0] == "gpu_stack_image_tarball_sha256"


def test_checksums_are_optional_unless_the_lock_is_required():
    assert _tarballs.checksum_problems(["/srv/a.tar"], {}, False) == []
    (found,) = _tarballs.checksum_problems(["/srv/a.tar"], None, True)
    assert found[0] == "gpu_stack_image_tarball_sha256" and "an entry for /srv/a.tar" in found[2]


def test_file_problems_name_the_tarball_and_what_the_controller_holds(tmp_path):
    tarball = tmp_path / "stack.tar"
    tarball.write_bytes(b"not really a docker save archive")
    real = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert _tarballs.file_problems([str(tarball)], {str(tarball): real.upper()}) == []
    assert _tarballs.file_problems([str(tarball)], {}) == []
    other = "0" * 64
    (found,) = _tarballs.file_problems([str(tarball)], {str(tarball): other})
    assert found[0] == f"gpu_stack_image_tarball_sha256[{tarball}]" and found[1] == other
    assert f"the file on the controller has {real}" in found[2]
    missing = tmp_path / "missing.tar"
    found = _tarballs.file_problems(["images/stack.tar", str(missing)], {})
    assert [(v, value) for v, value, _e in found] == [
        ("gpu_stack_image_tarballs[0]", "images/stack.tar"), ("gpu_stack_image_tarballs[1]", str(missing))]
    assert found[0][2].startswith("an absolute path on the controller")
    assert found[1][2].startswith("a readable file on the controller")


def test_a_changed_file_is_hashed_again(tmp_path):
    tarball = tmp_path / "stack.tar"
    tarball.write_bytes(b"one")
    first = _tarballs.sha256_of(str(tarball))
    tarball.write_bytes(b"two, longer")
    assert _tarballs.sha256_of(str(tarball)) == hashlib.sha256(b"two, longer").hexdigest() != first


def test_copy_mismatch_names_the_copy_both_values_and_the_variable():
    sums = {"/srv/a.tar": "ab" * 32}
    same = {"stat": {"path": "/opt/llm-stack/images/a.tar", "checksum": "ab" * 32}, "item": {"item": "/srv/a.tar"}}
    assert _tarballs.copy_mismatch(same, sums) == ""
    other = {"stat": {"path": "/opt/llm-stack/images/a.tar", "checksum": "cd" * 32}, "item": {"item": "/srv/a.tar"}}
    assert _tarballs.copy_mismatch(other, sums) == (
        f"/opt/llm-stack/images/a.tar on the host has SHA-256 {'cd' * 32}, not gpu_stack_image_tarball_sha256[/srv/a.tar] = "
        f"{'ab' * 32}")
    missing = {"stat": {"exists": False}, "item": {"item": "/srv/a.tar"}}
    assert "has SHA-256 (missing)" in _tarballs.copy_mismatch(missing, sums)
