#!/usr/bin/env bash
# Create the virtualenv with the pinned ModelScope client that the model_store tests and benchmark
# run (the same pins the role installs on a host): /work/main/.cache/modelscope-venv, or
# $LLMOPS_MODELSCOPE_VENV when set.
#   tests/harness/modelscope_venv.sh          create or reuse; prints the venv path on its last line
# The pins are read from roles/model_store/defaults/main.yml (model_store_modelscope_version,
# model_store_modelscope_hub_version), so the tests drive the client release that the role deploys.
# Several helpers may call this at once: a flock serialises them and the second one reuses the venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
defaults=$root/roles/model_store/defaults/main.yml
pin_of() { sed -n "s/^$1: *\"\{0,1\}\([0-9][0-9.]*\)\"\{0,1\}.*/\1/p" "$defaults"; }
modelscope_pin=${MODELSCOPE_VERSION:-$(pin_of model_store_modelscope_version)}
hub_pin=${MODELSCOPE_HUB_VERSION:-$(pin_of model_store_modelscope_hub_version)}
if [ -z "$modelscope_pin" ] || [ -z "$hub_pin" ]; then
  echo "modelscope_venv: no model_store_modelscope_version / model_store_modelscope_hub_version in $defaults" >&2
  exit 1
fi
venv=${LLMOPS_MODELSCOPE_VENV:-$root/.cache/modelscope-venv}
mkdir -p "$(dirname "$venv")"
python=${PYTHON:-python3}

ready() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$modelscope_pin" "$hub_pin" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if (m.version("modelscope"), m.version("modelscope-hub")) == (sys.argv[1], sys.argv[2]) else 1)
EOF
}

exec 9>"$venv.lock"
flock 9
if ready; then
  echo "modelscope_venv: $venv has modelscope $modelscope_pin / modelscope-hub $hub_pin; reusing it" >&2
  echo "$venv"
  exit 0
fi
start=$(date +%s)
echo "modelscope_venv: installing modelscope==$modelscope_pin modelscope-hub==$hub_pin into $venv" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  "modelscope==$modelscope_pin" "modelscope-hub==$hub_pin" >&2
ready || { echo "modelscope_venv: install finished but the venv does not have the pinned versions" >&2; exit 1; }
echo "modelscope_venv: ready in $(( $(date +%s) - start )) s" >&2
echo "$venv"
