#!/usr/bin/env bash
# Set everything up (see setup.sh) and run the demo sweep.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "${SWEEP_VENV:-$ROOT/.venv}/bin/python" "$ROOT/scripts/demo.py" "$@"
