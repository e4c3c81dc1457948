#!/usr/bin/env bash
# Make a Docker engine answer on this machine for the test suite.
#   docker-engine.sh start   install docker.io if missing; start dockerd if no engine answers
#   docker-engine.sh stop    stop the engine only if `start` started it
# Fails loudly (exit 1) when no engine can be started: the suite never skips molecule silently.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state_dir=${LLMOPS_HARNESS_STATE:-$here/../../.cache/harness}
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
pidfile=$state_dir/dockerd.pid
log=$state_dir/dockerd.log

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

start() {
  "$here/ensure-debs.sh" docker.io
  if engine_answers; then
    echo "docker-engine: an engine already answers ($(docker version --format '{{.Server.Version}}')); leaving it alone"
    return 0
  fi
  if [ -d /run/systemd/system ] && systemctl cat docker.service >/dev/null 2>&1; then
    echo "docker-engine: starting docker.service with systemd"
    systemctl start docker.service
    echo systemd > "$pidfile"
  else
    echo "docker-engine: starting dockerd (log: $log)"
    # setsid: the engine must outlive this script's process group until `stop`.
    setsid dockerd >"$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
  fi
  for _ in $(seq 1 60); do
    if engine_answers; then
      echo "docker-engine: engine $(docker version --format '{{.Server.Version}}') is up"
      return 0
    fi
    sleep 1
  done
  echo "docker-engine: FAILED: no Docker engine answered within 60 s. Last lines of $log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}

stop() {
  [ -f "$pidfile" ] || { echo "docker-engine: this harness started no engine; nothing to stop"; return 0; }
  owner=$(cat "$pidfile")
  if [ "$owner" = systemd ]; then
    systemctl stop docker.service docker.socket || true
  elif kill -0 "$owner" 2>/dev/null && grep -q dockerd "/proc/$owner/cmdline" 2>/dev/null; then
    kill -TERM "$owner"
    for _ in $(seq 1 30); do kill -0 "$owner" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidfile"
  echo "docker-engine: stopped the engine this harness started"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
