"""Every training setting in one validated model, and the values a training run hands on.

A job's config document (its `configCID` on-chain, `configHash` = sha256 of its bytes) is a
`JobConfig`: the base model reference plus a `TrainConfig`. Posters set only what they care
about; every other field keeps the default below, so the same document trains the same way on
every node (the resolved config is saved next to each checkpoint and adapter).
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from node import safe_json
from node.errors import NodeError


class TrainConfigError(NodeError, ValueError):
    """A training config that cannot be used as given (the message says which field and why)."""


class Method(StrEnum):
    LORA = "lora"  # bf16/fp32 base weights, LoRA adapters
    QLORA = "qlora"  # 4-bit NF4 (double-quantised) base weights through bitsandbytes, LoRA adapters


class TrainConfig(BaseModel):
    """Hyperparameters of one LoRA / QLoRA fine-tuning run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Field(Method.QLORA, description="qlora (4-bit base) or lora (full-precision base).")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate of the LoRA weights.")
    epochs: float = Field(3, gt=0, le=100, description="Passes over the training split (fractions allowed).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(8, ge=1, le=4096, description="Sequences (packed rows) per micro-batch, per process.")
    gradient_accumulation: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(
        0.05, ge=0, lt=1,
        description="Dropout on the LoRA input; its masks are a pure function of (seed, step, micro-batch, rank, "
        "layer), the same on any device, so a verifier can replay any training interval (`node.train.dropout`).",
    )  # fmt: skip
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )
    max_seq_len: int = Field(512, ge=16, le=131072, description="Tokens per packed row; longer examples are cut.")
    packing: bool = Field(True, description="Pack several examples per row (attention never crosses examples).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps with a linear warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the LoRA weights.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(0, ge=0, description="Seeds the split, the shuffling, the LoRA init and dropout.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of examples held out for eval loss.")
    eval_every: int = Field(0, ge=0, description="Evaluate every N steps (0: at the end of each epoch only).")
    checkpoint_every: int = Field(50, ge=1, description="Save a resumable checkpoint every N optimizer steps.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    train_on_prompt: bool = Field(False, description="Also learn the prompt tokens (default: answers only).")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Compute dtype: auto is bf16 on a CUDA GPU that supports it, else fp32."
    )
    snapshots: int = Field(
        3, ge=0, le=32,
        description="Trajectory snapshots saved along training (LoRA weights, Adam's moments, step size) "
        "for training-time attribution; 0 saves none (the job then pays by example counts).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules is empty: name the modules to adapt, or use 'all-linear'")
        return self

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_r


class JobConfig(TrainConfig):
    """The document a job's `configCID` points to: which base model, and how to train it."""

    format: Literal["datanet-job-config-v1"] = "datanet-job-config-v1"
    base_model: str = Field(min_length=1, description="A local HF model directory, a cached name, or a hub id.")
    commercial_use: bool = Field(
        False,
        description="The model will be used commercially: Datanets whose license forbids commercial use are "
        "left out of the training set (with the reason). Omitted from the document while false.",
    )
    eval_sha256: str | None = Field(
        None, pattern=r"^0x[0-9a-f]{64}$",
        description="sha256 of the poster's evaluation set (the attribution query set), committed at posting and "
        "revealed after the claim (`datanet job reveal-eval`); without one the held-out split is the query set.",
    )  # fmt: skip
    name: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="A readable name the trained model is served under (`datanet serve`: the OpenAI `model` id), "
        "besides datanet-<modelId>; first come first served within a chain. Omitted from the document while unset.",
    )  # fmt: skip
    eval_reveal_s: int = Field(
        3600, ge=0, le=30 * 86400,
        description="How long after the claim the node waits for the eval set's reveal before it uses the "
        "held-out split instead.",
    )  # fmt: skip

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.model_dump(exclude=set(_JOB_ONLY)))

    def canonical_json(self) -> bytes:
        """The bytes to upload: sorted keys, no spaces; their sha256 is the job's configHash. Fields
        added after v1 are written only when set, so documents that predate them keep their hash."""
        omit = {name for name, default in _ADDED_AFTER_V1.items() if getattr(self, name) == default}
        return json.dumps(self.model_dump(mode="json", exclude=omit), sort_keys=True, separators=(",", ":")).encode()

    def sha256(self) -> bytes:
        return hashlib.sha256(self.canonical_json()).digest()

    @classmethod
    def parse(cls, data: bytes | str, source: str = "job config") -> JobConfig:
        """Validates a job config document; `TrainConfigError` naming each bad field."""
        try:
            safe_json.loads(data, source, max_bytes=safe_json.SMALL_BYTES)
        except safe_json.UntrustedJsonError as e:
            raise TrainConfigError(f"{e}; a job config is one small JSON object") from None
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or '(document)'}: {err['msg']}" for err in e.errors()
            )
            raise TrainConfigError(f"{source} is not a valid datanet-job-config-v1 document: {problems}") from None


# JobConfig fields that are not TrainConfig's
_JOB_ONLY = ("format", "base_model", "commercial_use", "eval_sha256", "eval_reveal_s", "name")
# field -> the default that is left out of canonical_json (documents that predate it keep their hash)
_ADDED_AFTER_V1: dict[str, object] = {
    "commercial_use": False,
    "snapshots": 3,
    "eval_sha256": None,
    "eval_reveal_s": 3600,
    "name": None,
}


class Progress(BaseModel):
    """One line of the metrics stream (`metrics.jsonl`): what the web app plots."""

    kind: Literal["train", "eval", "done"]
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    learning_rate: float | None = None
    tokens: int = Field(0, description="Trained (non-padding) tokens so far.")
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None


class TrainMetrics(BaseModel):
    """The summary of a finished run (uploaded as the model's metrics document)."""

    method: Method
    steps: int
    epochs: float
    train_examples: int
    eval_examples: int
    train_tokens: int
    final_train_loss: float | None
    eval_loss: float | None
    perplexity: float | None
    tokens_per_s: float
    train_seconds: float
    peak_memory_bytes: int = Field(description="Peak CUDA memory, or peak RSS growth on CPU.")
    device: str
    world_size: int = 1


class TrainResult(BaseModel):
    """What a finished run produced: a standard PEFT adapter directory and its metrics."""

    adapter_dir: Path
    adapter_sha256: str = Field(description="0x-sha256 of adapter_model.safetensors (the weights).")
    metrics: TrainMetrics
    metrics_log: Path = Field(description="The metrics stream (JSON lines of Progress).")
    snapshots_dir: Path | None = Field(
        None, description="The trajectory snapshots (`node.train.snapshots.load_all` reads them); None if none taken."
    )
