"""The validation phase (plugins/plugin_utils/_validate.py, action llmops.gpu_stack.validate_inputs).

Every problem names its host and the variable; the inputs of the sample fleet (fleet_inventory/,
shared with test_plan.py) pass, and through Ansible itself (real, lazily templated hostvars) the
plans are the ones the plan computes from the same inventory read by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4] / "collections"))

from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _plan, _validate

from .test_plan import SAMPLE_GROUPS, load_fleet

INVENTORY = pathlib.Path(__file__).with_name("fleet_inventory")
SECRETS = {"inference_engine_api_key": "engine-key-0123456789", "gateway_master_key": "sk-master-0123456789",
           "gateway_redis_password": "redis-pass-0123456789", "gateway_database_password": "db-pass-0123456789",
           "gateway_salt_key": "salt-key-0123456789"}
ALIAS_M = [{"alias": "m", "repo_id": "x/m"}]


def problems_of(host_vars, groups=None, host="a"):
    _plans, problems, _warnings = _validate.validate([host], {host: dict(SECRETS, **host_vars)}, groups or {"gpu_hosts": [host]})
    assert {p.host for p in problems} <= {host}
    return [(p.variable, p.line()) for p in problems]


@pytest.mark.parametrize(
    ("host_vars", "variable", "message"),
    [
        ({"inference_engine_model": "x", "gpu_stack_models": ALIAS_M}, "inference_engine_model",
         'inference_engine_model = "x": expected the alias of an entry of gpu_stack_models (m)'),
        ({"inference_engine_port": "http", "gpu_stack_models": ALIAS_M}, "inference_engine_port",
         'inference_engine_port = "http": expected a TCP port, a whole number from 1 to 65535'),
        # No plan rule for it: the argument spec's own words.
        ({"gpu_stack_firewall": "maybe", "gpu_stack_models": ALIAS_M}, "gpu_stack_firewall",
         "is of type str and we were unable to convert to bool"),
        ({"inference_engine_port": 70000, "gpu_stack_models": ALIAS_M}, "inference_engine_port",
         "inference_engine_port = 70000: expected a TCP port, a whole number from 1 to 65535"),
        ({"gpu_stack_models": [{"repo_id": "x/y"}]}, "gpu_stack_models", "gpu_stack_models[0]: alias is required"),
        ({"gpu_stack_models": "m"}, "gpu_stack_models", 'gpu_stack_models must be a list of dicts (one per model), got "m"'),
    ],
)
def test_errors_name_the_host_and_the_variable(host_vars, variable, message):
    problems = problems_of(host_vars)
    assert any(v == variable and message in line for v, line in problems), problems


def test_a_spec_names_a_typed_input_the_plan_cannot_use():
    """Without a plan (it could not be made) the stack roles' specs still name what they can."""
    problems = problems_of({"gateway_num_retries": "x"})
    assert ("gateway_num_retries", "argument 'gateway_num_retries' is of type str and we were unable to convert to int: \"'x'\" "
            "cannot be converted to an int (argument spec of gateway)") in problems


def test_an_inference_host_without_models_is_refused():
    """A host that serves nothing has no place in the inference group (drain it with rolling_update.yml instead)."""
    problems = problems_of({"gpu_stack_models": [], "gpu_stack_address": "10.0.0.9"},
                           {"inference_hosts": ["a"], "gateway_hosts": ["g"]})
    assert ("gpu_stack_models", "gpu_stack_models = []: expected the alias of an entry of gpu_stack_models (none is defined)") in problems


def test_the_sample_fleet_passes():
    hosts = ["gw-1", "gw-2", "gpu-a", "gpu-b", "gpu-c"]
    plans, problems, warnings = _validate.validate(hosts, load_fleet(), SAMPLE_GROUPS)
    assert (problems, warnings) == ([], [])
    # GPU engines: the toolkit too (nvidia_container_toolkit_enabled auto)
    assert {host: plan["roles"] for host, plan in plans.items()} == {
        "gw-1": ["nvidia_container_toolkit", "inference_engine", "gateway", "monitoring"], "gw-2": ["gateway", "monitoring"],
        **{host: ["nvidia_container_toolkit", "inference_engine"] for host in ("gpu-a", "gpu-b", "gpu-c")}}


def ansible_cli():
    sibling = pathlib.Path(sys.executable).with_name("ansible")
    return str(sibling) if sibling.exists() else shutil.which("ansible")


def test_through_ansible_with_real_hostvars(tmp_path):
    """ansible itself: the inventory's hostvars (lazy, templated) into validate_inputs by FQCN."""
    ansible = ansible_cli()
    if not ansible:
        pytest.skip("no ansible CLI here (ansible-test units runs without one)")
    collections_root = pathlib.Path(_plan.__file__).parents[5]
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    hosts = ["gw-1", "gw-2", "gpu-a", "gpu-b", "gpu-c"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_CONFIG=str(config))
    proc = subprocess.run([ansible, "gw-2", "-i", str(INVENTORY / "hosts.yml"), "-m", "llmops.gpu_stack.validate_inputs",
                           "-a", json.dumps({"hosts": hosts})],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("=>", 1)[1])
    assert result["msg"] == "every input of 5 host(s) is fine"
    expected = {host: _plan.stack_plan(host, load_fleet(), SAMPLE_GROUPS)[0] for host in hosts}
    assert result["plans"] == json.loads(json.dumps(expected))
    assert "test-gpu-b-own-key" not in proc.stdout, "the plans hold no secret value"
