#!/usr/bin/env bash
# Start the gateway variants that docs/benchmarks.md compares in one run of the shared harness,
# and print the --target specs to pass it.
#
#   bash bench/variants.sh start [--baseline-python PY]   # prints the targets, one per line
#   bash bench/variants.sh stop
#
# Every variant serves bench/gateway.env (the vllm plugin on the nginx mock) with this checkout's
# .venv, from a state directory /tmp/gwbench-variants:
#   ours        18201  defaults (no keys)
#   ours-keys   18202  a key store (TOML file) with every limit on, in-process state; the key sent
#   ours-redis  18203  the same key in a real Redis (scripts/peers/redis.sh, port 18209), all
#                      shared state there
#   ours-w2     18204  --workers 2
#   baseline    18200  only with --baseline-python: another checkout's interpreter (e.g. the
#                      first build's venv), same environment
# Then, for example:
#   ../shared/bench/gateway-overhead/run.sh --skip-setup --gateway http://127.0.0.1:18201 \
#     --name ours --pid PID_OF_OURS $(bash bench/variants.sh targets) --portkey \
#     --litellm-workers 1 --endpoints "chat stream" --conns "1 16" --reps 3 --duration 5 --warmup 2
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
PY="$ROOT/.venv/bin/python"
STATE=/tmp/gwbench-variants
REDIS_PORT=18209
RPM=100000000 BIG=1000000000000

started() {  # name port extra-env... : start one variant in the background
  local name="$1" port="$2"; shift 2
  (
    set -a; . "$HERE/gateway.env"; set +a
    export INFERENCE_GATEWAY_PORT="$port"
    for kv in "$@"; do export "${kv?}"; done
    exec "$(dirname "${VARIANT_PY:-$PY}")/inference" serve ${WORKERS:+--workers "$WORKERS"} \
      >"$STATE/$name.log" 2>&1
  ) &
  echo $! >"$STATE/$name.pid"
}

wait_up() {  # port [key]
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null -H "authorization: Bearer ${2:-none}" \
        "http://127.0.0.1:$1/v1/models" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "variant on port $1 did not start (see $STATE/*.log)" >&2
  exit 1
}

new_key() {  # env... : create the bench key where the environment says; print its secret
  env "$@" "$ROOT/.venv/bin/inference" keys create bench --rpm "$RPM" --tpm "$BIG" \
    --parallel 100000 --budget "$BIG" --period month | tail -1
}

cmd_start() {
  local baseline_py=""
  [ "${1:-}" = "--baseline-python" ] && baseline_py="$2"
  mkdir -p "$STATE"
  local keys_file="$STATE/keys.toml" redis_url="redis://127.0.0.1:$REDIS_PORT/0"
  rm -f "$keys_file"
  new_key INFERENCE_KEYS_FILE="$keys_file" >"$STATE/key.txt"
  bash "$ROOT/scripts/peers/redis.sh" start "$REDIS_PORT" >"$STATE/redis.pid"
  new_key INFERENCE_REDIS_URL="$redis_url" >"$STATE/key-redis.txt"
  started ours 18201
  started ours-keys 18202 INFERENCE_KEYS_FILE="$keys_file"
  started ours-redis 18203 INFERENCE_REDIS_URL="$redis_url"
  WORKERS=2 started ours-w2 18204
  [ -n "$baseline_py" ] && VARIANT_PY="$baseline_py" started baseline 18200
  wait_up 18201; wait_up 18202 "$(cat "$STATE/key.txt")"
  wait_up 18203 "$(cat "$STATE/key-redis.txt")"; wait_up 18204
  [ -n "$baseline_py" ] && wait_up 18200
  cmd_targets
}

cmd_targets() {
  local spec
  for name in baseline ours-keys ours-redis ours-w2; do
    [ -f "$STATE/$name.pid" ] || continue
    case "$name" in
      baseline) spec="url=http://127.0.0.1:18200" ;;
      ours-keys) spec="url=http://127.0.0.1:18202,api_key=$(cat "$STATE/key.txt")" ;;
      ours-redis) spec="url=http://127.0.0.1:18203,api_key=$(cat "$STATE/key-redis.txt")" ;;
      ours-w2) spec="url=http://127.0.0.1:18204" ;;
    esac
    echo "--target name=$name,$spec,pid=$(cat "$STATE/$name.pid")"
  done
}

cmd_stop() {
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    [ "$(basename "$f")" = redis.pid ] && continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  bash "$ROOT/scripts/peers/redis.sh" stop "$REDIS_PORT" 2>/dev/null || true
  rm -f "$STATE/redis.pid"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  targets) cmd_targets ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 start [--baseline-python PY] | targets | stop" >&2; exit 2 ;;
esac
