"""plugins/modules/docker_daemon_json.py and its module_utils: the merge and removal rules, validation
before replace, backup, check mode, and the restart with its rollback branches.

The file lives in a temporary folder; dockerd, systemctl, docker and journalctl are fakes that record
their argv (FakeHost), and the wait for `docker info` runs on a fake clock.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import stat
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(ROOT / "collections"))

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _docker_daemon_json as dj
from ansible_collections.llmops.gpu_stack.plugins.modules import docker_daemon_json

NVIDIA = {"path": "nvidia-container-runtime", "runtimeArgs": []}
MEMLOCK = {"Name": "memlock", "Hard": -1, "Soft": -1}
FOREIGN = {
    "registry-mirrors": ["https://mirror.internal.example"],
    "log-opts": {"max-size": "10m"},
    "runtimes": {"crun-test": {"path": "/usr/bin/runc"}},
}
# The nvidia_container_toolkit role's keys with both switches on.
TOOLKIT = [
    {"key": ["runtimes", "nvidia"], "value": NVIDIA, "state": "present"},
    {"key": ["default-runtime"], "value": "nvidia", "state": "present"},
    {"key": ["default-ulimits", "memlock"], "value": MEMLOCK, "state": "present"},
]


def switched_off(*names):
    """TOOLKIT with the named keys (last key name) switched off."""
    return [dict(s, state="absent") if s["key"][-1] in names else s for s in TOOLKIT]


# ---------------------------------------------------------------- merge rules


def test_merge_keeps_foreign_keys_and_adds_the_callers():
    result = dj.desired(FOREIGN, TOOLKIT)
    assert result == {
        "registry-mirrors": ["https://mirror.internal.example"],
        "log-opts": {"max-size": "10m"},
        "runtimes": {"crun-test": {"path": "/usr/bin/runc"}, "nvidia": NVIDIA},
        "default-runtime": "nvidia",
        "default-ulimits": {"memlock": MEMLOCK},
    }
    assert FOREIGN["runtimes"] == {"crun-test": {"path": "/usr/bin/runc"}}, "the input was changed in place"


def test_merge_is_last_and_replaces_lists():
    current = {"registry-mirrors": ["https://a.example"], "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 1, "Soft": 1}}}
    merge = {"registry-mirrors": ["https://b.example"], "default-ulimits": {"memlock": {"Name": "memlock", "Hard": 65536, "Soft": 65536}}}
    result = dj.desired(current, TOOLKIT, merge)
    assert result["registry-mirrors"] == ["https://b.example"]
    # The site's memlock wins over the caller's -1; the file's nofile stays.
    assert result["default-ulimits"] == {
        "nofile": {"Name": "nofile", "Hard": 1, "Soft": 1},
        "memlock": {"Name": "memlock", "Hard": 65536, "Soft": 65536},
    }


def test_present_replaces_a_non_object_on_the_way():
    assert dj.desired({"default-ulimits": "bogus"}, TOOLKIT[2:]) == {"default-ulimits": {"memlock": MEMLOCK}}


def test_present_merges_into_an_object_already_there():
    current = {"runtimes": {"nvidia": {"path": "/opt/nvidia-container-runtime", "runtimeArgs": ["--debug"], "extra": 1}}}
    result = dj.desired(current, TOOLKIT[:1])
    assert result["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "runtimeArgs": [], "extra": 1}


def test_switched_off_default_runtime_is_removed_when_it_is_ours():
    current = dj.desired(FOREIGN, TOOLKIT)
    result = dj.desired(current, switched_off("default-runtime"))
    assert "default-runtime" not in result
    assert result["runtimes"]["nvidia"] == NVIDIA


def test_switched_off_default_runtime_of_the_site_stays():
    current = dict(FOREIGN, **{"default-runtime": "crun-test"})
    assert dj.desired(current, switched_off("default-runtime"))["default-runtime"] == "crun-test"


def test_switched_off_memlock_is_removed_with_the_object_it_leaves_empty():
    current = dj.desired(FOREIGN, TOOLKIT)
    result = dj.desired(current, switched_off("memlock"))
    assert "default-ulimits" not in result
    assert result["default-runtime"] == "nvidia"


MEMLOCK_OFF = [dict(TOOLKIT[2], state="absent")]


def test_switched_off_memlock_leaves_other_ulimits():
    current = {"default-ulimits": {"memlock": dict(MEMLOCK), "nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}
    result = dj.desired(current, MEMLOCK_OFF)
    assert result == {"default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}


@pytest.mark.parametrize(
    "theirs",
    [
        pytest.param({"Name": "memlock", "Hard": 65536, "Soft": 65536}, id="another-limit"),
        pytest.param({"Name": "memlock", "Hard": -1.0, "Soft": -1}, id="float-is-not-int"),
        pytest.param({"Name": "memlock", "Hard": -1, "Soft": -1, "Extra": True}, id="more-keys"),
        pytest.param("unlimited", id="not-an-object"),
    ],
)
def test_switched_off_memlock_that_is_not_ours_stays(theirs):
    current = {"default-ulimits": {"memlock": theirs}}
    assert dj.desired(current, MEMLOCK_OFF) == current


def test_switched_off_key_that_is_missing_changes_nothing():
    assert dj.desired(FOREIGN, switched_off("default-runtime", "memlock", "nvidia")) == FOREIGN


def test_removal_prunes_only_the_objects_it_empties():
    current = {"a": {"b": {"c": 1}}, "x": {}}
    assert dj.desired(current, [{"key": ["a", "b", "c"], "value": 1, "state": "absent"}]) == {"x": {}}
    current = {"a": {"b": {"c": 1}, "keep": True}}
    assert dj.desired(current, [{"key": ["a", "b", "c"], "value": 1, "state": "absent"}]) == {"a": {"keep": True}}


def test_bool_and_int_are_different_values():
    current = {"debug": 1}
    assert dj.desired(current, [{"key": ["debug"], "value": True, "state": "absent"}]) == {"debug": 1}
    assert not dj.same({"debug": 1}, {"debug": True})
    assert dj.same({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})


def test_absent_settings_apply_before_present_ones():
    settings = [
        {"key": ["default-runtime"], "value": "nvidia", "state": "present"},
        {"key": ["default-runtime"], "value": "nvidia", "state": "absent"},
    ]
    assert dj.desired({}, settings) == {"default-runtime": "nvidia"}


def test_changed_keys_names_the_leaves_that_moved():
    before = dict(FOREIGN, **{"default-runtime": "runc"})
    after = dj.desired(before, TOOLKIT)
    assert dj.changed_keys(before, after) == ["default-runtime", "default-ulimits", "runtimes.nvidia"]
    assert dj.changed_keys(after, after) == []


def test_render_is_stable_and_ends_with_a_newline():
    text = dj.render({"b": 1, "a": {"d": [1], "c": "x"}})
    assert text == '{\n  "a": {\n    "c": "x",\n    "d": [\n      1\n    ]\n  },\n  "b": 1\n}\n'


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_file_counts_as_an_empty_object(text):
    assert dj.parse(text) == {}


def test_invalid_json_names_the_file():
    with pytest.raises(dj.DaemonJsonError) as err:
        dj.parse('{"log-opts": {"max-size": "10m"\n', "/etc/docker/daemon.json")
    assert err.value.msg.startswith("/etc/docker/daemon.json is not valid JSON (")
    assert "left untouched" in err.value.msg and "python3 -m json.tool /etc/docker/daemon.json" in err.value.msg


def test_json_that_is_not_an_object_is_refused():
    with pytest.raises(dj.DaemonJsonError) as err:
        dj.parse('["a"]', "/etc/docker/daemon.json")
    assert "valid JSON but not an object" in err.value.msg


def test_a_setting_needs_a_key():
    with pytest.raises(dj.DaemonJsonError, match=r"settings\[0\]\.key"):
        dj.check_settings([{"key": [], "value": 1}])


# ---------------------------------------------------------------- the file, dockerd and the service


class FakeHost:
    """dockerd/systemctl/docker/journalctl stand-ins. Every argv is recorded in .calls."""

    def __init__(self, *, programs=("dockerd", "systemctl", "docker", "journalctl"), validate_help=True, refuse=None,
                 restart_rc=(0,), answers=True):
        self.programs = set(programs)
        self.validate_help = validate_help
        self.refuse = refuse  # stderr of a refusing `dockerd --validate`
        self.restart_rc = list(restart_rc)  # rc of each `systemctl restart` in turn (the last one repeats)
        self.answers = answers  # `docker info` answers (True), never (False), or a list per call
        self.calls = []
        self.validated = []  # the candidate texts dockerd saw
        self.now = 0.0

    def which(self, name):
        return "/usr/bin/" + name if name in self.programs else None

    def run(self, argv):
        self.calls.append(list(argv))
        name, args = os.path.basename(argv[0]), argv[1:]
        if name == "dockerd" and args == ["--help"]:
            return 0, "  --validate   Validate daemon configuration and exit\n" if self.validate_help else "  --version\n", ""
        if name == "dockerd" and args[:2] == ["--validate", "--config-file"]:
            with open(args[2], encoding="utf-8") as handle:
                self.validated.append(handle.read())
            if self.refuse:
                return 1, "", f"unable to configure the Docker daemon with file {args[2]}: {self.refuse}\n"
            return 0, "configuration OK\n", ""
        if name == "systemctl" and args[:1] == ["restart"]:
            rc = self.restart_rc.pop(0) if len(self.restart_rc) > 1 else self.restart_rc[0]
            return rc, "", "" if rc == 0 else "Job for docker.service failed because the control process exited with error code.\n"
        if name == "systemctl" and args[:1] == ["reset-failed"]:
            return 0, "", ""
        if name == "docker" and args[:1] == ["info"]:
            answer = self.answers.pop(0) if isinstance(self.answers, list) else self.answers
            return (0, "26.1.5\n", "") if answer else (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n")
        if name == "journalctl":
            return 0, "dockerd: unable to configure the Docker daemon\nfailed to start daemon: hosts conflict\n", ""
        raise AssertionError(f"unexpected command {argv!r}")

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def commands(self):
        """The calls as 'program first-arg' strings."""
        return [" ".join([os.path.basename(c[0])] + c[1:2]) for c in self.calls]


@pytest.fixture
def daemon_json(tmp_path):
    return tmp_path / "docker" / "daemon.json"


def manager(path, host, **kw):
    kw.setdefault("settings", TOOLKIT)
    return dj.DaemonJson(path=str(path), run=host.run, which=host.which, clock=host.clock, sleep=host.sleep, tmpdir=str(path.parent.parent), **kw)


def seed(path, doc_or_text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text), encoding="utf-8")
    path.chmod(mode)


def backups(path):
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".") and p.name.endswith("~"))


def test_a_new_file_is_written_0644_validated_and_not_backed_up(daemon_json):
    host = FakeHost()
    result = manager(daemon_json, host).run()
    assert result["changed"] is True and result["validated"] is True
    assert result["validation"] == "validated by dockerd --validate"
    assert json.loads(daemon_json.read_text()) == dj.desired({}, TOOLKIT)
    assert stat.S_IMODE(daemon_json.stat().st_mode) == 0o644
    assert "backup_file" not in result and backups(daemon_json) == []
    assert result["diff"]["before"] == "" and result["diff"]["before_header"].endswith("(absent)")
    assert host.validated == [daemon_json.read_text()], "dockerd validated something else than what was installed"
    assert host.commands() == ["dockerd --help", "dockerd --validate"]


def test_merge_into_an_existing_file_keeps_a_backup_and_the_mode(daemon_json):
    seed(daemon_json, FOREIGN, mode=0o600)
    before = daemon_json.read_bytes()
    result = manager(daemon_json, FakeHost()).run()
    assert result["changed"] is True
    assert result["changed_keys"] == ["default-runtime", "default-ulimits", "runtimes.nvidia"]
    assert json.loads(daemon_json.read_text())["registry-mirrors"] == FOREIGN["registry-mirrors"]
    assert stat.S_IMODE(daemon_json.stat().st_mode) == 0o600
    assert [str(p) for p in backups(daemon_json)] == [result["backup_file"]]
    assert pathlib.Path(result["backup_file"]).read_bytes() == before
    assert result["diff"]["before"] == before.decode()


def test_no_backup_when_switched_off(daemon_json):
    seed(daemon_json, FOREIGN)
    result = manager(daemon_json, FakeHost(), backup=False).run()
    assert result["changed"] and "backup_file" not in result and backups(daemon_json) == []


def test_the_same_content_in_another_layout_is_not_rewritten(daemon_json):
    text = json.dumps(dj.desired(FOREIGN, TOOLKIT), indent=8)  # unsorted keys, wide indent
    seed(daemon_json, text)
    host = FakeHost()
    result = manager(daemon_json, host, restart=True).run()
    assert result["changed"] is False and result["changed_keys"] == [] and "diff" not in result
    assert daemon_json.read_text() == text
    assert host.calls == [], "nothing to validate or restart"


def test_no_file_and_nothing_to_write_stays_absent(daemon_json):
    host = FakeHost()
    result = manager(daemon_json, host, settings=switched_off("nvidia", "default-runtime", "memlock")).run()
    assert result["changed"] is False and not daemon_json.exists() and host.calls == []


def test_an_empty_file_counts_as_empty_object(daemon_json):
    seed(daemon_json, "")
    result = manager(daemon_json, FakeHost(), settings=switched_off("nvidia", "default-runtime", "memlock")).run()
    assert result["changed"] is False and daemon_json.read_text() == ""


@pytest.mark.parametrize("text", ['{"log-opts": {"max-size": "10m"\n', "[1, 2]", "\xff"])
def test_an_unreadable_file_fails_and_stays_byte_for_byte(daemon_json, text):
    daemon_json.parent.mkdir(parents=True)
    data = text.encode("latin-1")
    daemon_json.write_bytes(data)
    host = FakeHost()
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, restart=True).run()
    assert str(daemon_json) in err.value.msg and "left untouched" in err.value.msg
    assert daemon_json.read_bytes() == data and host.calls == []


def test_a_candidate_dockerd_refuses_is_never_installed(daemon_json):
    seed(daemon_json, FOREIGN)
    before = daemon_json.read_bytes()
    host = FakeHost(refuse='the following directives don\'t match any configuration option: tk-no-such-option')
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, merge={"tk-no-such-option": True}, restart=True).run()
    assert err.value.msg.startswith(f"dockerd --validate refused the new {daemon_json} (rc=1): unable to configure")
    assert "<candidate>" in err.value.msg and "tk-no-such-option" in err.value.msg
    assert "left untouched and Docker was not restarted" in err.value.msg
    assert daemon_json.read_bytes() == before and backups(daemon_json) == []
    assert not any(c[0].endswith("systemctl") for c in host.calls)
    assert [p.name for p in daemon_json.parent.iterdir()] == ["daemon.json"], "a candidate was left behind"


def test_without_validate_support_the_file_is_written_and_says_so(daemon_json):
    result = manager(daemon_json, FakeHost(validate_help=False)).run()
    assert result["changed"] and result["validated"] is False
    assert result["validation"] == "not validated: this dockerd has no --validate (Docker older than 23)"
    assert daemon_json.exists()


def test_without_dockerd_the_file_is_written_and_says_so(daemon_json):
    result = manager(daemon_json, FakeHost(programs=("systemctl", "docker"))).run()
    assert result["validated"] is False and result["validation"].startswith("not validated: dockerd not found")


def test_validate_false_does_not_ask_dockerd(daemon_json):
    host = FakeHost()
    result = manager(daemon_json, host, validate=False).run()
    assert result["validation"] == "not validated: validate is false" and host.calls == []


def test_dockerd_path_that_does_not_exist(daemon_json, tmp_path):
    result = manager(daemon_json, FakeHost(), dockerd_path=str(tmp_path / "no-dockerd")).run()
    assert result["validated"] is False and "no-dockerd" in result["validation"]


def test_check_mode_validates_but_writes_and_restarts_nothing(daemon_json):
    seed(daemon_json, FOREIGN)
    before = daemon_json.read_bytes()
    host = FakeHost()
    result = manager(daemon_json, host, restart=True, check_mode=True).run()
    assert result["changed"] is True and result["validated"] is True and result["restarted"] is False
    assert result["config"] == dj.desired(FOREIGN, TOOLKIT)
    assert daemon_json.read_bytes() == before and backups(daemon_json) == []
    assert host.commands() == ["dockerd --help", "dockerd --validate"]


def test_check_mode_reports_a_refusal(daemon_json):
    host = FakeHost(refuse="invalid default-ulimits")
    with pytest.raises(dj.DaemonJsonError, match="refused"):
        manager(daemon_json, host, merge={"default-ulimits": "bogus"}, check_mode=True).run()
    assert not daemon_json.exists()


def test_restart_waits_until_docker_answers(daemon_json):
    host = FakeHost(answers=[False, False, True])
    result = manager(daemon_json, host, restart=True).run()
    assert result["restarted"] is True and result["rolled_back"] is False
    assert host.commands() == ["dockerd --help", "dockerd --validate", "systemctl restart", "docker info", "docker info", "docker info"]
    assert host.calls[2] == ["/usr/bin/systemctl", "restart", "docker"]
    assert host.calls[3] == ["/usr/bin/docker", "info", "--format", "{{.ServerVersion}}"]
    assert host.now == 4.0


def test_no_restart_unless_asked(daemon_json):
    host = FakeHost()
    result = manager(daemon_json, host).run()
    assert result["changed"] and result["restarted"] is False
    assert not any(c[0].endswith("systemctl") for c in host.calls)


def test_a_refused_restart_puts_the_previous_file_back(daemon_json):
    seed(daemon_json, FOREIGN, mode=0o640)
    before = daemon_json.read_bytes()
    host = FakeHost(restart_rc=(1, 0))
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, merge={"hosts": ["unix:///run/docker.sock"]}, restart=True, service="docker").run()
    msg, result = err.value.msg, err.value.result
    assert msg.startswith(f"Docker did not come back with the new {daemon_json} (systemctl restart docker failed (rc=1): Job for")
    assert f"The previous {daemon_json} was put back and Docker restarted with it" in msg
    assert "journalctl -u docker" in msg
    assert daemon_json.read_bytes() == before and stat.S_IMODE(daemon_json.stat().st_mode) == 0o640
    rejected = pathlib.Path(result["rejected_file"])
    assert rejected == daemon_json.with_name("daemon.json.rejected")
    assert json.loads(rejected.read_text())["hosts"] == ["unix:///run/docker.sock"]
    assert result["rolled_back"] is True and result["changed"] is True and result["config"] == FOREIGN
    assert result["journal"][-1] == "failed to start daemon: hosts conflict"
    # The backup of the previous file is still there.
    assert pathlib.Path(result["backup_file"]).read_bytes() == before
    assert host.commands() == [
        "dockerd --help", "dockerd --validate", "systemctl restart", "journalctl -u",
        "systemctl reset-failed", "systemctl restart", "docker info",
    ]
    assert ["/usr/bin/systemctl", "reset-failed", "docker.service"] in host.calls


def test_a_refused_restart_without_a_previous_file_removes_the_new_one(daemon_json):
    host = FakeHost(restart_rc=(1, 0))
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, restart=True).run()
    assert f"There was no {daemon_json} before, so the new one was removed and Docker restarted with it" in err.value.msg
    assert not daemon_json.exists()
    assert daemon_json.with_name("daemon.json.rejected").exists()
    assert err.value.result["rolled_back"] is True and "backup_file" not in err.value.result and err.value.result["config"] == {}


def test_docker_that_never_answers_is_rolled_back_after_the_timeout(daemon_json):
    seed(daemon_json, FOREIGN)
    before = daemon_json.read_bytes()
    # First restart: `docker info` never answers within 10 s; after the rollback it answers at once.
    host = FakeHost(answers=[False] * 6 + [True])
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, restart=True, restart_timeout=10).run()
    assert "(no answer from `docker info` within 10 s: Cannot connect to the Docker daemon" in err.value.msg
    assert daemon_json.read_bytes() == before
    assert host.commands().count("docker info") == 7 and host.now == 10.0


def test_a_rollback_that_does_not_bring_docker_back_says_so(daemon_json):
    seed(daemon_json, FOREIGN)
    before = daemon_json.read_bytes()
    host = FakeHost(restart_rc=(1, 1))
    with pytest.raises(dj.DaemonJsonError) as err:
        manager(daemon_json, host, restart=True).run()
    assert f"The previous {daemon_json} was put back, but Docker did not come back with it either (systemctl restart docker failed" in err.value.msg
    assert daemon_json.read_bytes() == before and err.value.result["rolled_back"] is True


# ---------------------------------------------------------------- the module (main)


def run_module(capsys, monkeypatch, host, args):
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kw: host.run(argv))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: host.which(name))
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        docker_daemon_json.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_module_check_mode_with_diff(capsys, monkeypatch, daemon_json):
    seed(daemon_json, FOREIGN)
    host = FakeHost()
    rc, result = run_module(capsys, monkeypatch, host, {
        "path": str(daemon_json), "settings": TOOLKIT, "restart": True, "_ansible_check_mode": True, "_ansible_diff": True,
    })
    assert rc == 0 and result["changed"] is True and result["restarted"] is False
    assert json.loads(result["diff"]["after"]) == dj.desired(FOREIGN, TOOLKIT)
    assert json.loads(daemon_json.read_text()) == FOREIGN


def test_module_settings_defaults_and_no_diff_without_diff_mode(capsys, monkeypatch, daemon_json):
    host = FakeHost()
    rc, result = run_module(capsys, monkeypatch, host, {
        "path": str(daemon_json), "settings": [{"key": ["default-runtime"], "value": "nvidia"}],
    })
    assert rc == 0 and result["changed"] and "diff" not in result
    assert json.loads(daemon_json.read_text()) == {"default-runtime": "nvidia"}
    assert result["config"] == {"default-runtime": "nvidia"}


def test_module_warns_when_it_writes_unvalidated(capsys, monkeypatch, daemon_json):
    # Recorded here: where controller code was imported before (other unit tests), ansible-core sends
    # module warnings to the display instead of the result.
    warnings = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg, *a, **kw: warnings.append(msg))
    rc, result = run_module(capsys, monkeypatch, FakeHost(validate_help=False), {"path": str(daemon_json), "merge": {"live-restore": True}})
    assert rc == 0 and result["validated"] is False
    assert warnings == [f"{daemon_json} was written without validation: this dockerd has no --validate (Docker older than 23)."]


def test_module_fails_with_the_rollback_result(capsys, monkeypatch, daemon_json):
    rc, result = run_module(capsys, monkeypatch, FakeHost(restart_rc=(1, 0)), {
        "path": str(daemon_json), "merge": {"hosts": ["unix:///run/docker.sock"]}, "restart": True,
    })
    assert rc == 1 and result["failed"] is True and result["rolled_back"] is True
    assert "There was no" in result["msg"] and not daemon_json.exists()


def test_module_refuses_an_unknown_state(capsys, monkeypatch, daemon_json):
    rc, result = run_module(capsys, monkeypatch, FakeHost(), {
        "path": str(daemon_json), "settings": [{"key": ["debug"], "value": True, "state": "off"}],
    })
    assert rc == 1 and "state" in result["msg"] and not daemon_json.exists()


def test_module_integer_values_stay_integers(capsys, monkeypatch, daemon_json):
    rc = run_module(capsys, monkeypatch, FakeHost(), {"path": str(daemon_json), "settings": TOOLKIT[2:]})[0]
    assert rc == 0
    assert json.loads(daemon_json.read_text()) == {"default-ulimits": {"memlock": {"Name": "memlock", "Hard": -1, "Soft": -1}}}
    assert '"Hard": -1,' in daemon_json.read_text()
