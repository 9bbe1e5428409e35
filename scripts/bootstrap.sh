#!/usr/bin/env bash
# bootstrap.sh [serve|test]: create ./.venv (Python >= 3.11) and install what the job needs.
#   serve: inference-switchboard[gateway] + inference-llamacpp[default-model] (the embedded local default)
#   test:  every distribution of the repository in editable mode + the development tools
# Idempotent: a stamp holding the hash of every pyproject.toml skips pip when nothing changed.
# Env: PYTHON (interpreter to build the venv with; default python3.11, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
job="${1:-test}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: Python >= 3.11 is needed; set PYTHON=/path/to/python3.11" >&2; exit 2; }

if [[ ! -x .venv/bin/python ]]; then
  echo "[bootstrap] creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip >&2
fi

plugins=()
for dir in plugins/*/; do
  [[ -f "$dir/pyproject.toml" ]] && plugins+=("-e" "${dir%/}")
done
if [[ "$job" == serve ]]; then
  specs=(-e "core[gateway]" -e "plugins/inference-llamacpp[default-model]")
else
  specs=(-e "core[gateway,redis,testing]" "${plugins[@]}"
         "pytest>=8" "pytest-asyncio>=0.24" "respx>=0.21" "hypothesis>=6" "ruff>=0.6"
         "openai>=1.40" "anthropic>=0.40" "ollama>=0.4" "jsonschema>=4" "pyyaml>=6" "build>=1"
         "schemathesis>=3" "hatchling>=1.21" "twine>=6.1" "packaging>=24")
fi
want="$job $(cat core/pyproject.toml plugins/*/pyproject.toml scripts/bootstrap.sh 2>/dev/null | sha256sum | cut -c1-16)"
stamp=.venv/.bootstrap-$job
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "[bootstrap] pip install (${job})" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check "${specs[@]}" >&2
  echo "$want" > "$stamp"
fi
