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

cleanup() {
  # A background image build still running (a step after host-services failed) finishes first:
  # stopping the engine under it would leave half-built images and a half-pushed registry.
  if [ -n "${prebuild_pid:-}" ] && kill -0 "$prebuild_pid" 2>/dev/null; then
    echo "suite: waiting for the background image build (tests/output/prebuild.log)" >&2
    wait "$prebuild_pid" || true
  fi
  "$here/docker-engine.sh" stop || true
}
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
  local rc=0 scenario pid
  local -a scenarios=() pids=()
  # Every scenario (molecule/<name>/molecule.yml; _shared holds their common playbooks) at the same
  # time: molecule spends most of its time waiting on containers and engines (load about 1.5 on two
  # cores for one scenario), and the scenarios share nothing but the registry and the image builds
  # (locked). LLMOPS_MOLECULE_SERIAL=1 runs them one after the other (molecule test --all).
  for scenario in molecule/*/molecule.yml; do
    scenario=${scenario#molecule/}
    scenarios+=("${scenario%/molecule.yml}")
  done
  # Wide lines: molecule wraps ansible's output at the terminal width (80 without a terminal), which
  # would break the llmops-timer lines molecule_timings.py reads.
  export COLUMNS=${COLUMNS:-250}
  if [ "${LLMOPS_MOLECULE_SERIAL:-0}" = 1 ]; then
    set -o pipefail
    molecule test --all 2>&1 | tee tests/output/molecule.log || rc=$?
  else
    for scenario in "${scenarios[@]}"; do
      molecule test -s "$scenario" > "tests/output/molecule-$scenario.log" 2>&1 &
      pids+=($!)
      echo "suite: molecule scenario $scenario started (log: tests/output/molecule-$scenario.log)"
    done
    : > tests/output/molecule.log
    for i in "${!scenarios[@]}"; do
      pid=${pids[$i]}
      scenario=${scenarios[$i]}
      if wait "$pid"; then
        echo "suite: molecule scenario $scenario passed"
      else
        rc=1
        echo "suite: molecule scenario $scenario FAILED"
      fi
      tee -a tests/output/molecule.log < "tests/output/molecule-$scenario.log"
    done
  fi
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

# molecule's test images (molecule/*/molecule.yml, LLMOPS_TEST_IMAGES), built and pushed to the
# local test registry in the background while pytest runs: on a cold machine that is minutes of image
# builds and a 3 GB push that molecule's create step would otherwise wait for. The builds take the
# same locks as pytest's (an image is built once); molecule's create pushes again, so a failure here
# only costs that time and is reported there.
prebuild_pid=
prebuild_images() {
  local base
  base=$("$here/base-image.sh" | tail -n1) &&
    BASE_IMAGE=$base "$here/images/registry.sh" push redis postgres prometheus litellm vllm-cpu standin-guard
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
prebuild_images > tests/output/prebuild.log 2>&1 &
prebuild_pid=$!
# Two workers, each test file on one of them (its module fixtures: containers, processes): the
# integration tests wait on processes and containers much of the time, so two cores do more.
step pytest pytest -p no:cacheprovider -n "${LLMOPS_PYTEST_WORKERS:-2}" --dist loadfile
wait_prebuild() {
  local start rc=0
  start=$(date +%s)
  wait "$prebuild_pid" || rc=$?
  echo "suite: background image build and push: exit $rc, waited $(( $(date +%s) - start )) s for it" \
    "(log: tests/output/prebuild.log)"
  tail -n 3 tests/output/prebuild.log
}
step prebuild-wait wait_prebuild
step molecule run_molecule
# No secret's test value in any log the suite kept: molecule's (default verbosity), the side effect's
# two site.yml runs (-vvv) and the rolling update (-v), whose outputs are in tests/output too.
secret_scan() {
  python3 "$here/secret_scan.py" --values molecule/_shared/group_vars/shared.yml tests/output/*.log
}
step secret-scan secret_scan
finish
