#!/usr/bin/env bash
# cosign (Sigstore's signing tool) for the tests of the image lock's signature checks
# (tests/integration/test_image_lock.py): Debian 12 and 13 do not package it; sid's `cosign` is
# fetched through this machine's own mirror with apt's signature checks (tests/harness/sid_debs.sh)
# and unpacked into a private folder. Prints the cosign command's path on its last line.
#   tests/harness/cosign.sh          LLMOPS_COSIGN_DIR: another folder (default below)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${LLMOPS_COSIGN_DIR:-/var/tmp/llmops-cosign}

lockdir=/var/tmp/llmops-harness-locks
mkdir -p "$lockdir"
exec 8>"$lockdir/cosign.lock"
flock 8

usable() { [ -x "$dest/bin/cosign" ] && "$dest/bin/cosign" version --json >/dev/null 2>&1; }
version() { echo "cosign $(cat "$dest/VERSION" 2>/dev/null || echo '(version unknown)')"; }
if usable; then
  echo "cosign: $(version) in $dest/bin is cached" >&2
  echo "$dest/bin/cosign"
  exit 0
fi
work=$(mktemp -d /var/tmp/llmops-cosign.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$here/sid_debs.sh" "$work/root" cosign
rm -rf "$dest.new"
mkdir -p "$dest.new/bin"
cp "$work/root/usr/bin/cosign" "$dest.new/bin/"
# Debian's build reports its version as "devel": keep the package's own
zcat "$work/root/usr/share/doc/cosign/changelog.Debian.gz" | sed -n '1s/^cosign (\([^)]*\)).*/\1/p' > "$dest.new/VERSION"
rm -rf "$dest"
mv "$dest.new" "$dest"
usable || { echo "cosign: $dest/bin/cosign does not run" >&2; exit 1; }
echo "cosign: $(version) in $dest/bin" >&2
echo "$dest/bin/cosign"
