"""A contributor's side of submitting data: validate → (encrypt) → upload → stake + submit.

Order matters for "bad input loses nothing": every file is validated before anything is
uploaded or staked; a file that fails stops the whole batch with the report. A journal records
each upload before its transaction, so when the chain step fails (RPC outage, revert) the user is
told exactly which CID is uploaded and which step failed, and re-running the same command reuses
the upload instead of re-uploading (or, for a private Datanet, re-encrypting to a new CID).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol as TypingProtocol

from pydantic import BaseModel

from node.chain.models import ContributionInput
from node.chain.protocol import Protocol
from node.data.validate import Limits, ValidationReport, validate_file
from node.errors import ChainError, ContributionError, DataValidationError


class Uploader(TypingProtocol):
    """What contributing needs from a content store."""

    def add_bytes(self, data: bytes) -> str: ...

    def has(self, cid: str) -> bool: ...


class JournalEntry(BaseModel):
    """One file's progress; `contribution_id` is set once the chain accepted it."""

    file: str
    datanet_id: int
    plain_sha256: str
    cid: str
    payload_sha256: str
    byte_size: int
    records: int
    contribution_id: int | None = None
    tx: str | None = None


class Journal:
    """JSON file of uploads and submissions, written atomically after every change."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, JournalEntry] = {}
        if path.exists():
            raw = json.loads(path.read_text())
            self._entries = {k: JournalEntry.model_validate(v) for k, v in raw.items()}

    @staticmethod
    def key(protocol: Protocol, contributor: str, datanet_id: int, plain_sha256: str) -> str:
        """Per chain (genesis hash too: a restarted dev chain has the same chain id, registry address
        and Datanet ids, but none of the earlier chain's contributions), Datanet, contributor, file."""
        registry = protocol.datanets.address
        chain = f"{protocol.chain_id}:{protocol.genesis_hash}"
        return f"{chain}:{registry}:{datanet_id}:{contributor}:{plain_sha256}"

    def get(self, key: str) -> JournalEntry | None:
        return self._entries.get(key)

    def put(self, key: str, entry: JournalEntry) -> None:
        self._entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.model_dump() for k, v in self._entries.items()}, indent=1))
        os.replace(tmp, self.path)


class ContributionResult(BaseModel):
    file: str
    datanet_id: int
    contribution_id: int
    cid: str
    sha256: str
    records: int
    stake: int
    tx: str | None
    relayed: bool
    reused_upload: bool
    already_submitted: bool


def validate_all(files: Sequence[Path], limits: Limits | None = None) -> list[ValidationReport]:
    """Validates every file; raises `DataValidationError` for the first batch that has errors."""
    reports = [validate_file(f, limits=limits) for f in files]
    bad = [r for r in reports if not r.ok]
    if bad:
        message = "\n".join(r.render(10) for r in bad)
        message += "\nNothing was uploaded or staked. Fix the files and run the command again."
        raise DataValidationError(bad[0], message=message)
    return reports


def contribute_files(
    contributor: Protocol,
    store: Uploader,
    datanet_id: int,
    files: Sequence[Path],
    stake: int,
    journal: Journal,
    relayer: Protocol | None = None,
    seal: Callable[[bytes], bytes] | None = None,
    limits: Limits | None = None,
) -> list[ContributionResult]:
    """Submits `files` to a Datanet, each with `stake` OPEN bonded by EIP-2612 permit.

    With `relayer`, the contributor only signs (EIP-712 + permit) and the relayer sends and pays
    gas. `seal` encrypts the payload for a private Datanet. Raises `DataValidationError` before
    any upload, `ContributionError` (naming the uploaded CID and the failed step) after one.
    """
    reports = validate_all(files, limits)
    datanet = contributor.datanet(datanet_id)
    if datanet.isPrivate and seal is None:
        raise ContributionError(f"Datanet #{datanet_id} is private: files must be encrypted to its key first.")
    if stake < datanet.minStake:
        raise ContributionError(
            f"Stake {stake / 1e18:g} OPEN is below Datanet #{datanet_id}'s minimum of "
            f"{datanet.minStake / 1e18:g} OPEN; pass --stake {datanet.minStake / 1e18:g} or more."
        )
    balance = contributor.balance()
    if balance < stake * len(files):
        raise ContributionError(
            f"{contributor.address} holds {balance / 1e18:g} OPEN but {len(files)} file(s) need "
            f"{stake * len(files) / 1e18:g} OPEN of stake. Nothing was uploaded or staked."
        )
    return [
        _contribute_one(contributor, store, datanet_id, path, report, stake, journal, relayer, seal)
        for path, report in zip(files, reports, strict=True)
    ]


def _contribute_one(
    contributor: Protocol,
    store: Uploader,
    datanet_id: int,
    path: Path,
    report: ValidationReport,
    stake: int,
    journal: Journal,
    relayer: Protocol | None,
    seal: Callable[[bytes], bytes] | None,
) -> ContributionResult:
    plain = path.read_bytes()
    plain_sha = hashlib.sha256(plain).hexdigest()
    key = Journal.key(contributor, contributor.address, datanet_id, plain_sha)
    entry = journal.get(key)
    reused = entry is not None and store.has(entry.cid)
    if entry is not None and not reused:
        # The earlier upload is gone from this store, but its submission may have gone through:
        # re-sealing would make new bytes (a new hash) and so a second contribution and stake.
        earlier = _submitted(contributor, datanet_id, bytes.fromhex(entry.payload_sha256))
        if earlier:
            journal.put(key, entry.model_copy(update={"contribution_id": earlier}))
            return _result(entry, earlier, None, stake, relayer is not None, False, already=True)
    if entry is None or not reused:
        payload = seal(plain) if seal else plain
        cid = store.add_bytes(payload)
        entry = JournalEntry(
            file=str(path), datanet_id=datanet_id, plain_sha256=plain_sha, cid=cid,
            payload_sha256=hashlib.sha256(payload).hexdigest(), byte_size=len(payload),
            records=report.record_count,
        )  # fmt: skip
        journal.put(key, entry)
    content_hash = bytes.fromhex(entry.payload_sha256)
    existing = _submitted(contributor, datanet_id, content_hash)
    if existing:  # a previous run's transaction went through (maybe its reply was lost)
        journal.put(key, entry.model_copy(update={"contribution_id": existing}))
        return _result(entry, existing, None, stake, relayer is not None, reused, already=True)
    entry_in = ContributionInput(
        datanetId=datanet_id, cid=entry.cid, contentHash=content_hash, byteSize=entry.byte_size,
        recordCount=entry.records, stake=stake,
    )  # fmt: skip
    try:
        contribution_id, tx = _submit(contributor, entry_in, relayer)
    except ChainError as e:
        raise ContributionError(
            f"{path}: uploaded as {entry.cid}, but submitting it on-chain failed: {e}\n"
            "Nothing was staked for it. Run the same command again to retry: the upload is reused."
        ) from e
    journal.put(key, entry.model_copy(update={"contribution_id": contribution_id, "tx": tx}))
    return _result(entry, contribution_id, tx, stake, relayer is not None, reused, already=False)


def _submitted(contributor: Protocol, datanet_id: int, content_hash: bytes) -> int:
    """The id of the contribution of these exact bytes to this Datanet, or 0."""
    fn = contributor.datanets.functions.contributionByContent(datanet_id, content_hash)
    return int(contributor.client.call(fn))


def _submit(contributor: Protocol, entry: ContributionInput, relayer: Protocol | None) -> tuple[int, str]:
    deadline = int(contributor.client.w3.eth.get_block("latest")["timestamp"]) + 3600
    permit = contributor.permit(contributor.datanets.address, entry.stake, deadline)
    if relayer is None:
        cid = contributor.contribute(entry, permit)
        receipt = contributor.client.last_receipt
    else:
        signature = contributor.sign_contribution(entry, deadline)
        cid = relayer.relay_contribution(entry, contributor.address, deadline, signature, permit)
        receipt = relayer.client.last_receipt
    assert receipt is not None
    return cid, "0x" + bytes(receipt["transactionHash"]).hex()


def _result(
    entry: JournalEntry, cid: int, tx: str | None, stake: int, relayed: bool, reused: bool, already: bool
) -> ContributionResult:
    return ContributionResult(
        file=entry.file, datanet_id=entry.datanet_id, contribution_id=cid, cid=entry.cid,
        sha256=entry.payload_sha256, records=entry.records, stake=stake, tx=tx, relayed=relayed,
        reused_upload=reused, already_submitted=already,
    )  # fmt: skip
