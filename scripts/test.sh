#!/usr/bin/env bash
# The README's second command: set up (with test tools), then run every test.
# Extra arguments go to pytest. pytest's "no tests collected" (exit 5) is not a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev || exit 1
# Two workers (CI has 2 cores; much of the suite waits on the dev chain and subprocesses), each
# with its own dev chain; a file's tests stay on one worker (module fixtures train once).
# DATANET_TEST_WORKERS=0 runs in one process.
.venv/bin/python -m pytest -n "${DATANET_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "no tests collected"
  exit 0
fi
exit $rc
