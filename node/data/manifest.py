"""The training-set manifest: every example a model was trained on, who gave it, and its data root.

`build_training_set` takes the parsed records of a job's approved contributions, orders them by
credit (earliest commitment first, then approval: ``(committed_at, approved_at, contribution_id)``;
records in file order; a contribution is committed on-chain before it is revealed, so whoever
copies another's data from the mempool commits later, and curators' timing decides nothing), so
the order the caller passes them in does not matter, removes duplicates (`node.data.dedup`,
credit to the earliest) and numbers the kept examples ``0..n-1``.

The data root (committed on-chain with the result) is the root of an OpenZeppelin
StandardMerkleTree with one leaf per kept example::

    leafEncoding = ["uint256", "uint256", "address", "bytes32"]
    leaf value   = [index, contributionId, contributor, exampleHash]
    leaf hash    = keccak256(keccak256(abi.encode(index, contributionId, contributor, exampleHash)))

where ``exampleHash = sha256(Example.canonical_json())``. Solidity checks an example with
``MerkleProof.verify(proof, dataRoot, keccak256(bytes.concat(keccak256(abi.encode(...)))))``.

The manifest serialises canonically (`canonical_json`: sorted keys, no whitespace, integers
only, no floats), so the same inputs always give byte-identical manifests and the same root.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from node import safe_json
from node.data.dedup import DedupConfig, dedup
from node.data.records import Example, SourceRecord
from node.errors import NodeError
from node.rewards.merkle import StandardMerkleTree

FORMAT: Literal["datanet-manifest-v1"] = "datanet-manifest-v1"
LEAF_ENCODING = ["uint256", "uint256", "address", "bytes32"]
_UINT256 = 2**256


class ManifestError(NodeError, ValueError):
    """Inputs that cannot make a manifest, or a manifest that does not hold together."""


class ContributionData(BaseModel):
    """One approved contribution's parsed records: the input of `build_training_set`."""

    datanet_id: int = Field(ge=0, lt=_UINT256)
    contribution_id: int = Field(ge=0, lt=_UINT256)
    contributor: ChecksumAddress
    cid: str = Field(min_length=1)
    approved_at: int = Field(ge=0, description="When a curator approved it (decidedAt): breaks credit ties.")
    committed_at: int = Field(0, ge=0, description="When its commitment was mined (committedAt): sets credit order.")
    records: list[SourceRecord]

    @field_validator("contributor", mode="before")
    @classmethod
    def _checksum(cls, v: Any) -> ChecksumAddress:
        try:
            return to_checksum_address(v)
        except (ValueError, TypeError) as e:
            raise ValueError(f"contributor {v!r} is not an address: {e}") from e


class ManifestEntry(BaseModel):
    """One training example: its position, its source record, and its hash (0x hex)."""

    model_config = ConfigDict(frozen=True)

    index: int
    datanet_id: int
    contribution_id: int
    contributor: ChecksumAddress
    cid: str
    record_line: int = Field(description="1-based line of the contributed file where the record begins.")
    example_sha256: str = Field(pattern=r"^0x[0-9a-f]{64}$")

    def leaf(self) -> tuple[int, int, ChecksumAddress, bytes]:
        return (self.index, self.contribution_id, self.contributor, bytes.fromhex(self.example_sha256[2:]))


class ContributionSummary(BaseModel):
    """A contribution in credit order: how many records it gave and how many were kept."""

    model_config = ConfigDict(frozen=True)

    datanet_id: int
    contribution_id: int
    contributor: ChecksumAddress
    cid: str
    approved_at: int
    committed_at: int = 0
    records: int
    kept: int


class DroppedEntry(BaseModel):
    """A record left out as a duplicate of the kept example at manifest index `duplicate_of`."""

    model_config = ConfigDict(frozen=True)

    contribution_id: int
    record_line: int
    reason: Literal["exact", "near"]
    duplicate_of: int
    similarity_bps: int


class DedupSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    method: str = Field(description="Implementation, for reproducing the dedup exactly.")
    config: DedupConfig
    bands: list[int] = Field(description="[bands, rows per band] of the LSH index.")
    input_records: int
    exact_dropped: int
    near_dropped: int
    dropped: list[DroppedEntry]


class Manifest(BaseModel):
    """What a model was trained on; `data_root` commits to `entries` (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    format: Literal["datanet-manifest-v1"] = FORMAT
    job_id: int = Field(ge=0)
    datanet_ids: list[int]
    leaf_encoding: list[str] = Field(default_factory=lambda: list(LEAF_ENCODING))
    data_root: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    contributions: list[ContributionSummary] = Field(description="In credit order.")
    entries: list[ManifestEntry]
    dedup: DedupSummary
    _tree: StandardMerkleTree | None = PrivateAttr(None)

    def canonical_json(self) -> bytes:
        return _canonical(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "manifest") -> Manifest:
        """Parses a manifest someone else wrote (`UntrustedJsonError` names `source` and the problem)."""
        return safe_json.load_model(cls, data, source)

    def tree(self) -> StandardMerkleTree:
        """The Merkle tree over `entries`; raises `ManifestError` if its root is not `data_root`."""
        if self._tree is None:
            for k, e in enumerate(self.entries):
                if e.index != k:
                    raise ManifestError(
                        f"manifest of job {self.job_id} does not verify: entry {k} has index {e.index}; "
                        "entries must be numbered 0..n-1 in order. Rebuild it; do not use it."
                    )
            tree = merkle_tree(self.entries)
            if "0x" + tree.root.hex() != self.data_root:
                raise ManifestError(
                    f"manifest of job {self.job_id} does not verify: its entries hash to "
                    f"0x{tree.root.hex()}, not its data_root {self.data_root}. Rebuild it; do not use it."
                )
            self._tree = tree
        return self._tree

    def proof(self, index: int) -> list[bytes]:
        """Merkle proof of entry `index` against `data_root` (checked before it is returned)."""
        if not 0 <= index < len(self.entries):
            raise ManifestError(
                f"index {index} is out of range: the manifest has {len(self.entries)} entries"
            )
        return self.tree().proof(index)

    def contributors(self) -> dict[ChecksumAddress, int]:
        """Kept examples per contributor, by address: the map attribution starts from."""
        return dict(sorted(Counter(e.contributor for e in self.entries).items()))


class TrainingSet(BaseModel):
    """The examples to train on, aligned with the manifest (``examples[i]`` is ``entries[i]``)."""

    manifest: Manifest
    examples: list[Example]


def build_training_set(
    job_id: int,
    datanet_ids: Sequence[int],
    contributions: Sequence[ContributionData],
    config: DedupConfig | None = None,
) -> TrainingSet:
    """Order by credit, dedup, and build the manifest and its data root."""
    cfg = config or DedupConfig()
    allowed = sorted(set(datanet_ids))
    ordered = _credit_order(contributions, allowed)
    sources = [(c, r) for c in ordered for r in sorted(c.records, key=lambda r: r.line)]
    if not sources:
        raise ManifestError(f"job {job_id} has no records to train on: its contributions are empty")
    result = dedup([r.example for _, r in sources], cfg)
    position = {src: k for k, src in enumerate(result.kept)}  # input position -> manifest index
    entries: list[ManifestEntry] = []
    examples: list[Example] = []
    kept_per: Counter[int] = Counter()
    for k, src in enumerate(result.kept):
        c, r = sources[src]
        examples.append(r.example)
        kept_per[c.contribution_id] += 1
        entries.append(
            ManifestEntry.model_construct(  # fields are checked above; validating 100k again is slow
                index=k,
                datanet_id=c.datanet_id,
                contribution_id=c.contribution_id,
                contributor=c.contributor,
                cid=c.cid,
                record_line=r.line,
                example_sha256="0x" + r.example.sha256().hex(),
            )
        )
    dropped = [
        DroppedEntry(
            contribution_id=sources[d.index][0].contribution_id,
            record_line=sources[d.index][1].line,
            reason=d.reason,
            duplicate_of=position[d.duplicate_of],
            similarity_bps=d.similarity_bps,
        )
        for d in result.dropped
    ]
    summaries = [
        ContributionSummary(
            datanet_id=c.datanet_id,
            contribution_id=c.contribution_id,
            contributor=c.contributor,
            cid=c.cid,
            approved_at=c.approved_at,
            committed_at=c.committed_at,
            records=len(c.records),
            kept=kept_per[c.contribution_id],
        )
        for c in ordered
    ]
    summary = DedupSummary(
        method=f"minhash-lsh/datasketch-{version('datasketch')}/affine32/crc32-word-shingles",
        config=cfg,
        bands=list(cfg.bands),
        input_records=len(sources),
        exact_dropped=result.count("exact"),
        near_dropped=result.count("near"),
        dropped=dropped,
    )
    tree = merkle_tree(entries)
    manifest = Manifest(
        job_id=job_id,
        datanet_ids=allowed,
        data_root="0x" + tree.root.hex(),
        contributions=summaries,
        entries=entries,
        dedup=summary,
    )
    manifest._tree = tree
    return TrainingSet(manifest=manifest, examples=examples)


def verify(manifest: Manifest, examples: Sequence[Example] | None = None) -> bool:
    """True if the entries are numbered 0..n-1 and hash to `data_root` (and, if `examples` are
    given, each example hashes to its entry's `example_sha256`)."""
    entries = manifest.entries
    if not entries or any(e.index != k for k, e in enumerate(entries)):
        return False
    if manifest.format != FORMAT or manifest.leaf_encoding != LEAF_ENCODING:
        return False
    if "0x" + merkle_tree(entries).root.hex() != manifest.data_root:
        return False
    if examples is not None:
        if len(examples) != len(entries):
            return False
        return all(
            "0x" + ex.sha256().hex() == e.example_sha256 for ex, e in zip(examples, entries, strict=True)
        )
    return True


def merkle_tree(entries: Sequence[ManifestEntry]) -> StandardMerkleTree:
    """`StandardMerkleTree.of` over the entries' leaves (`LEAF_ENCODING`), in entry order."""
    if not entries:
        raise ManifestError("a manifest needs at least one example; got none")
    return StandardMerkleTree.of([list(e.leaf()) for e in entries], LEAF_ENCODING)


def _credit_order(contributions: Sequence[ContributionData], allowed: list[int]) -> list[ContributionData]:
    seen: set[int] = set()
    for c in contributions:
        if c.contribution_id in seen:
            raise ManifestError(f"contribution {c.contribution_id} is given twice; pass each one once")
        seen.add(c.contribution_id)
        if c.datanet_id not in allowed:
            raise ManifestError(
                f"contribution {c.contribution_id} is from datanet {c.datanet_id}, which the job does not "
                f"permit (datanets {allowed}); leave it out"
            )
    return sorted(contributions, key=lambda c: (c.committed_at, c.approved_at, c.contribution_id))


def _canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
