#!/usr/bin/env bash
# inference-core gateway benchmark: direct nginx mock vs our gateway vs the LiteLLM proxy anchor,
# all measured back to back in ONE run (same machine state), written to results/ + a report.
#
#   bench/run.sh                       # setup (apt/pip, idempotent) + direct vs inference-core vs LiteLLM (1 worker)
#   bench/run.sh --quick               # smoke test: 1 rep, 2 s runs, c = 1 16
#   bench/run.sh --no-litellm          # only direct vs inference-core
#   bench/run.sh --litellm-workers "1 2"   # also the 2-worker anchor
#   bench/run.sh --gateway URL --name NAME [--pid PID] [--api-key KEY]   # also an already running gateway
#
# Our gateway is started by the harness (start-up time to first 200 is measured) with
# bench/gateway.env: two instances of the vllm plugin on the mock, routed by model name:
#   model "mock-chat" & "mock-embed" -> http://127.0.0.1:18080   model "mock-stream" -> :18081
# (nginx cannot branch on the JSON body, so the SSE upstream is a separate port.)
# Options:
#   --duration S (10)  --warmup S (3)  --reps N (2)  --conns "1 16 64"  --endpoints "chat stream embed messages messages_stream responses responses_stream"
#   --ours-cmd CMD (default: $PYTHON -c 'from inference_core.gateway import serve; serve()')
#   --ours-env FILE (bench/gateway.env)   --ours-name NAME (inference-core)   --no-ours
#   --rundir DIR (/tmp/gwbench/NAME)   --out FILE
#   --skip-setup   --upgrade-litellm
# Env: PYTHON (the repo's .venv/bin/python, else python3), LITELLM_VENV (/opt/peers/litellm),
#      LITELLM_SPEC ('litellm[proxy]==1.108.7': the anchor version stays fixed)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LITELLM_VENV="${LITELLM_VENV:-/opt/peers/litellm}"
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]==1.108.7}"
export LITELLM_VENV
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

NAME=inference-core
GATEWAY="" MODEL="" STREAM_MODEL="" EMBED_MODEL="" API_KEY="" GW_PID=""
LITELLM_WORKERS="1"
DURATION=10 WARMUP=3 REPS=2 CONNS="1 16 64"
ENDPOINTS="chat stream embed messages messages_stream responses responses_stream"
RUNDIR="" OUT="" SKIP_SETUP=0 UPGRADE=0
OURS_CMD="$PYTHON -c 'from inference_core.gateway import serve; serve()'"
OURS_ENV="$HERE/gateway.env" OURS=1 OURS_NAME=inference-core

while [ $# -gt 0 ]; do
  case "$1" in
    --gateway) GATEWAY="$2"; shift 2 ;;
    --ours-name) OURS_NAME="$2"; shift 2 ;;
    --ours-cmd) OURS_CMD="$2"; shift 2 ;;
    --ours-env) OURS_ENV="$2"; shift 2 ;;
    --no-ours) OURS=0; shift ;;
    --name) NAME="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --stream-model) STREAM_MODEL="$2"; shift 2 ;;
    --embed-model) EMBED_MODEL="$2"; shift 2 ;;
    --api-key) API_KEY="$2"; shift 2 ;;
    --pid) GW_PID="$2"; shift 2 ;;
    --no-litellm) LITELLM_WORKERS=""; shift ;;
    --litellm-workers) LITELLM_WORKERS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --endpoints) ENDPOINTS="$2"; shift 2 ;;
    --rundir) RUNDIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --skip-setup) SKIP_SETUP=1; shift ;;
    --upgrade-litellm) UPGRADE=1; shift ;;
    --quick) DURATION=2; WARMUP=1; REPS=1; CONNS="1 16"; shift ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
case "$NAME" in litellm*) echo "--name must not start with 'litellm'" >&2; exit 2 ;; esac
RUNDIR="${RUNDIR:-/tmp/gwbench/$NAME}"
OUT="${OUT:-$HERE/results/RESULTS-$NAME-$(date -u +%Y%m%d-%H%M%S).md}"

log() { echo "$(date +%H:%M:%S) $*"; }

# ------------------------------------------------------------------ setup (idempotent)
setup() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx-light)
  [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
  command -v wrk >/dev/null || need+=(wrk)
  command -v curl >/dev/null || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ "$OURS" = 1 ] && ! eval "$PYTHON -c 'import inference_core.gateway.app, inference_vllm, uvloop, httptools'" 2>/dev/null; then
    echo "$PYTHON cannot import the gateway and the vllm plugin: install them first, e.g." >&2
    echo "  $PYTHON -m pip install -e '$REPO/core[gateway]' -e '$REPO/plugins/inference-vllm'" >&2
    exit 1
  fi
  if [ -n "$LITELLM_WORKERS" ]; then
    if [ ! -x "$LITELLM_VENV/bin/python" ]; then
      log "creating venv $LITELLM_VENV"
      python3 -m venv "$LITELLM_VENV"
      "$LITELLM_VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1
    fi
    if ! "$LITELLM_VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null 2>&1 || [ "$UPGRADE" = 1 ]; then
      log "pip install $LITELLM_SPEC into $LITELLM_VENV"
      local up=(); [ "$UPGRADE" = 1 ] && up=(-U)
      "$LITELLM_VENV/bin/pip" install -q "${up[@]}" "$LITELLM_SPEC" \
        >"$RUNDIR/pip.log" 2>&1 || { tail -20 "$RUNDIR/pip.log"; exit 1; }
    fi
  fi
}

# ------------------------------------------------------------------ nginx mock
NGINX_PREFIX="$RUNDIR/nginx"
WRKCHECK_PREFIX="$RUNDIR/wrkcheck"
stop_pidfile() {  # stop exactly the process named in a pid file (nginx master: TERM = fast shutdown)
  local f="$1"
  if [ -f "$f" ]; then
    local pid; pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
  fi
}
cleanup() {
  stop_pidfile "$WRKCHECK_PREFIX/wrkcheck.pid"
  stop_pidfile "$NGINX_PREFIX/nginx.pid"
}

port_busy() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

start_nginx() {
  local ports="18080 18081"
  [ "$OURS" = 1 ] && ports+=" 8000"
  [ -n "$LITELLM_WORKERS" ] && ports+=" 4000"
  for p in $ports; do
    if port_busy $p; then
      echo "port $p is already in use (a mock or gateway from an earlier run? stop it by its pid file under /tmp/gwbench/*/)" >&2
      exit 1
    fi
  done
  mkdir -p "$NGINX_PREFIX/tmp"
  python3 "$HERE/mock/gen_fixtures.py" "$NGINX_PREFIX/static" >/dev/null
  # the committed fixtures must equal the generated ones (reproducibility)
  diff -r "$HERE/mock/static" "$NGINX_PREFIX/static" >/dev/null || { echo "fixtures differ from mock/static" >&2; exit 1; }
  nginx -q -t -p "$NGINX_PREFIX/" -e "$NGINX_PREFIX/error.log" -c "$HERE/nginx.conf"
  nginx -p "$NGINX_PREFIX/" -e "$NGINX_PREFIX/error.log" -c "$HERE/nginx.conf"
  for _ in $(seq 1 50); do [ -s "$NGINX_PREFIX/nginx.pid" ] && port_busy 18081 && break; sleep 0.1; done
  log "nginx mock up, master pid $(cat "$NGINX_PREFIX/nginx.pid")"
}

wrk_selfcheck() {
  # Confirms that wrk's latency covers the whole (chunked, slowly streamed) response body.
  local f="$RUNDIR/wrkcheck.txt"
  if [ ! -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
    echo "skipped: nginx echo module missing" >"$f"; return
  fi
  mkdir -p "$WRKCHECK_PREFIX/tmp"
  nginx -p "$WRKCHECK_PREFIX/" -e "$WRKCHECK_PREFIX/wrkcheck.err" -c "$HERE/nginx-wrkcheck.conf"
  for _ in $(seq 1 50); do port_busy 18082 && break; sleep 0.1; done
  local out p50
  out="$(BENCH_LUA_DIR="$HERE/lua" wrk -t1 -c1 -d1s -s "$HERE/lua/stream.lua" http://127.0.0.1:18082/v1/chat/completions)"
  stop_pidfile "$WRKCHECK_PREFIX/wrkcheck.pid"
  p50="$(echo "$out" | sed -n 's/.*"p50_us":\([0-9]*\).*/\1/p')"
  if [ -n "$p50" ] && [ "$p50" -ge 190000 ]; then
    echo "PASS: body streamed as 3 chunks with 2 x 100 ms pauses; wrk p50 = $((p50/1000)) ms (>= 200 ms expected), so wrk latency = time to the end of the body" >"$f"
  else
    echo "FAIL: wrk p50 = ${p50:-?} us for a body that takes >= 200 ms to stream" >"$f"
  fi
  log "wrk self-check: $(cat "$f")"
}

# ------------------------------------------------------------------ main
mkdir -p "$RUNDIR"
[ "$SKIP_SETUP" = 1 ] || setup
trap cleanup EXIT INT TERM
start_nginx
wrk_selfcheck

targets=()
if [ -n "$GATEWAY" ]; then
  spec="name=$NAME,url=$GATEWAY"
  [ -n "$MODEL" ] && spec+=",model=$MODEL"
  [ -n "$STREAM_MODEL" ] && spec+=",stream_model=$STREAM_MODEL"
  [ -n "$EMBED_MODEL" ] && spec+=",embed_model=$EMBED_MODEL"
  [ -n "$API_KEY" ] && spec+=",api_key=$API_KEY"
  [ -n "$GW_PID" ] && spec+=",pid=$GW_PID"
  targets+=(--target "$spec")
fi

start=()
if [ "$OURS" = 1 ]; then
  start=(--start-cmd "$OURS_CMD" --start-name "$OURS_NAME" --start-port 8000 --start-env "$OURS_ENV")
fi

log "loadavg $(cat /proc/loadavg)"
python3 "$HERE/bench.py" run --rundir "$RUNDIR" --luadir "$HERE/lua" \
  --nginx-pidfile "$NGINX_PREFIX/nginx.pid" \
  --litellm-workers "$LITELLM_WORKERS" --endpoints "$ENDPOINTS" --conns "$CONNS" \
  --duration "$DURATION" --warmup "$WARMUP" --reps "$REPS" "${targets[@]}" "${start[@]}"

mkdir -p "$HERE/results"
RAW="results/$NAME-$(date -u +%Y%m%d-%H%M%S).jsonl"
cp "$RUNDIR/results.jsonl" "$HERE/$RAW"
title="Gateway overhead: direct nginx mock vs"
[ -n "$LITELLM_WORKERS" ] && title+=" LiteLLM proxy (workers: $LITELLM_WORKERS)"
[ -n "$GATEWAY" ] && title+=" vs $NAME ($GATEWAY)"
[ "$OURS" = 1 ] && title+=" vs $OURS_NAME (started by the harness)"
python3 "$HERE/bench.py" report --rundir "$RUNDIR" --out "$OUT" --title "$title" --raw-name "$RAW"
log "done: $OUT"
