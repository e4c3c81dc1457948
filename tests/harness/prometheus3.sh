#!/usr/bin/env bash
# Prometheus 3 and its promtool for the tests that run them on this machine (Debian 12 and 13 ship
# only 2.x; the role's default image is 3.x). Debian's development suite (sid) packages 3.x: its
# `prometheus` and `promtool` packages are fetched through this machine's own mirror with apt's
# signature checks (tests/harness/sid_debs.sh) and unpacked into a private folder. The system's own
# packages (Debian's prometheus 2.x, which test_prometheus_upgrade.py runs as the version an upgrade
# starts from) are not touched.
# Prints the folder that holds `prometheus` and `promtool` on its last line.
#   tests/harness/prometheus3.sh          LLMOPS_PROMETHEUS3_DIR: another folder (default below)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${LLMOPS_PROMETHEUS3_DIR:-/var/tmp/llmops-prometheus3}

# pytest's workers may ask at once: one fetches, the others wait and reuse it.
lockdir=/var/tmp/llmops-harness-locks
mkdir -p "$lockdir"
exec 8>"$lockdir/prometheus3.lock"
flock 8

usable() {
  [ -x "$dest/bin/prometheus" ] && [ -x "$dest/bin/promtool" ] &&
    "$dest/bin/prometheus" --version 2>&1 | grep -q '^prometheus, version 3\.'
}
if usable; then
  echo "prometheus3: $("$dest/bin/prometheus" --version 2>&1 | head -n1) in $dest/bin is cached" >&2
  echo "$dest/bin"
  exit 0
fi

work=$(mktemp -d /var/tmp/llmops-prometheus3.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$here/sid_debs.sh" "$work/root" prometheus promtool
rm -rf "$dest.new"
mkdir -p "$dest.new/bin"
cp "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$dest.new/bin/"
rm -rf "$dest"
mv "$dest.new" "$dest"
if ! usable; then
  echo "prometheus3: Debian sid's prometheus is not 3.x: $("$dest/bin/prometheus" --version 2>&1 | head -n1)" >&2
  exit 1
fi
echo "prometheus3: $("$dest/bin/prometheus" --version 2>&1 | head -n1) in $dest/bin" >&2
echo "$dest/bin"
