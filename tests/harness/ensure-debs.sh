#!/usr/bin/env bash
# Install Debian packages on the test machine when any is missing.
# Usage: tests/harness/ensure-debs.sh PKG [PKG...]
# Uses the machine's own apt sources (no mirror is written into this repository).
set -euo pipefail
missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-debs: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "ensure-debs: installing ${missing[*]}"
stamp=/var/lib/apt/periodic/llmops-apt-updated
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +60 2>/dev/null)" ]; then
  apt-get update -qq
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
