#!/usr/bin/env bash
# Run `ansible-test sanity` or `ansible-test units` from a copy of this checkout laid out as
# ansible_collections/llmops/gpu_stack (ansible-test requires that layout).
#   ansible-test.sh sanity|units [extra ansible-test args]
# Offline-safe: ansible-test's per-test virtualenvs bootstrap pip from a script it would
# download from the internet; we write that cached script ourselves (it uses ensurepip and
# the configured pip index), so a fresh machine passes without that download.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cmd=${1:?usage: ansible-test.sh sanity|units [args]}
shift
python=${LLMOPS_TEST_PYTHON:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}

# 1. The pip bootstrap script ansible-test looks for in its cache.
pip_version=$(python3 - <<'PY'
import ansible_test._internal.python_requirements as r, inspect, re
src = inspect.getsource(r.get_venv_packages)
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cat > "$cache" <<PY
# Written by llmops.gpu_stack tests/harness/ansible-test.sh: stands in for get-pip.py.
import subprocess, sys
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
PY

# 2. A copy of the collection as it ships (git's view of the tree, minus the checkout-only link).
# Outside the checkout: inside it, ansible-test would ask git and see only ignored files.
dest_base=${LLMOPS_ANSIBLE_TEST_DIR:-/var/tmp/llmops-ansible-test}
dest=$dest_base/ansible_collections/llmops/gpu_stack
rm -rf "$dest_base"
mkdir -p "$dest"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
   | grep -zv -e '^collections/' -e '^\.ci/' \
   | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
   | tar --null -T - -cf -) | tar -C "$dest" -xf -

cd "$dest"
case "$cmd" in
  sanity) exec ansible-test sanity --color no --python "$python" "$@" ;;
  units) exec ansible-test units --color no --python "$python" --venv --requirements "$@" ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
