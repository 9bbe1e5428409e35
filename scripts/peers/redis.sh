#!/usr/bin/env bash
# Real Redis (Debian's redis-server) as a test peer for the shared-state tests.
#
#   bash scripts/peers/redis.sh setup          # idempotent: apt-get update + install redis-server
#   PID=$(bash scripts/peers/redis.sh start PORT)
#   bash scripts/peers/redis.sh stop PORT
#
# setup: installs the Debian package redis-server when `redis-server` is not on PATH (as root, or
#        through sudo); does nothing when it is.
# start: redis-server on 127.0.0.1:PORT in the background, no persistence (--save "" and no AOF);
#        refuses a busy port; waits until it answers PING; prints ONLY the PID on stdout.
#        PID file and log: <cache>/run/redis.PORT.{pid,log}.
# stop:  TERM the PID from the PID file, KILL after 5 s; removes the PID file.
# <cache> = $INFERENCE_CACHE_DIR or ~/.cache/inference-core.
set -euo pipefail

CACHE="${INFERENCE_CACHE_DIR:-$HOME/.cache/inference-core}"
RUN_DIR="$CACHE/run"
log() { echo "[redis] $*" >&2; }
usage() { echo "usage: $0 setup | start PORT | stop PORT" >&2; exit 2; }

cmd_setup() {
  if command -v redis-server >/dev/null 2>&1; then
    log "redis-server present: $(redis-server --version | head -1)"
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "need root or sudo to apt-get install redis-server"; exit 1; }
    sudo=(sudo)
  fi
  log "installing redis-server (apt-get)"
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >&2
  command -v redis-server >/dev/null 2>&1 || { log "redis-server still missing after apt-get"; exit 1; }
}

ping() {  # PING on 127.0.0.1:$1 answered +PONG
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
}

cmd_start() {
  local port="${1:-}"; [[ -n "$port" ]] || usage
  if ping "$port"; then log "port $port is busy"; exit 1; fi
  mkdir -p "$RUN_DIR"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --protected-mode yes > "$RUN_DIR/redis.$port.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$RUN_DIR/redis.$port.pid"
  for _ in $(seq 1 100); do
    if ping "$port"; then echo "$pid"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$RUN_DIR/redis.$port.log" >&2; exit 1; }
    sleep 0.1
  done
  log "redis-server on :$port did not answer PING"; kill "$pid" 2>/dev/null || true; exit 1
}

cmd_stop() {
  local port="${1:-}"; [[ -n "$port" ]] || usage
  local file="$RUN_DIR/redis.$port.pid"
  [[ -f "$file" ]] || return 0
  local pid; pid="$(cat "$file")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop)  shift; cmd_stop "$@" ;;
  *) usage ;;
esac
