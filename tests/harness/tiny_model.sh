#!/usr/bin/env bash
# Write the tiny Qwen3 test model (tests/fixtures/tiny_qwen3/make_tiny_qwen3.py) into OUT_DIR:
#   tests/harness/tiny_model.sh OUT_DIR        prints OUT_DIR on its last line
# The generator needs torch/transformers/tokenizers, so it runs inside the vllm-cpu test image
# (built or reused by tests/harness/images/build.sh; the dev venv needs no torch), without network.
# The model is cached under $LLMOPS_HARNESS_STATE/tiny-qwen3/<hash of the generator and the
# image>; a cold run generates it twice and fails unless both runs agree byte for byte.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: tiny_model.sh OUT_DIR}
script=$root/tests/fixtures/tiny_qwen3/make_tiny_qwen3.py
state=${LLMOPS_HARNESS_STATE:-$root/.cache/harness}
mkdir -p "$state/tiny-qwen3"

image=${LLMOPS_VLLM_CPU_IMAGE:-$("$here/images/build.sh" vllm-cpu | tail -n1)}
image_id=$(docker image inspect -f '{{.Id}}' "$image")
key=$( (sha256sum < "$script"; echo "$image_id") | sha256sum | cut -c1-12)
cache=$state/tiny-qwen3/$key

generate() {
  local dest=$1
  mkdir -p "$dest"
  docker run --rm --network none --user "$(id -u):$(id -g)" -e HOME=/tmp -e HF_HUB_OFFLINE=1 \
    -v "$script:/opt/tiny/make_tiny_qwen3.py:ro" -v "$dest:/out" \
    --entrypoint python3 "$image" /opt/tiny/make_tiny_qwen3.py /out >&2
}

digests() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }

exec 9>"$state/tiny-qwen3/.lock"
flock 9
if [ -f "$cache/.complete" ]; then
  echo "tiny_model: $cache is cached" >&2
else
  start=$(date +%s)
  rm -rf "$cache" "$cache.check"
  generate "$cache"
  generate "$cache.check"
  if ! diff <(digests "$cache") <(digests "$cache.check") >&2; then
    echo "tiny_model: two runs of $script gave different files" >&2
    rm -rf "$cache" "$cache.check"
    exit 1
  fi
  rm -rf "$cache.check"
  digests "$cache" > "$cache/.complete"
  echo "tiny_model: generated $cache in $(( $(date +%s) - start )) s (twice, identical)" >&2
fi
mkdir -p "$out"
# The model's files (not the cache marker), over whatever OUT_DIR holds; nothing else is touched.
(cd "$cache" && find . -type f ! -name .complete -exec cp --parents -p '{}' "$out/" \;)
echo "$out"
