#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the
# project with its test and speed-up extras. Idempotent: a second call only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SWEEP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    echo "setup: installing ns-sweep and its dependencies (first time only)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[fast,test,parquet]" >&2
    touch "$STAMP"
fi
