"""Trajectory snapshots: what training-time attribution replays, saved along the run.

Snapshot k covers the optimizer steps ``(start, step]`` of the run (``start`` is the previous
snapshot's step, 0 for the first) and holds the state right after step ``step``:

- ``lora/<name>``: every trainable (LoRA) parameter, float32, named as in
  ``model.named_parameters()`` of the PEFT model;
- ``exp_avg_sq/<name>``: Adam's second moment of that parameter at that step, float32, *without*
  bias correction (``adam_step`` and ``beta2`` are in the metadata for it);
- ``exp_avg/<name>``: Adam's first moment, float32 (v2): with the weights and the second moment
  it is the whole optimizer state, so a verifier can replay the next interval's steps from here
  (`node.train.replay`) and check that they land on the next snapshot;
- metadata: how far the interval moved the weights, as ``lr_sum`` = Σ over its steps of
  ``learning_rate_t * clip_factor_t`` (``clip_factor = min(1, max_grad_norm / grad_norm)``), so an
  attribution method can weigh each snapshot by the step size it actually stood for.

v1 files (no first moment, no ``world_size``) still load for attribution; they cannot be replayed.
The files are plain safetensors (public: anyone verifying the job downloads them by CID), one per
snapshot, written atomically; their metadata is one JSON string under the key ``datanet``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from node import safe_json
from node.errors import NodeError

FORMAT = "datanet-snapshot-v2"
READABLE = ("datanet-snapshot-v1", FORMAT)
LORA, EXP_AVG_SQ, EXP_AVG = "lora/", "exp_avg_sq/", "exp_avg/"


class SnapshotError(NodeError, ValueError):
    """A snapshot file that is missing, of another format, or inconsistent."""


class SnapshotMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str = FORMAT
    index: int = Field(ge=0, description="k, 0-based, in step order.")
    start: int = Field(ge=0, description="The interval is the optimizer steps (start, step].")
    step: int = Field(ge=1, description="The optimizer step right after which the state was taken.")
    total_steps: int = Field(ge=1)
    lr_sum: float = Field(ge=0, description="Σ learning_rate_t * clip_factor_t over the interval's steps.")
    clip_mean: float = Field(ge=0, le=1, description="Mean gradient-clip factor over the interval (1: never clipped).")
    adam_step: int = Field(ge=0, description="Adam's step count at the snapshot (for bias correction).")
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    lora_scale: float = Field(gt=0, description="lora_alpha / r of the run.")
    compute_dtype: str = Field("float32", description="The run's compute dtype (bfloat16: autocast on CUDA).")
    world_size: int = Field(1, ge=1, description="Processes the run trained on (they split each step's rows).")


class Snapshot(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    meta: SnapshotMeta
    lora: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor] = Field(default_factory=dict, description="Empty in a v1 file.")

    @property
    def replayable(self) -> bool:
        return self.meta.format == FORMAT and set(self.exp_avg) == set(self.lora)


def snapshot_steps(total_steps: int, count: int) -> list[int]:
    """The steps after which the `count` snapshots are taken: evenly spaced, the last at the end
    (fewer when there are fewer steps than snapshots)."""
    if count <= 0:
        return []
    return sorted({max(1, round(total_steps * (k + 1) / count)) for k in range(count)})


def file_name(index: int) -> str:
    return f"snapshot-{index:03d}.safetensors"


def save(
    directory: Path,
    meta: SnapshotMeta,
    lora: dict[str, torch.Tensor],
    exp_avg_sq: dict[str, torch.Tensor],
    exp_avg: dict[str, torch.Tensor],
) -> Path:
    from safetensors.torch import save_file

    if not set(lora) == set(exp_avg_sq) == set(exp_avg):
        raise SnapshotError("snapshot: the LoRA weights and Adam's moments name different parameters")
    tensors: dict[str, torch.Tensor] = {}
    for prefix, group in ((LORA, lora), (EXP_AVG_SQ, exp_avg_sq), (EXP_AVG, exp_avg)):
        tensors |= {prefix + k: v.detach().to("cpu", torch.float32).contiguous() for k, v in group.items()}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(meta.index)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"datanet": meta.model_dump_json()})
    os.replace(tmp, path)
    return path


def load(path: Path) -> Snapshot:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("datanet")
            if raw is None:
                raise SnapshotError(f"{path} has no datanet snapshot metadata: not a {FORMAT} file")
            raw_meta = safe_json.loads(raw, f"{path}'s metadata", max_bytes=safe_json.SMALL_BYTES)
            meta = SnapshotMeta.model_validate(raw_meta)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: not a safetensors file
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"cannot read snapshot {path}: {e}") from e
    if meta.format not in READABLE:
        raise SnapshotError(f"{path} is a {meta.format} snapshot; this node reads {', '.join(READABLE)}")
    lora = {k[len(LORA) :]: v for k, v in tensors.items() if k.startswith(LORA)}
    v = {k[len(EXP_AVG_SQ) :]: t for k, t in tensors.items() if k.startswith(EXP_AVG_SQ)}
    m = {k[len(EXP_AVG) :]: t for k, t in tensors.items() if k.startswith(EXP_AVG)}
    if not lora or set(lora) != set(v) or (meta.format == FORMAT and set(lora) != set(m)):
        raise SnapshotError(f"{path}: the LoRA weights and Adam's moments do not name the same parameters")
    return Snapshot(meta=meta, lora=lora, exp_avg_sq=v, exp_avg=m)


def load_all(directory: Path) -> list[Snapshot]:
    """Every snapshot in `directory`, in index order (checked to be 0..K-1 and in step order)."""
    snaps = [load(p) for p in sorted(directory.glob("snapshot-*.safetensors"))]
    if [s.meta.index for s in snaps] != list(range(len(snaps))):
        raise SnapshotError(f"{directory}: snapshots are not numbered 0..{len(snaps) - 1}")
    if any(a.meta.step >= b.meta.step for a, b in itertools.pairwise(snaps)):
        raise SnapshotError(f"{directory}: snapshots are not in step order")
    return snaps


__all__ = [
    "FORMAT", "READABLE", "Snapshot", "SnapshotError",
    "SnapshotMeta", "file_name", "load", "load_all", "save", "snapshot_steps",
]  # fmt: skip
