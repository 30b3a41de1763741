"""Replaying one training interval: what ties a job's trajectory snapshots to its data.

Attribution is computed on the K committed snapshots, and a verifier who recomputes it from those
same snapshots gets the same scores whatever they contain. So a node could commit snapshots of
some other run (trained without a rival's data, or with a colluder's examples weighted up) and
its attribution would still "verify". Replaying closes that: from snapshot k-1 (or the LoRA
initialisation, which the seed fixes, for k = 0) the verifier runs the committed config's steps
(s_{k-1}, s_k] on the committed training set, in the batch order that is a pure function of
(seed, step), with the dropout masks that are a pure function of the same (`dropout`), and must
land on snapshot k. Any one interval of a made-up trajectory fails this with high probability
when the verifier draws which one to replay.

Landing *exactly* is only promised on the machine that trained: another CPU's float rounding, or
a GPU run replayed on a CPU, differs in the last bits each step. The check is therefore relative
to how far the interval moved the weights:

    deviation = ||θ_replayed - θ_k|| / ||θ_k - θ_{k-1}||  <=  REPLAY_TOLERANCE

A forged snapshot misses by about the whole movement (0.5 to 1.2 in `tests/train/test_replay.py`).
Replaying on the same machine lands exactly (0.0). Noise at the start of an interval comes out
about 7 to 25 times larger relative to the interval's movement (measured there too: a relative
perturbation of 1e-4 of every weight and moment gives at most 2.5e-3). Other CPUs differ by float32
rounding (about 1e-7 per operation), far below that: a tolerance of 2 % for float32 runs. A run
in bfloat16 (autocast on a GPU) rounds at about 4e-3, which the same amplification makes about
0.1: its tolerance is 10 %. That figure is derived, not measured on a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from node.data.records import Example
from node.errors import NodeError
from node.train.config import TrainConfig

if TYPE_CHECKING:  # torch loads only when an interval is replayed (`node.daemon.verify` imports this module)
    import torch

    from node.train.snapshots import Snapshot

REPLAY_TOLERANCE = 0.02
"""Largest replay deviation, relative to the interval's movement, that still reproduces (float32 runs)."""
TOLERANCE_BY_DTYPE = {"float32": REPLAY_TOLERANCE, "bfloat16": 0.10, "float16": 0.10}


class ReplayError(NodeError, ValueError):
    """The interval cannot be replayed (a v1 snapshot, another step count, unknown parameters)."""


class IntervalReplay(BaseModel):
    """The outcome of replaying snapshot `interval`'s steps (start, end]."""

    interval: int
    start: int = Field(description="Replayed from the state after this step (0: the initialisation).")
    end: int
    moved: float = Field(description="||θ_end - θ_start|| as committed: how far the interval moved the weights.")
    deviation: float = Field(description="||θ_replayed - θ_end||.")
    relative: float = Field(description="deviation / moved (inf when nothing moved but the replay did).")
    tolerance: float = Field(description="For the run's compute dtype (`TOLERANCE_BY_DTYPE`).")
    seconds: float

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance


def replay_interval(
    base_model_dir: Path,
    examples: Sequence[Example],
    config: TrainConfig,
    snapshots: Sequence[Snapshot],
    interval: int,
    work_dir: Path,
) -> IntervalReplay:
    """Replays the steps of snapshot `interval` from the one before it and compares. `examples`
    and `config` are what the job trained on (its manifest's examples, all of them: the trainer
    splits them by seed as training did). Raises `ReplayError` when it cannot replay."""
    import torch

    from node.train.trainer import LoraTrainer

    t0 = time.perf_counter()
    if not 0 <= interval < len(snapshots):
        raise ReplayError(f"there is no interval {interval}: the job committed {len(snapshots)} snapshots")
    end = snapshots[interval]
    start = snapshots[interval - 1] if interval else None
    for s in (start, end):
        if s is not None and not s.replayable:
            raise ReplayError(f"snapshot {s.meta.index} is {s.meta.format} (no first moment): it cannot be replayed")
    trainer = LoraTrainer(base_model_dir, config, work_dir, world_size=end.meta.world_size)
    trainer.setup(examples)
    if trainer.total_steps != end.meta.total_steps:
        raise ReplayError(
            f"the committed config and training set give {trainer.total_steps} steps, the snapshots "
            f"{end.meta.total_steps}: they are not of this job's run"
        )
    params = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    if set(params) != set(end.lora):
        raise ReplayError(f"snapshot {interval} holds other parameters than this config's LoRA ({len(params)})")
    try:
        first = trainer.restore(start)
    except NodeError as e:
        raise ReplayError(str(e)) from e
    theta_start = _flat({n: p.detach() for n, p in params.items()})
    for step in range(first, end.meta.step):
        trainer._step(step)
    replayed = _flat({n: p.detach() for n, p in params.items()})
    committed = _flat(end.lora)
    moved = float(torch.linalg.vector_norm(committed - theta_start))
    deviation = float(torch.linalg.vector_norm(replayed - committed))
    relative = deviation / moved if moved > 0 else (0.0 if deviation == 0 else math.inf)
    return IntervalReplay(
        interval=interval, start=first, end=end.meta.step, moved=moved, deviation=deviation, relative=relative,
        tolerance=TOLERANCE_BY_DTYPE.get(end.meta.compute_dtype, REPLAY_TOLERANCE), seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _flat(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One float64 CPU vector in name order (the norms of thousands of float32 pieces, summed exactly enough)."""
    import torch

    return torch.cat([tensors[k].reshape(-1).to("cpu", torch.float64) for k in sorted(tensors)])


__all__ = ["REPLAY_TOLERANCE", "TOLERANCE_BY_DTYPE", "IntervalReplay", "ReplayError", "replay_interval"]
