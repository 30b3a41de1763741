"""RewardDistributor epoch rounds (inference rewards): permissionless, keyed by (funder, epoch),
funded in the opening call; claims, the window, the sweep back to the funder, and no replay of
proofs between job rounds and epoch rounds."""

from __future__ import annotations

from dataclasses import dataclass

from web3.types import TxReceipt

from node.chain import inference
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.protocol import Protocol
from node.rewards.epochs import epoch_tree
from node.rewards.merkle import StandardMerkleTree
from node.rewards.shares import Share
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import (
    CLAIM_WINDOW,
    claim_leaf,
    claimed_job,
    complete_job,
    contributors_share,
    events,
    finalize_job,
    frozen_clock,
    result_params,
    reverts,
    send,
    set_time,
    total_owed,
    view,
)

CID = "bafkreiepochtree"


def fresh(i: int) -> str:
    """Dev accounts 10..19: ETH for gas but no OPEN, so a balance is exactly what was claimed."""
    return dev_account(10 + i).address


@dataclass(frozen=True)
class Epoch:
    funder: Protocol
    epoch: int
    tree: StandardMerkleTree
    amounts: list[int]
    total: int


def open_epoch(funder: Protocol, epoch: int, amounts: list[int], total: int | None = None) -> Epoch:
    """`funder` opens its round `epoch` paying `total` (default: the leaves' sum); leaf k pays fresh(k)."""
    shares = [Share(account=fresh(k), amount=a) for k, a in enumerate(amounts)]
    tree = epoch_tree(funder.address, epoch, shares)
    total = sum(amounts) if total is None else total
    inference.open_epoch_round(funder, epoch, tree.root, total, CID)
    return Epoch(funder, epoch, tree, amounts, total)


def claim(sender: Protocol, e: Epoch, k: int) -> TxReceipt:
    funder, epoch, index, account, amount = e.tree.values()[k]
    return inference.claim_epoch(sender, funder, epoch, index, account, amount, e.tree.proof(k))


def distributor_balance(world: World) -> int:
    return world.admin.balance(world.admin.rewards.address)


def epoch_owed(p: Protocol) -> int:
    """What the distributor owes over every unswept epoch round (from EpochRoundOpened logs)."""
    owed = 0
    for opened in inference.epoch_rounds(p, from_block=0):
        r = inference.epoch_round(p, opened.funder, opened.epoch)
        owed += 0 if r.swept else r.total - r.claimed
    return owed


# --------------------------------------------------------------------- opening


def test_anyone_opens_a_funded_epoch_round_and_contributors_claim(world: World) -> None:
    """No role: a node opens its round, the amount is pulled in the same call, every leaf pays."""
    node = world.node
    before = node.balance()
    e = open_epoch(node, 7, [3 * OPEN, 2 * OPEN, 5])
    receipt = node.client.w3.eth.get_transaction_receipt(node.client.last_tx)
    deadline = world.now() + CLAIM_WINDOW
    assert events(node.rewards, receipt, "EpochRoundOpened") == [
        {
            "funder": node.address,
            "epoch": 7,
            "root": e.tree.root,
            "amount": e.total,
            "claimDeadline": deadline,
            "treeCID": CID,
        }
    ]
    assert node.balance() == before - e.total
    assert inference.epoch_round(node, node.address, 7).model_dump() == {
        "root": e.tree.root,
        "total": e.total,
        "claimed": 0,
        "claimDeadline": deadline,
        "swept": False,
    }
    assert [r.epoch for r in inference.epoch_rounds(node)] == [7]
    for k, amount in enumerate(e.amounts):
        receipt = claim(world.relayer, e, k)  # anyone sends it; the leaf's account is paid
        assert events(node.rewards, receipt, "EpochClaimed") == [
            {"funder": node.address, "epoch": 7, "index": k, "account": fresh(k), "amount": amount}
        ]
        assert world.admin.balance(fresh(k)) == amount
        assert inference.is_epoch_claimed(world.outsider, node.address, 7, k)
    assert inference.epoch_round(node, node.address, 7).claimed == e.total
    assert distributor_balance(world) == 0


def test_rounds_are_keyed_by_funder_and_epoch(world: World) -> None:
    """Two funders use the same epoch number independently; a funder opens each epoch once; an
    outsider cannot take another funder's epoch (it can only open its own)."""
    a = open_epoch(world.node, 1, [OPEN])
    b = open_epoch(world.poster, 1, [2 * OPEN])
    assert inference.epoch_round(world.admin, world.node.address, 1).total == OPEN
    assert inference.epoch_round(world.admin, world.poster.address, 1).total == 2 * OPEN
    with reverts("RewardEpochRoundExists", funder=world.node.address, epoch=1):
        open_epoch(world.node, 1, [OPEN])
    claim(world.relayer, a, 0)
    assert not inference.is_epoch_claimed(world.admin, world.poster.address, 1, 0)
    claim(world.relayer, b, 0)
    assert world.admin.balance(fresh(0)) == 3 * OPEN


def test_open_epoch_round_validation(world: World) -> None:
    node = world.node
    tree = epoch_tree(node.address, 1, [Share(account=fresh(0), amount=1)])
    fn = node.rewards.functions.openEpochRound
    with reverts("RewardZeroRoot"):
        send(node, fn(1, bytes(32), 1, CID))
    with reverts("RewardZeroPool"):
        send(node, fn(1, tree.root, 0, CID))
    with reverts("RewardPoolTooLarge", pool=2**96):
        send(node, fn(1, tree.root, 2**96, CID))
    with reverts("ERC20InsufficientAllowance", spender=node.rewards.address, allowance=0, needed=1):
        send(node, fn(1, tree.root, 1, CID))  # funded in the same call, or not at all
    outsider = world.outsider  # holds no OPEN
    outsider.approve(outsider.rewards.address, 1)
    with reverts("ERC20InsufficientBalance", sender=outsider.address, balance=0, needed=1):
        send(outsider, fn(1, tree.root, 1, CID))
    assert inference.epoch_round(world.admin, node.address, 1).root == bytes(32)


# ----------------------------------------------------------------------- claims


def test_double_claims_forgeries_and_unknown_rounds_are_refused(world: World) -> None:
    e = open_epoch(world.node, 3, [OPEN, 2 * OPEN])
    f = world.node.address
    claim(world.relayer, e, 0)
    with reverts("RewardEpochAlreadyClaimed", funder=f, epoch=3, index=0):
        claim(world.outsider, e, 0)
    _, epoch, index, account, amount = e.tree.values()[1]
    proof = e.tree.proof(1)
    forgeries = [
        (f, epoch, index, account, amount + 1, proof),
        (f, epoch, index, fresh(0), amount, proof),
        (f, epoch, index + 1, account, amount, proof),
        (f, epoch, index, account, amount, []),
    ]
    for funder, ep, idx, acct, amt, prf in forgeries:
        with reverts("RewardInvalidEpochProof", funder=funder, epoch=ep, index=idx, account=acct, amount=amt):
            inference.claim_epoch(world.relayer, funder, ep, idx, acct, amt, prf)
    for funder, ep in ((f, 4), (world.poster.address, 3)):  # another epoch, another funder: no round
        with reverts("RewardUnknownEpochRound", funder=funder, epoch=ep):
            inference.claim_epoch(world.relayer, funder, ep, index, account, amount, proof)
        with reverts("RewardUnknownEpochRound", funder=funder, epoch=ep):
            inference.sweep_epoch(world.relayer, funder, ep)
    assert inference.epoch_round(world.admin, f, 3).claimed == OPEN


def test_a_round_never_pays_more_than_its_funder_paid(world: World) -> None:
    """Leaves summing past the funded amount pay first come until the amount is gone."""
    e = open_epoch(world.node, 5, [6 * OPEN, 6 * OPEN, 4 * OPEN], total=10 * OPEN)
    claim(world.relayer, e, 0)
    with reverts(
        "RewardEpochExceedsFunding",
        funder=world.node.address,
        epoch=5,
        claimed=6 * OPEN,
        amount=6 * OPEN,
        total=10 * OPEN,
    ):
        claim(world.relayer, e, 1)
    claim(world.relayer, e, 2)  # exactly fills it
    assert inference.epoch_round(world.admin, world.node.address, 5).claimed == 10 * OPEN
    assert distributor_balance(world) == 0


def test_a_job_round_proof_is_not_accepted_by_an_epoch_round(world: World) -> None:
    """Replay across kinds: a funder opens an epoch round under a finished job's own root (roots
    are public); the job's leaves and proofs still fail there (a job leaf is 4 words, an epoch leaf
    5), and the job round is untouched."""
    job = claimed_job(world)
    share = contributors_share(job.params, 1)
    shares = [(world.contributors[0].address, share // 2), (world.contributors[1].address, share - share // 2)]
    _, job_tree = complete_job(world, job, shares)
    world.node.approve(world.node.rewards.address, share)
    send(world.node, world.node.rewards.functions.openEpochRound(job.job_id, job_tree.root, share, CID))
    for k in range(2):
        job_id, index, account, amount = job_tree.values()[k]
        with reverts("RewardInvalidEpochProof", funder=world.node.address, epoch=job_id, index=index):
            inference.claim_epoch(world.relayer, world.node.address, job_id, index, account, amount, job_tree.proof(k))
    # The job round itself still pays, once.
    claim_leaf(world.relayer, job_tree, 0)
    assert world.contributors[0].balance() == FUNDED + share // 2
    assert not inference.is_epoch_claimed(world.admin, world.node.address, job.job_id, 0)


def test_an_epoch_round_proof_is_not_accepted_by_a_job_round(world: World) -> None:
    """And the other way: a job whose attribution root is an epoch tree's root pays no epoch leaf."""
    job = claimed_job(world)
    e_tree = epoch_tree(world.node.address, job.job_id, [Share(account=fresh(0), amount=OPEN)])
    world.node.submit_result(job.job_id, result_params(e_tree.root))
    finalize_job(world, job.job_id)
    _, epoch, index, account, amount = e_tree.values()[0]
    with reverts("RewardInvalidProof"):
        world.relayer.claim_reward(epoch, index, account, amount, e_tree.proof(0))
    assert world.admin.balance(fresh(0)) == 0


# --------------------------------------------------------------- window & sweep


def test_claim_window_and_sweep_back_to_the_funder(world: World) -> None:
    """Claims through the deadline, a sweep only after it, to the funder, once; nothing after."""
    node = world.node
    e = open_epoch(node, 9, [OPEN, 2 * OPEN, 3 * OPEN])
    deadline = inference.epoch_round(node, node.address, 9).claimDeadline
    with frozen_clock(world, deadline):
        with reverts("RewardEpochClaimWindowOpen", funder=node.address, epoch=9, claimDeadline=deadline):
            inference.sweep_epoch(world.outsider, node.address, 9)
        claim(world.relayer, e, 0)
        set_time(world, deadline + 1)
        with reverts("RewardEpochClaimWindowClosed", funder=node.address, epoch=9, claimDeadline=deadline):
            claim(world.relayer, e, 1)
        before = node.balance()
        receipt = inference.sweep_epoch(world.outsider, node.address, 9)
    assert events(node.rewards, receipt, "EpochSwept") == [{"funder": node.address, "epoch": 9, "amount": 5 * OPEN}]
    assert node.balance() == before + 5 * OPEN
    assert inference.epoch_round(node, node.address, 9).swept
    with reverts("RewardEpochAlreadySwept", funder=node.address, epoch=9):
        inference.sweep_epoch(world.outsider, node.address, 9)
    assert distributor_balance(world) == 0


def test_job_and_epoch_rounds_share_the_balance_without_touching_each_other(world: World) -> None:
    """The distributor holds exactly what both kinds owe; sweeping one kind moves nothing of the other."""
    job = claimed_job(world)
    share = contributors_share(job.params, 1)
    complete_job(world, job, [(world.contributors[0].address, share)])
    e = open_epoch(world.node, job.job_id, [OPEN, OPEN])  # the same number as the job id
    assert distributor_balance(world) == total_owed(world.admin) + epoch_owed(world.admin) == share + 2 * OPEN
    claim(world.relayer, e, 0)
    world.advance(CLAIM_WINDOW + 1)
    inference.sweep_epoch(world.outsider, world.node.address, job.job_id)
    assert world.admin.reward_round(job.job_id).claimed == 0 and not world.admin.reward_round(job.job_id).swept
    assert distributor_balance(world) == total_owed(world.admin) == share
    assert epoch_owed(world.admin) == 0
    assert view(world.admin, world.admin.rewards.functions.funder()) == world.admin.models.address
