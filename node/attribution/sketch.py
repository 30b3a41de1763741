"""The gradient projection: a count-sketch whose buckets and signs come from hashes, not samplers.

A verifier on another machine, years later, must draw the same projection. torch's and numpy's
random samplers promise no such thing across versions, so every bit comes from keccak256 and
SplitMix64 (integer arithmetic, the same everywhere):

    projection_seed  = keccak256("datanet-attribution-projection-v1" ‖ data_root ‖ uint256(job_id))
    seed_k           = first 8 bytes (big-endian) of keccak256(projection_seed ‖ uint256(k))
    x_j              = SplitMix64 output number j+1 of seed_k, j = 0 .. p-1 (the parameter's index)
    bucket_j         = (x_j >> 32) * d >> 32          (Lemire's multiply-shift: uniform on [0, d))
    sign_j           = +1 if x_j is even else -1

Parameter indices run over the LoRA parameters sorted by name, each flattened row-major. The
sketch of a vector g is ``out[b] = Σ_{j: bucket_j = b} sign_j · g_j``: inner products are kept
in expectation (variance ‖a‖²‖b‖²/d), and it costs one pass over g, where a dense hash-derived
projection over millions of parameters would need billions of hashes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from eth_hash.auto import keccak

if TYPE_CHECKING:
    import torch

DOMAIN = b"datanet-attribution-projection-v1"
_GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def projection_seed(data_root: str, job_id: int) -> bytes:
    """The 32-byte seed recorded in the attribution document."""
    root = bytes.fromhex(data_root.removeprefix("0x"))
    if len(root) != 32:
        raise ValueError(f"data_root must be 32 bytes of hex, got {data_root!r}")
    return keccak(DOMAIN + root + job_id.to_bytes(32, "big"))


def snapshot_seed(seed: bytes, k: int) -> int:
    """SplitMix64's starting state for snapshot k."""
    return int.from_bytes(keccak(seed + k.to_bytes(32, "big"))[:8], "big")


def splitmix64_reference(state: int, n: int) -> list[int]:
    """The first `n` outputs, one at a time (the specification; `splitmix64` is its vectorised twin)."""
    out = []
    for _ in range(n):
        state = (state + _GAMMA) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * _M1) & _MASK
        z = ((z ^ (z >> 27)) * _M2) & _MASK
        out.append(z ^ (z >> 31))
    return out


def splitmix64(state: int, n: int) -> np.ndarray:
    """Outputs 1..n of SplitMix64 from `state`, as uint64 (numpy wraps modulo 2^64 silently)."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(state) + i * np.uint64(_GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    result: np.ndarray = z ^ (z >> np.uint64(31))
    return result


def buckets_and_signs(state: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket int64 in [0, d), sign float64 ±1) of parameters 0..n-1."""
    if not 1 <= d <= 1 << 32:
        raise ValueError(f"sketch width {d} must be in [1, 2^32]")
    x = splitmix64(state, n)
    with np.errstate(over="ignore"):
        bucket = ((x >> np.uint64(32)) * np.uint64(d)) >> np.uint64(32)
    sign = 1.0 - 2.0 * (x & np.uint64(1)).astype(np.float64)
    return bucket.astype(np.int64), sign


class CountSketch:
    """Projects (..., p) tensors to (..., d). `None` width (p <= d): the identity, exactly."""

    def __init__(self, state: int, p: int, d: int | None):
        import torch

        self.p, self.d = p, d
        if d is None:
            self.bucket, self.sign = None, None
        else:
            b, s = buckets_and_signs(state, p, d)
            self.bucket, self.sign = torch.from_numpy(b), torch.from_numpy(s)

    @property
    def out_dim(self) -> int:
        return self.p if self.d is None else self.d

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """`g`: (p,) or (B, p) -> (d,) or (B, d), in g's dtype. index_add_ on the CPU adds in index
        order, one thread: a fixed accumulation order."""
        import torch

        if self.bucket is None or self.sign is None:
            return g
        signed = g * self.sign.to(g.dtype)
        out = torch.zeros((*g.shape[:-1], self.out_dim), dtype=g.dtype)
        return out.index_add_(-1, self.bucket, signed)

    def dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The (p, d) matrix S with sketch(g) = g @ S (for tests on small sizes)."""
        import torch

        if self.bucket is None or self.sign is None:
            return torch.eye(self.p, dtype=dtype)
        m = torch.zeros(self.p, self.out_dim, dtype=torch.float64)
        m[torch.arange(self.p), self.bucket] = self.sign
        return m.to(dtype) if dtype is not None else m


__all__ = ["DOMAIN", "CountSketch", "buckets_and_signs", "projection_seed", "snapshot_seed", "splitmix64"]
