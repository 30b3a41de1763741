"""RewardDistributor: Merkle claims, the claim window, sweeping, funding rounds, the fee split."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from web3.types import TxReceipt

from node.chain.deploy import OPEN
from node.chain.protocol import Protocol
from node.rewards.merkle import StandardMerkleTree
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import (
    CLAIM_WINDOW,
    REWARD_TYPES,
    JobSetup,
    claim_leaf,
    claimed_job,
    complete_job,
    contributors_share,
    events,
    finalize_job,
    frozen_clock,
    own_distributor,
    result_params,
    reverts,
    send,
    set_time,
    total_owed,
    treasury_address,
    view,
)

ROOT = b"\xab" * 32


@dataclass(frozen=True)
class Opened:
    """A completed job whose reward round is open."""

    job: JobSetup
    tree: StandardMerkleTree
    share: int  # the contributors' part of the pool
    amounts: list[int]

    @property
    def job_id(self) -> int:
        return self.job.job_id


def open_round(world: World, amounts: list[int] | None = None) -> Opened:
    """Completes a job whose tree gives contributor k leaf k (default: the share split 4 ways)."""
    job = claimed_job(world)
    share = contributors_share(job.params, 1)
    if amounts is None:
        amounts = [share // 2, share // 4, share // 8]
        amounts.append(share - sum(amounts))
    accounts = [c.address for c in world.contributors][: len(amounts)]
    _, tree = complete_job(world, job, list(zip(accounts, amounts, strict=True)))
    return Opened(job, tree, share, amounts)


def rewards_funder(world: World) -> str:
    """Every job's round is the ModelRegistry's: rounds are keyed by (funder, job id)."""
    return world.admin.models.address


def distributor_balance(world: World) -> int:
    return world.admin.balance(world.admin.rewards.address)


@pytest.fixture
def funder(world: World) -> Protocol:
    """The admin as the funder (as the ModelRegistry is) of a RewardDistributor of the test's own,
    to open rounds directly; every account of `world` uses that one."""
    return own_distributor(world.admin, world.node, world.outsider, world.relayer, world.poster, *world.contributors)


def open_direct(
    funder: Protocol,
    job_id: int,
    pool: int,
    *,
    root: bytes = ROOT,
    node_bps: int = 1_000,
    datanet_bps: int = 1_000,
    treasuries: int = 2,
) -> TxReceipt:
    fn = funder.rewards.functions.openRound(
        job_id,
        root,
        pool,
        treasury_address(500),
        node_bps,
        [treasury_address(501 + i) for i in range(treasuries)],
        datanet_bps,
        treasury_address(600),
    )
    return send(funder, fn)


# ------------------------------------------------------------------------- claims


def test_every_contributor_claims_with_a_real_proof(world: World) -> None:
    """Each leaf pays exactly its amount to its account; totals and totalOwed follow."""
    r = open_round(world)
    rewards = world.admin.rewards
    assert total_owed(world.admin) == r.share == distributor_balance(world)
    paid = 0
    for k, contributor in enumerate(world.contributors):
        receipt = claim_leaf(contributor, r.tree, k)
        assert events(rewards, receipt, "Claimed") == [
            {
                "funder": rewards_funder(world),
                "jobId": r.job_id,
                "index": k,
                "account": contributor.address,
                "amount": r.amounts[k],
            }
        ]
        paid += r.amounts[k]
        assert contributor.balance() == FUNDED + r.amounts[k]
        assert contributor.is_claimed(r.job_id, k)
        assert world.admin.reward_round(r.job_id).claimed == paid
        assert total_owed(world.admin) == r.share - paid == distributor_balance(world)
    assert paid == r.share


def test_a_third_party_claim_pays_the_account(world: World) -> None:
    """Anyone may send a claim; the tokens go to the leaf's account, not the sender."""
    r = open_round(world)
    relayer_before = world.relayer.balance()
    claim_leaf(world.relayer, r.tree, 1)
    assert world.contributors[1].balance() == FUNDED + r.amounts[1]
    assert world.relayer.balance() == relayer_before


def test_double_claim_is_refused(world: World) -> None:
    """A leaf pays once, whoever sends the second claim."""
    r = open_round(world)
    claim_leaf(world.contributors[0], r.tree, 0)
    for sender in (world.contributors[0], world.relayer):
        with reverts("RewardAlreadyClaimed", jobId=r.job_id, index=0):
            claim_leaf(sender, r.tree, 0)
    assert world.contributors[0].balance() == FUNDED + r.amounts[0]
    assert world.admin.reward_round(r.job_id).claimed == r.amounts[0]


def test_forged_claims_are_refused(world: World) -> None:
    """A proof only works for its own (job, index, account, amount): changing any is refused."""
    r = open_round(world)
    other = open_round(world)  # a second round, so a wrong-job claim hits a real root
    sender = world.relayer
    job_id, index, account, amount = r.tree.values()[0]
    proof = r.tree.proof(0)
    forgeries = [
        (job_id, index, account, amount + 1, proof),
        (job_id, index, account, amount - 1, proof),
        (job_id, index, world.contributors[1].address, amount, proof),
        (job_id, index + 1, account, amount, proof),
        (job_id, index, account, amount, r.tree.proof(1)),
        (job_id, index, account, amount, [bytes(32), *proof[1:]]),
        (job_id, index, account, amount, []),
        (other.job_id, index, account, amount, proof),
    ]
    for jid, idx, acct, amt, prf in forgeries:
        with reverts("RewardInvalidProof", jobId=jid, index=idx, account=acct, amount=amt):
            sender.claim_reward(jid, idx, acct, amt, prf)
    assert not sender.is_claimed(r.job_id, 0) and not sender.is_claimed(r.job_id, 1)
    assert world.admin.reward_round(r.job_id).claimed == 0
    assert total_owed(world.admin) == r.share + other.share


def test_claims_on_unknown_rounds_are_refused(world: World) -> None:
    """No round, no claim and no sweep; a posted-but-unfinished job has no round either."""
    job = claimed_job(world)
    for job_id in (job.job_id, 99):
        with reverts("RewardUnknownRound", jobId=job_id):
            world.relayer.claim_reward(job_id, 0, world.relayer.address, 0, [])
        with reverts("RewardUnknownRound", jobId=job_id):
            world.relayer.sweep(job_id)


def test_oversubscribed_tree_pays_first_come_until_the_share_is_gone(world: World) -> None:
    """Leaves summing to more than the share can never pay out more than the share."""
    job = claimed_job(world)
    share = contributors_share(job.params, 1)
    amounts = [share * 6 // 10, share * 6 // 10, share - share * 6 // 10]
    accounts = [c.address for c in world.contributors[:3]]
    _, tree = complete_job(world, job, list(zip(accounts, amounts, strict=True)))
    claim_leaf(world.relayer, tree, 0)
    with reverts("RewardExceedsPool", jobId=job.job_id, claimed=amounts[0], amount=amounts[1], total=share):
        claim_leaf(world.relayer, tree, 1)
    assert not world.relayer.is_claimed(job.job_id, 1)
    claim_leaf(world.relayer, tree, 2)  # exactly fills the share
    assert world.admin.reward_round(job.job_id).claimed == share
    assert total_owed(world.admin) == 0 == distributor_balance(world)


def test_claimed_bitmap_words_are_independent(world: World) -> None:
    """Indices in different bitmap words (and the top bit) are tracked separately."""
    job = claimed_job(world)
    indices = [0, 1, 255, 256, 511, 2**255, 2**256 - 1]
    account = world.contributors[0].address
    values = [(job.job_id, i, account, 1) for i in indices]
    tree = StandardMerkleTree.of(values, REWARD_TYPES)
    world.node.submit_result(job.job_id, result_params(tree.root))
    finalize_job(world, job.job_id)
    claimed: set[int] = set()
    for k in (3, 6, 0, 2, 5, 1, 4):  # an order that crosses words back and forth
        claim_leaf(world.relayer, tree, k)
        claimed.add(indices[k])
        for i in (*indices, 2, 257, 2**255 + 1):
            assert world.relayer.is_claimed(job.job_id, i) == (i in claimed), (k, i)
    assert world.contributors[0].balance() == FUNDED + len(indices)


# ------------------------------------------------------------------ window & sweep


def test_claim_window_and_sweep_boundary(world: World) -> None:
    """Claims work through claimDeadline; sweeping only after it; exactly one of them at a time."""
    r = open_round(world)
    deadline = world.admin.reward_round(r.job_id).claimDeadline
    assert deadline == world.now() + CLAIM_WINDOW
    assert view(world.admin, world.admin.rewards.functions.claimWindow()) == CLAIM_WINDOW
    with frozen_clock(world, deadline):
        with reverts("RewardClaimWindowOpen", jobId=r.job_id, claimDeadline=deadline):
            world.outsider.sweep(r.job_id)
        claim_leaf(world.relayer, r.tree, 0)
        set_time(world, deadline + 1)
        with reverts("RewardClaimWindowClosed", jobId=r.job_id, claimDeadline=deadline):
            claim_leaf(world.relayer, r.tree, 1)
        world.outsider.sweep(r.job_id)
    assert world.contributors[0].balance() == FUNDED + r.amounts[0]


def test_sweep_returns_the_remainder_to_the_poster_once(world: World) -> None:
    """After the window, anyone may sweep; the unclaimed rest goes to the poster, once."""
    r = open_round(world)
    poster_before = world.poster.balance()
    claim_leaf(world.relayer, r.tree, 0)
    claim_leaf(world.relayer, r.tree, 2)
    world.advance(CLAIM_WINDOW + 1)
    receipt = world.outsider.sweep(r.job_id)
    remainder = r.amounts[1] + r.amounts[3]
    assert events(world.admin.rewards, receipt, "Swept") == [
        {"funder": rewards_funder(world), "jobId": r.job_id, "refundTo": world.poster.address, "amount": remainder}
    ]
    assert world.poster.balance() == poster_before + remainder
    rnd = world.admin.reward_round(r.job_id)
    assert rnd.swept and rnd.claimed == r.amounts[0] + r.amounts[2]
    assert total_owed(world.admin) == 0 == distributor_balance(world)
    with reverts("RewardAlreadySwept", jobId=r.job_id):
        world.poster.sweep(r.job_id)
    with reverts("RewardClaimWindowClosed"):
        claim_leaf(world.relayer, r.tree, 1)


def test_sweep_of_a_fully_claimed_round_moves_nothing(world: World) -> None:
    """Sweeping a round with nothing left marks it swept and transfers nothing."""
    r = open_round(world)
    for k in range(4):
        claim_leaf(world.relayer, r.tree, k)
    world.advance(CLAIM_WINDOW + 1)
    receipt = world.outsider.sweep(r.job_id)
    assert events(world.admin.rewards, receipt, "Swept")[0]["amount"] == 0
    assert events(world.admin.token, receipt, "Transfer") == []
    assert world.admin.reward_round(r.job_id).swept


def test_rounds_are_isolated(world: World) -> None:
    """The same leaf index in two rounds is claimed independently; totalOwed is their sum."""
    a, b = open_round(world), open_round(world)
    assert total_owed(world.admin) == a.share + b.share == distributor_balance(world)
    claim_leaf(world.relayer, a.tree, 0)
    assert not world.relayer.is_claimed(b.job_id, 0)
    claim_leaf(world.relayer, b.tree, 0)
    world.advance(CLAIM_WINDOW + 1)
    world.outsider.sweep(a.job_id)
    owed_b = b.share - b.amounts[0]
    assert total_owed(world.admin) == owed_b == distributor_balance(world)
    assert world.admin.reward_round(b.job_id).swept is False
    assert world.admin.reward_round(b.job_id).claimed == b.amounts[0]


# ----------------------------------------------------------------------- funding


def test_only_the_registry_opens_rounds(world: World) -> None:
    """The funder is the ModelRegistry, wired once at deployment: the deployer, a node or anyone
    else can neither open a round nor re-wire the funder."""
    models = world.admin.models.address
    assert view(world.admin, world.admin.rewards.functions.funder()) == models
    for who in (world.admin, world.outsider, world.node):
        with reverts("RewardNotFunder", caller=who.address):
            open_direct(who, 1_000, OPEN)
    with reverts("RewardFunderSet", funder=models):
        send(world.admin, world.admin.rewards.functions.setFunder(world.admin.address))
    with reverts("RewardNotFunder", caller=world.outsider.address):
        send(world.outsider, world.outsider.rewards.functions.setFunder(world.outsider.address))


def test_open_round_pulls_its_pool_from_the_funder(world: World, funder: Protocol) -> None:
    """A round is funded by construction: openRound pulls exactly the pool from the funder, so
    neither tokens owed to earlier rounds nor tokens sent to the contract directly can fund it."""
    funder.approve(funder.rewards.address, 10 * OPEN)
    open_direct(funder, 999, 10 * OPEN)  # an earlier round: its 8 OPEN are owed, not spare
    earlier = funder.reward_round(999, funder=funder.address).total
    with reverts("ERC20InsufficientAllowance", spender=funder.rewards.address, allowance=0, needed=5 * OPEN):
        open_direct(funder, 1_000, 5 * OPEN)
    funder.transfer(funder.rewards.address, 5 * OPEN)  # a stray transfer is not funding
    funder.approve(funder.rewards.address, 5 * OPEN - 1)
    with reverts("ERC20InsufficientAllowance", allowance=5 * OPEN - 1, needed=5 * OPEN):
        open_direct(funder, 1_000, 5 * OPEN)
    funder.approve(funder.rewards.address, 5 * OPEN)
    before = funder.balance()
    open_direct(funder, 1_000, 5 * OPEN)
    assert funder.balance() == before - 5 * OPEN  # fees went to other addresses
    assert total_owed(funder) == earlier + 4 * OPEN
    assert distributor_balance(world) == total_owed(funder) + 5 * OPEN  # + the stray transfer


def test_open_round_refuses_a_pool_beyond_uint96(world: World, funder: Protocol) -> None:
    """Round amounts are packed as uint96; a larger pool is refused instead of truncated."""
    with reverts("RewardPoolTooLarge", pool=2**96):
        open_direct(funder, 1_000, 2**96)


def test_open_round_pays_fees_and_records_the_round(world: World, funder: Protocol) -> None:
    """A funded round pays the node and each treasury at once and owes the rest under root."""
    pool = 10 * OPEN + 3
    funder.approve(funder.rewards.address, pool)
    receipt = open_direct(funder, 1_000, pool, node_bps=1_500, datanet_bps=2_000, treasuries=3)
    node_fee, each = pool * 1_500 // 10_000, pool * 2_000 // 10_000 // 3
    share = pool - node_fee - 3 * each
    deadline = world.now() + CLAIM_WINDOW
    rewards = funder.rewards
    assert events(rewards, receipt, "RoundOpened") == [
        {
            "funder": funder.address,
            "jobId": 1_000,
            "root": ROOT,
            "contributorsTotal": share,
            "nodeFee": node_fee,
            "datanetFees": 3 * each,
            "claimDeadline": deadline,
        }
    ]
    assert [(e["recipient"], e["amount"], e["toNode"]) for e in events(rewards, receipt, "FeePaid")] == [
        (treasury_address(500), node_fee, True),
        *[(treasury_address(501 + i), each, False) for i in range(3)],
    ]
    rnd = funder.reward_round(1_000, funder=funder.address)
    assert rnd.model_dump() == {
        "root": ROOT,
        "total": share,
        "claimed": 0,
        "claimDeadline": deadline,
        "swept": False,
        "refundTo": treasury_address(600),
    }
    assert total_owed(funder) == share == distributor_balance(world)


def test_open_round_with_zero_fees_pays_no_fee_events(world: World, funder: Protocol) -> None:
    """Zero fees emit no FeePaid and move no tokens; the whole pool is owed to contributors."""
    funder.approve(funder.rewards.address, 7)
    receipt = open_direct(funder, 1_001, 7, node_bps=0, datanet_bps=0)
    assert events(funder.rewards, receipt, "FeePaid") == []
    # The only token movement is the pool coming in.
    assert events(funder.token, receipt, "Transfer") == [
        {"from": funder.address, "to": funder.rewards.address, "value": 7}
    ]
    assert funder.reward_round(1_001, funder=funder.address).total == 7


def test_open_round_validation(world: World, funder: Protocol) -> None:
    """Existing rounds, a zero root, an empty pool, fees above 100% and no treasuries are refused."""
    funder.approve(funder.rewards.address, 3 * OPEN)
    with reverts("RewardZeroPool"):
        open_direct(funder, 1_000, 0)
    with reverts("RewardZeroRoot"):
        open_direct(funder, 1_000, OPEN, root=bytes(32))
    with reverts("RewardInvalidFees", nodeFeeBps=6_000, datanetFeeBps=4_001):
        open_direct(funder, 1_000, OPEN, node_bps=6_000, datanet_bps=4_001)
    with reverts("RewardNoDatanets"):
        open_direct(funder, 1_000, OPEN, treasuries=0)
    open_direct(funder, 1_000, OPEN, node_bps=6_000, datanet_bps=4_000)  # 100% is allowed
    assert funder.reward_round(1_000, funder=funder.address).total == 0
    with reverts("RewardRoundExists", funder=funder.address, jobId=1_000):
        open_direct(funder, 1_000, OPEN)


def test_no_one_can_take_a_job_id_of_the_registry(world: World) -> None:
    """M-5: rounds were keyed by job id alone, so any other funder (the admin could grant the
    role) could open round N for a future job first (a pool of 0 was accepted), and the
    registry's submitResult for job N then reverted RewardRoundExists until the honest node was
    slashed at expiry. Now the registry is the only funder, wired once, rounds are keyed by
    (funder, job id) and an empty pool is refused: the squat fails and the job completes."""
    job = claimed_job(world)
    for squatter in (world.admin, world.outsider):
        squatter.approve(squatter.rewards.address, 1)
        with reverts("RewardNotFunder", caller=squatter.address):
            open_direct(squatter, job.job_id, 1)
    _, tree = complete_job(world, job, [(world.contributors[0].address, contributors_share(job.params, 1))])
    assert world.admin.reward_round(job.job_id).root == tree.root
    claim_leaf(world.relayer, tree, 0)
    assert world.contributors[0].balance() == FUNDED + contributors_share(job.params, 1)


SPLITS = [
    # (pool, nodeBps, datanetBps, datanets) -> (nodeFee, datanetFeeEach, contributors)
    ((10_000, 1_000, 1_000, 1), (1_000, 1_000, 8_000)),
    ((10_001, 1_000, 1_000, 3), (1_000, 333, 8_002)),
    ((1, 5_000, 5_000, 2), (0, 0, 1)),
    ((99, 0, 10_000, 16), (0, 6, 3)),
    ((10**27, 10_000, 0, 1), (10**27, 0, 0)),
    ((123_456_789, 2_500, 2_500, 7), (30_864_197, 4_409_171, 61_728_395)),
    ((5 * OPEN, 1_000, 1_000, 0), (OPEN // 2, 0, 5 * OPEN - OPEN // 2)),
]


def test_split_pool_adds_up_exactly(world: World) -> None:
    """splitPool floors each fee and leaves the dust to contributors: the parts sum to pool."""
    fn = world.admin.rewards.functions.splitPool
    for (pool, node_bps, datanet_bps, n), expected in SPLITS:
        split = view(world.admin, fn(pool, node_bps, datanet_bps, n))
        got = (split.nodeFee, split.datanetFeeEach, split.contributors)
        assert got == expected, (pool, node_bps, datanet_bps, n)
        assert got[0] + got[1] * n + got[2] == pool
