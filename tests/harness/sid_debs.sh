#!/usr/bin/env bash
# Fetch packages of Debian's development suite (sid) through this machine's own mirror
# (tests/harness/apt_mirror.py), with apt's usual signature checks, into a private apt state, and
# unpack them into a folder; the system's packages and apt state are not touched. For tools the tests
# need at versions Debian 12/13 do not ship (prometheus3.sh, cosign.sh). A snapshot mirror serves
# sid's Release file past its Valid-Until: check-valid-until=no for that source alone (signatures are
# still checked).
#   tests/harness/sid_debs.sh ROOT PACKAGE...     unpack into ROOT (its usr/bin/... then holds the tools)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 ROOT PACKAGE..." >&2; exit 2; }
root=$1
shift
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
"$here/ensure-debs.sh" debian-archive-keyring
mirror=$(python3 "$here/apt_mirror.py")
work=$(mktemp -d /var/tmp/llmops-sid.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [signed-by=$keyring check-valid-until=no] $mirror sid main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o APT::Sandbox::User=root
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
          -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null)
echo "sid_debs: fetching $* from Debian sid ($mirror)" >&2
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download "$@" >&2)
mkdir -p "$root"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$root"
  echo "sid_debs: unpacked $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >&2
done
