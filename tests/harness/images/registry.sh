#!/usr/bin/env bash
# A local registry (Debian's docker-registry in llmops-test/registry) for the stack's test images.
#   BASE_IMAGE=<debian 13 image> registry.sh start   build if needed, run it on the default bridge
#   registry.sh addr     the address test instances pull from: <container IP>:5000 (plain HTTP:
#                        the instance's dockerd must list it in insecure-registries)
#   BASE_IMAGE=... registry.sh push [NAME...]   build (cached) and push llmops-test/NAME:test and
#                        :<hash> (default: redis prometheus litellm standin-engine)
#   registry.sh stop     remove the registry container and its storage
# The host pushes through a loopback port (Docker trusts 127.0.0.0/8 without TLS), so only the
# test's own containers and loopback carry registry traffic.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${LLMOPS_TEST_REGISTRY_CONTAINER:-llmops-test-registry}

running() { [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; }

addr() {
  running || { echo "registry: $name is not running (registry.sh start)" >&2; return 1; }
  echo "$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$name"):5000"
}

host_port() { docker port "$name" 5000/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1; }

start() {
  image=$("$here/build.sh" registry | tail -n1)
  if running; then
    echo "registry: $name already runs at $(addr)" >&2
  elif [ "$(docker inspect -f '{{.Config.Image}}' "$name" 2>/dev/null)" = "$image" ] && docker start "$name" >/dev/null 2>&1; then
    # A container stopped with the harness's dockerd keeps its storage: restarting it saves pushing
    # every image again (the vLLM image alone is about 3 GB, about 4 minutes here).
    echo "registry: restarted $name with its storage" >&2
  else
    docker rm -f -v "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --label llmops.test=registry -p 127.0.0.1::5000 "$image" >/dev/null
  fi
  local port
  port=$(host_port)
  for _ in $(seq 1 30); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/', timeout=2)" 2>/dev/null; then
      echo "registry: $name answers at $(addr) (host side 127.0.0.1:$port)" >&2
      addr
      return 0
    fi
    sleep 1
  done
  echo "registry: $name did not answer on 127.0.0.1:$port" >&2
  docker logs --tail 20 "$name" >&2 || true
  return 1
}

push() {
  # Two scenarios may push at once (the same tags): one at a time.
  mkdir -p /var/tmp/llmops-harness-locks
  exec 7>/var/tmp/llmops-harness-locks/registry-push.lock
  flock 7
  running || start >/dev/null
  local port start_s ref tag
  port=$(host_port)
  start_s=$(date +%s)
  local -a names=("$@")
  [ ${#names[@]} -gt 0 ] || names=(redis prometheus litellm standin-engine standin-guard)
  for ref in $("$here/build.sh" "${names[@]}"); do
    for tag in "${ref##*:}" test; do
      local src=${ref%:*}:$tag dst=127.0.0.1:$port/${ref%:*}:$tag
      docker tag "$src" "$dst"
      docker push -q "$dst" >/dev/null
      docker rmi "$dst" >/dev/null
      echo "registry: pushed $(addr)/${ref%:*}:$tag" >&2
    done
  done
  echo "registry: push done in $(( $(date +%s) - start_s )) s" >&2
}

stop() {
  docker rm -f -v "$name" >/dev/null 2>&1 && echo "registry: removed $name" >&2 || echo "registry: $name was not there" >&2
}

case "${1:-}" in
  start) start ;;
  addr) addr ;;
  push) shift; push "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start|addr|push [NAME...]|stop" >&2; exit 2 ;;
esac
