"""Where a run executes: device, dtype, and the process group when launched with several
processes (`torchrun` / `accelerate launch` set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)."""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from node.train.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype  # compute dtype of the base model

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def setup_runtime(config: TrainConfig) -> Runtime:
    """Joins the process group if there is one (gloo on CPU, nccl on CUDA) and picks the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not bf16_ok:
        from node.train.config import TrainConfigError

        raise TrainConfigError(
            "precision 'bf16' needs a CUDA GPU with bf16 support; this node has none. Use 'auto' or 'fp32'."
        )
    dtype = torch.bfloat16 if config.precision == "bf16" or (config.precision == "auto" and bf16_ok) else torch.float32
    return Runtime(rank, world, local, device, dtype)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_sum(rt: Runtime, *values: float) -> list[float]:
    """Sums scalars over all processes (identity in a single process)."""
    if not rt.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return [float(x) for x in t.tolist()]


def peak_memory_bytes(rt: Runtime) -> int:
    """Peak CUDA memory allocated by tensors, or the process's peak resident set on CPU."""
    if rt.device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(rt.device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
