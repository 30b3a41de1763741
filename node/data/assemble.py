"""A job's permitted training set: exactly the approved data of exactly its Datanets.

chain (job, Datanets, approved contributions at one block) → storage (fetch, verified against
the CID) → sha256 against the on-chain hash → decrypt (private Datanets, needs a key grant) →
parse → dedup → manifest + data root. Permission is checked again at assembly, not only when the
job was posted: a restricted Datanet's owner may have revoked the poster since (the job cannot
run), and a job that declares commercial use leaves out every Datanet whose license forbids it
(its contributions are listed as excluded, with the license as the reason).

A contribution whose bytes do not match its CID or on-chain sha256, or that no longer parses, is
never trained on: it is excluded, logged loudly and listed in the result, so the rest of the
Datanet still trains.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol as TypingProtocol

from pydantic import BaseModel, Field

from node.chain.contributions import approved_contributions, datanet_at
from node.chain.models import Contribution, Datanet, Job
from node.chain.protocol import Protocol
from node.data.dedup import DedupConfig
from node.data.eval_leaks import eval_copies
from node.data.manifest import ContributionData, Manifest, build_training_set
from node.data.records import Example, SourceRecord
from node.data.validate import Limits, canonical_bytes, load_bytes
from node.errors import (
    AccessDeniedError,
    ContentMismatchError,
    DataValidationError,
    DecryptionError,
    GrantCoverageError,
    NodeError,
)

log = logging.getLogger(__name__)


class LicenseError(NodeError, PermissionError):
    """The job may not train on a Datanet (restricted and not allowed, or license terms)."""


class Reader(TypingProtocol):
    """What assembly needs from a content store: verified reads by CID."""

    def cat(self, cid: str) -> bytes: ...


Decrypt = Callable[[Datanet, Contribution, bytes], bytes]
"""Turns a private Datanet's envelope into plaintext; raises AccessDeniedError without a grant."""


class AssemblyConfig(BaseModel):
    """How a training set is assembled; recorded with the job's outputs."""

    dedup: DedupConfig = Field(default_factory=DedupConfig)
    limits: Limits = Field(default_factory=Limits)
    commercial: bool = Field(
        False,
        description="The job's model will be used commercially (its config's commercial_use): contributions "
        "of Datanets whose license forbids that are excluded, never fetched.",
    )


class Excluded(BaseModel):
    """A contribution left out, and why (it was never trained on)."""

    contribution_id: int
    datanet_id: int
    cid: str
    reason: str


class EvalDrop(BaseModel):
    """A record left out because it copies an example of the job's evaluation set (see `eval_leaks`)."""

    contribution_id: int
    record_line: int
    reason: str


class AssembledSet(BaseModel):
    """The permitted training set of a job, as of chain block `block`."""

    job_id: int
    block: int
    manifest: Manifest
    examples: list[Example]
    excluded: list[Excluded] = Field(default_factory=list)
    eval_dropped: list[EvalDrop] = Field(default_factory=list)

    def write(self, out_dir: Path) -> Path:
        """Writes manifest.json and examples.jsonl (canonical bytes) atomically into `out_dir`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in (
            ("examples.jsonl", canonical_bytes(self.examples)),
            ("manifest.json", self.manifest.canonical_json()),
        ):
            tmp = out_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, out_dir / name)
        return out_dir


def assemble(
    protocol: Protocol,
    store: Reader,
    job_id: int,
    block: int | None = None,
    decrypt: Decrypt | None = None,
    config: AssemblyConfig | None = None,
    evaluation: Sequence[Example] | None = None,
) -> AssembledSet:
    """Builds job `job_id`'s training set from the chain state at `block` (default: latest).
    With the job's revealed `evaluation` set, records that copy one of its examples nearly
    verbatim (prompt and answer alike) are dropped before dedup, each with its reason."""
    cfg = config or AssemblyConfig()
    at = block if block is not None else protocol.client.block_number()
    job = protocol.job(job_id)
    contributions: list[ContributionData] = []
    excluded: list[Excluded] = []
    refused: list[str] = []  # Datanets left out whole, by their license terms
    for datanet_id in job.datanetIds:
        datanet = datanet_at(protocol, datanet_id, at)
        _check_permission(protocol, job, datanet, at)
        terms = _license_refusal(job, datanet, cfg)
        if terms is not None:
            log.warning("job %d: Datanet #%d left out: %s", job_id, datanet_id, terms)
            refused.append(terms)
        for c in approved_contributions(protocol, datanet_id, at):
            if terms is not None:  # never fetched: the job may not use it
                excluded.append(Excluded(contribution_id=c.id, datanet_id=datanet_id, cid=c.cid, reason=terms))
                continue
            data, reason = _fetch(store, datanet, c, decrypt, cfg)
            if reason is not None:
                log.error("job %d: contribution #%d (%s) excluded: %s", job_id, c.id, c.cid, reason)
                excluded.append(Excluded(contribution_id=c.id, datanet_id=datanet_id, cid=c.cid, reason=reason))
                continue
            assert data is not None
            contributions.append(
                ContributionData(
                    datanet_id=datanet_id,
                    contribution_id=c.id,
                    contributor=c.contributor,
                    cid=c.cid,
                    approved_at=c.decidedAt,
                    committed_at=c.committedAt,
                    records=data,
                )
            )
    if not contributions:
        raise LicenseError(
            f"Job #{job_id} has nothing to train on: its Datanets {job.datanetIds} have no usable approved "
            f"contributions at block {at} ({len(excluded)} excluded)" + "".join(f"; {r}" for r in refused) + "."
        )
    contributions, eval_dropped = _drop_eval_copies(contributions, evaluation or [])
    training_set = build_training_set(job_id, job.datanetIds, contributions, cfg.dedup)
    return AssembledSet(
        job_id=job_id, block=at, manifest=training_set.manifest, examples=training_set.examples, excluded=excluded,
        eval_dropped=eval_dropped,
    )  # fmt: skip


def _drop_eval_copies(
    contributions: list[ContributionData], evaluation: Sequence[Example]
) -> tuple[list[ContributionData], list[EvalDrop]]:
    if not evaluation:
        return contributions, []
    flat = [(c, r) for c in contributions for r in c.records]
    copies = {cp.index: cp for cp in eval_copies([r.example for _, r in flat], evaluation)}
    dropped = [
        EvalDrop(contribution_id=flat[i][0].contribution_id, record_line=flat[i][1].line, reason=cp.reason())
        for i, cp in sorted(copies.items())
    ]
    for d in dropped:
        log.warning("contribution #%d line %d dropped: %s", d.contribution_id, d.record_line, d.reason)
    kept: list[ContributionData] = []
    k = 0
    for c in contributions:
        records = [r for j, r in enumerate(c.records, start=k) if j not in copies]
        k += len(c.records)
        if records:  # a contribution wholly made of eval copies leaves nothing to train on
            kept.append(c.model_copy(update={"records": records}))
    return kept, dropped


def _check_permission(protocol: Protocol, job: Job, datanet: Datanet, block: int) -> None:
    can_train = protocol.client.call(protocol.datanets.functions.canTrain(datanet.id, job.poster), block)
    if not can_train:
        raise LicenseError(
            f"Datanet #{datanet.id} '{datanet.name}' is restricted and no longer allows {job.poster} to train "
            f"on it (as of block {block}); job #{job.id} cannot use it. Its owner can allow the poster again "
            "with setTrainer."
        )


def _license_refusal(job: Job, datanet: Datanet, cfg: AssemblyConfig) -> str | None:
    """Why the job's intended use rules the whole Datanet out (its license terms), or None."""
    if cfg.commercial and not datanet.commercialUse:
        return (
            f"license: job #{job.id} is for commercial use but Datanet #{datanet.id} '{datanet.name}' is "
            f"licensed '{datanet.license}' without commercial use"
        )
    return None


def _fetch(
    store: Reader, datanet: Datanet, c: Contribution, decrypt: Decrypt | None, cfg: AssemblyConfig
) -> tuple[list[SourceRecord] | None, str | None]:
    try:
        payload = store.cat(c.cid)  # verified block by block against the CID
    except ContentMismatchError as e:
        return None, f"content does not match its CID: {e}"
    if hashlib.sha256(payload).digest() != c.contentHash:
        return None, (
            f"content of {c.cid} has sha256 {hashlib.sha256(payload).hexdigest()} but the chain records "
            f"{c.contentHash.hex()}"
        )
    if datanet.isPrivate:
        if decrypt is None:
            raise AccessDeniedError(
                f"Datanet #{datanet.id} is private and this node has no way to decrypt it; a key grant for the "
                "job is needed."
            )
        try:
            payload = decrypt(datanet, c, payload)
        except GrantCoverageError as e:
            return None, f"not covered by this node's key grant: {e}"
        except DecryptionError as e:
            return None, f"cannot be decrypted: {e}"
    try:
        return load_bytes(payload, f"contribution-{c.id}", limits=cfg.limits), None
    except DataValidationError as e:
        return None, f"no longer parses: {str(e).splitlines()[0]}"
