#!/usr/bin/env bash
# The whole test suite, in order, stopping at the first failure (called by `make test`):
#   yamllint, ansible-lint (production), ruff, ansible-test sanity, ansible-test units,
#   pytest (unit + integration), molecule test --all.
# Expects the dev virtualenv's bin/ first on PATH (the Makefile arranges that).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
export LLMOPS_HARNESS_STATE=$root/.cache/harness
mkdir -p "$LLMOPS_HARNESS_STATE" tests/output
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export PY_COLORS=${PY_COLORS:-0}
suite_start=$(date +%s)
declare -a summary=()

step() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo
  echo "================ [$name] $* ================"
  if "$@"; then
    summary+=("$(printf '%-22s ok     %5d s' "$name" $(( $(date +%s) - start )))")
  else
    local rc=$?
    summary+=("$(printf '%-22s FAILED %5d s' "$name" $(( $(date +%s) - start )))")
    finish
    echo "suite: step '$name' failed (exit $rc); stopping here" >&2
    exit "$rc"
  fi
}

finish() {
  echo
  echo "================ suite summary ================"
  printf '%s\n' "${summary[@]}"
  echo "total: $(( $(date +%s) - suite_start )) s"
  if [ -f tests/output/molecule.log ]; then
    echo
    echo "site.yml re-run vs a no-op play (goal: re-run <= 2x no-op):"
    python3 "$here/molecule_timings.py" tests/output/molecule.log || true
  fi
}

cleanup() { "$here/docker-engine.sh" stop || true; }
trap cleanup EXIT

host_services() {
  # Debian packages the integration tests run for real, and the linters ansible-test uses.
  "$here/ensure-debs.sh" docker.io debootstrap debian-archive-keyring redis-server prometheus \
    shellcheck dpkg-dev apt-utils gnupg
  # The Debian packages enable their own services when systemd runs; tests start their own
  # instances on free loopback ports, so nothing here depends on those.
  "$here/docker-engine.sh" start
}

run_molecule() {
  set -o pipefail
  local rc=0
  # Wide lines: molecule wraps ansible's output at the terminal width (80 without a terminal), which
  # would break the llmops-timer lines molecule_timings.py reads.
  COLUMNS=${COLUMNS:-250} molecule test --all 2>&1 | tee tests/output/molecule.log || rc=$?
  # molecule runs cleanup before destroy and skips destroy when cleanup fails: never leave test
  # instances behind (they carry the label create.yml gives them).
  local left
  left=$(docker ps -aq --filter label=llmops.test=gpu_stack)
  if [ -n "$left" ]; then
    echo "suite: removing test instances molecule left behind" >&2
    # shellcheck disable=SC2086  # one id per word
    docker rm -f -v $left >/dev/null
  fi
  return "$rc"
}

step yamllint yamllint -s .
step ansible-lint ansible-lint --profile production
step ruff ruff check .
sanity() {
  # ansible-test runs the shellcheck program; without it that sanity test is skipped.
  "$here/ensure-debs.sh" shellcheck
  "$here/ansible-test.sh" sanity
}

step sanity sanity
step units "$here/ansible-test.sh" units
step host-services host_services
# Two workers, each test file on one of them (its module fixtures: containers, processes): the
# integration tests wait on processes and containers much of the time, so two cores do more.
step pytest pytest -p no:cacheprovider -n "${LLMOPS_PYTEST_WORKERS:-2}" --dist loadfile
step molecule run_molecule
finish
