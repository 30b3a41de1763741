"""Reward shares: the pool split mirrors RewardDistributor.splitPool (the payout rule's own
properties are in tests/test_payout.py)."""

from __future__ import annotations

from node.rewards.shares import split_pool
from tests.conftest import World


def test_split_pool_matches_the_contract(world: World) -> None:
    for pool, node_bps, datanet_bps, n in [(10**21, 1000, 1000, 1), (10**21 + 7, 333, 4999, 3), (1, 0, 0, 16)]:
        s = split_pool(pool, node_bps, datanet_bps, n)
        onchain = world.admin.rewards.functions.splitPool(pool, node_bps, datanet_bps, n).call()
        assert (s.node_fee, s.datanet_fee_each, s.contributors) == tuple(onchain)
