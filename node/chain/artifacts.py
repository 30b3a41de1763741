"""Compiled contracts, read from the Hardhat artifacts (the one build both sides use)."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from node.config import REPO_ROOT
from node.errors import ArtifactError

CONTRACTS = (
    "OpenToken",
    "DatanetRegistry",
    "NodeStaking",
    "ProtocolTimelock",
    "RewardDistributor",
    "ModelRegistry",
    "ResultChallenges",
    "VerifierCourt",
    "KeyRegistry",
    "InferenceEscrow",
)


class Artifact(BaseModel):
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


def compile_contracts(root: Path = REPO_ROOT) -> None:
    """Runs `npx hardhat compile` in the repo (offline: hardhat.config.js pins the wasm solc)."""
    hardhat = root / "node_modules" / ".bin" / "hardhat"
    if not hardhat.exists():
        raise ArtifactError(
            f"Hardhat is not installed at {hardhat}. Run `npm ci` in {root} first "
            "(the README's setup command does it)."
        )
    node_bin = shutil.which("node")
    if node_bin is None:
        raise ArtifactError("Node.js is not on PATH; install Node 20+ to compile the contracts.")
    proc = subprocess.run(
        [str(hardhat), "compile", "--quiet"], cwd=root, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ArtifactError(f"`npx hardhat compile` failed:\n{proc.stdout}\n{proc.stderr}")


@cache
def load_artifact(name: str, artifacts_dir: Path = REPO_ROOT / "artifacts") -> Artifact:
    """Loads `name` from `artifacts_dir/contracts/<name>.sol/<name>.json`."""
    path = artifacts_dir / "contracts" / f"{name}.sol" / f"{name}.json"
    if not path.exists():
        raise ArtifactError(
            f"No compiled artifact for {name} at {path}. Run `npx hardhat compile` in the repo "
            "(or `datanet deploy`, which compiles when artifacts are missing)."
        )
    try:
        raw = json.loads(path.read_text())
        return Artifact(name=name, abi=raw["abi"], bytecode=raw["bytecode"])
    except (OSError, ValueError, KeyError) as e:
        raise ArtifactError(f"Artifact {path} is unreadable ({e}); recompile the contracts.") from e


def ensure_compiled(artifacts_dir: Path = REPO_ROOT / "artifacts") -> None:
    """Compiles once if any artifact is missing."""
    missing = [n for n in CONTRACTS if not (artifacts_dir / "contracts" / f"{n}.sol" / f"{n}.json").exists()]
    if missing:
        compile_contracts(artifacts_dir.parent)
        load_artifact.cache_clear()


def all_abis(artifacts_dir: Path = REPO_ROOT / "artifacts") -> list[list[dict[str, Any]]]:
    return [load_artifact(n, artifacts_dir).abi for n in CONTRACTS]
