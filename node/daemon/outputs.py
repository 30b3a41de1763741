"""What a job run leaves behind and publishes: the metrics and attribution documents (their CIDs
go on-chain with the result), a finished training run found again after a crash, atomic writes.

Kept apart from the step functions so the web app, the API and `datanet models` can read these
documents without importing the daemon.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, Field

from node.train.config import Progress, TrainConfig, TrainMetrics, TrainResult
from node.train.snapshots import file_name, snapshot_steps


class MetricsDocument(BaseModel):
    """What `metricsCID` points to: the run's summary, its metrics stream, and where its data is."""

    format: str = "datanet-metrics-v1"
    job_id: int
    data_root: str
    manifest_cid: str = Field(description="The training manifest; its Merkle root is data_root.")
    examples: int
    excluded: int
    train: TrainMetrics
    stream: list[Progress] = Field(description="Every line of metrics.jsonl, in order.")


def finished_run(out: Path, config: TrainConfig) -> TrainResult | None:
    """The result of a run that finished before a crash (its adapter directory is written
    atomically after the last snapshot, so its presence means complete), if it was trained with
    `config` and its snapshots are all there."""
    adapter = out / "adapter"
    try:
        if TrainConfig.model_validate_json((adapter / "training_config.json").read_bytes()) != config:
            return None
        metrics = TrainMetrics.model_validate_json((adapter / "metrics.json").read_bytes())
        weights = (adapter / "adapter_model.safetensors").read_bytes()
    except (OSError, ValueError):
        return None
    snapshots = out / "snapshots" if config.snapshots else None
    expected = len(snapshot_steps(metrics.steps, config.snapshots))
    if snapshots is not None and not all((snapshots / file_name(k)).is_file() for k in range(expected)):
        return None  # lost (or trained before snapshots existed): train again to have them
    return TrainResult(
        adapter_dir=adapter,
        adapter_sha256="0x" + hashlib.sha256(weights).hexdigest(),
        metrics=metrics,
        metrics_log=out / "metrics.jsonl",
        snapshots_dir=snapshots,
    )


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


__all__ = [
    "MetricsDocument",
    "finished_run",
    "write_atomic",
]
