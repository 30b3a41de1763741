"""InferenceEscrow: payers prepay OPEN per node, the node settles an epoch by charging them and
funding its epoch round in the same call, payers withdraw after a delay, and what contributors do
not claim comes back to the payers. Ends with a hypothesis property over random scenarios."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from node.chain import inference
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN, DeployConfig
from node.chain.inference import Charge
from node.chain.protocol import Protocol
from node.errors import DeploymentError
from node.rewards.epochs import epoch_tree
from node.rewards.merkle import StandardMerkleTree
from node.rewards.shares import Share
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import CLAIM_WINDOW, events, frozen_clock, reverts, send, set_time, view
from tests.contracts.test_protocol_properties import CHAIN_EXAMPLES, isolated, outcome

CID = "bafkreiescrowtree"
DELAY = DeployConfig().escrow_withdraw_delay


def fresh(i: int) -> str:
    """Dev accounts 10..19: no OPEN, so a balance is exactly what was claimed."""
    return dev_account(10 + i).address


def escrow_balance(world: World) -> int:
    return world.admin.balance(world.admin.escrow.address)


def settle(
    node: Protocol, epoch: int, charges: list[tuple[Protocol, int]], leaves: list[int] | None = None
) -> tuple[inference.Settlement, StandardMerkleTree]:
    """`node` settles `epoch` charging `charges`; the tree pays fresh(k) leaves[k] (default: one
    leaf of the whole total). Returns (settlement, tree)."""
    total = sum(a for _, a in charges)
    amounts = [total] if leaves is None else leaves
    round_id = inference.escrow_round_id(node.address, epoch)
    tree = epoch_tree(node.escrow.address, round_id, [Share(account=fresh(k), amount=a) for k, a in enumerate(amounts)])
    rows = [Charge(payer=p.address, amount=a) for p, a in charges]
    return inference.settle(node, epoch, tree.root, rows, CID), tree


def claim(sender: Protocol, tree: StandardMerkleTree, k: int) -> None:
    funder, epoch, index, account, amount = tree.values()[k]
    inference.claim_epoch(sender, funder, epoch, index, account, amount, tree.proof(k))


# ------------------------------------------------------------------- deposits


def test_deployment_wires_the_escrow(world: World) -> None:
    e = world.admin.escrow
    assert view(world.admin, e.functions.rewards()) == world.admin.rewards.address
    assert view(world.admin, e.functions.token()) == world.admin.token.address
    assert inference.withdraw_delay(world.admin) == DELAY


def test_a_deployment_file_without_the_escrow_loads_and_says_to_redeploy(world: World) -> None:
    old = world.deployment.model_copy(
        update={"contracts": {k: v for k, v in world.deployment.contracts.items() if k != "InferenceEscrow"}}
    )
    p = Protocol(world.admin.client, old)
    assert p.rewards.address == world.admin.rewards.address
    with pytest.raises(DeploymentError, match=r"no InferenceEscrow contract .*inference fee escrow.*datanet deploy"):
        _ = p.escrow


def test_deposit_per_node(world: World) -> None:
    payer, node = world.poster, world.node
    before = payer.balance()
    receipt = inference.deposit(payer, node.address, 5 * OPEN)
    assert events(payer.escrow, receipt, "Deposited") == [
        {"payer": payer.address, "node": node.address, "amount": 5 * OPEN, "balance": 5 * OPEN}
    ]
    inference.deposit(payer, node.address, OPEN)
    assert inference.escrow_account(payer, node.address).model_dump() == {
        "balance": 6 * OPEN,
        "requested": 0,
        "readyAt": 0,
    }
    assert inference.escrow_account(payer, world.relayer.address).balance == 0  # per node
    assert payer.balance() == before - 6 * OPEN == FUNDED - 6 * OPEN
    assert escrow_balance(world) == 6 * OPEN
    with reverts("EscrowZeroAmount"):
        inference.deposit(payer, node.address, 0)
    with reverts("EscrowZeroNode"):
        send(payer, payer.escrow.functions.deposit("0x" + "00" * 20, 1))
    with reverts("ERC20InsufficientBalance"):
        inference.deposit(world.outsider, node.address, 1)  # holds no OPEN


# -------------------------------------------------------------------- settle


def test_settle_charges_payers_and_funds_the_round_in_one_call(world: World) -> None:
    """The node takes nothing: the sum charged goes from the escrow into the epoch round."""
    node, alice, bob = world.node, world.poster, world.relayer
    inference.deposit(alice, node.address, 10 * OPEN)
    inference.deposit(bob, node.address, 4 * OPEN)
    node_before = node.balance()
    s, tree = settle(node, 1, [(alice, 3 * OPEN), (bob, 4 * OPEN)], leaves=[5 * OPEN, 2 * OPEN])
    receipt = node.client.w3.eth.get_transaction_receipt(s.tx)
    round_id = inference.escrow_round_id(node.address, 1)
    assert s.round_id == round_id == view(node, node.escrow.functions.roundIdOf(node.address, 1))
    assert s.total == 7 * OPEN
    assert events(node.escrow, receipt, "Charged") == [
        {"node": node.address, "epoch": 1, "payer": alice.address, "amount": 3 * OPEN, "balance": 7 * OPEN},
        {"node": node.address, "epoch": 1, "payer": bob.address, "amount": 4 * OPEN, "balance": 0},
    ]
    assert events(node.escrow, receipt, "Settled") == [
        {
            "node": node.address,
            "epoch": 1,
            "roundId": round_id,
            "root": tree.root,
            "total": 7 * OPEN,
            "payers": 2,
            "treeCID": CID,
        }
    ]
    [opened] = events(node.rewards, receipt, "EpochRoundOpened")
    assert (opened["funder"], opened["epoch"], opened["amount"]) == (node.escrow.address, round_id, 7 * OPEN)
    assert node.balance() == node_before  # fees never pass through the node's wallet
    assert escrow_balance(world) == 7 * OPEN  # alice's rest
    assert inference.settled_charges(world.outsider, node.address, 1) == [
        Charge(payer=alice.address, amount=3 * OPEN),
        Charge(payer=bob.address, amount=4 * OPEN),
    ]
    claim(world.outsider, tree, 0)
    claim(world.outsider, tree, 1)
    assert (world.admin.balance(fresh(0)), world.admin.balance(fresh(1))) == (5 * OPEN, 2 * OPEN)


def test_a_node_cannot_charge_more_than_deposited(world: World) -> None:
    """A charge above the payer's balance for this node reverts the whole settlement, also when
    the payer appears twice, or holds funds for another node only."""
    node, alice = world.node, world.poster
    inference.deposit(alice, node.address, 5 * OPEN)
    inference.deposit(world.relayer, world.curator.address, 5 * OPEN)  # for another node
    with reverts(
        "EscrowInsufficientBalance", payer=alice.address, node=node.address, balance=5 * OPEN, amount=5 * OPEN + 1
    ):
        settle(node, 1, [(alice, 5 * OPEN + 1)])
    with reverts("EscrowInsufficientBalance", payer=alice.address, balance=2 * OPEN, amount=3 * OPEN):
        settle(node, 1, [(alice, 3 * OPEN), (alice, 3 * OPEN)])
    with reverts("EscrowInsufficientBalance", payer=world.relayer.address, balance=0, amount=1):
        settle(node, 1, [(world.relayer, 1)])
    assert inference.escrow_account(alice, node.address).balance == 5 * OPEN
    settle(node, 1, [(alice, 2 * OPEN), (alice, 3 * OPEN)])  # exactly everything
    assert inference.escrow_account(alice, node.address).balance == 0


def test_an_epoch_settles_once_per_node_and_nodes_do_not_collide(world: World) -> None:
    node, other, alice = world.node, world.curator, world.poster
    inference.deposit(alice, node.address, 5 * OPEN)
    inference.deposit(alice, other.address, 5 * OPEN)
    settle(node, 1, [(alice, OPEN)])
    with reverts("EscrowEpochSettled", node=node.address, epoch=1):
        settle(node, 1, [(alice, OPEN)])
    settle(other, 1, [(alice, 2 * OPEN)])  # the same epoch number, another node: another round
    e = node.escrow.address
    assert inference.epoch_round(world.admin, e, inference.escrow_round_id(node.address, 1)).total == OPEN
    assert inference.epoch_round(world.admin, e, inference.escrow_round_id(other.address, 1)).total == 2 * OPEN
    assert inference.escrow_account(alice, node.address).balance == 4 * OPEN
    assert inference.escrow_account(alice, other.address).balance == 3 * OPEN


def test_settlements_that_charge_nothing_are_refused(world: World) -> None:
    inference.deposit(world.poster, world.node.address, OPEN)
    with reverts("EscrowNothingCharged", node=world.node.address, epoch=1):
        settle(world.node, 1, [], leaves=[1])
    with reverts("EscrowNothingCharged"):
        settle(world.node, 1, [(world.poster, 0)], leaves=[1])
    with reverts("RewardZeroRoot"):
        fn = world.node.escrow.functions.settle(1, bytes(32), [(world.poster.address, 1)], CID)
        send(world.node, fn)
    assert inference.escrow_account(world.poster, world.node.address).balance == OPEN  # all rolled back


# ------------------------------------------------------------------ withdrawals


def test_withdraw_waits_for_the_delay_and_charges_still_apply_meanwhile(world: World) -> None:
    node, alice = world.node, world.poster
    inference.deposit(alice, node.address, 10 * OPEN)
    with reverts("EscrowNoWithdrawRequest", payer=alice.address, node=node.address):
        inference.withdraw(alice, node.address)
    with reverts("EscrowInsufficientBalance", balance=10 * OPEN, amount=10 * OPEN + 1):
        inference.request_withdraw(alice, node.address, 10 * OPEN + 1)
    with reverts("EscrowZeroAmount"):
        inference.request_withdraw(alice, node.address, 0)
    with frozen_clock(world, world.now() + 10):
        receipt = inference.request_withdraw(alice, node.address, 8 * OPEN)
        ready = world.now() + DELAY
        assert events(alice.escrow, receipt, "WithdrawRequested") == [
            {"payer": alice.address, "node": node.address, "amount": 8 * OPEN, "readyAt": ready}
        ]
        settle(node, 1, [(alice, 3 * OPEN)])  # usage served before the request is still charged
        set_time(world, ready - 1)
        with reverts("EscrowWithdrawNotReady", payer=alice.address, node=node.address, readyAt=ready):
            inference.withdraw(alice, node.address)
        set_time(world, ready)
        before = alice.balance()
        receipt = inference.withdraw(alice, node.address)
    # 8 requested, but only 7 left after the charge: the withdrawal takes what is there.
    assert events(alice.escrow, receipt, "Withdrawn") == [
        {"payer": alice.address, "node": node.address, "amount": 7 * OPEN, "balance": 0}
    ]
    assert alice.balance() == before + 7 * OPEN
    assert inference.escrow_account(alice, node.address).model_dump() == {"balance": 0, "requested": 0, "readyAt": 0}
    with reverts("EscrowNoWithdrawRequest"):
        inference.withdraw(alice, node.address)


def test_a_new_request_replaces_the_old_one(world: World) -> None:
    node, alice = world.node, world.poster
    inference.deposit(alice, node.address, 10 * OPEN)
    inference.request_withdraw(alice, node.address, 2 * OPEN)
    world.advance(DELAY)
    inference.request_withdraw(alice, node.address, 3 * OPEN)  # restarts the wait
    with reverts("EscrowWithdrawNotReady"):
        inference.withdraw(alice, node.address)
    world.advance(DELAY)
    inference.withdraw(alice, node.address)
    assert inference.escrow_account(alice, node.address).balance == 7 * OPEN
    with reverts("EscrowNoWithdrawRequest"):  # the node cannot withdraw a payer's funds either
        inference.withdraw(node, node.address)


# --------------------------------------------------------- unclaimed remainder


def test_unclaimed_rewards_come_back_to_the_payers_pro_rata(world: World) -> None:
    node, alice, bob = world.node, world.poster, world.relayer
    inference.deposit(alice, node.address, 10 * OPEN)
    inference.deposit(bob, node.address, 10 * OPEN)
    charges = [(alice, 2 * OPEN), (bob, OPEN + 1)]
    _, tree = settle(node, 4, charges, leaves=[OPEN, 2 * OPEN + 1])
    claim(world.outsider, tree, 0)  # 1 OPEN claimed; 2 OPEN + 1 left unclaimed
    rows = inference.settled_charges(world.outsider, node.address, 4)
    with reverts("EscrowClaimWindowOpen", node=node.address, epoch=4):
        inference.refund_unclaimed(world.outsider, node.address, 4, rows)
    with reverts("EscrowUnknownSettlement", node=node.address, epoch=5):
        inference.refund_unclaimed(world.outsider, node.address, 5, rows)
    world.advance(CLAIM_WINDOW + 1)
    with reverts("EscrowWrongCharges", node=node.address, epoch=4):
        inference.refund_unclaimed(world.outsider, node.address, 4, [Charge(payer=alice.address, amount=3 * OPEN)])
    receipt = inference.refund_unclaimed(world.outsider, node.address, 4)  # charges read from the logs
    remainder, charged = 2 * OPEN + 1, 3 * OPEN + 1
    alice_share = remainder * 2 * OPEN // charged
    assert events(node.escrow, receipt, "Refunded") == [
        {"node": node.address, "epoch": 4, "payer": alice.address, "amount": alice_share},
        {"node": node.address, "epoch": 4, "payer": bob.address, "amount": remainder - alice_share},
    ]
    assert inference.escrow_account(alice, node.address).balance == 8 * OPEN + alice_share
    assert inference.escrow_account(bob, node.address).balance == 9 * OPEN - 1 + remainder - alice_share
    assert escrow_balance(world) == 19 * OPEN  # all deposits but the 1 OPEN claimed: payers' balances again
    assert world.admin.balance(world.admin.rewards.address) == 0
    with reverts("EscrowAlreadyRefunded", node=node.address, epoch=4):
        inference.refund_unclaimed(world.outsider, node.address, 4)


def test_a_sweep_sent_straight_to_the_distributor_is_still_credited(world: World) -> None:
    node, alice = world.node, world.poster
    inference.deposit(alice, node.address, 5 * OPEN)
    settle(node, 2, [(alice, 5 * OPEN)])
    world.advance(CLAIM_WINDOW + 1)
    inference.sweep_epoch(world.outsider, node.escrow.address, inference.escrow_round_id(node.address, 2))
    assert escrow_balance(world) == 5 * OPEN and inference.escrow_account(alice, node.address).balance == 0
    inference.refund_unclaimed(world.outsider, node.address, 2)
    assert inference.escrow_account(alice, node.address).balance == 5 * OPEN == escrow_balance(world)


# ----------------------------------------------------------------- property


@dataclass(frozen=True)
class EscrowCase:
    deposits: list[int]  # per payer (three payers)
    charges: list[tuple[int, int]]  # (payer, amount)
    leaves: list[int]  # tree amounts (may sum past the total)
    attempts: list[int]  # leaf positions claimed in this order
    refund: bool


@st.composite
def escrow_cases(draw: st.DrawFn) -> EscrowCase:
    deposits = draw(st.lists(st.one_of(st.integers(0, 1_000), st.integers(0, 100 * OPEN)), min_size=3, max_size=3))
    charges = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60 * OPEN)), min_size=1, max_size=4))
    charges = [(p, min(a, deposits[p]) if draw(st.booleans()) else a) for p, a in charges]
    total = max(1, sum(a for _, a in charges))
    leaves = draw(st.lists(st.integers(0, total), min_size=1, max_size=5))
    attempts = draw(st.lists(st.integers(0, len(leaves) - 1), max_size=2 * len(leaves)))
    return EscrowCase(deposits, charges, leaves, attempts, draw(st.booleans()))


@CHAIN_EXAMPLES
@given(case=escrow_cases())
@example(  # every charge fits, leaves oversubscribed, double claims, then the refund
    case=EscrowCase(
        [10 * OPEN, 5 * OPEN, 7], [(0, 4 * OPEN), (1, 5 * OPEN), (2, 7)], [6 * OPEN, 6 * OPEN, 7], [0, 0, 1, 2], True
    )
)
@example(case=EscrowCase([1, 0, 0], [(0, 2)], [2], [0], False))  # over-charge: nothing moves
def test_the_escrow_never_lets_more_out_than_went_in(world: World, case: EscrowCase) -> None:
    """For any deposits, charges and tree: a settlement goes through iff every charge fits; the
    round never pays more than was charged; the escrow holds exactly the payers' balances; OPEN is
    conserved among payers, contributors, the escrow and the distributor; the node gets none."""
    with isolated(world) as w:
        payers = [w.poster, w.relayer, w.curator]
        node = w.node
        ledger = [p.address for p in payers] + [fresh(k) for k in range(len(case.leaves))]
        ledger += [node.address, node.escrow.address, node.rewards.address]
        before = {a: w.admin.balance(a) for a in ledger}
        for p, amount in zip(payers, case.deposits, strict=True):
            if amount:
                inference.deposit(p, node.address, amount)
        balances = list(case.deposits)
        fits = True
        for p, amount in case.charges:
            fits = fits and amount <= balances[p]
            balances[p] -= amount
        total = sum(a for _, a in case.charges)
        try_settle = outcome(settle, node, 1, [(payers[p], a) for p, a in case.charges], case.leaves)
        expected = "ok" if fits and total > 0 else ("EscrowInsufficientBalance" if not fits else "EscrowNothingCharged")
        assert try_settle == expected, (case, try_settle)
        if expected != "ok":
            balances = list(case.deposits)
        held = [inference.escrow_account(w.admin, node.address, p.address).balance for p in payers]
        assert held == balances
        paid = 0
        if expected == "ok":
            round_id = inference.escrow_round_id(node.address, 1)
            tree = epoch_tree(
                node.escrow.address, round_id, [Share(account=fresh(k), amount=a) for k, a in enumerate(case.leaves)]
            )
            claimed: set[int] = set()
            for k in case.attempts:
                ok = k not in claimed and paid + case.leaves[k] <= total
                result = outcome(claim, w.relayer, tree, k)
                assert result == "ok" if ok else result in ("RewardEpochAlreadyClaimed", "RewardEpochExceedsFunding")
                if ok:
                    claimed.add(k)
                    paid += case.leaves[k]
            assert inference.epoch_round(w.admin, node.escrow.address, round_id).claimed == paid <= total
            if case.refund:
                w.advance(CLAIM_WINDOW + 1)
                inference.refund_unclaimed(w.outsider, node.address, 1)
        held = [inference.escrow_account(w.admin, node.address, p.address).balance for p in payers]
        assert w.admin.balance(node.escrow.address) == sum(held)
        after = {a: w.admin.balance(a) for a in ledger}
        assert after[node.address] == before[node.address]
        assert sum(after.values()) == sum(before.values())
        assert sum(after[fresh(k)] for k in range(len(case.leaves))) == paid
        in_rounds = after[node.rewards.address] - before[node.rewards.address]
        assert in_rounds == (0 if expected != "ok" or case.refund else total - paid)
