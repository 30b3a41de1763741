#!/usr/bin/env bash
# Static analysis of contracts/ with Slither: exits non-zero on any high or medium finding
# (lower ones are printed, not fatal). Each finding we keep is marked in the source with
# `slither-disable-next-line` and a comment saying why it is safe. Extra arguments go to slither;
# `--install-only` only creates the environment.
#
# slither-analyzer 0.11 needs web3<8 and we pin web3 8, so it lives in its own virtual
# environment, .venv-slither (created here, or by `scripts/setup.sh --dev`). It reads Hardhat's
# build info instead of compiling: solc has no native binary offline, the wasm build does.
set -euo pipefail
cd "$(dirname "$0")/.."

SLITHER_VERSION="0.11.6"
if [[ ! -x .venv-slither/bin/slither ]]; then
  echo "==> creating .venv-slither (slither-analyzer==${SLITHER_VERSION})"
  python3 -m venv .venv-slither
  .venv-slither/bin/python -m pip install --quiet --upgrade pip
  .venv-slither/bin/python -m pip install --quiet "slither-analyzer==${SLITHER_VERSION}"
fi
[[ "${1:-}" == "--install-only" ]] && exit 0
# Slither reads every file in artifacts/build-info. An incremental compile leaves the older build
# beside the newer one (stale sources, every contract twice), so rebuild from scratch then.
shopt -s nullglob
builds=(artifacts/build-info/*.json)
if (( ${#builds[@]} != 1 )); then
  node_modules/.bin/hardhat compile --force --quiet
fi
exec .venv-slither/bin/slither . --hardhat-ignore-compile --fail-medium \
  --filter-paths "node_modules|contracts/test" "$@"
