#!/usr/bin/env bash
# test.sh [pytest args...]: the whole test suite, from nothing.
#
# 1. ./.venv with every distribution of the repository (scripts/bootstrap.sh test);
# 2. lint (ruff check, ruff format --check);
# 3. real peers: builds/installs (cached in ${INFERENCE_CACHE_DIR:-~/.cache/inference-core}) and starts
#    a llama.cpp llama-server, two vLLM CPU servers (chat, embeddings) and a redis-server (Debian's
#    package, apt-get installed when missing) on free loopback ports;
# 4. pytest with INFERENCE_REQUIRE_PEERS=1, so a test whose real server is missing FAILS, never skips;
# 5. stops every server it started, whatever happened.
# INFERENCE_TEST_NO_PEERS=1 skips 3 (quick local runs; the real-server tests are then skipped).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONDONTWRITEBYTECODE=1
log() { echo "[test $(date +%H:%M:%S)] $*" >&2; }

bash scripts/bootstrap.sh test
log "lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
started=()
cleanup() {
  for entry in "${started[@]}"; do
    bash "scripts/peers/${entry%%:*}.sh" stop "${entry##*:}" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

if [[ -z "${INFERENCE_TEST_NO_PEERS:-}" ]]; then
  log "vLLM setup (first time on a machine: ~5 min)"
  bash scripts/peers/vllm.sh setup
  VLLM_CHAT_PORT=$(free_port); VLLM_EMBED_PORT=$(free_port)
  log "starting vLLM chat :$VLLM_CHAT_PORT and embeddings :$VLLM_EMBED_PORT in the background"
  started+=("vllm:$VLLM_CHAT_PORT" "vllm:$VLLM_EMBED_PORT")
  # on a fresh machine they start while llama.cpp compiles on the same 2 cores: allow longer
  export VLLM_START_TIMEOUT="${VLLM_START_TIMEOUT:-900}"
  bash scripts/peers/vllm.sh start "$VLLM_CHAT_PORT" chat > /tmp/inference-test-vllm-chat.log 2>&1 &
  chat_job=$!
  bash scripts/peers/vllm.sh start "$VLLM_EMBED_PORT" embed > /tmp/inference-test-vllm-embed.log 2>&1 &
  embed_job=$!

  log "llama.cpp setup (first time on a machine: ~12 min to compile llama-server)"
  bash scripts/peers/llamacpp.sh setup
  LLAMA_PORT=$(free_port)
  started+=("llamacpp:$LLAMA_PORT")
  bash scripts/peers/llamacpp.sh start "$LLAMA_PORT" >/dev/null
  log "llama-server ready on :$LLAMA_PORT"

  log "Redis setup (apt-get redis-server when missing)"
  bash scripts/peers/redis.sh setup
  REDIS_PORT=$(free_port)
  started+=("redis:$REDIS_PORT")
  bash scripts/peers/redis.sh start "$REDIS_PORT" >/dev/null
  log "redis-server ready on :$REDIS_PORT"

  wait "$chat_job" || { cat /tmp/inference-test-vllm-chat.log >&2; exit 1; }
  wait "$embed_job" || { cat /tmp/inference-test-vllm-embed.log >&2; exit 1; }
  log "vLLM servers ready"
  export INFERENCE_TEST_LLAMACPP_URL="http://127.0.0.1:$LLAMA_PORT"
  export INFERENCE_TEST_VLLM_CHAT_URL="http://127.0.0.1:$VLLM_CHAT_PORT"
  export INFERENCE_TEST_VLLM_EMBED_URL="http://127.0.0.1:$VLLM_EMBED_PORT"
  export INFERENCE_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export INFERENCE_REQUIRE_PEERS=1
fi

log "pytest"
.venv/bin/python -m pytest "$@"
