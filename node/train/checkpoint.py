"""Resumable training state, written atomically so `kill -9` never leaves a half checkpoint.

A checkpoint holds only what changes during a run: the LoRA weights, optimizer and scheduler
state, RNG states, the step, and the run's fingerprint (config + data). The batches of a step
are a pure function of (seed, step) (see `packing.epoch_order`), so resuming at step k replays
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from node.errors import NodeError

_NAME = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(NodeError, RuntimeError):
    """A checkpoint that cannot be resumed (another run's, or unreadable)."""


def save(ckpt_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Writes `step-NNNNNNNN.pt` (temp file + fsync + rename) and prunes all but the last `keep`."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:08d}.pt"
    tmp = ckpt_dir / f".step-{step:08d}.pt.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for old in checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp files of an interrupted write are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if _NAME.match(p.name))


def load_latest(ckpt_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The newest checkpoint of this run (same fingerprint), or None to start from step 0.
    An unreadable newest file (disk trouble) falls back to the one before it."""
    for path in reversed(checkpoints(ckpt_dir)):
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            print(f"warning: checkpoint {path} is unreadable ({e}); trying an earlier one")
            continue
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path} belongs to another run (different config or training data). Resume it with its own "
                f"config, or delete {ckpt_dir} to start this run from scratch."
            )
        return state
    return None


def clear(ckpt_dir: Path) -> None:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
