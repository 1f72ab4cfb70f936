#!/usr/bin/env bash
# Set everything up (see setup.sh) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${SWEEP_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
