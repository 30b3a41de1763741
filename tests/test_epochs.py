"""node.rewards.epochs: exact largest-remainder amounts, independent of input order; the epoch
tree's leaves and root match what RewardDistributor.claimEpoch hashes."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from node.chain.inference import escrow_round_id
from node.rewards.epochs import (
    EPOCH_LEAF_ENCODING,
    EpochError,
    EpochRewards,
    build_epoch_rewards,
    epoch_amounts,
    epoch_tree,
)
from node.rewards.merkle import StandardMerkleTree, process_proof

ADDRS = [f"0x{i:040x}" for i in range(1, 30)]
NODE = "0x" + "ab" * 20
ESCROW = "0x" + "e5" * 20


def test_amounts_add_up_exactly_and_follow_largest_remainder() -> None:
    # 10 split 1:1:1 -> floors 3,3,3, one unit left, to the lowest address (all remainders tie).
    shares = epoch_amounts({ADDRS[2]: 1, ADDRS[0]: 1, ADDRS[1]: 1}, 10)
    assert [(s.account.lower(), s.amount) for s in shares] == [(ADDRS[0], 4), (ADDRS[1], 3), (ADDRS[2], 3)]
    # 100 split 5:3:2 has no remainder; 7 split 5:3:2 -> floors 3,2,1 (remainders 5,1,4): the unit to the 5.
    assert [s.amount for s in epoch_amounts({ADDRS[0]: 5, ADDRS[1]: 3, ADDRS[2]: 2}, 100)] == [50, 30, 20]
    assert [s.amount for s in epoch_amounts({ADDRS[0]: 5, ADDRS[1]: 3, ADDRS[2]: 2}, 7)] == [4, 2, 1]
    # Zero credits and zero amounts get no leaf.
    assert [s.account.lower() for s in epoch_amounts({ADDRS[0]: 1, ADDRS[1]: 0, ADDRS[2]: 1000}, 3)] == [ADDRS[2]]


def test_bad_credits_say_what_is_wrong() -> None:
    with pytest.raises(EpochError, match="nobody to pay"):
        epoch_amounts({ADDRS[0]: 0}, 5)
    with pytest.raises(EpochError, match="nobody to pay"):
        epoch_amounts({}, 5)
    with pytest.raises(EpochError, match="credit -1"):
        epoch_amounts({ADDRS[0]: -1, ADDRS[1]: 3}, 5)
    with pytest.raises(EpochError, match=r"credit 1\.5"):
        epoch_amounts({ADDRS[0]: 1.5}, 5)  # type: ignore[dict-item]
    with pytest.raises(EpochError, match="total -1"):
        epoch_amounts({ADDRS[0]: 1}, -1)
    with pytest.raises(EpochError, match="must be positive"):
        build_epoch_rewards(NODE, 1, {ADDRS[0]: 1}, 0, funding="sponsored")


credits_st = st.dictionaries(st.sampled_from(ADDRS), st.integers(0, 10**30), min_size=1, max_size=12).filter(
    lambda c: sum(c.values()) > 0
)


@given(credits=credits_st, total=st.integers(0, 10**27), seed=st.integers(0, 2**32))
def test_amounts_are_exact_bounded_and_order_independent(credits: dict[str, int], total: int, seed: int) -> None:
    shares = epoch_amounts(credits, total)
    assert sum(s.amount for s in shares) == total
    big_c = sum(credits.values())
    for s in shares:
        floor = total * credits[s.account.lower()] // big_c
        assert s.amount in (floor, floor + 1)
    items = list(credits.items())
    random.Random(seed).shuffle(items)
    assert epoch_amounts(dict(items), total) == shares
    mixed = {(a.upper().replace("0X", "0x") if k % 2 else a): c for k, (a, c) in enumerate(items)}
    assert epoch_amounts(mixed, total) == shares  # the spelling of an address does not matter


def test_a_document_is_the_same_for_any_credit_order() -> None:
    credits = {ADDRS[k]: k + 1 for k in range(8)}
    a = build_epoch_rewards(NODE, 3, credits, 10**18 + 7, funding="escrow", escrow=ESCROW)
    b = build_epoch_rewards(NODE, 3, dict(reversed(credits.items())), 10**18 + 7, funding="escrow", escrow=ESCROW)
    assert a.canonical_json() == b.canonical_json()
    assert EpochRewards.model_validate_json(a.canonical_json()) == a


def test_leaves_are_what_claim_epoch_hashes() -> None:
    """(funder, epoch, index, account, amount), double-hashed abi.encode; escrow rounds use the
    escrow as funder and keccak256(abi.encode(node, epoch)) as epoch."""
    doc = build_epoch_rewards(NODE, 3, {ADDRS[0]: 1, ADDRS[1]: 2}, 30, funding="escrow", escrow=ESCROW)
    round_id = int.from_bytes(keccak(encode(["address", "uint256"], [NODE, 3])), "big")
    assert doc.round_epoch == round_id == escrow_round_id(NODE, 3)
    assert doc.funder.lower() == ESCROW
    tree = StandardMerkleTree.load(doc.tree)
    assert tree.leaf_encoding == EPOCH_LEAF_ENCODING and "0x" + tree.root.hex() == doc.root
    for k, (funder, epoch, index, account, amount) in enumerate(tree.values()):
        assert (funder.lower(), epoch, index) == (ESCROW, round_id, k)
        leaf = keccak(keccak(encode(EPOCH_LEAF_ENCODING, [funder, epoch, index, account, amount])))
        assert process_proof(leaf, tree.proof(k)) == tree.root
    assert [v[4] for v in tree.values()] == [10, 20]
    sponsored = build_epoch_rewards(NODE, 3, {ADDRS[0]: 1}, 5, funding="sponsored")
    assert (sponsored.funder.lower(), sponsored.round_epoch) == (NODE, 3)
    # A job-round leaf of the same numbers is another hash (4 words, not 5).
    job_leaf = keccak(keccak(encode(["uint256", "uint256", "address", "uint256"], [3, 0, ADDRS[0], 5])))
    one_leaf = epoch_tree(NODE, 3, sponsored.amounts)  # one leaf: the root is the leaf
    assert one_leaf.root == bytes.fromhex(sponsored.root[2:]) != job_leaf
