"""Whether this node can and will run a job, decided before it claims (a claim reserves a bond and
starts a deadline that expiry slashes, so every check that can fail later is made first).

Checks, in order of cost: the method is one the operator accepts (and QLoRA's bitsandbytes is
installed); the pool is at least `min_pool`; every private or restricted Datanet of the job trusts
this node; the node's active stake meets the minimum and its free stake covers the job's bond; the job's
config document is in the store, hashes to the on-chain `configHash` and parses, and agrees with
the job on method and base model; a job for commercial use has a Datanet licensed for it; the base
model is present locally (or, with `allow_downloads`, fetched from the hub) and its weights hash to
the on-chain `baseModelHash`; the memory the method needs fits in what this machine has (on a GPU:
GPU memory and host RAM both).

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
from node.train.base_model import WEIGHT_SUFFIXES, BaseModelError, cached_path, resolve_base_model, weights_hash
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
    memory_needed: int = Field(description="Estimated bytes training needs on its device (GPU or RAM).")


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
    check_license(protocol, job, config)
    base_dir = local_base_model(job, settings)
    needed = memory_needed(base_dir, job.method)
    check_memory(needed, settings, job.method)
    return Runnable(config=config, base_model_dir=base_dir, memory_needed=needed.device)


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
    if job.pool < settings.min_pool_units:
        raise NotEligibleError(
            f"pool below minimum: {job.pool / OPEN:,.4f} OPEN < min_pool {settings.min_pool:,.4f} OPEN"
        )
    for d in job.datanetIds:
        if not protocol.can_claim(d, protocol.address):
            raise NotEligibleError(
                f"not trusted: Datanet #{d} is private or restricted and does not trust node {protocol.address}; "
                f"its owner runs `datanet net trust-node {d} {protocol.address}`, then `datanet node retry {job.id}`"
            )
    st, minimum = protocol.node_stake(), protocol.min_node_stake()
    if st.active == 0 or st.active < minimum:
        raise NotEligibleError(
            f"insufficient stake: node {protocol.address} has {st.active / OPEN:,.4f} OPEN active, the minimum is "
            f"{minimum / OPEN:,.4f} OPEN; stake more (`datanet node stake`), then `datanet node retry {job.id}`"
        )
    bond = protocol.bond_for(job.id)
    if st.free < bond:
        raise NotEligibleError(
            f"insufficient stake: claiming job #{job.id} reserves a bond of {bond / OPEN:,.4f} OPEN (the contributors' "
            f"part of its pool, at least the minimum stake) but node {protocol.address} has "
            f"{st.free / OPEN:,.4f} OPEN free ({st.reserved / OPEN:,.4f} reserved by {st.jobs} claimed job(s)); "
            f"stake {(bond - st.free) / OPEN:,.4f} OPEN more (`datanet node stake AMOUNT`), then "
            f"`datanet node retry {job.id}`"
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


def check_license(protocol: Protocol, job: Job, config: JobConfig) -> None:
    """A job for commercial use needs at least one Datanet whose license allows it: assembly
    leaves the others out (`node.data.assemble`), and with none left there is nothing to train."""
    if not config.commercial_use:
        return
    datanets = [protocol.datanet(d) for d in job.datanetIds]
    if not any(d.commercialUse for d in datanets):
        terms = ", ".join(f"#{d.id} '{d.license}'" for d in datanets)
        raise NotEligibleError(
            f"license forbids commercial use: job #{job.id} declares commercial_use but none of its Datanets "
            f"allows it ({terms}); nothing would be left to train on"
        )


def local_base_model(job: Job, settings: Settings) -> Path:
    """The local directory of the job's base model, whose weights must hash to `baseModelHash`;
    fetched from the hub into `models_dir` first when it is not there and `allow_downloads` is on."""
    try:
        path = resolve_base_model(job.baseModel, settings.models_path, allow_download=settings.allow_downloads)
        local = cached_weights_hash(path)
    except BaseModelError as e:
        raise NotEligibleError(_unavailable(job, settings, e)) from e
    if local != job.baseModelHash:
        raise NotEligibleError(
            f"base model hash mismatch: job #{job.id} wants '{job.baseModel}' with weights hash "
            f"0x{job.baseModelHash.hex()}, the local copy at {path} hashes to 0x{local.hex()} (another "
            "revision or format of the model); install the exact weights the job names"
        )
    return path


def _unavailable(job: Job, settings: Settings, e: BaseModelError) -> str:
    where = cached_path(job.baseModel, settings.models_path)
    if settings.allow_downloads and e.__cause__ is not None:  # the hub download itself failed
        return (
            f"base model download failed: {e} Check this node's internet access (and HF_TOKEN for a gated "
            f"model), or put the Hugging Face model directory at {where}"
        )
    if settings.allow_downloads:
        return f"unknown base model: {e}"
    return (
        f"unknown base model: {e} To let this node fetch hub ids itself, set DATANET_ALLOW_DOWNLOADS=true "
        "(allow_downloads in datanet.toml)."
    )


# ---------------------------------------------------------------------- memory

HOST_OVERHEAD = 2 * GIB  # torch, the CUDA context's host side, tokenizer and data: host RAM on a GPU node


class MemoryNeed(BaseModel):
    """The estimate of what a job needs (`estimate_memory`)."""

    on_gpu: bool = Field(description="Training runs on a CUDA GPU (else on the CPU, in RAM).")
    device: int = Field(description="Bytes on the training device: GPU memory on CUDA, RAM on a CPU.")
    host: int = Field(description="Bytes of host RAM; on a CPU the same memory as `device`.")


class MemoryHave(BaseModel):
    """What this machine has (`memory_available`), each with where the number comes from."""

    device: int
    device_where: str
    host: int
    host_where: str = "available RAM"


def estimate_memory(weights: int, largest_file: int, method: Method, on_gpu: bool) -> MemoryNeed:
    """A deliberately rough upper estimate from the base model's weight bytes (a pure function).

    On the training device LoRA keeps the base in bf16 on a GPU (about its size on disk, usually
    bf16) or in fp32 on a CPU (up to twice that); QLoRA keeps it in 4 bits (about a quarter). On
    top: activations, LoRA weights with their optimizer state, and the framework itself, taken as
    30% plus 1 GiB. On a GPU the weights still pass through host RAM while loading, a weight file
    at a time, next to the framework (`HOST_OVERHEAD`). The point is to refuse a 70B job on a
    laptop, not to predict the peak to the byte.
    """
    factor = 0.3 if method == Method.QLORA else (1.0 if on_gpu else 2.0)
    device = int(weights * factor * 1.3) + GIB
    host = min(weights, largest_file) + HOST_OVERHEAD if on_gpu else device
    return MemoryNeed(on_gpu=on_gpu, device=device, host=host)


def memory_shortfall(need: MemoryNeed, have: MemoryHave, method: Method) -> str | None:
    """The reason the job does not fit (naming what is needed and what there is), or None."""
    what = f"{method.name.lower()} on this base model needs about"
    short = []
    if need.device > have.device:
        kind = "GPU memory" if need.on_gpu else "memory"
        short.append(f"{need.device / GIB:.1f} GiB of {kind}, {have.device_where} is {have.device / GIB:.1f} GiB")
    if need.on_gpu and need.host > have.host:
        short.append(f"{need.host / GIB:.1f} GiB of host RAM, {have.host_where} is {have.host / GIB:.1f} GiB")
    if not short:
        return None
    return f"not enough memory: {what} " + "; and ".join(short)


def memory_needed(base_dir: Path, method: Method) -> MemoryNeed:
    """`estimate_memory` for the weights in `base_dir`, on the device this node trains on."""
    sizes = [p.stat().st_size for p in base_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    import torch

    return estimate_memory(sum(sizes), max(sizes, default=0), method, torch.cuda.is_available())


def memory_available(settings: Settings, on_gpu: bool) -> MemoryHave:
    """Free GPU memory (on a GPU) or available RAM for the device, unless the operator's
    `max_memory_gb` says otherwise; available RAM for the host."""
    import psutil

    ram = int(psutil.virtual_memory().available)
    if settings.max_memory_gb is not None:
        return MemoryHave(device=int(settings.max_memory_gb * GIB), device_where="max_memory_gb", host=ram)
    if on_gpu:
        import torch

        free, _total = torch.cuda.mem_get_info()
        return MemoryHave(device=int(free), device_where=f"free memory of {torch.cuda.get_device_name()}", host=ram)
    return MemoryHave(device=ram, device_where="available RAM", host=ram)


def check_memory(need: MemoryNeed, settings: Settings, method: Method) -> None:
    reason = memory_shortfall(need, memory_available(settings, need.on_gpu), method)
    if reason is not None:
        raise NotEligibleError(reason)


__all__ = [
    "MemoryHave",
    "MemoryNeed",
    "NotEligibleError",
    "Runnable",
    "cached_weights_hash",
    "check_job",
    "check_license",
    "check_memory",
    "check_terms",
    "estimate_memory",
    "load_config",
    "local_base_model",
    "memory_available",
    "memory_needed",
    "memory_shortfall",
]
