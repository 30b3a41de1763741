"""Reward shares: the pool split mirrors RewardDistributor.splitPool, and proportional shares
always sum to the total exactly, the same way every time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.rewards.shares import proportional_shares, split_pool
from tests.conftest import World

ADDRS = [f"0x{i:040x}" for i in range(1, 9)]


def test_split_pool_matches_the_contract(world: World) -> None:
    for pool, node_bps, datanet_bps, n in [(10**21, 1000, 1000, 1), (10**21 + 7, 333, 4999, 3), (1, 0, 0, 16)]:
        s = split_pool(pool, node_bps, datanet_bps, n)
        onchain = world.admin.rewards.functions.splitPool(pool, node_bps, datanet_bps, n).call()
        assert (s.node_fee, s.datanet_fee_each, s.contributors) == tuple(onchain)


@given(st.dictionaries(st.sampled_from(ADDRS), st.integers(0, 10**6), min_size=1), st.integers(0, 10**30))
def test_proportional_shares_sum_to_the_total(weights: dict[str, int], total: int) -> None:
    if not any(weights.values()):
        return
    shares = proportional_shares(weights, total)
    assert sum(s.amount for s in shares) == total
    assert shares == proportional_shares(dict(reversed(list(weights.items()))), total)
    weight_sum = sum(weights.values())
    for s in shares:  # each amount is within one unit of its exact share
        exact = total * weights[s.account.lower()] / weight_sum
        assert abs(s.amount - exact) <= 1 + exact * 1e-12
