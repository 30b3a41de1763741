"""A job's reward round: how its pool splits, and the contributors' Merkle tree.

`split_pool` mirrors `RewardDistributor.splitPool` exactly (integer division in the same order),
so the amounts in a tree add up to what the distributor holds for contributors, to the unit.
`proportional_shares` turns non-negative integer weights (per-contributor attribution; until the
attribution work lands, the number of kept examples per contributor) into amounts that sum to the
total exactly (largest remainder, ties by address), so the same weights always give the same tree.

Leaf encoding (what `RewardDistributor.claim` checks): ``[jobId, index, account, amount]`` as
``["uint256", "uint256", "address", "uint256"]``, index = position in the share list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eth_utils import to_checksum_address
from pydantic import BaseModel, Field

from node.errors import NodeError
from node.rewards.merkle import StandardMerkleTree

MAX_BPS = 10_000
REWARD_LEAF_ENCODING = ["uint256", "uint256", "address", "uint256"]


class SharesError(NodeError, ValueError):
    """Weights that cannot split a pool (none positive, or negative ones)."""


class Split(BaseModel):
    """How a pool divides (RewardDistributor.Split)."""

    node_fee: int = Field(ge=0)
    datanet_fee_each: int = Field(ge=0)
    contributors: int = Field(ge=0, description="What the reward tree distributes.")


class Share(BaseModel):
    account: str
    amount: int = Field(ge=0)


def split_pool(pool: int, node_fee_bps: int, datanet_fee_bps: int, datanets: int) -> Split:
    node_fee = pool * node_fee_bps // MAX_BPS
    each = 0 if datanets == 0 else pool * datanet_fee_bps // MAX_BPS // datanets
    return Split(node_fee=node_fee, datanet_fee_each=each, contributors=pool - node_fee - each * datanets)


def proportional_shares(weights: Mapping[str, int], total: int) -> list[Share]:
    """`total` split in proportion to `weights` (accounts with zero weight left out), sorted by
    account; the amounts sum to `total` exactly."""
    if any(w < 0 for w in weights.values()):
        raise SharesError(f"Negative reward weights: { {a: w for a, w in weights.items() if w < 0} }.")
    positive = {to_checksum_address(a): w for a, w in weights.items() if w > 0}
    if not positive:
        raise SharesError("No contributor has a positive weight; there is nobody to reward.")
    weight_sum = sum(positive.values())
    floors = {a: total * w // weight_sum for a, w in positive.items()}
    left = total - sum(floors.values())
    # Hand the units lost to rounding to the largest remainders (then the lower address).
    by_remainder = sorted(positive, key=lambda a: (-(total * positive[a] % weight_sum), a.lower()))
    for a in by_remainder[:left]:
        floors[a] += 1
    return [Share(account=a, amount=floors[a]) for a in sorted(floors, key=str.lower)]


def reward_tree(job_id: int, shares: Sequence[Share]) -> StandardMerkleTree:
    """The contributors' tree for job `job_id` (one leaf per share, index = list position)."""
    values = [(job_id, i, s.account, s.amount) for i, s in enumerate(shares)]
    return StandardMerkleTree.of(values, REWARD_LEAF_ENCODING)


__all__ = ["REWARD_LEAF_ENCODING", "Share", "SharesError", "Split", "proportional_shares", "reward_tree", "split_pool"]
