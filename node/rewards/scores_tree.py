"""The scores tree: every example's quantised score, committed in manifest index order.

Leaf ``(index, contributionId, contributor, score, runningTotal, gradientsHash)`` as
``["uint256", "uint256", "address", "int256", "int256", "bytes32"]``, hashed as OpenZeppelin's
StandardMerkleTree does (``keccak256(keccak256(abi.encode(...)))``), internal pairs hashed
commutatively, so Solidity checks a leaf with ``MerkleProof.verify`` unchanged. Unlike the reward
tree, the leaves are **not** sorted by hash: leaf k sits at slot ``len-1-k`` of OpenZeppelin's
flat layout (its ``sortLeaves: false`` option), so the tree is a function of the manifest order
and two neighbouring leaves are neighbours in the tree.

``runningTotal`` is the sum of the scores of examples ``0..index``, so the sum of any run of
examples (a contribution's examples are contiguous) is the difference of two leaves' running
totals: a challenge proves a contribution's score sum with two proofs, not all its leaves.
``gradientsHash`` commits to the example's projected gradients at every snapshot, so a dispute
over a score can narrow to one example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field

from node.rewards.merkle import MerkleTreeError, StandardMerkleTree, _fill_internal_nodes, leaf_hash, process_proof

SCORE_LEAF_ENCODING = ["uint256", "uint256", "address", "int256", "int256", "bytes32"]
_INT256 = 2**255
_HASH = r"^0x[0-9a-f]{64}$"


class ScoreLeaf(BaseModel):
    """One example's committed score (the tree leaf, named as the attribution document names it)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, lt=2**256)
    contribution_id: int = Field(ge=0, lt=2**256)
    contributor: ChecksumAddress
    score: int = Field(ge=-_INT256, lt=_INT256, description="Quantised score (committed scale).")
    running_total: int = Field(ge=-_INT256, lt=_INT256, description="Sum of scores of examples 0..index.")
    gradients_hash: str = Field(pattern=_HASH, description="keccak of the example's projected gradients.")

    def value(self) -> list[Any]:
        """The leaf as the ABI values of `SCORE_LEAF_ENCODING`."""
        return [
            self.index,
            self.contribution_id,
            self.contributor,
            self.score,
            self.running_total,
            bytes.fromhex(self.gradients_hash[2:]),
        ]

    def hash(self) -> bytes:
        return leaf_hash(SCORE_LEAF_ENCODING, self.value())


def score_leaves(
    refs: Sequence[tuple[int, str]], scores: Sequence[int], gradients_hashes: Sequence[str]
) -> list[ScoreLeaf]:
    """Leaves for examples ``0..n-1``: `refs[k]` is ``(contributionId, contributor)`` of example k."""
    if not len(refs) == len(scores) == len(gradients_hashes):
        raise MerkleTreeError(
            f"{len(refs)} examples, {len(scores)} scores and {len(gradients_hashes)} gradient hashes: "
            "give one of each per manifest example."
        )
    leaves: list[ScoreLeaf] = []
    running = 0
    for k, ((cid, who), s, g) in enumerate(zip(refs, scores, gradients_hashes, strict=True)):
        running += s
        leaves.append(
            ScoreLeaf(
                index=k,
                contribution_id=cid,
                contributor=to_checksum_address(who),
                score=s,
                running_total=running,
                gradients_hash=g.lower(),
            )
        )
    return leaves


class ScoresTree:
    """The tree over `leaves` in index order; `root`, `proof(k)`, `verify`, `dump()`."""

    def __init__(self, leaves: Sequence[ScoreLeaf], *, check_order: bool = True):
        """`check_order=False` builds the tree of leaves as listed, whatever their `index` says:
        how a challenger rebuilds a forged document's tree to prove its faults."""
        if not leaves:
            raise MerkleTreeError("A scores tree needs at least one example; got none.")
        for k, leaf in enumerate(leaves):
            if check_order and leaf.index != k:
                raise MerkleTreeError(f"Score leaf {k} has index {leaf.index}; leaves must be in index order 0..n-1.")
        n = len(leaves)
        tree: list[bytes] = [b""] * (2 * n - 1)
        values = []
        for k, leaf in enumerate(leaves):
            pos = len(tree) - 1 - k
            tree[pos] = leaf.hash()
            values.append((leaf.value(), pos))
        _fill_internal_nodes(tree, n)
        self.leaves = list(leaves)
        self._tree = StandardMerkleTree(tree, values, list(SCORE_LEAF_ENCODING))

    @property
    def root(self) -> bytes:
        return self._tree.root

    @property
    def root_hex(self) -> str:
        return "0x" + self.root.hex()

    def __len__(self) -> int:
        return len(self.leaves)

    def proof(self, index: int) -> list[bytes]:
        """Proof of example `index` (checked before it is returned)."""
        return self._tree.proof(index)

    def dump(self) -> dict[str, Any]:
        """OpenZeppelin's standard-v1 dump of this (unsorted) tree; `StandardMerkleTree.load` reads it."""
        return self._tree.dump().model_dump(mode="json")


def example_count_tree(refs: Sequence[tuple[int, str]]) -> ScoresTree:
    """Every example scored 1 (gradients hash zero): the example-count weights as a scores tree,
    for results whose reward tree weighs contributors by kept examples (W = example count)."""
    n = len(refs)
    return ScoresTree(score_leaves(refs, [1] * n, ["0x" + "00" * 32] * n))


def verify_score(root: bytes | str, leaf: ScoreLeaf, proof: Sequence[bytes | str]) -> bool:
    """Whether `proof` shows `leaf` under `root` (what `MerkleProof.verify` checks on-chain)."""
    want = bytes.fromhex(root[2:]) if isinstance(root, str) else root
    steps = [bytes.fromhex(p[2:]) if isinstance(p, str) else p for p in proof]
    return process_proof(leaf.hash(), steps) == want


def contribution_sum(first: ScoreLeaf, last: ScoreLeaf, before: ScoreLeaf | None) -> int:
    """The score sum of examples ``first.index..last.index`` from the leaves bounding it
    (`before` is the leaf at ``first.index - 1``, None when ``first.index`` is 0)."""
    if before is None and first.index != 0:
        raise MerkleTreeError(f"the run starts at {first.index}: give the leaf at {first.index - 1} too.")
    if before is not None and before.index + 1 != first.index:
        raise MerkleTreeError(f"leaf {before.index} does not precede leaf {first.index}.")
    return last.running_total - (before.running_total if before is not None else 0)


__all__ = [
    "SCORE_LEAF_ENCODING",
    "ScoreLeaf",
    "ScoresTree",
    "contribution_sum",
    "example_count_tree",
    "score_leaves",
    "verify_score",
]
