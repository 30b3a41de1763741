#!/usr/bin/env bash
# The vLLM engine on a GPU machine, in one go: the engine tests against the real `vllm serve`
# (not the stand-in), then benchmarks/vllm_gpu.py beside the embedded engine.
#
#   VLLM_COMMAND=/opt/vllm/bin/vllm bash scripts/gpu/vllm_check.sh [OUT_DIR]
#
# vLLM lives in a venv of its own (it pins its own torch and CUDA); make one where PyPI is
# reachable:  python3 -m venv /opt/vllm && /opt/vllm/bin/pip install vllm
# The node's own venv must exist (bash scripts/setup.sh). Writes OUT_DIR/vllm-gpu.md and logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-/tmp/vllm-check}}"
mkdir -p "$out"
: "${VLLM_COMMAND:?set VLLM_COMMAND to the vllm executable of its own venv (see this script's header)}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$VLLM_COMMAND" --version | tee "$out/vllm-version.txt"
export PYTHONUNBUFFERED=1
# The engine's tests with DATANET_VLLM_REAL=1 run against a real vLLM server started by the engine.
DATANET_VLLM_REAL=1 .venv/bin/python -m pytest -q -p no:randomly tests/serve/test_vllm_engine.py 2>&1 | tee "$out/tests.log"
.venv/bin/python benchmarks/vllm_gpu.py --vllm-command "$VLLM_COMMAND" --out "$out/vllm-gpu.md" 2>&1 | tee "$out/bench.log"
