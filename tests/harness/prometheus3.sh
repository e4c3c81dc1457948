#!/usr/bin/env bash
# Prometheus 3 and its promtool for the tests that run them on this machine (Debian 12 and 13 ship
# only 2.x; the role's default image is 3.x). Debian's development suite (sid) packages 3.x: its
# `prometheus` and `promtool` packages are fetched through this machine's own mirror
# (tests/harness/apt_mirror.py) by apt with its usual signature checks, into a private apt state, and
# unpacked into a private folder (a snapshot mirror serves sid's Release file past its Valid-Until:
# check-valid-until=no for that source alone; signatures are still checked). The system's own
# packages (Debian's prometheus 2.x, which test_prometheus_upgrade.py runs as the version an upgrade
# starts from) are not touched.
# Prints the folder that holds `prometheus` and `promtool` on its last line.
#   tests/harness/prometheus3.sh          LLMOPS_PROMETHEUS3_DIR: another folder (default below)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${LLMOPS_PROMETHEUS3_DIR:-/var/tmp/llmops-prometheus3}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

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

"$here/ensure-debs.sh" debian-archive-keyring
mirror=$(python3 "$here/apt_mirror.py")
work=$(mktemp -d /var/tmp/llmops-prometheus3.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [signed-by=$keyring check-valid-until=no] $mirror sid main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o APT::Sandbox::User=root
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
          -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null)
echo "prometheus3: fetching prometheus and promtool from Debian sid ($mirror)" >&2
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download prometheus promtool >&2)
rm -rf "$dest.new"
mkdir -p "$dest.new/bin"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done
cp "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$dest.new/bin/"
rm -rf "$dest"
mv "$dest.new" "$dest"
if ! usable; then
  echo "prometheus3: Debian sid's prometheus is not 3.x: $("$dest/bin/prometheus" --version 2>&1 | head -n1)" >&2
  exit 1
fi
echo "prometheus3: $("$dest/bin/prometheus" --version 2>&1 | head -n1) in $dest/bin" >&2
echo "$dest/bin"
