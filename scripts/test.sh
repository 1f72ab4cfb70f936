#!/usr/bin/env bash
# Set everything up (see setup.sh), check style and types, and run the whole test suite.
# Extra arguments go to pytest; SWEEP_SKIP_CHECKS=1 runs the tests alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
VENV="${SWEEP_VENV:-$ROOT/.venv}"
if [ -z "${SWEEP_SKIP_CHECKS:-}" ]; then
    echo "test: ruff (lint and format) on solver, sweep, scripts and tests; mypy on solver and sweep" >&2
    "$VENV/bin/ruff" check solver sweep scripts tests
    "$VENV/bin/ruff" format --check solver sweep scripts tests
    "$VENV/bin/mypy"
    # Dask's public API only: its private modules change without notice between releases
    if grep -rnE "(dask|distributed)\._" sweep solver; then
        echo "test: private Dask modules are used (above); use the public API" >&2
        exit 1
    fi
fi
exec "$VENV/bin/python" -m pytest "$@"
