#!/usr/bin/env bash
# One `docker save` tarball of the stack's test images, as a site carries images to a host that has no
# registry at all (gpu_stack_image_tarballs with gpu_stack_pull: never; docs/air-gapped.md).
#   BASE_IMAGE=<debian 13 image> save.sh OUT NAME...   build (cached) llmops-test/NAME:test and save them
#                        into OUT, tagged llmops-test/NAME:test; OUT.sha256 gets its checksum
#                        (sha256sum's format). An OUT whose OUT.ids names the same image IDs is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT NAME..." >&2; exit 2; }
out=$1
shift
"$here/build.sh" "$@" >/dev/null
refs=()
for name in "$@"; do refs+=("llmops-test/$name:test"); done
ids=$(docker image inspect -f '{{.Id}}' "${refs[@]}" | paste -sd' ')
if [ -s "$out" ] && [ -s "$out.sha256" ] && [ "$(cat "$out.ids" 2>/dev/null)" = "$ids" ]; then
  echo "save: $out holds ${refs[*]} already" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
start_s=$(date +%s)
docker save -o "$out.tmp" "${refs[@]}"
(cd "$(dirname "$out")" && sha256sum "$(basename "$out.tmp")" | sed 's/\.tmp$//') > "$out.sha256.tmp"
mv "$out.tmp" "$out"
mv "$out.sha256.tmp" "$out.sha256"
echo "$ids" > "$out.ids"
echo "save: saved ${refs[*]} into $out ($(du -h "$out" | cut -f1), $(( $(date +%s) - start_s )) s)" >&2
