"""A job's reward round: how its pool splits, and the contributors' Merkle tree.

`split_pool` mirrors `RewardDistributor.splitPool` exactly (integer division in the same order),
so the amounts in a tree add up to what the distributor holds for contributors, to the unit.
Amounts per contributor follow the payout rule in `node.rewards.payout` (floor of the weighted
share, rounding dust to the Datanet treasury), so each leaf can be checked on its own.

Leaf encoding (what `RewardDistributor.claim` checks): ``[jobId, index, account, amount]`` as
``["uint256", "uint256", "address", "uint256"]``, index = position in the share list.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def reward_tree(job_id: int, shares: Sequence[Share]) -> StandardMerkleTree:
    """The contributors' tree for job `job_id` (one leaf per share, index = list position)."""
    values = [(job_id, i, s.account, s.amount) for i, s in enumerate(shares)]
    return StandardMerkleTree.of(values, REWARD_LEAF_ENCODING)


__all__ = ["REWARD_LEAF_ENCODING", "Share", "SharesError", "Split", "reward_tree", "split_pool"]
