"""Taking a run's trajectory snapshots (the format is `node.train.snapshots`).

The trainer calls `SnapshotRecorder.after_step` right after every optimizer step. It only adds two
floats per step; at the K snapshot steps it copies the LoRA weights and Adam's two moments to
a safetensors file. What it has summed over the current interval is part of every checkpoint
(`state_dict`), so a run resumed after `kill -9` writes byte-for-byte the files an uninterrupted
run writes: the steps it replays rewrite the same snapshots, and files a crashed run wrote past
its checkpoint are deleted first (`discard_after`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from node.train.snapshots import SnapshotError, SnapshotMeta, file_name, save, snapshot_steps


class SnapshotRecorder:
    """Snapshots of one run into `directory`; `write=False` on DDP ranks other than 0 (they still
    keep the sums, which are the same on every rank, so any rank's checkpoint state is right)."""

    def __init__(self, directory: Path, total_steps: int, count: int, *, max_grad_norm: float,
                 lora_scale: float, world_size: int = 1, compute_dtype: str = "float32",
                 write: bool = True):  # fmt: skip
        self.directory, self.total_steps, self.write = directory, total_steps, write
        self.world_size, self.compute_dtype = world_size, compute_dtype
        self.steps = snapshot_steps(total_steps, count)
        self.max_grad_norm, self.lora_scale = max_grad_norm, lora_scale
        self.start, self.lr_sum, self.clip_sum = 0, 0.0, 0.0  # the current interval (start, ...]

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start, "lr_sum": self.lr_sum, "clip_sum": self.clip_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start, self.lr_sum, self.clip_sum = int(state["start"]), float(state["lr_sum"]), float(state["clip_sum"])

    def discard_after(self, step: int) -> None:
        """Deletes the snapshots taken after `step` (a crashed run's, about to be replayed) and
        half-written files."""
        if not self.write:
            return
        for k, s in enumerate(self.steps):
            if s > step:
                (self.directory / file_name(k)).unlink(missing_ok=True)
        for tmp in self.directory.glob(".snapshot-*.tmp"):
            tmp.unlink(missing_ok=True)

    def clip_factor(self, grad_norm: float) -> float:
        """min(1, max_grad_norm / grad_norm): how much `clip_grad_norm_` shortened the step."""
        if not math.isfinite(grad_norm):
            return 0.0
        return 1.0 if grad_norm <= self.max_grad_norm else self.max_grad_norm / grad_norm

    def after_step(self, step: int, lr: float, grad_norm: float, model: nn.Module,
                   optimizer: torch.optim.Optimizer) -> Path | None:  # fmt: skip
        """Call right after optimizer step number `step` (1-based), with the learning rate that
        step used and the total gradient norm `clip_grad_norm_` returned. Returns the file written."""
        clip = self.clip_factor(grad_norm)
        self.lr_sum += lr * clip
        self.clip_sum += clip
        if step not in self.steps:
            return None
        path = None
        if self.write:
            lora, v, m, adam_step = _lora_and_moments(model, optimizer)
            group = optimizer.param_groups[0]
            beta1, beta2 = group["betas"]
            meta = SnapshotMeta(
                index=self.steps.index(step), start=self.start, step=step, total_steps=self.total_steps,
                lr_sum=self.lr_sum, clip_mean=self.clip_sum / (step - self.start), adam_step=adam_step,
                beta1=beta1, beta2=beta2, eps=group["eps"], lora_scale=self.lora_scale, world_size=self.world_size,
                compute_dtype=self.compute_dtype,
            )  # fmt: skip
            path = save(self.directory, meta, lora, v, m)
        self.start, self.lr_sum, self.clip_sum = step, 0.0, 0.0
        return path


def _lora_and_moments(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """Every trainable parameter by `named_parameters()` name, its Adam second and first moments
    (torch's `exp_avg_sq`/`exp_avg`, bitsandbytes' 32-bit `state2`/`state1`; zeros if it never had
    a gradient) and the step count."""
    lora: dict[str, torch.Tensor] = {}
    v: dict[str, torch.Tensor] = {}
    m: dict[str, torch.Tensor] = {}
    adam_step = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        state = optimizer.state.get(p, {})
        for out, torch_key, bnb_key in ((v, "exp_avg_sq", "state2"), (m, "exp_avg", "state1")):
            moment = state[torch_key] if torch_key in state else state.get(bnb_key)
            if moment is None:
                moment = torch.zeros_like(p, dtype=torch.float32)
            elif moment.dtype != torch.float32:  # the trainer never pairs snapshots with an 8-bit optimizer
                raise SnapshotError(f"snapshot: {torch_key} of {name} is {moment.dtype}, not float32 (8-bit Adam?)")
            out[name] = moment.detach()
        lora[name] = p.detach()
        adam_step = max(adam_step, int(state.get("step", 0)))
    return lora, v, m, adam_step


__all__ = ["SnapshotRecorder"]
