#!/usr/bin/env bash
# Set up the database route of LiteLLM for the tests (a TEST STAND-IN for Prisma's native query
# engine, see tests/harness/prisma-standin/query-engine.mjs and docs/testing.md):
#   tests/harness/prisma_standin.sh VENV     VENV: the LiteLLM virtualenv (tests/harness/litellm_venv.sh)
# Prints, on its last line, a folder holding
#   engine/query-engine, engine/schema-engine   the stand-in executables (npm packages from the lock file)
#   client/prisma                               prisma-client-py's client generated from the schema of the
#                                               venv's LiteLLM (put client/ first on PYTHONPATH)
#   prisma-home                                 PRISMA_HOME_DIR (the Prisma CLI prisma-client-py installs)
# and the Postgres server binaries are installed (Debian's postgresql). Reuses what is current; a flock
# serialises concurrent callers. Needs node and npm (Debian's nodejs/npm are installed when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${1:?usage: prisma_standin.sh LITELLM_VENV}
state=${LLMOPS_HARNESS_STATE:-$root/.cache/harness}/prisma-standin
mkdir -p "$state"
exec 9>"$state.lock"
flock 9

"$here/ensure-debs.sh" postgresql postgresql-client
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  "$here/ensure-debs.sh" nodejs npm
fi

# 1. the stand-in engine and its npm packages (exact versions and hashes from package-lock.json)
src=$here/prisma-standin
stamp=$(cat "$src/package.json" "$src/package-lock.json" "$src/query-engine.mjs" "$src/query-engine" \
  "$src/schema-engine" | sha256sum | cut -c1-16)
engine=$state/engine
if [ "$(cat "$engine/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "prisma_standin: installing the stand-in engine into $engine" >&2
  rm -rf "$engine" && mkdir -p "$engine"
  cp "$src/package.json" "$src/package-lock.json" "$src/query-engine.mjs" "$src/query-engine" "$src/schema-engine" "$engine/"
  (cd "$engine" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  echo "$stamp" >"$engine/.stamp"
fi

# 2. prisma-client-py's client for the schema of the venv's LiteLLM (generated into its own folder;
#    the venv is left as it is)
schema=$(find "$venv"/lib -path '*/site-packages/litellm/proxy/schema.prisma' -print -quit 2>/dev/null)
[ -f "$schema" ] || { echo "prisma_standin: no litellm/proxy/schema.prisma in $venv" >&2; exit 1; }
litellm_version=$("$venv/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p')
client=$state/client
cstamp="$litellm_version $(sha256sum "$schema" | cut -c1-16) $stamp"
if [ "$(cat "$client/.stamp" 2>/dev/null)" != "$cstamp" ]; then
  echo "prisma_standin: generating the Prisma client of litellm $litellm_version into $client" >&2
  rm -rf "$client" && mkdir -p "$client"
  # the same schema with the generated package's folder as the generator's output
  sed "s#provider = \"prisma-client-py\"#provider = \"prisma-client-py\"\n  output = \"$client/prisma\"#" "$schema" >"$client/schema.prisma"
  grep -q "output = \"$client/prisma\"" "$client/schema.prisma" || { echo "prisma_standin: no prisma-client-py generator in $schema" >&2; exit 1; }
  (cd "$client" && PATH="$venv/bin:$PATH" PRISMA_HOME_DIR="$state/prisma-home" PRISMA_HIDE_UPDATE_MESSAGE=1 \
    PRISMA_QUERY_ENGINE_BINARY="$engine/query-engine" PRISMA_SCHEMA_ENGINE_BINARY="$engine/schema-engine" \
    "$venv/bin/prisma" generate --schema "$client/schema.prisma" >&2)
  [ -f "$client/prisma/client.py" ] || { echo "prisma_standin: prisma generate wrote no client" >&2; exit 1; }
  echo "$cstamp" >"$client/.stamp"
fi
echo "$state"
