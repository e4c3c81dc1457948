"""Image references, digest pins and the image lock (plugins/plugin_utils/_image_refs.py, plugins/filter/images.py),
and how the stack plan applies the lock."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.gpu_stack.plugins.filter import images as image_filters
from ansible_collections.llmops.gpu_stack.plugins.plugin_utils import _image_refs, _plan

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
SECRETS = {"inference_engine_api_key": "engine-key-0123456789", "gateway_master_key": "sk-master-0123456789",
           "gateway_redis_password": "redis-pass-0123456789", "gateway_database_password": "db-pass-0123456789",
           "gateway_salt_key": "salt-key-0123456789"}
ALL_IN_ONE = {"all": ["gpu-stack-1"], "gpu_hosts": ["gpu-stack-1"]}


def hostvars(**extra):
    return {"gpu-stack-1": dict(SECRETS, ansible_host="10.0.0.5", **extra)}


@pytest.mark.parametrize("ref, parts", [
    ("redis:7.2.11-alpine", ("redis", "7.2.11-alpine", None)),
    ("localhost:5000/x/y:1.0@" + A, ("localhost:5000/x/y", "1.0", A)),
    ("localhost:5000/x/y@" + A, ("localhost:5000/x/y", None, A)),
    ("registry.internal:5000/vllm/vllm-openai", ("registry.internal:5000/vllm/vllm-openai", None, None)),
])
def test_split(ref, parts):
    assert _image_refs.split(ref) == parts


def test_pin_and_pull_ref():
    lock = {"redis:7.2.11-alpine": A}
    assert _image_refs.pin("redis:7.2.11-alpine", lock) == "redis:7.2.11-alpine@" + A
    assert _image_refs.pin("redis:7.2.12-alpine", lock) == "redis:7.2.12-alpine"
    # an image given with its own digest keeps it
    assert _image_refs.pin("redis:7.2.11-alpine@" + B, {"redis:7.2.11-alpine@" + B: A}) == "redis:7.2.11-alpine@" + B
    assert _image_refs.pull_ref("redis:7.2.11-alpine@" + A) == "redis@" + A
    assert _image_refs.pull_ref("redis:7.2.11-alpine") == "redis:7.2.11-alpine"


def test_presence_by_digest_not_by_tag():
    """A pinned image is on the host only by its digest: the same tag with other content is not it."""
    moved = {"Id": "sha256:" + "c" * 64, "RepoTags": ["redis:7.2.11-alpine"], "RepoDigests": ["redis@" + B]}
    locked = {"Id": "sha256:" + "d" * 64, "RepoTags": [], "RepoDigests": ["docker.io/library/redis@" + A]}
    assert _image_refs.present("redis:7.2.11-alpine", [moved])
    assert not _image_refs.present("redis:7.2.11-alpine@" + A, [moved])
    assert _image_refs.present("redis:7.2.11-alpine@" + A, [locked])
    (line,) = _image_refs.missing(["redis:7.2.11-alpine@" + A], [moved], {"redis:7.2.11-alpine@" + A: "gateway_redis_image"})
    assert line.startswith(f"redis:7.2.11-alpine@{A} (gateway_redis_image) is not on the host")
    assert "the host has redis:7.2.11-alpine as image sha256:cccc" in line and B in line and "the tag moved" in line
    assert _image_refs.missing(["redis:7.2.11-alpine@" + A], [moved, locked]) == []
    # a loaded image has no registry digest
    loaded = {"Id": "sha256:" + "e" * 64, "RepoTags": ["redis:7.2.11-alpine"], "RepoDigests": []}
    assert "no registry digest" in _image_refs.missing(["redis:7.2.11-alpine@" + A], [loaded])[0]


def test_lock_from_pulled_images():
    images = [{"Id": "x", "RepoTags": ["127.0.0.1:5000/t/app:1.0"], "RepoDigests": ["127.0.0.1:5000/t/app@" + A]},
              {"Id": "y", "RepoTags": ["built:here"], "RepoDigests": []}]
    lock, problems = _image_refs.lock_from(["127.0.0.1:5000/t/app:1.0", "built:here", "absent:1"], images)
    assert lock == {"127.0.0.1:5000/t/app:1.0": A}
    assert problems == ["built:here: Docker knows no registry digest for it (built or loaded here, never pulled from a registry)",
                        "absent:1: not on the lock host after the pull"]
    # a reference with its own digest is locked to it
    lock, problems = _image_refs.lock_from(["127.0.0.1:5000/t/app:1.0@" + A], images)
    assert (lock, problems) == ({"127.0.0.1:5000/t/app:1.0": A}, [])


def test_lock_changes_name_the_moved_tag():
    assert _image_refs.lock_changes({"a:1": A}, {"a:1": A}) == []
    assert _image_refs.lock_changes({"a:1": A, "gone:1": A}, {"a:1": B, "new:1": A}) == [
        f"a:1: the lock has {A}, the registry serves {B} now (the tag moved)",
        "gone:1: in the lock, no host of the inventory runs it now",
        f"new:1: not in the lock yet ({A})"]


@pytest.mark.parametrize("lock, variable, expected", [
    ("redis:1", "gpu_stack_image_lock", "a mapping"),
    ({"redis:1": "sha256:xyz"}, 'gpu_stack_image_lock["redis:1"]', "sha256:<64 lower-case hex>"),
    ({"redis": A}, 'gpu_stack_image_lock["redis"]', "with a tag and no digest"),
    ({"redis:1@" + A: A}, f'gpu_stack_image_lock["redis:1@{A}"]', "with a tag and no digest"),
])
def test_a_malformed_lock_is_refused_naming_the_entry(lock, variable, expected):
    _plan_, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_lock=lock), ALL_IN_ONE)
    found = [p for p in problems if p.variable == variable]
    assert found and expected in found[0].expected, [str(p) for p in problems]


def test_the_plan_runs_locked_images_by_digest():
    """The lock is keyed by the reference as the host pulls it (registry applied)."""
    lock = {"registry.internal:5000/redis:7.2.11-alpine": A, "redis:7.2.11-alpine": B}
    plan, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_registry="registry.internal:5000", gpu_stack_image_lock=lock),
                                      ALL_IN_ONE)
    assert [str(p) for p in problems] == []
    assert plan["services"]["redis-cache"]["image"] == "registry.internal:5000/redis:7.2.11-alpine@" + A
    assert plan["images"]["redis-cache"] == plan["services"]["redis-cache"]["image"]
    assert plan["image_refs"]["redis-cache"] == {"ref": "registry.internal:5000/redis:7.2.11-alpine", "variable": "gateway_redis_image"}
    assert plan["image_variables"][plan["images"]["redis-cache"]] == "gateway_redis_image"
    # images the lock does not name run by their tag
    assert "@" not in plan["images"]["litellm-proxy"]
    assert plan["image_refs"]["litellm-proxy"]["variable"] == "gateway_litellm_version"


def test_lock_required_refuses_an_unpinned_image_naming_its_variable():
    own_digest = "prom/prometheus:v2.53.2@" + A
    plan, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_lock_required=True, monitoring_prometheus_image=own_digest,
                                                              gpu_stack_image_lock={"redis:7.2.11-alpine": B}), ALL_IN_ONE)
    refused = sorted(p.variable for p in problems)
    assert refused == ["gateway_database_image", "gateway_litellm_version", "inference_engine_version"], [str(p) for p in problems]
    assert all("gpu_stack_image_lock_required" in p.expected and "lock_images.yml" in p.expected for p in problems)
    assert plan["images"]["prometheus"] == own_digest


def test_stack_images_lists_every_hosts_images_without_the_lock():
    groups = {"all": ["gw", "gpu-a", "other"], "gateway_hosts": ["gw"], "inference_hosts": ["gpu-a"]}
    vars_ = {"gw": dict(SECRETS, ansible_host="10.0.0.1", gpu_stack_image_lock={"redis:7.2.11-alpine": A},
                        gpu_stack_image_lock_required=True),
             "gpu-a": dict(SECRETS, ansible_host="10.0.0.2", gpu_stack_accelerator="cpu"),
             "other": {}}
    found = image_filters.stack_images_filter(vars_, groups)
    refs = {item["ref"]: item for item in found}
    assert "redis:7.2.11-alpine" in refs and refs["redis:7.2.11-alpine"]["hosts"] == ["gw"]
    assert any(ref.startswith("vllm/vllm-openai-cpu:") and item["hosts"] == ["gpu-a"] for ref, item in refs.items())
    assert all("other" not in item["hosts"] for item in found)


def test_stack_images_fails_on_a_bad_image_variable():
    with pytest.raises(AnsibleFilterError, match=r"gpu-stack-1: gateway_redis_image = \"redis\""):
        image_filters.stack_images_filter(hostvars(gateway_redis_image="redis"), ALL_IN_ONE)


def test_signature_checks_cover_the_locked_digest_of_each_keyed_repository():
    lock = {"reg:5000/berriai/litellm:v1": A, "reg:5000/redis:7": B, "reg:5000/prom:3": A}
    checks, problems = _image_refs.signature_checks(lock, {"reg:5000/berriai/litellm": "/keys/litellm.pub"})
    assert problems == []
    assert checks == [{"image": "reg:5000/berriai/litellm:v1", "ref": "reg:5000/berriai/litellm@" + A, "key": "/keys/litellm.pub"}]
    assert _image_refs.signature_checks(lock, {}) == ([], [])


def test_signature_keys_that_name_no_image_or_no_file_are_refused():
    lock = {"reg:5000/redis:7": B}
    checks, problems = _image_refs.signature_checks(lock, {"reg:5000/reddis": "/k.pub", "reg:5000/redis": ""})
    assert checks == []
    assert problems == ["lock_images_cosign_keys[reg:5000/redis] must be the path of a cosign public key file, got ''",
                        "lock_images_cosign_keys[reg:5000/reddis]: no image of the inventory is from that repository "
                        "(they are: reg:5000/redis)"]
    assert "must be a mapping" in _image_refs.signature_checks(lock, ["/k.pub"])[1][0]


def test_pinned_images_and_tarballs_are_refused_together():
    """A loaded image has no registry digest: a pinned one could not be found or checked."""
    _plan_, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_tarballs=["/srv/images/stack.tar"],
                                                                gpu_stack_image_lock={"redis:7.2.11-alpine": A}), ALL_IN_ONE)
    (problem,) = problems
    assert problem.variable == "gpu_stack_image_tarballs"
    assert "pinned by digest (redis:7.2.11-alpine@" + A in problem.expected
    _plan_, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_tarballs=["/srv/images/stack.tar"]), ALL_IN_ONE)
    assert problems == []


def test_lock_required_on_a_tarball_host_asks_for_each_tarballs_sha256():
    """A tarball host's lock is the tarball's SHA-256: one problem per tarball without one, none with it."""
    tarballs = ["/srv/images/stack.tar", "/srv/images/engine.tar"]
    _plan_, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_tarballs=tarballs,
                                                                gpu_stack_image_lock_required=True,
                                                                gpu_stack_image_tarball_sha256={tarballs[0]: "ab" * 32}), ALL_IN_ONE)
    (problem,) = problems
    assert problem.variable == "gpu_stack_image_tarball_sha256"
    assert problem.expected.startswith("an entry for /srv/images/engine.tar (gpu_stack_image_lock_required")
    plan, problems = _plan.stack_plan("gpu-stack-1", hostvars(gpu_stack_image_tarballs=tarballs, gpu_stack_image_lock_required=True,
                                                              gpu_stack_image_tarball_sha256={t: "AB" * 32 for t in tarballs}),
                                      ALL_IN_ONE)
    assert problems == []
    assert plan["image_tarball_sha256"] == {t: "ab" * 32 for t in tarballs}
