"""What an attribution run is given and what it returns (pydantic, JSON across the worker boundary).

These models import neither torch nor transformers: the daemon and `datanet verify` build a
request in their own process and hand it to a fresh worker (`node.attribution.isolated`), where
the floating-point environment is pinned before torch is first imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from node.data.records import Example
from node.errors import NodeError
from node.train.config import Method, TrainConfig

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
METHOD_NAME = "tracin-adam-fisher-v1"  # the first part of every method id this engine writes


class AttributionError(NodeError, RuntimeError):
    """Attribution could not run on these inputs (the message names the input and the fix)."""


class MethodParams(BaseModel):
    """The knobs of TracIn + Adam preconditioning + damped empirical-Fisher kernel. Part of the
    attribution document: a verifier recomputes with exactly these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    damping: float = Field(
        1.0, gt=0, description="lambda of F = PhiᵀPhi/N + lambda·I, relative to the kernel's mean non-zero "
        "eigenvalue (tr(PhiᵀPhi/N) / min(N, d)): small whitens harder (near 0 it is a regression of the query "
        "gradient on the training gradients, whose coefficients flip sign among near-duplicates), large tends to "
        "plain TracIn + Adam. 1.0: the best wrong-answer separation in docs/benchmarks.md.",
    )  # fmt: skip
    projection_dim: int = Field(
        16384, ge=16, le=1 << 24,
        description="Count-sketch width d: the preconditioned LoRA gradients are projected only when LoRA has "
        "more parameters than this (otherwise they are used exactly).",
    )  # fmt: skip
    dtype: Literal["float64", "float32"] = Field(
        "float64", description="Dtype of the model and of every gradient (float64 reproduces across machines best)."
    )
    batch_tokens: int = Field(
        2048, ge=1, le=1 << 20,
        description="Padded tokens per batch of per-example gradients (`gradients.batches`): 1 computes one "
        "example at a time. Batching changes the last bits only, but a verifier batches the same way.",
    )  # fmt: skip
    adam_eps: float | None = Field(
        None, gt=0, description="eps of the preconditioner diag(1/(sqrt(v_hat)+eps)); None: each snapshot's own."
    )


class TrainingExample(BaseModel):
    """One example of the job's manifest, in manifest order, with who contributed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    example: Example
    contributor: str = Field(pattern=ADDRESS)
    trained: bool = Field(
        True, description="False for an example the trainer held out of training (its eval split): it scores 0."
    )


class QueryExample(BaseModel):
    """One example of the query set: the poster's revealed eval set (no contributor), or the
    trainer's held-out split (its contributor, whose own examples it then never scores)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    example: Example
    contributor: str | None = Field(None, pattern=ADDRESS)


class AttributionRequest(BaseModel):
    """Everything one attribution run reads. Paths are local to the machine that runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model_dir: Path = Field(description="The Hugging Face directory of the base model the job trained.")
    method: Method = Field(description="lora or qlora: must equal config.method (qlora: the NF4 base is used).")
    config: TrainConfig = Field(description="The run's training config (LoRA shape, tokenisation).")
    examples: list[TrainingExample] = Field(min_length=1, description="The manifest's examples, in order.")
    queries: list[QueryExample] = Field(min_length=1, description="The query set (eval set or held-out split).")
    snapshots_dir: Path = Field(description="The run's trajectory snapshots (node.train.snapshots format).")
    job_id: int = Field(ge=0)
    data_root: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="The job's data root (seeds the projection).")
    base_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="The dtype the trainer loaded the base in (bfloat16 on a bf16 CUDA GPU): QLoRA "
        "quantises from exactly those values.",
    )  # fmt: skip
    params: MethodParams = Field(default_factory=MethodParams)
    query_vectors_dir: Path | None = Field(
        None, description="Where each snapshot's query vectors V_k are written (`query_vectors`); with `only`, "
        "where the committed ones are read from.",
    )  # fmt: skip
    only: list[int] | None = Field(
        None, description="Score only these example indices, from their own gradients and the committed query "
        "vectors in query_vectors_dir (no kernel solve): a dispute narrowed to those examples.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> AttributionRequest:
        if self.only is not None:
            if self.query_vectors_dir is None:
                raise ValueError("`only` scores against committed query vectors: give query_vectors_dir")
            if not self.only or any(not 0 <= i < len(self.examples) for i in self.only):
                raise ValueError(f"`only` must name examples 0..{len(self.examples) - 1}")
        if self.method != self.config.method:
            raise ValueError(f"method {self.method.value!r} differs from the config's {self.config.method.value!r}")
        return self


class SnapshotTiming(BaseModel):
    index: int
    step: int
    train_gradients_s: float
    query_gradients_s: float
    solve_s: float
    seconds: float


class AttributionResult(BaseModel):
    """Per-example scores in manifest order: positive means the example lowered the query loss."""

    model_config = ConfigDict(extra="forbid")

    method_id: str = Field(description="Method name, dtype and the torch/transformers/peft versions it ran on.")
    params: MethodParams
    projection_seed: str = Field(description="0x keccak256 seed of the count-sketch (from data root and job id).")
    lora_parameters: int = Field(description="Trainable LoRA parameters (the gradients' length before projection).")
    gradient_dim: int = Field(description="Length of the gradients the kernel sees (projection_dim or exact).")
    scores: list[float]
    gradients_hashes: list[str] = Field(
        description="Per example: 0x sha256 over the float32 little-endian bytes of its preconditioned, projected "
        "gradient at every snapshot in order (sha256 of nothing for an untrained example)."
    )
    snapshots: list[SnapshotTiming]
    total_seconds: float


__all__ = [
    "METHOD_NAME",
    "AttributionError",
    "AttributionRequest",
    "AttributionResult",
    "MethodParams",
    "QueryExample",
    "SnapshotTiming",
    "TrainingExample",
]
