#!/usr/bin/env bash
# The README's first command: set up, then run the full demo on embedded defaults.
# Extra arguments go to `datanet demo` (e.g. --keep, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/datanet demo "$@"
