"""Secrets stay out of Ansible's output: two patterns that print them, found in every task file.

Ansible prints a task's result at -v, its module arguments at -vvv, and, for a loop, each item with
its result at -v. ``no_log: true`` hides one task's result, not what a later task does with it:

- test_container_info_is_no_log: ``community.docker.docker_container_info`` returns the whole
  ``docker inspect`` of a container, with ``Config.Env`` (the engine's key, the master key, the Redis
  password, read by Compose from the 0600 env files). Every such task must be ``no_log: true``.
- test_no_loop_over_secret_results: a task that loops over ``<name>.results`` prints every item at
  -v; when ``<name>`` was registered by a ``no_log`` task (its results hold the request's arguments:
  an Authorization header, an inspect with the environment), the loop prints what no_log hid. Such a
  loop must go over the inputs by index (``loop_control.index_var``) or be no_log itself.

Both were found by the -vvv dry run of molecule/default (docs/testing.md) and are now asserted for
every task file of roles/ and playbooks/, so a new task that repeats them fails here in a second.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TASK_FILES = sorted([*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml"), *ROOT.glob("playbooks/*.yml"),
                     ROOT / "site.yml"])
BLOCK_KEYS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def tasks_of(path: pathlib.Path):
    """Every task of a task file or playbook, blocks flattened; each with the no_log it inherits."""
    data = yaml.safe_load(path.read_text()) or []

    def walk(items, inherited):
        for item in items or []:
            if not isinstance(item, dict):
                continue
            no_log = item.get("no_log", inherited)
            nested = [key for key in BLOCK_KEYS if isinstance(item.get(key), list)]
            if nested:
                for key in nested:
                    yield from walk(item[key], no_log)
            else:
                yield item, no_log

    return list(walk(data, False))


def is_true(value) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes")


def test_the_files_are_found():
    # A glob that matched nothing would make both tests below pass on an empty list.
    assert len(TASK_FILES) > 30
    assert any(p.name == "drain.yml" for p in TASK_FILES)


def info_problems(path: pathlib.Path) -> list:
    return [task.get("name", "?") for task, no_log in tasks_of(path)
            if any(key.endswith("docker_container_info") for key in task) and not is_true(no_log)]


def loop_problems(path: pathlib.Path) -> list:
    tasks = tasks_of(path)
    hidden = {task["register"] for task, no_log in tasks if is_true(no_log) and task.get("register")}
    return [f"{task.get('name', '?')} loops over {name}.results"
            for task, no_log in tasks for name in sorted(hidden)
            if re.search(rf"\b{re.escape(name)}\.results\b", str(task.get("loop", "")) + str(task.get("with_items", "")))
            and not is_true(no_log)]


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_container_info_is_no_log(path):
    where = path.relative_to(ROOT)
    assert info_problems(path) == [], f"{where}: docker_container_info without no_log: true (its result holds Config.Env)"


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_loop_over_secret_results(path):
    where = path.relative_to(ROOT)
    assert loop_problems(path) == [], f"{where}: a loop prints its items at -v, these hold what no_log hid"


def test_the_checks_find_what_they_look_for(tmp_path):
    # Control: both patterns, as they were in drain.yml and engine_healthy.yml before the fix.
    sample = tmp_path / "tasks.yml"
    sample.write_text("""
- name: Ask
  ansible.builtin.uri:
    url: http://x
    headers: {Authorization: "Bearer {{ key }}"}
  loop: [a]
  register: asked
  no_log: true
- name: Check
  ansible.builtin.assert:
    that: true
  loop: "{{ asked.results }}"
- name: Inspect
  block:
    - name: Read the container
      community.docker.docker_container_info:
        name: x
- name: Quiet
  no_log: true
  block:
    - name: Read it quietly
      community.docker.docker_container_info:
        name: x
""")
    assert loop_problems(sample) == ["Check loops over asked.results"]
    assert info_problems(sample) == ["Read the container"]
