"""LoRA dropout whose masks any machine can redraw: what makes a training interval replayable.

`torch.nn.Dropout` draws from the device's generator: CPU (mt19937) and CUDA (Philox) give
different masks for the same seed, and the generator's position depends on everything drawn
before. A verifier replaying a few steps of a GPU-trained job on its CPU could then never land on
the committed snapshot. Here every mask element is a pure function of

    (run seed, optimizer step, micro-batch, rank, LoRA module, element index)

through a 32-bit integer hash computed in int64 tensors (every product stays below 2**59, so
no overflow and no platform-dependent rounding): bit-identical on CPU and CUDA, and the same when
gradient checkpointing recomputes a forward (the key does not change within a micro-batch).
It costs a handful of elementwise integer kernels per LoRA layer, small next to the layer's
matmuls, and nothing when `lora_dropout` is 0 or the model is in eval mode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

_MASK32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # the multiplier of a well-known 32-bit integer hash (< 2**27: products fit in int64)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mixes int64 values in [0, 2**32) to well-spread values in [0, 2**32), exactly, on any device."""
    x = ((x >> 16) ^ x) * _MUL & _MASK32
    x = ((x >> 16) ^ x) * _MUL & _MASK32
    return (x >> 16) ^ x


def stream_key(seed: int, step: int, micro: int, rank: int, module: int) -> int:
    """A 32-bit key per (seed, step, micro-batch, rank, module); blake2b so nearby tuples share nothing."""
    digest = hashlib.blake2b(f"{seed}/{step}/{micro}/{rank}/{module}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def uniform(key: int, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """float32 in [0, 1) of `shape`, a pure function of `key` and the element's flat index."""
    n = 1
    for d in shape:
        n *= int(d)
    idx = torch.arange(n, device=device, dtype=torch.int64)
    x = hash32(hash32((idx & _MASK32) ^ key) ^ ((idx >> 32) + 0x9E3779B9 & _MASK32))
    return ((x >> 8).to(torch.float32) * (1.0 / (1 << 24))).reshape(shape)  # 24 bits: exact in float32


@dataclass
class DropoutClock:
    """Where training is; the trainer sets it before every forward. Shared by every layer's dropout."""

    seed: int
    step: int = 0
    micro: int = 0
    rank: int = 0

    def at(self, step: int, micro: int, rank: int) -> None:
        self.step, self.micro, self.rank = step, micro, rank


class PortableDropout(nn.Module):
    """Inverted dropout with masks from `uniform` (see the module docstring). A drop-in for PEFT's
    `lora_dropout[adapter]` (`nn.Dropout`)."""

    def __init__(self, p: float, module: int, clock: DropoutClock):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.module, self.clock = p, module, clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        c = self.clock
        keep = uniform(stream_key(c.seed, c.step, c.micro, c.rank, self.module), x.shape, x.device) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}, module={self.module}"


def install(model: nn.Module, clock: DropoutClock) -> int:
    """Replaces every PEFT LoRA layer's `nn.Dropout` with a `PortableDropout` of the same p,
    numbered in `named_modules` order (the same on every machine for the same model and config).
    Returns how many it replaced."""
    count = 0
    for _name, module in model.named_modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, nn.ModuleDict):
            continue
        for adapter, layer in list(drops.items()):
            if isinstance(layer, nn.Dropout):
                drops[adapter] = PortableDropout(float(layer.p), count, clock)
                count += 1
    return count


__all__ = ["DropoutClock", "PortableDropout", "hash32", "install", "stream_key", "uniform"]
