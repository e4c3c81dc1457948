#!/usr/bin/env bash
# Build the Debian 13 (trixie) base image the tests use, with debootstrap + docker import.
# The mirror comes from this machine's own apt sources (tests/harness/apt_mirror.py).
# The tag holds a hash of this script, so an unchanged recipe is built once and then reused.
# Prints the image tag on its last line.
#   tests/harness/base-image.sh [SUITE]   SUITE: trixie (the default) or bookworm (Debian 12, for  #suite
#   the vLLM CPU image: its torch CPU wheel is for Python 3.11); also LLMOPS_BASE_SUITE.  #suite
# Lines ending in "#suite" are that switch: they stay out of the recipe hash, so the trixie tag  #suite
# (and every test image built on it) is the one this script had before it could build bookworm.  #suite
# Lines ending in "#lock" (serialising concurrent callers) stay out of the hash as well.  #suite
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=trixie
suite=${1:-${LLMOPS_BASE_SUITE:-$suite}}  #suite
case "$suite" in trixie|bookworm) ;; *) echo "base-image: unknown suite '$suite' (trixie or bookworm)" >&2; exit 2 ;; esac  #suite
packages=python3,python3-apt,sudo,systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps,gnupg,curl,less,iptables
recipe_hash=$( (cat "$0"; echo "$packages") | sha256sum | cut -c1-12)
recipe_hash=$( (grep -vE '  #(suite|lock)$' "$0"; echo "$packages") | sha256sum | cut -c1-12)  #suite
tag=${LLMOPS_BASE_IMAGE_REPO:-llmops-harness/debian}:${suite}-${recipe_hash}

# Tests that run side by side (pytest -n) may ask at once: one builds, the others wait and reuse it.  #lock
lockdir=/var/tmp/llmops-harness-locks  #lock
mkdir -p "$lockdir"  #lock
exec 8>"$lockdir/base-image-$suite.lock"  #lock
flock 8  #lock
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag is cached; skipping the build" >&2
  echo "$tag"
  exit 0
fi

"$here/ensure-debs.sh" debootstrap debian-archive-keyring
mirror=$(python3 "$here/apt_mirror.py")
work=$(mktemp -d /var/tmp/llmops-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "base-image: debootstrap $suite from $mirror (cold build, about a minute)" >&2
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$packages" \
      --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "base-image: debootstrap failed" >&2
  exit 1
fi
# A fresh machine-id per container, no apt caches in the image.
: > "$work/root/etc/machine-id"
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
# Containers start systemd as PID 1 (molecule instances run their own dockerd under it).
tar -C "$work/root" -c . | docker import \
  -c 'ENV container=docker' -c 'CMD ["/sbin/init"]' \
  -m "llmops.gpu_stack test base: debian $suite minbase + systemd + python3" - "$tag" >/dev/null
echo "base-image: built $tag in $(( $(date +%s) - start )) s" >&2
echo "$tag"
