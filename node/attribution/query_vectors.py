"""The committed query vectors of one snapshot: V_k = F_k⁻¹ Psi_kᵀ, (d, Q) float64.

They are what lets a dispute narrow to one example: example i's score is
s_i = Σ_k eta_k phi_ikᵀ V_k w_c(i) (`engine`), so with V_k public a verifier recomputes one
example's gradients at the K snapshots, not all N, and checks its committed score; and a dispute
about V_k itself is one solve at one snapshot. Float64, not a hash of floats: another machine's
V_k differs in the last bits, so it is compared within a tolerance, and a hash could not be.

One safetensors file per snapshot (tensor ``v``, metadata JSON under ``datanet``), public by CID
and sha256 in the attribution document's snapshot list.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from node import safe_json
from node.errors import NodeError

FORMAT = "datanet-query-vectors-v1"


class QueryVectorsError(NodeError, ValueError):
    """A query-vectors file that is missing, of another format, or of the wrong shape."""


class QueryVectorsMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str = FORMAT
    snapshot: int = Field(ge=0)
    dim: int = Field(ge=1, description="d: the (projected) gradient length.")
    queries: int = Field(ge=1, description="Q: the queries with an answer token, in query-set order.")


def file_name(index: int) -> str:
    return f"queries-{index:03d}.safetensors"


def save(directory: Path, index: int, v: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    d, q = v.shape
    meta = QueryVectorsMeta(snapshot=index, dim=d, queries=q)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(index)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"v": v.detach().to("cpu", torch.float64).contiguous()}, str(tmp),
              metadata={"datanet": meta.model_dump_json()})  # fmt: skip
    os.replace(tmp, path)
    return path


def load(path: Path, *, snapshot: int, dim: int, queries: int) -> torch.Tensor:
    """V of `snapshot`, checked to be (dim, queries) float64 of this format."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("datanet")
            if raw is None:
                raise QueryVectorsError(f"{path} has no datanet metadata: not a {FORMAT} file")
            meta = QueryVectorsMeta.model_validate(safe_json.loads(raw, f"{path}'s metadata",
                                                                   max_bytes=safe_json.SMALL_BYTES))  # fmt: skip
            v = f.get_tensor("v")
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: not a safetensors file
        if isinstance(e, QueryVectorsError):
            raise
        raise QueryVectorsError(f"cannot read query vectors {path}: {e}") from e
    want = (FORMAT, snapshot, dim, queries)
    got = (meta.format, meta.snapshot, *v.shape) if v.dim() == 2 else (meta.format, meta.snapshot, -1, -1)
    if got != want or v.dtype != torch.float64:
        raise QueryVectorsError(
            f"{path}: expected {FORMAT} of snapshot {snapshot}, float64 ({dim}, {queries}); found {meta.format} of "
            f"snapshot {meta.snapshot}, {v.dtype} {tuple(v.shape)}"
        )
    return v


__all__ = ["FORMAT", "QueryVectorsError", "QueryVectorsMeta", "file_name", "load", "save"]
