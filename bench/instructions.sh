#!/usr/bin/env bash
# Instructions per request of the gateway layer (see bench/instructions.py), counted by callgrind.
#
#   bench/instructions.sh [--python PY] [--endpoint chat|stream|embed|messages|...] [--n 500] [--key]
#
# --python: the interpreter whose inference_core is measured (default: this checkout's .venv), so
# another checkout's code is measured with the same requests. Prints "<endpoint> <Ir>/request".
# Counts the whole process twice, for N and for 2N requests: the difference is N requests'
# worth (start-up, imports and warm-up cancel out; PYTHONHASHSEED fixed so both runs agree).
# Needs valgrind (Debian's package; installed here when missing).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$HERE/../.venv/bin/python" ENDPOINT=chat N=500 ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --endpoint) ENDPOINT="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --key) ARGS+=(--key); shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
count() {  # total instructions of one run with $1 requests
  local out; out="$(mktemp -d)/callgrind.out"
  PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$out" "$PY" \
    "$HERE/instructions.py" --endpoint "$ENDPOINT" --n "$1" "${ARGS[@]}" 2>/dev/null
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}
one=$(count "$N"); two=$(count "$((2 * N))")
echo "$ENDPOINT $(((two - one) / N))/request (n=$N${ARGS:+, key})"
