"""Training-time attribution: how much each training example lowered the query loss.

Method (`tracin-adam-fisher-v1`): TracIn over the run's K trajectory snapshots
(`node.train.snapshots`) with Adam preconditioning and a damped empirical-Fisher kernel. At each
snapshot k every training example's and every query's LoRA gradient of the trainer's own loss
(answer tokens only, eval mode, float64) is preconditioned by Adam's diag(1/(sqrt(v_hat_k)+eps))
(split as P^½ on both sides), projected by a hash-seeded count-sketch only when LoRA has more
parameters than `projection_dim`, and scored

    s_i = Σ_k lr_sum_k · phi_ikᵀ (PhiᵀPhi/N + lambda·I)⁻¹ psi_k

(positive: the example lowered the query loss). The kernel shrinks what every on-task example
teaches alike (the answer template) and splits credit among redundant examples; plain TracIn pays
both in full. A held-out query never counts for its own contributor.

- `request`: `AttributionRequest` (base model, TrainConfig, examples with contributors, queries,
  snapshots dir, job id + data root for the projection seed, `MethodParams`) and
  `AttributionResult` (scores, per-example gradient hashes, timings, method id).
- `isolated.run_isolated(request)`: the computation in a fresh worker process with pinned floating
  point (`MKL_CBWR=AVX2` before torch's import, one thread, mkldnn off, deterministic
  algorithms); use it for anything committed or verified.
- `engine.attribute(request)`: the same in this process (tests, benchmarks).
- `quantise`: `choose_scale(scores)` -> committed exponent e, `quantise(scores, e)` -> integers.
- `kernel`, `sketch`, `gradients`: the maths, the projection, the model and its gradients.

This package's top level imports no torch, so building a request costs nothing.
"""

from .isolated import run_isolated
from .quantise import choose_scale, dequantise, quantise
from .request import (
    AttributionError,
    AttributionRequest,
    AttributionResult,
    MethodParams,
    QueryExample,
    SnapshotTiming,
    TrainingExample,
)

__all__ = [
    "AttributionError",
    "AttributionRequest",
    "AttributionResult",
    "MethodParams",
    "QueryExample",
    "SnapshotTiming",
    "TrainingExample",
    "choose_scale",
    "dequantise",
    "quantise",
    "run_isolated",
]
