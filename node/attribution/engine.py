"""`attribute(request) -> AttributionResult`, in this process. Use `run_isolated` for anything
that must reproduce: it runs this in a fresh worker whose floating point is pinned first.

Per snapshot k (its LoRA weights loaded into the model):

    phi_ik = S_k(P_k^½ g_ik)      g_ik: example i's LoRA gradient, P_k: Adam's preconditioner,
    psi_jk = S_k(P_k^½ q_jk)      q_jk: query j's,                S_k: the count-sketch (or identity)
    a_ijk  = phi_ikᵀ F_k⁻¹ psi_jk  (`kernel.kernel_scores`)

and s_i = Σ_k eta_k Σ_j w_{c(i) j} a_ijk with eta_k the snapshot's lr_sum and w_{c j} the query
weights of example i's contributor c: every query's summed answer loss over the total answer
tokens of the queries that count for c (the token mean, as the trainer's eval loss), where a
held-out query never counts for its own contributor.

a_ijk is computed as phi_ikᵀ V_k[:, j] with V_k = F_k⁻¹ Psi_kᵀ (`kernel.query_vectors`), and V_k is
written out for the document (`query_vectors`): with `request.only`, the engine scores just
those examples from their own gradients and the committed V_k, which is how a dispute about one
example's score is settled without recomputing the others.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import torch

from node.train import snapshots as snaps
from node.train.formatting import Tokenized

from . import gradients as G
from . import query_vectors as QV
from .kernel import preconditioner_sqrt, query_vectors
from .request import (
    METHOD_NAME,
    AttributionError,
    AttributionRequest,
    AttributionResult,
    QueryExample,
    SnapshotTiming,
    TrainingExample,
)
from .sketch import CountSketch, projection_seed, snapshot_seed


def method_id(dtype: str) -> str:
    import peft
    import transformers

    versions = f"torch={torch.__version__};transformers={transformers.__version__};peft={peft.__version__}"
    return f"{METHOD_NAME};dtype={dtype};{versions}"


def attribute(req: AttributionRequest) -> AttributionResult:
    t0 = time.perf_counter()
    snapshots = _load_snapshots(req)
    tokenizer = G.load_tokenizer(req.base_model_dir)
    train_tok = G.tokenize(tokenizer, [e.example for e in req.examples], req.config)
    query_tok = G.tokenize(tokenizer, [q.example for q in req.queries], req.config)
    active = [i for i, e in enumerate(req.examples) if e.trained and train_tok[i].trainable > 0]
    q_active = [j for j, t in enumerate(query_tok) if t.trainable > 0]
    if not q_active:
        raise AttributionError(
            f"none of the {len(req.queries)} query examples has an answer token within max_seq_len="
            f"{req.config.max_seq_len}: there is no query loss to attribute"
        )
    weights = query_weights([req.examples[i] for i in active], [req.queries[j] for j in q_active],
                            [query_tok[j] for j in q_active])  # fmt: skip
    model = G.load_model(req.base_model_dir, req.config, req.params.dtype, req.base_dtype)
    loss_fn = G.LossSum(model)
    named = G.lora_parameters(model)
    per_example = G.BatchedGradients(model, named, req.params.batch_tokens)
    n_params = per_example.n_params
    width = req.params.projection_dim if n_params > req.params.projection_dim else None
    seed = projection_seed(req.data_root, req.job_id)
    hashers = [hashlib.sha256() for _ in req.examples]
    if req.only is not None:  # a narrowed dispute: these examples against the committed V_k
        wanted = set(req.only)
        weights = weights[[k for k, i in enumerate(active) if i in wanted]]
        active = [i for i in active if i in wanted]
    total = torch.zeros(len(active), dtype=torch.float64)
    timings: list[SnapshotTiming] = []
    for snap in snapshots:
        ts = time.perf_counter()
        G.set_lora(model, snap.lora)
        pre = torch.cat([preconditioner_sqrt(snap.exp_avg_sq[n].reshape(-1), snap.meta.adam_step, snap.meta.beta2,
                                             req.params.adam_eps or snap.meta.eps) for n, _ in named])  # fmt: skip
        sketch = CountSketch(snapshot_seed(seed, snap.meta.index), n_params, width)
        phi = _projected(per_example, loss_fn, [train_tok[i] for i in active], pre, sketch)  # (N, d)
        tq = time.perf_counter()
        if req.only is None:
            psi = _projected(per_example, loss_fn, [query_tok[j] for j in q_active], pre, sketch)  # (Q, d)
            tsolve = time.perf_counter()
            v = query_vectors(phi, psi, req.params.damping)  # (d, Q)
            if req.query_vectors_dir is not None:
                QV.save(req.query_vectors_dir, snap.meta.index, v)
        else:
            tsolve = tq
            assert req.query_vectors_dir is not None
            v = QV.load(req.query_vectors_dir / QV.file_name(snap.meta.index), snapshot=snap.meta.index,
                        dim=sketch.out_dim, queries=len(q_active))  # fmt: skip
        for row, i in zip(phi, active, strict=True):
            hashers[i].update(row.numpy().astype("<f4").tobytes())
        a = phi @ v  # (N, Q): phi_iᵀ F⁻¹ psi_j
        total += snap.meta.lr_sum * (a * weights).sum(dim=1)
        te = time.perf_counter()
        timings.append(SnapshotTiming(index=snap.meta.index, step=snap.meta.step, train_gradients_s=tq - ts,
                                      query_gradients_s=tsolve - tq, solve_s=te - tsolve, seconds=te - ts))  # fmt: skip
    scores = [0.0] * len(req.examples)
    for i, s in zip(active, total.tolist(), strict=True):
        scores[i] = s
    return AttributionResult(
        method_id=method_id(req.params.dtype), params=req.params, projection_seed="0x" + seed.hex(),
        lora_parameters=n_params, gradient_dim=sketch_width(n_params, req.params.projection_dim), scores=scores,
        gradients_hashes=["0x" + h.hexdigest() for h in hashers], snapshots=timings,
        total_seconds=time.perf_counter() - t0,
    )  # fmt: skip


def sketch_width(n_params: int, projection_dim: int) -> int:
    return projection_dim if n_params > projection_dim else n_params


def query_weights(
    examples: Sequence[TrainingExample], queries: Sequence[QueryExample], query_tok: Sequence[Tokenized]
) -> torch.Tensor:
    """(N, Q) float64: w[i, j] = 1/T_c if query j counts for example i's contributor c, else 0,
    with T_c the answer tokens of every query that counts for c."""
    owners = [q.contributor.lower() if q.contributor else None for q in queries]
    sizes = [t.trainable for t in query_tok]
    w = torch.zeros(len(examples), len(queries), dtype=torch.float64)
    per_contributor: dict[str, torch.Tensor] = {}
    for i, e in enumerate(examples):
        c = e.contributor.lower()
        if c not in per_contributor:
            mask = torch.tensor([owner != c for owner in owners], dtype=torch.float64)
            tokens = sum(n for owner, n in zip(owners, sizes, strict=True) if owner != c)
            per_contributor[c] = mask / tokens if tokens else mask * 0.0
        w[i] = per_contributor[c]
    return w


def _projected(
    per_example: G.BatchedGradients,
    loss_fn: G.LossSum,
    items: Sequence[Tokenized],
    pre: torch.Tensor,
    sketch: CountSketch,
) -> torch.Tensor:
    """(len(items), d) float64: each example's gradient, preconditioned, then projected."""
    out = torch.zeros(len(items), sketch.out_dim, dtype=torch.float64)
    for batch in per_example.batches(items):
        out[batch] = sketch(per_example(loss_fn, [items[i] for i in batch]) * pre)
    return out


def _load_snapshots(req: AttributionRequest) -> list[snaps.Snapshot]:
    if not req.snapshots_dir.is_dir():
        raise AttributionError(f"snapshots directory {req.snapshots_dir} does not exist")
    found = snaps.load_all(req.snapshots_dir)
    if not found:
        raise AttributionError(
            f"{req.snapshots_dir} holds no trajectory snapshots ({snaps.file_name(0)}, ...): the job was trained "
            "with `snapshots: 0`, so it is paid by example counts, not attributed"
        )
    scale = req.config.lora_scale
    for s in found:
        if abs(s.meta.lora_scale - scale) > 1e-9 * scale:
            raise AttributionError(f"snapshot {s.meta.index} was taken with LoRA scale {s.meta.lora_scale}, "
                                   f"the config's is {scale}: snapshots of another run?")  # fmt: skip
    return found


__all__ = ["attribute", "method_id", "query_weights"]
