"""What a job run leaves behind and publishes: the metrics and attribution documents (their CIDs
go on-chain with the result), a finished training run found again after a crash, atomic writes.

Kept apart from the step functions so the web app, the API and `datanet models` can read these
documents without importing the daemon.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node.chain.models import Job
from node.data.manifest import Manifest
from node.rewards.shares import proportional_shares, reward_tree, split_pool
from node.train.config import Progress, TrainConfig, TrainMetrics, TrainResult
from node.train.snapshots import file_name, snapshot_steps

ATTRIBUTION_METHOD = "example-count-v0"
"""Until training-time attribution lands: each contributor's weight is its kept examples."""


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


class AttributionDocument(BaseModel):
    """What `attributionCID` points to: the weights, the shares and the reward tree's dump."""

    format: str = "datanet-attribution-v0"
    method: str = ATTRIBUTION_METHOD
    job_id: int
    weights: dict[str, int] = Field(description="Per contributor, by address.")
    contributors_total: int = Field(description="OPEN base units the tree distributes.")
    root: str
    tree: dict[str, Any] = Field(description="OpenZeppelin StandardMerkleTree dump (standard-v1).")


def example_count_attribution(job: Job, manifest: Manifest) -> AttributionDocument:
    """The reward tree until training-time attribution lands: each contributor weighs its kept
    examples, and the tree distributes exactly what the distributor holds for contributors."""
    split = split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds))
    weights = {str(a): n for a, n in manifest.contributors().items()}
    tree = reward_tree(job.id, proportional_shares(weights, split.contributors))
    return AttributionDocument(
        job_id=job.id, weights=weights, contributors_total=split.contributors, root="0x" + tree.root.hex(),
        tree=tree.dump().model_dump(mode="json"),
    )  # fmt: skip


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
    "ATTRIBUTION_METHOD",
    "AttributionDocument",
    "MetricsDocument",
    "example_count_attribution",
    "finished_run",
    "write_atomic",
]
