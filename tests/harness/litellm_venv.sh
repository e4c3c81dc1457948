#!/usr/bin/env bash
# Create the host virtualenv with the pinned LiteLLM proxy that the integration tests and the
# gateway benchmark start on loopback: /work/main/.cache/litellm-venv (or $LITELLM_VENV).
#   tests/harness/litellm_venv.sh          create or reuse; prints the venv path on its last line
# The pin is the one roles/gateway/defaults/main.yml names for the image (gateway_litellm_version),
# so the tests load the rendered config in the same LiteLLM release that the stack runs.
# Several helpers may call this at once: a flock serialises them and the second one reuses the venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
defaults=$root/roles/gateway/defaults/main.yml
pin=${LITELLM_VERSION:-$(sed -n 's/^gateway_litellm_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}.*/\1/p' "$defaults")}
[ -n "$pin" ] || { echo "litellm_venv: no gateway_litellm_version in $defaults" >&2; exit 1; }
# prometheus_client: /metrics; prisma: without it a wrong key gets 500 instead of 401
# (LiteLLM's auth error path imports it even when no database is configured).
prometheus_client_pin=0.23.1
prisma_pin=0.15.0
venv=${LITELLM_VENV:-$root/.cache/litellm-venv}
mkdir -p "$(dirname "$venv")"
python=${PYTHON:-python3}

ready() {
  [ -x "$venv/bin/litellm" ] || return 1
  [ "$("$venv/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p')" = "$pin" ] || return 1
  "$venv/bin/python" -c 'import prometheus_client, prisma' 2>/dev/null
}

exec 9>"$venv.lock"
flock 9
if ready; then
  echo "litellm_venv: $venv has litellm $pin; reusing it" >&2
  echo "$venv"
  exit 0
fi
start=$(date +%s)
echo "litellm_venv: installing litellm[proxy]==$pin into $venv (about 740 MB, a few minutes)" >&2
[ -x "$venv/bin/pip" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  "litellm[proxy]==$pin" "prometheus_client==$prometheus_client_pin" "prisma==$prisma_pin" >&2
ready || { echo "litellm_venv: install finished but the venv is not usable" >&2; exit 1; }
echo "litellm_venv: ready in $(( $(date +%s) - start )) s" >&2
echo "$venv"
