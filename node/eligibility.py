"""Whether this node can and will run a job, decided before it claims (a claim locks stake and
starts a deadline that expiry slashes, so every check that can fail later is made first).

Checks, in order of cost: the method is one the operator accepts (and QLoRA's bitsandbytes is
installed); the pool is at least `min_pool`; the node's active stake meets the minimum; the job's
config document is in the store, hashes to the on-chain `configHash` and parses, and agrees with
the job on method and base model; the base model is present locally and its weights hash to the
on-chain `baseModelHash`; the memory the method needs fits in what this machine has.

Each failure raises `NotEligibleError` with a reason an operator can act on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from pydantic import BaseModel, Field

from node.chain.models import Job, Method
from node.chain.protocol import Protocol
from node.config import Settings
from node.errors import NodeError
from node.storage.base import ContentStore
from node.train.base_model import WEIGHT_SUFFIXES, BaseModelError, resolve_base_model, weights_hash
from node.train.config import JobConfig, TrainConfigError

log = logging.getLogger(__name__)

GIB = 1 << 30
OPEN = 10**18


class NotEligibleError(NodeError):
    """This node will not claim the job; the message says why and what would change that."""


class Runnable(BaseModel):
    """What the checks found: the job's parsed config and the local base model directory."""

    config: JobConfig
    base_model_dir: Path
    memory_needed: int = Field(description="Estimated bytes of memory training needs.")


_HASHES: dict[tuple[str, int, int], bytes] = {}


def cached_weights_hash(model_dir: Path) -> bytes:
    """`weights_hash`, cached per process by (path, newest weight mtime, total size): hashing a
    7B model's weights takes tens of seconds, and every job on that base model asks again."""
    files = [p for p in model_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    stats = [p.stat() for p in files]
    key = (str(model_dir.resolve()), max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats))
    if key not in _HASHES:
        _HASHES[key] = weights_hash(model_dir)
    return _HASHES[key]


def check_job(protocol: Protocol, store: ContentStore, job: Job, settings: Settings) -> Runnable:
    """Runs every check (module docstring) and returns what training needs."""
    check_terms(protocol, job, settings)
    config = load_config(store, job)
    base_dir = local_base_model(job, settings.models_path)
    needed = memory_needed(base_dir, job.method)
    check_memory(needed, settings, job.method)
    return Runnable(config=config, base_model_dir=base_dir, memory_needed=needed)


def check_terms(protocol: Protocol, job: Job, settings: Settings) -> None:
    """Method, pool and stake: the checks that need no download."""
    method = job.method.name.lower()
    if method not in settings.accepted_methods:
        raise NotEligibleError(
            f"unsupported method: job #{job.id} is {method}, this node accepts {settings.accepted_methods} "
            "(setting accepted_methods)"
        )
    if job.method == Method.QLORA and importlib.util.find_spec("bitsandbytes") is None:
        raise NotEligibleError("unsupported method: QLoRA needs bitsandbytes, which is not installed on this node")
    if job.pool < settings.min_pool:
        raise NotEligibleError(
            f"pool below minimum: {job.pool / OPEN:,.4f} OPEN < min_pool {settings.min_pool / OPEN:,.4f} OPEN"
        )
    stake, minimum = protocol.node_stake().active, protocol.min_node_stake()
    if stake == 0 or stake < minimum:
        raise NotEligibleError(
            f"insufficient stake: node {protocol.address} has {stake / OPEN:,.4f} OPEN active, the minimum is "
            f"{minimum / OPEN:,.4f} OPEN; stake more (NodeStaking.stake) and retry the job"
        )


def load_config(store: ContentStore, job: Job) -> JobConfig:
    """The job's config document, checked against its on-chain hash and the job itself."""
    data = store.cat(job.configCID)  # verified against the CID block by block
    got = hashlib.sha256(data).digest()
    if got != job.configHash:
        raise NotEligibleError(
            f"config hash mismatch: {job.configCID} has sha256 0x{got.hex()} but the job records "
            f"0x{job.configHash.hex()}; the poster uploaded another document than the one it committed to"
        )
    try:
        config = JobConfig.parse(data, f"config {job.configCID} of job #{job.id}")
    except TrainConfigError as e:
        raise NotEligibleError(f"invalid config: {e}") from e
    if config.method.value != job.method.name.lower():
        raise NotEligibleError(
            f"config disagrees with the job: the document says {config.method.value}, the job {job.method.name.lower()}"
        )
    if config.base_model != job.baseModel:
        raise NotEligibleError(
            f"config disagrees with the job: the document names base model '{config.base_model}', the job "
            f"'{job.baseModel}'"
        )
    return config


def local_base_model(job: Job, models_dir: Path) -> Path:
    """The local directory of the job's base model, whose weights must hash to `baseModelHash`."""
    try:
        path = resolve_base_model(job.baseModel, models_dir)
        local = cached_weights_hash(path)
    except BaseModelError as e:
        raise NotEligibleError(f"unknown base model: {e}") from e
    if local != job.baseModelHash:
        raise NotEligibleError(
            f"base model hash mismatch: job #{job.id} wants '{job.baseModel}' with weights hash "
            f"0x{job.baseModelHash.hex()}, the local copy at {path} hashes to 0x{local.hex()} (another "
            "revision or format of the model); install the exact weights the job names"
        )
    return path


def memory_needed(base_dir: Path, method: Method) -> int:
    """A deliberately rough upper estimate of the bytes training needs.

    LoRA keeps the base in bf16 on a GPU (about its size on disk, usually bf16) or in fp32 on a
    CPU (up to twice that); QLoRA keeps it in 4 bits (about a quarter). On top: activations,
    LoRA weights with their optimizer state, and the framework itself, taken as 30% plus 1 GiB.
    The point is to refuse a 70B job on a laptop, not to predict the peak to the byte.
    """
    size = sum(p.stat().st_size for p in base_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    import torch

    on_gpu = torch.cuda.is_available()
    factor = 0.3 if method == Method.QLORA else (1.0 if on_gpu else 2.0)
    return int(size * factor * 1.3) + GIB


def memory_available(settings: Settings) -> tuple[int, str]:
    """(bytes, where): the operator's `max_memory_gb`, else free GPU memory, else available RAM."""
    if settings.max_memory_gb is not None:
        return int(settings.max_memory_gb * GIB), "max_memory_gb"
    import torch

    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free), f"free memory of {torch.cuda.get_device_name()}"
    import psutil

    return int(psutil.virtual_memory().available), "available RAM"


def check_memory(needed: int, settings: Settings, method: Method) -> None:
    have, where = memory_available(settings)
    if needed > have:
        raise NotEligibleError(
            f"not enough memory: {method.name.lower()} on this base model needs about {needed / GIB:.1f} GiB, "
            f"{where} is {have / GIB:.1f} GiB"
        )


__all__ = [
    "NotEligibleError",
    "Runnable",
    "cached_weights_hash",
    "check_job",
    "check_memory",
    "check_terms",
    "load_config",
    "local_base_model",
    "memory_available",
    "memory_needed",
]
