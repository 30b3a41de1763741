"""On-chain arithmetic disputes over an attribution document: find a fault a contract can decide,
encode its evidence for `ResultChallenges.reveal`, and encode a node's answer to a reward-leaf
challenge.

The contract checks Merkle proofs against the roots a result committed (scores, data, reward),
so everything here works from the document's own leaves, in the order it lists them, without
assuming they are well formed: a forged document is exactly what a challenger needs proofs for.
`find_faults` only reports what the contract would uphold; anything else (scores that do not
reproduce, a document that does not match the committed roots) is for `datanet verify` and a
recomputation dispute (docs/protocol.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field

from node.attribution.document import AttributionDocument
from node.chain.models import ChallengeKind, Contribution, ContributionStatus, Job, ResultCommitment
from node.errors import NodeError
from node.rewards.merkle import StandardMerkleTree
from node.rewards.scores_tree import ScoreLeaf, ScoresTree

_SCORE = "(uint256,uint256,address,int256,int256,bytes32)"
PROVEN_SCORE = f"({_SCORE},bytes32[])"
PROVEN_DATA = "((uint256,uint256,address,bytes32),bytes32[])"
REWARD_CLAIM = "(uint256,address,uint256,bytes32[])"
RUN = f"({PROVEN_SCORE},{PROVEN_SCORE},{PROVEN_SCORE},{PROVEN_SCORE})"
_ZERO_LEAF = (0, 0, "0x" + "00" * 20, 0, 0, b"\0" * 32)


class DisputeError(NodeError, ValueError):
    """A document that cannot back a dispute or an answer (says what does not match)."""


class Fault(BaseModel):
    """A fault the challenge contract would uphold, with its encoded evidence."""

    model_config = ConfigDict(frozen=True)

    kind: ChallengeKind
    evidence: bytes
    reason: str = Field(description="What is wrong, for people.")


def commitment(kind: ChallengeKind, evidence: bytes, salt: bytes) -> bytes:
    """`keccak256(abi.encode(kind, evidence, salt))`: what `ResultChallenges.commit` takes."""
    return keccak(encode(["uint8", "bytes", "bytes32"], [int(kind), evidence, salt]))


def new_salt() -> bytes:
    return secrets.token_bytes(32)


class ResultTrees:
    """A result's scores tree exactly as its leaves are listed (position k holds `leaves[k]`,
    whatever its `index` says) and its reward tree, checked against the committed roots."""

    def __init__(self, leaves: Sequence[ScoreLeaf], rewards: StandardMerkleTree, committed: ResultCommitment):
        self.leaves = list(leaves)
        if not self.leaves:
            raise DisputeError("the attribution document has no score leaves")
        self.scores = ScoresTree(self.leaves, check_order=False)
        if self.scores.root != bytes(committed.scoresRoot):
            raise DisputeError(
                f"the document's score leaves hash to {self.scores.root_hex}, not the committed scores root "
                f"0x{bytes(committed.scoresRoot).hex()}: no leaf can be proven on-chain (a recomputation dispute)"
            )
        self.rewards = rewards
        if self.rewards.root != bytes(committed.attributionRoot):
            raise DisputeError(
                f"the document's reward tree has root 0x{self.rewards.root.hex()}, not the committed attribution "
                f"root 0x{bytes(committed.attributionRoot).hex()}"
            )

    @classmethod
    def from_document(cls, doc: AttributionDocument, committed: ResultCommitment) -> ResultTrees:
        return cls(doc.scores.leaves, StandardMerkleTree.load(doc.reward_tree), committed)

    def proven(self, k: int) -> tuple[Any, list[bytes]]:
        """Leaf at position k with its proof, as the contract's `ProvenScore`."""
        return (tuple(self.leaves[k].value()), self.scores.proof(k))


def _no_leaf() -> tuple[Any, list[bytes]]:
    return (_ZERO_LEAF, [])


# ------------------------------------------------------------------------ challenger


def find_faults(t: ResultTrees, committed: ResultCommitment, data: StandardMerkleTree | None = None) -> list[Fault]:
    """Every kind of fault in a result that `ResultChallenges` would uphold, at most one per
    kind, in the order a challenger should try them (immediate ones first). `data` is the tree
    of the manifest's leaves in index order (`Manifest.tree()`), if the challenger has it."""
    faults = [
        f
        for f in (
            _running_total(t),
            _index_out_of_range(t, committed),
            _duplicate_index(t),
            _broken_contribution(t),
            _data_mismatch(t, committed, data) if data is not None else None,
            _reward_leaf(t, committed),
        )
        if f is not None
    ]
    return faults


def _running_total(t: ResultTrees) -> Fault | None:
    by_index = _positions_by_index(t.leaves)
    for k, leaf in enumerate(t.leaves):
        if leaf.index == 0:
            if leaf.running_total != leaf.score:
                ev = encode(["bool", PROVEN_SCORE, PROVEN_SCORE], [False, _no_leaf(), t.proven(k)])
                return Fault(
                    kind=ChallengeKind.RUNNING_TOTAL,
                    evidence=ev,
                    reason=f"leaf 0 has running total {leaf.running_total}, not its score {leaf.score}",
                )
            continue
        for j in by_index.get(leaf.index - 1, []):
            prev = t.leaves[j]
            if prev.running_total + leaf.score != leaf.running_total:
                ev = encode(["bool", PROVEN_SCORE, PROVEN_SCORE], [True, t.proven(j), t.proven(k)])
                return Fault(
                    kind=ChallengeKind.RUNNING_TOTAL,
                    evidence=ev,
                    reason=f"leaf {leaf.index} has running total {leaf.running_total}, but leaf {prev.index}'s "
                    f"{prev.running_total} plus its score {leaf.score} is {prev.running_total + leaf.score}",
                )
    return None


def _index_out_of_range(t: ResultTrees, committed: ResultCommitment) -> Fault | None:
    for k, leaf in enumerate(t.leaves):
        if leaf.index >= committed.exampleCount:
            ev = encode([PROVEN_SCORE], [t.proven(k)])
            return Fault(
                kind=ChallengeKind.INDEX_OUT_OF_RANGE,
                evidence=ev,
                reason=f"a leaf has index {leaf.index}; the result committed {committed.exampleCount} examples",
            )
    return None


def _duplicate_index(t: ResultTrees) -> Fault | None:
    for index, positions in _positions_by_index(t.leaves).items():
        hashes = {t.leaves[k].hash(): k for k in positions}
        if len(hashes) > 1:
            a, b = list(hashes.values())[:2]
            ev = encode([PROVEN_SCORE, PROVEN_SCORE], [t.proven(a), t.proven(b)])
            return Fault(
                kind=ChallengeKind.DUPLICATE_INDEX, evidence=ev, reason=f"two different leaves have index {index}"
            )
    return None


def _broken_contribution(t: ResultTrees) -> Fault | None:
    order = sorted(range(len(t.leaves)), key=lambda k: t.leaves[k].index)
    first: dict[int, int] = {}  # contribution id -> position of its first leaf (by index)
    last: dict[int, int] = {}
    for k in order:
        leaf = t.leaves[k]
        c = leaf.contribution_id
        if c in first:
            a = t.leaves[first[c]]
            if a.contributor != leaf.contributor:
                ev = encode([PROVEN_SCORE] * 3, [t.proven(first[c]), _no_leaf(), t.proven(k)])
                return Fault(
                    kind=ChallengeKind.BROKEN_CONTRIBUTION,
                    evidence=ev,
                    reason=f"contribution {c} is credited to {a.contributor} and {leaf.contributor}",
                )
            prev = t.leaves[last[c]]
            for m in order:
                mid = t.leaves[m]
                if prev.index < mid.index < leaf.index and mid.contribution_id != c:
                    ev = encode([PROVEN_SCORE] * 3, [t.proven(last[c]), t.proven(m), t.proven(k)])
                    return Fault(
                        kind=ChallengeKind.BROKEN_CONTRIBUTION,
                        evidence=ev,
                        reason=f"contribution {c} is split by contribution {mid.contribution_id} at {mid.index}",
                    )
        else:
            first[c] = k
        last[c] = k
    return None


def _data_mismatch(t: ResultTrees, committed: ResultCommitment, data: StandardMerkleTree) -> Fault | None:
    if data.root != bytes(committed.dataRoot):
        return None  # not the committed data: nothing provable against its root
    entries = [_DataEntry.of(v) for v in data.values()]
    for k, e in enumerate(entries):
        if e.index >= committed.exampleCount:
            ev = encode([PROVEN_SCORE, PROVEN_DATA], [_no_leaf(), (e.leaf(), data.proof(k))])
            reason = f"the data has example {e.index}; the result committed {committed.exampleCount}"
            return Fault(kind=ChallengeKind.DATA_MISMATCH, evidence=ev, reason=reason)
    for k, leaf in enumerate(t.leaves):
        if leaf.index < len(entries) and entries[leaf.index].index == leaf.index:
            e = entries[leaf.index]
            if (e.contribution_id, e.contributor) != (leaf.contribution_id, leaf.contributor):
                ev = encode([PROVEN_SCORE, PROVEN_DATA], [t.proven(k), (e.leaf(), data.proof(leaf.index))])
                reason = (
                    f"example {leaf.index} is contribution {e.contribution_id} of {e.contributor} in the data, "
                    f"but contribution {leaf.contribution_id} of {leaf.contributor} in the scores"
                )
                return Fault(kind=ChallengeKind.DATA_MISMATCH, evidence=ev, reason=reason)
    return None


def data_not_permitted(
    data: StandardMerkleTree, committed: ResultCommitment, job: Job, contribution: Callable[[int], Contribution | None]
) -> Fault | None:
    """The first example in the committed data (`Manifest.tree()`) that the node had no right to
    train on, as `ResultChallenges` decides a DataNotPermitted challenge: its contribution unknown,
    another contributor's, outside the job's Datanets, or not approved by the end of the claim
    block. `contribution(id)` reads the DatanetRegistry (None for an unknown id). One check per
    (contribution, contributor): examples that name both share the answer."""
    if data.root != bytes(committed.dataRoot):
        return None  # not the committed data: nothing provable against its root
    seen: set[tuple[int, str]] = set()
    for k, value in enumerate(data.values()):
        e = _DataEntry.of(value)
        if (e.contribution_id, e.contributor) in seen:
            continue
        seen.add((e.contribution_id, e.contributor))
        reason = _why_not_permitted(e, contribution(e.contribution_id), job)
        if reason is not None:
            ev = encode([PROVEN_DATA], [(e.leaf(), data.proof(k))])
            return Fault(kind=ChallengeKind.DATA_NOT_PERMITTED, evidence=ev, reason=f"example {e.index}: {reason}")
    return None


def _why_not_permitted(e: _DataEntry, c: Contribution | None, job: Job) -> str | None:
    if c is None:
        return f"contribution {e.contribution_id} does not exist"
    if c.contributor != e.contributor:
        return f"contribution {e.contribution_id} is {c.contributor}'s, not {e.contributor}'s"
    if c.datanetId not in job.datanetIds:
        return f"contribution {e.contribution_id} is in Datanet {c.datanetId}, not one of the job's {job.datanetIds}"
    if c.status in (ContributionStatus.PENDING, ContributionStatus.REJECTED):
        return f"contribution {e.contribution_id} is {c.status.name.lower()}, never approved"
    if c.decidedAt == 0:
        return f"contribution {e.contribution_id} was withdrawn without ever being approved"
    if c.decidedAt > job.claimTime:
        return f"contribution {e.contribution_id} was approved at {c.decidedAt}, after the claim ({job.claimTime})"
    return None


def _reward_leaf(t: ResultTrees, committed: ResultCommitment) -> Fault | None:
    """A reward leaf the node cannot justify from the committed scores and W."""
    runs = _runs(t.leaves)
    if runs is None:
        return None
    by_count = committed.totalWeight == committed.exampleCount and not any(s > 0 for *_, s in runs)
    weights: dict[str, int] = {}
    for who, first, last, s in runs:
        w = (last - first + 1) if by_count else max(0, s)
        weights[who] = weights.get(who, 0) + w
    for i, (_, index, account, amount) in enumerate(t.rewards.values()):
        account = to_checksum_address(account)
        expected = committed.contributorsTotal * weights.get(account, 0) // committed.totalWeight
        is_dust = account == committed.dustRecipient and int(amount) < committed.exampleCount
        if int(amount) != expected and not is_dust:
            ev = encode([REWARD_CLAIM], [(int(index), account, int(amount), t.rewards.proof(i))])
            return Fault(
                kind=ChallengeKind.REWARD_LEAF,
                evidence=ev,
                reason=f"reward leaf {index} pays {account} {amount}; its contributions' weights give {expected}",
            )
    return None


# ----------------------------------------------------------------------------- node


def answer_from_document(doc: AttributionDocument, committed: ResultCommitment, account: str, amount: int) -> bytes:
    """`answer_evidence` for a node's own attribution document."""
    t = ResultTrees.from_document(doc, committed)
    return answer_evidence(t, committed, account, amount, by_count=doc.fallback is not None, dust=doc.payout.dust)


def answer_evidence(
    t: ResultTrees, committed: ResultCommitment, account: str, amount: int, *, by_count: bool, dust: int
) -> bytes:
    """The node's answer to a reward-leaf challenge of (`account`, `amount`): the account's whole
    contributions with their bounding leaves (weights by example count under the fallback), or
    no runs for the dust leaf. Raises `DisputeError` if the result cannot justify the leaf."""
    who = to_checksum_address(account)
    positions = {leaf.index: k for k, leaf in enumerate(t.leaves)}
    runs = _runs(t.leaves)
    if runs is None:
        raise DisputeError("the score leaves are not numbered 0..n-1: no answer can be proven")
    mine = [(first, last, s) for acc, first, last, s in runs if acc == who]
    n = committed.exampleCount
    encoded = []
    weight = 0
    for first, last, s in mine:
        before = t.proven(positions[first - 1]) if first > 0 else _no_leaf()
        after = t.proven(positions[last + 1]) if last + 1 < n else _no_leaf()
        encoded.append((t.proven(positions[first]), t.proven(positions[last]), before, after))
        weight += (last - first + 1) if by_count else max(0, s)
    expected = committed.contributorsTotal * weight // committed.totalWeight if mine else None
    if expected != amount:
        if who == committed.dustRecipient and amount == dust and amount < n:
            return encode(["bool", f"{RUN}[]"], [False, []])
        raise DisputeError(f"the document does not justify paying {who} {amount} (its weight gives {expected})")
    return encode(["bool", f"{RUN}[]"], [by_count, encoded])


class _DataEntry(BaseModel):
    index: int
    contribution_id: int
    contributor: str
    example_hash: bytes

    @classmethod
    def of(cls, value: Sequence[Any]) -> _DataEntry:
        index, cid, who, h = value
        return cls(index=int(index), contribution_id=int(cid), contributor=to_checksum_address(who), example_hash=h)

    def leaf(self) -> tuple[int, int, str, bytes]:
        return (self.index, self.contribution_id, self.contributor, self.example_hash)


def _positions_by_index(leaves: Sequence[ScoreLeaf]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for k, leaf in enumerate(leaves):
        out.setdefault(leaf.index, []).append(k)
    return out


def _runs(leaves: Sequence[ScoreLeaf]) -> list[tuple[str, int, int, int]] | None:
    """(contributor, first index, last index, score sum) per maximal run of one contribution, for
    leaves numbered 0..n-1 in order; None otherwise (the other kinds catch that)."""
    if any(leaf.index != k for k, leaf in enumerate(leaves)):
        return None
    runs: list[tuple[str, int, int, int]] = []
    start = 0
    for k in range(1, len(leaves) + 1):
        if k == len(leaves) or leaves[k].contribution_id != leaves[start].contribution_id:
            base = leaves[start - 1].running_total if start > 0 else 0
            runs.append((leaves[start].contributor, start, k - 1, leaves[k - 1].running_total - base))
            start = k
    return runs


__all__ = [
    "DisputeError",
    "Fault",
    "ResultTrees",
    "answer_evidence",
    "answer_from_document",
    "commitment",
    "data_not_permitted",
    "find_faults",
    "new_salt",
]
