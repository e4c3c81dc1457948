"""plugins/filter/topology.py: gateway_model_list, gateway_engine_keys, stack_addresses.

The sample fleet in fleet_inventory/ mixes what real host_vars do: two gateways (gw-1 also runs an
engine), hosts with another alias, another port, an address other than ansible_host, a key of their
own, a context length of their own, and one host serving nothing.
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
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[4]
if importlib.util.find_spec("ansible_collections.llmops") is None:  # plain pytest in the checkout: collections/ links the repo
    sys.path.insert(0, str(ROOT / "collections"))

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.filter import topology
from ansible_collections.llmops.gpu_stack.plugins.filter.topology import FilterModule

FILTERS = FilterModule().filters()
INVENTORY = pathlib.Path(__file__).with_name("fleet_inventory")
INFERENCE = ["gw-1", "gpu-a", "gpu-b", "gpu-c", "gpu-d"]
SHARED_KEY = "test-shared-engine-key"


def load_fleet():
    """hostvars of the sample inventory as Ansible merges them (all < host entry < host_vars)."""
    with open(INVENTORY / "hosts.yml", encoding="utf-8") as handle:
        tree = yaml.safe_load(handle)
    with open(INVENTORY / "group_vars" / "all.yml", encoding="utf-8") as handle:
        group_all = yaml.safe_load(handle)
    hostvars = {}
    for group in tree["all"]["children"].values():
        for host, entry in group["hosts"].items():
            hostvars.setdefault(host, dict(group_all)).update(entry or {})
    for path in (INVENTORY / "host_vars").glob("*.yml"):
        with open(path, encoding="utf-8") as handle:
            hostvars[path.stem].update(yaml.safe_load(handle) or {})
    return hostvars


@pytest.fixture
def fleet():
    return load_fleet()


def by_id(model_list):
    return {entry["model_info"]["id"]: entry for entry in model_list}


def test_filters_are_exported():
    assert set(FILTERS) == {"gateway_model_list", "gateway_engine_keys", "stack_addresses"}


def test_model_list_from_the_sample_fleet_seen_by_gw_2(fleet):
    models = FILTERS["gateway_model_list"](fleet, INFERENCE, "gw-2", port=8001, max_model_len=32768, api_key=SHARED_KEY)
    # gpu-d serves nothing: 4 deployments, grouped by alias (qwen3-8b first: gw-1 lists it first)
    assert [(m["model_name"], m["model_info"]["id"]) for m in models] == [
        ("qwen3-8b", "gw-1/qwen3-8b"),
        ("qwen3-8b", "gpu-a/qwen3-8b"),
        ("qwen3-8b", "gpu-b/qwen3-8b"),
        ("qwen2.5-0.5b", "gpu-c/qwen2.5-0.5b"),
    ]
    found = by_id(models)
    assert found["gw-1/qwen3-8b"]["litellm_params"] == {
        "model": "hosted_vllm/qwen3-8b", "api_base": "http://10.0.0.5:8001/v1", "api_key": "os.environ/VLLM_API_KEY"}
    # llm_stack_address wins over a non-IP ansible_host; its own port and key; its own context length
    assert found["gpu-b/qwen3-8b"]["litellm_params"] == {
        "model": "hosted_vllm/qwen3-8b", "api_base": "http://10.0.0.12:8002/v1", "api_key": "os.environ/VLLM_API_KEY_GPU_B"}
    assert found["gpu-b/qwen3-8b"]["model_info"]["max_input_tokens"] == 16384
    assert found["gpu-a/qwen3-8b"]["model_info"] == {"id": "gpu-a/qwen3-8b", "mode": "chat", "max_input_tokens": 32768}
    # the model entry's engine.max_model_len wins; its litellm_model_info is merged in
    assert found["gpu-c/qwen2.5-0.5b"]["model_info"] == {
        "id": "gpu-c/qwen2.5-0.5b", "mode": "chat", "max_input_tokens": 4096, "supports_function_calling": False}
    assert found["gpu-c/qwen2.5-0.5b"]["litellm_params"]["api_base"] == "http://10.0.0.13:8001/v1"


def test_the_gateways_own_engine_is_reached_on_the_stack_network(fleet):
    models = by_id(FILTERS["gateway_model_list"](fleet, INFERENCE, "gw-1", api_key=SHARED_KEY))
    assert models["gw-1/qwen3-8b"]["litellm_params"]["api_base"] == "http://inference-engine:8001/v1"
    assert models["gpu-a/qwen3-8b"]["litellm_params"]["api_base"] == "http://10.0.0.11:8001/v1"


def test_allowed_fails_only_where_an_alias_has_several_deployments(fleet):
    models = by_id(FILTERS["gateway_model_list"](fleet, INFERENCE, "gw-1", api_key=SHARED_KEY, allowed_fails=0))
    assert {key: value["model_info"].get("allowed_fails") for key, value in models.items()} == {
        "gw-1/qwen3-8b": 0, "gpu-a/qwen3-8b": 0, "gpu-b/qwen3-8b": 0, "gpu-c/qwen2.5-0.5b": None}


def test_single_host_all_in_one_is_todays_deployment():
    """A host in neither group: one deployment, its own engine on the stack network."""
    hostvars = {"gpu-stack-1": {"ansible_host": "gpu-stack-1", "model_store_models": [{"alias": "qwen3-8b"}]}}
    assert FILTERS["gateway_model_list"](hostvars, ["gpu-stack-1"], "gpu-stack-1", port=8001, max_model_len=4096, api_key="k") == [{
        "model_name": "qwen3-8b",
        "litellm_params": {"model": "hosted_vllm/qwen3-8b", "api_base": "http://inference-engine:8001/v1",
                           "api_key": "os.environ/VLLM_API_KEY"},
        "model_info": {"id": "gpu-stack-1/qwen3-8b", "mode": "chat", "max_input_tokens": 4096},
    }]


def test_defaults_apply_to_hosts_that_do_not_set_them():
    hostvars = {"a": {"ansible_host": "10.1.1.1"}, "b": {"ansible_host": "10.1.1.2", "llm_stack_engine_port": "9000"}}
    models = FILTERS["gateway_model_list"](hostvars, ["a", "b"], models=[{"alias": "m"}], port=8100, max_model_len="auto")
    assert [m["litellm_params"]["api_base"] for m in models] == ["http://10.1.1.1:8100/v1", "http://10.1.1.2:9000/v1"]
    assert all("max_input_tokens" not in m["model_info"] for m in models)  # "auto": vLLM decides


def test_address_falls_back_to_facts_then_names():
    host_address = topology.host_address
    assert host_address({"ansible_host": "node.example", "ansible_facts": {"default_ipv4": {"address": "10.9.0.1"}}}, "n") == "10.9.0.1"
    assert host_address({"ansible_host": "node.example", "ansible_default_ipv4": {"address": "10.9.0.2"}}, "n") == "10.9.0.2"
    assert host_address({"ansible_host": "node.example"}, "n") == "node.example"
    assert host_address({}, "n") == "n"
    assert host_address({"ansible_host": "10.9.0.3", "ansible_facts": {"default_ipv4": {"address": "10.9.0.1"}}}, "n") == "10.9.0.3"
    assert host_address({"llm_stack_address": " 10.9.0.4 ", "ansible_host": "10.9.0.3"}, "n") == "10.9.0.4"


def test_ipv6_addresses_are_bracketed_in_urls():
    hostvars = {"v6": {"llm_stack_address": "fd00::11", "model_store_models": [{"alias": "m"}]}}
    assert FILTERS["gateway_model_list"](hostvars, ["v6"])[0]["litellm_params"]["api_base"] == "http://[fd00::11]:8001/v1"


def test_engine_keys_only_for_hosts_with_their_own(fleet):
    assert FILTERS["gateway_engine_keys"](fleet, INFERENCE, SHARED_KEY) == {"VLLM_API_KEY_GPU_B": "test-gpu-b-own-key"}
    assert FILTERS["gateway_engine_keys"](fleet, INFERENCE, "test-gpu-b-own-key") == {
        f"VLLM_API_KEY_{name}": SHARED_KEY for name in ("GW_1", "GPU_A", "GPU_C", "GPU_D")}


def test_stack_addresses(fleet):
    assert FILTERS["stack_addresses"](fleet, ["gw-1", "gw-2"]) == ["10.0.0.5", "10.0.1.6"]
    assert FILTERS["stack_addresses"](fleet, ["gpu-a", "gpu-a", "gpu-b"]) == ["10.0.0.11", "10.0.0.12"]


def test_the_result_is_stable(fleet):
    first = FILTERS["gateway_model_list"](fleet, INFERENCE, "gw-2", api_key=SHARED_KEY, allowed_fails=0)
    again = FILTERS["gateway_model_list"](load_fleet(), INFERENCE, "gw-2", api_key=SHARED_KEY, allowed_fails=0)
    assert json.dumps(first) == json.dumps(again)


@pytest.mark.parametrize(
    ("hostvars", "hosts", "message"),
    [
        ({"a": {}}, ["b"], "b is not in the inventory"),
        ({"a": {}}, "a", "must be a list"),
        ({"a": {"llm_stack_engine_model": "x", "model_store_models": [{"alias": "m"}]}}, ["a"], "x, which is not an alias"),
        ({"a": {"llm_stack_engine_port": "http", "model_store_models": [{"alias": "m"}]}}, ["a"], "not a number"),
        ({"a": {"llm_stack_engine_port": 70000, "model_store_models": [{"alias": "m"}]}}, ["a"], "out of range"),
        ({"a": {"model_store_models": [{"repo_id": "x/y"}]}}, ["a"], "has no alias"),
        ({"a": {"model_store_models": "m"}}, ["a"], "must be a list"),
    ],
)
def test_errors_name_the_host_and_the_problem(hostvars, hosts, message):
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["gateway_model_list"](hostvars, hosts)


def ansible_cli():
    sibling = pathlib.Path(sys.executable).with_name("ansible")
    return str(sibling) if sibling.exists() else shutil.which("ansible")


def test_through_ansible_with_real_hostvars(tmp_path):
    """ansible itself: the inventory's hostvars (lazy, templated) into the filter by FQCN."""
    ansible = ansible_cli()
    if not ansible:
        pytest.skip("no ansible CLI here (ansible-test units runs without one)")
    collections_root = pathlib.Path(topology.__file__).parents[5]
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    expr = ("{{ {'models': hostvars | llmops.gpu_stack.gateway_model_list(groups['inference_hosts'], inventory_hostname,"
            " port=8001, max_model_len=32768, api_key=llm_stack_engine_api_key, allowed_fails=0),"
            " 'keys': hostvars | llmops.gpu_stack.gateway_engine_keys(groups['inference_hosts'], llm_stack_engine_api_key),"
            " 'gateways': hostvars | llmops.gpu_stack.stack_addresses(groups['gateway_hosts'])} | to_json }}")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_CONFIG=str(config))
    proc = subprocess.run([ansible, "gw-2", "-i", str(INVENTORY / "hosts.yml"), "-m", "ansible.builtin.debug", "-a", f"msg={expr}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    msg = json.loads(proc.stdout.split("=>", 1)[1])["msg"]
    result = json.loads(msg) if isinstance(msg, str) else msg
    expected = FILTERS["gateway_model_list"](load_fleet(), INFERENCE, "gw-2", port=8001, max_model_len=32768, api_key=SHARED_KEY,
                                             allowed_fails=0)
    assert result["models"] == expected
    assert result["keys"] == {"VLLM_API_KEY_GPU_B": "test-gpu-b-own-key"}
    assert result["gateways"] == ["10.0.0.5", "10.0.1.6"]


def test_overrides_win_over_the_inventory(fleet):
    """The gateway's own settings as the play sees them (role defaults, play vars) beat hostvars."""
    overrides = {"gw-1": {"llm_stack_engine_model": "qwen2.5-0.5b", "llm_stack_engine_port": "8005"}}
    models = by_id(FILTERS["gateway_model_list"](fleet, INFERENCE, "gw-1", api_key=SHARED_KEY, overrides=overrides))
    assert models["gw-1/qwen2.5-0.5b"]["litellm_params"]["api_base"] == "http://inference-engine:8005/v1"
    assert "gw-1/qwen3-8b" not in models
    with pytest.raises(AnsibleFilterError, match="overrides must map"):
        FILTERS["gateway_model_list"](fleet, INFERENCE, overrides={"gw-1": "x"})


def test_stack_addresses_with_ports(fleet):
    fleet["gw-2"]["llm_stack_litellm_port"] = 4400
    fleet["gpu-a"]["llm_stack_address"] = "fd00::11"
    assert FILTERS["stack_addresses"](fleet, ["gw-1", "gw-2"], "llm_stack_litellm_port", 4000) == ["10.0.0.5:4000", "10.0.1.6:4400"]
    assert FILTERS["stack_addresses"](fleet, ["gpu-a"], port=9100) == ["[fd00::11]:9100"]
    with pytest.raises(AnsibleFilterError, match="sets no llm_stack_litellm_port"):
        FILTERS["stack_addresses"](fleet, ["gw-1"], "llm_stack_litellm_port")
