#!/usr/bin/env bash
# Build the test images that stand in for the stack's upstream images (no registry is reachable
# here), from Debian 13 packages, PyPI and the stand-in engine fixture:
#   BASE_IMAGE=<debian 13 image> tests/harness/images/build.sh [NAME...]
# NAME: redis prometheus litellm standin-engine standin-guard registry compose (default: all of them).
# Each image is tagged llmops-test/NAME:<hash of its inputs> (Dockerfile folder, extra files, the
# base image's ID, pinned versions) and llmops-test/NAME:test; an unchanged recipe is built once.
# Prints one image reference (the hash tag) per line on stdout; progress and timings on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
: "${BASE_IMAGE:?set BASE_IMAGE to the Debian 13 base image tag (tests/harness/base-image.sh prints it)}"
repo=${LLMOPS_TEST_IMAGE_REPO:-llmops-test}
all=(redis prometheus litellm standin-engine standin-guard registry compose)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) || {
  echo "build: base image $BASE_IMAGE is not on this Docker engine" >&2; exit 1; }
litellm_version=$(sed -n 's/^llm_stack_litellm_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}.*/\1/p' \
  "$root/roles/llm_stack/defaults/main.yml")
standin=$root/tests/fixtures/standin_engine/standin_engine.py
standin_guard=$root/tests/fixtures/standin_guard/standin_guard.py
# The build machine may reach PyPI only through a TLS-inspecting proxy: trust its CA bundle
# in the litellm build stage (the final image does not keep it).
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}

extra_files() {
  case "$1" in
    standin-engine) echo "$standin" ;;
    standin-guard) echo "$standin_guard" ;;
  esac
}

build_args() {
  echo "BASE_IMAGE=$BASE_IMAGE"
  case "$1" in
    litellm) echo "LITELLM_VERSION=$litellm_version" ;;
  esac
}

input_hash() {
  local name=$1 f
  {
    echo "base $base_id"
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
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build: $tag is cached" >&2
  else
    start=$(date +%s)
    ctx=$(mktemp -d /var/tmp/llmops-image.XXXXXX)
    log=$ctx.log
    cp -a "$here/$name/." "$ctx/"
    for f in $(extra_files "$name"); do cp "$f" "$ctx/"; done
    [ "$name" != litellm ] || cp "$ca_bundle" "$ctx/ca.crt"
    local -a args=()
    while read -r arg; do args+=(--build-arg "$arg"); done < <(build_args "$name")
    echo "build: building $tag" >&2
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
  echo "$tag"
}

total_start=$(date +%s)
for name in "${names[@]}"; do
  build_one "$name"
done
echo "build: ${#names[@]} image(s) ready in $(( $(date +%s) - total_start )) s" >&2
