"""Images pinned by digest: playbooks/lock_images.yml against a real registry, and the roles' image step
deploying by the lock.

The registry is the suite's own (Debian's docker-registry, tests/harness/images/registry.sh), reached on
loopback; its digests are real registry v2 digests. The images are two tiny ones built here from the
harness's base image (one label apart), pushed under this test's own repositories (llmops-locktest/*),
one per image variable of a CPU host. The story, in order (one module fixture; the tests read it):

1. lock_images.yml writes the inventory's group_vars/all/gpu_stack_image_lock.yml with each image's
   digest, the digests the registry itself reports; a second run changes nothing; -e lock_images_verify=true
   passes. Beside an inventory's group_vars/all.yml (which a new group_vars/all/ folder would hide from
   Ansible) it refuses before pulling anything.
2. Image B is pushed under the Redis image's tag (the tag moves): the verify run fails naming the image
   and both digests, and leaves the lock as it was.
3. With the local copies gone, the roles' image step (roles/_compose/tasks/images.yml, through
   tests/integration/playbooks/pull_images.yml) pulls the locked digest, not the moved tag; a second run
   pulls nothing; a container created from the pinned reference runs image A.
4. With the tag pulled (B) and A removed, gpu_stack_pull: never refuses: the message names
   gateway_redis_image, the pinned digest and what the host holds under the tag.

Signatures (after 1): the LiteLLM image's locked digest is signed with a key made here (cosign from
tests/harness/cosign.sh, no transparency log); with lock_images_cosign_keys the lock run verifies it,
and stops before writing when a keyed image has no signature, the key is another one, or a key names
no image of the inventory.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stack_files as sf  # noqa: E402  (tests/integration is not a package)

pytestmark = pytest.mark.integration

REGISTRY = os.environ.get("LLMOPS_TEST_REGISTRY_CONTAINER", "llmops-test-registry")
PUSH_LOCK = pathlib.Path("/var/tmp/llmops-harness-locks/registry-push.lock")
REPO = "llmops-locktest"
# image variable -> repository of this test (a CPU host with the gateway and Prometheus)
IMAGES = {"inference_engine_image": "engine", "gateway_litellm_image": "litellm", "gateway_redis_image": "redis",
          "gateway_database_image": "postgres", "monitoring_prometheus_image": "prometheus"}
TAG = "1.0"
MANIFESTS = ", ".join(["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"])
SECRETS = {"gateway_master_key": "sk-test-only-lock-master", "inference_engine_api_key": "test-only-lock-engine-key",
           "gateway_redis_password": "test-only-lock-redis-pass", "gateway_database_password": "test-only-lock-db-pass",
           "gateway_salt_key": "test-only-lock-salt-key"}
LOCK_PLAYBOOK = "llmops.gpu_stack.lock_images"
PULL_PLAYBOOK = sf.ROOT / "tests" / "integration" / "playbooks" / "pull_images.yml"
OUTPUT = sf.ROOT / "tests" / "output"


def docker(*args, check=True, input_text=None):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, input=input_text, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


def registry_digest(port: int, repo: str) -> str:
    """The digest the registry reports for repo:TAG (Docker-Content-Digest of the manifest)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/{REPO}/{repo}/manifests/{TAG}", method="HEAD",
                                     headers={"Accept": MANIFESTS})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (the test's loopback registry)
        return response.headers["Docker-Content-Digest"]


def lock_of(inventory: pathlib.Path) -> dict:
    return sf.load_yaml(inventory.parent / "group_vars" / "all" / "gpu_stack_image_lock.yml")["gpu_stack_image_lock"]


@pytest.fixture(scope="module")
def registry_port():
    base = sf.run([sf.HARNESS / "base-image.sh"]).stdout.strip().splitlines()[-1]
    PUSH_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with PUSH_LOCK.open("w") as lock:
        # the suite's background push starts the same registry: one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        sf.run([sf.HARNESS / "images" / "registry.sh", "start"], env=dict(os.environ, BASE_IMAGE=base), timeout=900)
    mapping = docker("port", REGISTRY, "5000/tcp").stdout.split()
    port = int(next(m for m in mapping if m.startswith("127.0.0.1:")).rsplit(":", 1)[1])
    return base, port


@pytest.fixture(scope="module")
def story(registry_port, tmp_path_factory):
    base, port = registry_port
    prefix = f"127.0.0.1:{port}/{REPO}"
    built = {}
    for label in ("a", "b"):
        tag = f"{REPO}/image:{label}"
        docker("build", "-q", "-t", tag, "-", input_text=f"FROM {base}\nLABEL llmops.locktest={label}\n")
        built[label] = docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()

    def push(label, repo):
        ref = f"{prefix}/{repo}:{TAG}"
        docker("tag", f"{REPO}/image:{label}", ref)
        docker("push", "-q", ref)

    def drop_local(repo):
        """Every local reference of repo (tags and digests); the built images keep their own tags."""
        refs = docker("image", "ls", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", f"{prefix}/{repo}").stdout.split("\n")
        for line in filter(None, refs):
            name, tag, digest = line.split()
            docker("rmi", f"{name}:{tag}" if tag != "<none>" else f"{name}@{digest}", check=False)

    for repo in IMAGES.values():
        push("a", repo)
    digests = {repo: registry_digest(port, repo) for repo in IMAGES.values()}

    root = tmp_path_factory.mktemp("image-lock")
    host = {**SECRETS, "gpu_stack_root": str(root / "stack"), "gpu_stack_models_root": str(root / "models"),
            "gpu_stack_accelerator": "cpu", "gpu_stack_start": True,
            **{variable: f"{prefix}/{repo}:{TAG}" for variable, repo in IMAGES.items()}}
    inventory = sf.write_inventory(root / "inventory" / "hosts.yml", {"lockhost": host})

    timings = []

    def lock_run(*args, check=True):
        start = time.monotonic()
        proc = sf.playbook(inventory, *args, playbook=LOCK_PLAYBOOK, check=check)
        timings.append({"args": [a.rsplit("/", 1)[-1] for a in args], "rc": proc.returncode,
                        "seconds": round(time.monotonic() - start, 1)})
        return proc

    def pull_run(*args, check=True):
        return sf.playbook(inventory, *args, playbook=PULL_PLAYBOOK, check=check)

    out = {"prefix": prefix, "digests": digests, "built": built, "inventory": inventory}
    try:
        for repo in IMAGES.values():
            drop_local(repo)
        out["first"] = lock_run()
        out["lock"] = lock_of(inventory)
        out["lock_mode"] = sf.mode(inventory.parent / "group_vars" / "all" / "gpu_stack_image_lock.yml")
        out["second"] = lock_run()
        out["verify"] = lock_run("-e", "lock_images_verify=true")

        # signatures: the litellm image's digest signed with the site's key (no Rekor here)
        out["signing"] = signing(root, prefix, digests, lock_run, inventory)

        # a group_vars/all.yml file that a new group_vars/all/ folder would hide
        beside = sf.write_inventory(root / "beside" / "hosts.yml", {"lockhost": host})
        (beside.parent / "group_vars").mkdir()
        (beside.parent / "group_vars" / "all.yml").write_text("---\ngpu_stack_project_name: llm-stack\n", encoding="utf-8")
        out["beside"] = beside
        out["hidden"] = sf.playbook(beside, playbook=LOCK_PLAYBOOK, check=False)

        # 2. the tag moves
        push("b", "redis")
        out["moved_digest"] = registry_digest(port, "redis")
        out["verify_moved"] = lock_run("-e", "lock_images_verify=true", check=False)
        out["lock_after_moved"] = lock_of(inventory)

        # 3. deploy by the lock with nothing local
        for repo in IMAGES.values():
            drop_local(repo)
        out["pull"] = pull_run()
        out["pull_again"] = pull_run()
        pinned = f"{prefix}/redis:{TAG}@{digests['redis']}"
        out["local_tag"] = docker("image", "inspect", "-f", "{{.Id}}", f"{prefix}/redis:{TAG}", check=False)
        container = docker("create", "--label", "llmops.test=gpu_stack", pinned, "true").stdout.strip()
        out["container_image"] = docker("inspect", "-f", "{{.Image}}", container).stdout.strip()
        docker("rm", container)

        # 4. the moved tag on the host, the locked digest not: pulling off refuses
        docker("pull", "-q", f"{prefix}/redis:{TAG}")
        docker("rmi", f"{prefix}/redis@{digests['redis']}", check=False)
        out["refused"] = pull_run("-e", "gpu_stack_pull=never", check=False)
        # The lock playbook's run times (docs/supply-chain.md quotes them): the first run pulls the four
        # images, the later ones find them local and only ask the registry.
        OUTPUT.mkdir(parents=True, exist_ok=True)
        (OUTPUT / "image-lock.json").write_text(json.dumps({"lock_runs": timings}, indent=1), encoding="utf-8")
        yield out
    finally:
        for repo in IMAGES.values():
            drop_local(repo)
        docker("rmi", f"{REPO}/image:a", f"{REPO}/image:b", check=False)


def signing(root, prefix, digests, lock_run, inventory):
    """The lock's signature checks (lock_images_cosign_keys): a signed digest verifies; an unsigned image,
    a wrong key and a key for no image of the inventory each stop the run before the lock is written."""
    cosign = sf.run([sf.HARNESS / "cosign.sh"]).stdout.strip().splitlines()[-1]
    keys = root / "keys"
    keys.mkdir()
    env = dict(os.environ, COSIGN_PASSWORD="")
    for name in ("site", "other"):
        sf.run([cosign, "generate-key-pair", "--output-key-prefix", name], env=env, cwd=keys)
    signed = f"{prefix}/litellm@{digests['litellm']}"
    sf.run([cosign, "sign", "--key", keys / "site.key", "--use-signing-config=false", "--tlog-upload=false",
            "--allow-http-registry", "--yes", signed], env=env, cwd=keys)
    lock_file = inventory.parent / "group_vars" / "all" / "gpu_stack_image_lock.yml"
    out = {"cosign": cosign, "signed": signed, "keys": keys, "lock_mtime": lock_file.stat().st_mtime_ns}

    def run_with(name, cosign_keys, check):
        extra = keys / f"{name}.yml"
        extra.write_text(yaml.safe_dump({"lock_images_cosign": cosign, "lock_images_cosign_tlog": False,
                                         "lock_images_cosign_args": ["--allow-http-registry"],
                                         "lock_images_cosign_keys": cosign_keys}), encoding="utf-8")
        return lock_run("-e", f"@{extra}", check=check)

    out["verified"] = run_with("verified", {f"{prefix}/litellm": str(keys / "site.pub")}, True)
    out["unsigned"] = run_with("unsigned", {f"{prefix}/litellm": str(keys / "site.pub"), f"{prefix}/redis": str(keys / "site.pub")}, False)
    out["wrong_key"] = run_with("wrong-key", {f"{prefix}/litellm": str(keys / "other.pub")}, False)
    out["typo"] = run_with("typo", {f"{prefix}/litelm": str(keys / "site.pub")}, False)
    out["lock_mtime_after"] = lock_file.stat().st_mtime_ns
    return out


def task_results(proc, name):
    return [result for task, result in sf.host_results(proc, "localhost") if task == name]


def test_the_lock_holds_each_images_registry_digest(story):
    prefix = story["prefix"]
    assert story["lock"] == {f"{prefix}/{repo}:{TAG}": story["digests"][repo] for repo in IMAGES.values()}
    assert story["lock_mode"] == 0o644
    # what the run says it pulled: each image of the host, once
    (pull,) = task_results(story["first"], "Pull each image from its registry")
    assert sorted(item["item"]["ref"] for item in pull["results"]) == sorted(story["lock"])


def test_a_second_lock_run_changes_nothing_and_the_verify_run_passes(story):
    assert sf.stats(story["second"])["localhost"]["changed"] == 0, sf.stats(story["second"])
    assert sf.stats(story["verify"])["localhost"]["changed"] == 0
    assert "agrees with the registries" in sf.messages(story["verify"], "localhost")


def test_the_lock_is_not_written_where_it_would_hide_group_vars_all_yml(story):
    """Ansible ignores group_vars/all.yml once group_vars/all/ exists: the playbook refuses, before it pulls."""
    proc = story["hidden"]
    assert proc.returncode != 0
    text = sf.failures(proc)
    assert f"{story['beside'].parent}/group_vars/all.yml is a file" in text and "Nothing was changed" in text
    assert not (story["beside"].parent / "group_vars" / "all").exists()
    assert not task_results(proc, "Pull each image from its registry")


def test_a_signed_digest_verifies_and_the_lock_is_kept(story):
    sign = story["signing"]
    assert sf.stats(sign["verified"])["localhost"]["changed"] == 0
    (verified,) = task_results(sign["verified"], "Verify the signature of each keyed image's locked digest (cosign verify --key)")
    (item,) = verified["results"]
    assert item["rc"] == 0 and item["item"]["ref"] == sign["signed"]
    # cosign's own report: the claims name the locked digest
    (claim,) = json.loads(item["stdout"])
    assert claim["critical"]["image"]["docker-manifest-digest"] == story["digests"]["litellm"]


@pytest.mark.parametrize("case, expected", [
    ("unsigned", "{prefix}/redis:1.0: no signature of {prefix}/redis@{redis} verifies with {keys}/site.pub (error during "
                 "command execution: no signatures found)"),
    ("wrong_key", "{prefix}/litellm:1.0: no signature of {prefix}/litellm@{litellm} verifies with {keys}/other.pub"),
    ("typo", "lock_images_cosign_keys[{prefix}/litelm]: no image of the inventory is from that repository"),
])
def test_a_signature_that_does_not_verify_stops_the_lock(story, case, expected):
    sign = story["signing"]
    proc = sign[case]
    assert proc.returncode != 0
    text = sf.failures(proc)
    assert expected.format(prefix=story["prefix"], keys=sign["keys"], **story["digests"]) in text, text
    assert "Nothing was written" in text
    assert not task_results(proc, "Write the lock")
    # none of the refused runs touched the lock file
    assert sign["lock_mtime_after"] == sign["lock_mtime"]


def test_a_moved_tag_fails_the_verify_run_and_leaves_the_lock(story):
    proc = story["verify_moved"]
    assert proc.returncode != 0
    ref = f"{story['prefix']}/redis:{TAG}"
    assert story["moved_digest"] != story["digests"]["redis"]
    expected = f"{ref}: the lock has {story['digests']['redis']}, the registry serves {story['moved_digest']} now (the tag moved)"
    assert expected in sf.failures(proc)
    assert story["lock_after_moved"] == story["lock"]


def test_the_deploy_pulls_the_locked_digest_not_the_moved_tag(story):
    results = dict(sf.host_results(story["pull"], "lockhost"))
    pulled = results["llmops.gpu_stack._compose : Pull the images with policy missing"]["results"]
    assert sorted(item["item"] for item in pulled) == sorted(
        f"{story['prefix']}/{repo}@{story['digests'][repo]}" for repo in IMAGES.values())
    assert all(item["changed"] for item in pulled)
    again = dict(sf.host_results(story["pull_again"], "lockhost"))
    assert not any(item["changed"] for item in again["llmops.gpu_stack._compose : Pull the images with policy missing"]["results"])
    # the moved tag was not pulled, and the pinned reference runs image A
    assert story["local_tag"].returncode != 0
    assert story["container_image"] == story["built"]["a"] != story["built"]["b"]


def test_pulling_off_refuses_other_content_under_the_locked_tag(story):
    proc = story["refused"]
    assert proc.returncode != 0
    text = sf.failures(proc)
    assert "gpu_stack_pull is never but" in text
    assert f"{story['prefix']}/redis:{TAG}@{story['digests']['redis']} (gateway_redis_image) is not on the host" in text
    assert f"the host has {story['prefix']}/redis:{TAG} as image {story['built']['b'][:19]}" in text
    assert story["moved_digest"] in text and "the tag moved" in text
    # the other images are there by their digests: only the Redis one is named
    assert "(inference_engine_image)" not in text


def test_the_lock_file_is_what_the_inventory_loads(story):
    """The written file is a plain vars file of the inventory's group_vars/all: ansible-inventory sees it."""
    proc = sf.run([sf.BIN / "ansible-inventory", "-i", story["inventory"], "--host", "lockhost"],
                  env=dict(os.environ, ANSIBLE_CONFIG=str(sf.ROOT / "ansible.cfg")))
    assert json.loads(proc.stdout)["gpu_stack_image_lock"] == story["lock"]
    assert yaml.safe_load((story["inventory"].parent / "group_vars" / "all" / "gpu_stack_image_lock.yml").read_text())


# ---------------------------------------------------------------- a host without a registry: tarballs
# The roles' image step with gpu_stack_image_tarballs and gpu_stack_pull: never on this machine's
# Docker (the whole deploy from a tarball runs in molecule/multihost's gateway-1): a copy whose SHA-256
# is not the inventory's is not loaded; the right one is loaded once, and a second run copies and loads
# nothing.
TAR_REPO = "llmops-tartest"


@pytest.fixture(scope="module")
def tarball_story(registry_port, tmp_path_factory):
    base, _port = registry_port
    root = tmp_path_factory.mktemp("image-tarball")
    refs = {variable: f"{TAR_REPO}/{repo}:{TAG}" for variable, repo in IMAGES.items()}
    docker("build", "-q", "-t", refs["gateway_redis_image"], "-", input_text=f"FROM {base}\nLABEL llmops.tartest=1\n")
    for ref in refs.values():
        docker("tag", refs["gateway_redis_image"], ref)
    tarball = root / "stack-images.tar"
    docker("save", "-o", str(tarball), *refs.values())
    sha256 = sf.run(["sha256sum", tarball]).stdout.split()[0]
    image_id = docker("image", "inspect", "-f", "{{.Id}}", refs["gateway_redis_image"]).stdout.strip()
    docker("rmi", *refs.values())

    def pull_run(name, checksum, check):
        host = {**SECRETS, "gpu_stack_root": str(root / "stack"), "gpu_stack_models_root": str(root / "models"),
                "gpu_stack_accelerator": "cpu", "gpu_stack_start": True, "gpu_stack_pull": "never",
                "gpu_stack_image_tarballs": [str(tarball)], "gpu_stack_image_tarball_sha256": {str(tarball): checksum}, **refs}
        inventory = sf.write_inventory(root / name / "hosts.yml", {"tarhost": host})
        return sf.playbook(inventory, playbook=PULL_PLAYBOOK, check=check)

    out = {"tarball": tarball, "sha256": sha256, "image_id": image_id, "refs": refs}
    try:
        wrong = "0" * 64
        out["wrong"] = pull_run("wrong", wrong, False)
        out["after_wrong"] = docker("image", "inspect", refs["gateway_redis_image"], check=False).returncode
        out["right"] = pull_run("right", sha256, True)
        out["loaded"] = docker("image", "inspect", "-f", "{{.Id}} {{json .RepoDigests}}", refs["gateway_redis_image"]).stdout.strip()
        out["again"] = pull_run("again", sha256, True)
        yield out
    finally:
        docker("rmi", *refs.values(), check=False)


def test_a_tarball_copy_that_is_not_the_locked_one_is_not_loaded(tarball_story):
    proc = tarball_story["wrong"]
    assert proc.returncode != 0
    text = sf.failures(proc)
    copy = tarball_story["tarball"].parent / "stack" / "images" / "stack-images.tar"
    assert f"{copy} on the host has SHA-256 {tarball_story['sha256']}, not gpu_stack_image_tarball_sha256[" in text, text
    assert "nothing was loaded" in text
    assert tarball_story["after_wrong"] != 0
    assert not [r for r in task_results_of(proc, "tarhost", "Load the tarballs when one changed or an image is missing") if r.get("changed")]


def test_the_locked_tarball_is_loaded_once_and_runs_by_tag(tarball_story):
    image_id, digests = tarball_story["loaded"].split(" ", 1)
    assert image_id == tarball_story["image_id"]
    assert json.loads(digests) in ([], None)  # loaded, not pulled: no registry digest
    (load,) = task_results_of(tarball_story["right"], "tarhost", "Load the tarballs when one changed or an image is missing")
    assert [item["changed"] for item in load["results"]] == [True]
    again = tarball_story["again"]
    assert sf.stats(again)["tarhost"]["changed"] == 0, sf.stats(again)
    (load,) = task_results_of(again, "tarhost", "Load the tarballs when one changed or an image is missing")
    assert not any(item.get("changed") for item in load["results"])


def task_results_of(proc, host, name):
    return [result for task, result in sf.host_results(proc, host) if task.endswith(name)]
