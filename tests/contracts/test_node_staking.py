"""NodeStaking: bonding, unbonding, withdrawal, job locks, slashing, parameters, eligibility."""

from __future__ import annotations

import pytest

from node.chain.deploy import OPEN
from node.chain.models import Permit
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import (
    DEFAULT_ADMIN_ROLE,
    JOB_MANAGER_ROLE,
    MIN_STAKE,
    UNBONDING,
    events,
    frozen_clock,
    grant_role,
    reverts,
    send,
    set_time,
    stake_node,
    treasury_address,
    view,
)

REASON = b"fault".ljust(32, b"\0")


@pytest.fixture
def manager(world: World) -> Protocol:
    """The admin, granted JOB_MANAGER_ROLE (as the ModelRegistry is), to drive locks and slashes."""
    grant_role(world.admin, world.admin.staking, JOB_MANAGER_ROLE, world.admin.address)
    return world.admin


def staked_total(world: World) -> int:
    return world.admin.balance(world.admin.staking.address)


# --------------------------------------------------------------------------- stake


def test_stake_bonds_tokens_and_accumulates(world: World) -> None:
    """Staking moves exactly `amount` into the contract and adds it to the active stake."""
    node, staking = world.node, world.node.staking
    node.approve(staking.address, 3 * MIN_STAKE)
    receipt = node.stake(MIN_STAKE)
    assert events(staking, receipt, "Staked") == [
        {"node": node.address, "amount": MIN_STAKE, "active": MIN_STAKE}
    ]
    receipt = node.stake(2 * MIN_STAKE)
    assert events(staking, receipt, "Staked")[0]["active"] == 3 * MIN_STAKE
    stake = node.node_stake()
    assert (stake.active, stake.unbonding, stake.locks) == (3 * MIN_STAKE, 0, 0)
    assert node.balance() == FUNDED - 3 * MIN_STAKE
    assert staked_total(world) == 3 * MIN_STAKE


def test_stake_zero_is_refused(world: World) -> None:
    """A zero bond is an error, not a no-op."""
    with reverts("NodeStakingZeroAmount"):
        world.node.stake(0)


def test_stake_without_allowance_is_refused(world: World) -> None:
    """Staking pulls tokens only through an allowance."""
    with reverts(
        "ERC20InsufficientAllowance", spender=world.node.staking.address, allowance=0, needed=MIN_STAKE
    ):
        world.node.stake(MIN_STAKE)


def test_stake_beyond_balance_is_refused(world: World) -> None:
    """An account cannot bond tokens it does not hold."""
    out = world.outsider
    out.approve(out.staking.address, MIN_STAKE)
    with reverts("ERC20InsufficientBalance", sender=out.address, balance=0, needed=MIN_STAKE):
        out.stake(MIN_STAKE)


def test_stake_with_permit_needs_no_approve(world: World) -> None:
    """stakeWithPermit bonds with a signature alone and consumes the permit nonce."""
    node = world.node
    permit = node.permit(node.staking.address, MIN_STAKE, world.now() + 3_600)
    receipt = node.stake(MIN_STAKE, permit)
    assert events(node.staking, receipt, "Staked")[0]["amount"] == MIN_STAKE
    assert node.node_stake().active == MIN_STAKE
    assert view(node, node.token.functions.nonces(node.address)) == 1
    assert view(node, node.token.functions.allowance(node.address, node.staking.address)) == 0


def test_stake_with_front_run_permit_still_stakes(world: World) -> None:
    """A permit someone else submitted first leaves the allowance, so the stake goes through."""
    node, out = world.node, world.outsider
    permit = node.permit(node.staking.address, MIN_STAKE, world.now() + 3_600)
    fn = out.token.functions.permit(
        node.address, node.staking.address, MIN_STAKE, permit.deadline, permit.v, permit.r, permit.s
    )
    send(out, fn)
    node.stake(MIN_STAKE, permit)
    assert node.node_stake().active == MIN_STAKE


def test_stake_with_invalid_permit_and_no_allowance_is_refused(world: World) -> None:
    """A permit signed by someone else grants nothing; the transfer then fails."""
    node, other = world.node, world.contributors[0]
    permit = other.permit(node.staking.address, MIN_STAKE, world.now() + 3_600)
    with reverts("ERC20InsufficientAllowance", allowance=0, needed=MIN_STAKE):
        node.stake(MIN_STAKE, permit)
    with reverts("ERC20InsufficientAllowance"):
        node.stake(MIN_STAKE, Permit())


# -------------------------------------------------------------------------- unbond


def test_request_unbond_moves_active_to_unbonding(world: World) -> None:
    """Unbonding keeps the tokens in the contract and sets the end to now + unbondingPeriod."""
    node = world.node
    stake_node(node, 3 * MIN_STAKE)
    receipt = node.request_unbond(MIN_STAKE)
    ts = world.now()
    assert events(node.staking, receipt, "UnbondRequested") == [
        {"node": node.address, "amount": MIN_STAKE, "unbondingEndsAt": ts + UNBONDING}
    ]
    stake = node.node_stake()
    assert (stake.active, stake.unbonding, stake.unbondingEndsAt) == (
        2 * MIN_STAKE,
        MIN_STAKE,
        ts + UNBONDING,
    )
    assert staked_total(world) == 3 * MIN_STAKE


def test_request_unbond_again_restarts_the_clock(world: World) -> None:
    """A second request adds to the unbonding amount and restarts the whole period."""
    node = world.node
    stake_node(node, 3 * MIN_STAKE)
    node.request_unbond(MIN_STAKE)
    world.advance(UNBONDING // 2)
    node.request_unbond(MIN_STAKE)
    stake = node.node_stake()
    assert stake.unbonding == 2 * MIN_STAKE
    assert stake.unbondingEndsAt == world.now() + UNBONDING


def test_request_unbond_validation(world: World) -> None:
    """Unbonding zero, or more than the active stake, is refused with the amounts."""
    node = world.node
    with reverts("NodeStakingZeroAmount"):
        node.request_unbond(0)
    with reverts("NodeStakingInsufficientActive", node=node.address, active=0, requested=1):
        node.request_unbond(1)
    stake_node(node, MIN_STAKE)
    node.request_unbond(MIN_STAKE // 2)
    with reverts("NodeStakingInsufficientActive", active=MIN_STAKE // 2, requested=MIN_STAKE // 2 + 1):
        node.request_unbond(MIN_STAKE // 2 + 1)


# ------------------------------------------------------------------------ withdraw


def test_withdraw_with_nothing_unbonding_is_refused(world: World) -> None:
    """Active stake cannot be withdrawn without unbonding first."""
    node = world.node
    with reverts("NodeStakingNothingToWithdraw", node=node.address):
        node.withdraw_stake()
    stake_node(node)
    with reverts("NodeStakingNothingToWithdraw", node=node.address):
        node.withdraw_stake()


def test_withdraw_only_once_the_unbonding_period_is_over(world: World) -> None:
    """Withdrawal is refused up to the second before `unbondingEndsAt` and allowed at it."""
    node = world.node
    stake_node(node, 2 * MIN_STAKE)
    node.request_unbond(MIN_STAKE)
    ends = node.node_stake().unbondingEndsAt
    with frozen_clock(world, ends - 1):
        with reverts("NodeStakingStillUnbonding", node=node.address, unbondingEndsAt=ends):
            node.withdraw_stake()
        set_time(world, ends)
        receipt = node.withdraw_stake()
    assert events(node.staking, receipt, "Withdrawn") == [{"node": node.address, "amount": MIN_STAKE}]
    assert node.balance() == FUNDED - MIN_STAKE
    stake = node.node_stake()
    assert (stake.active, stake.unbonding) == (MIN_STAKE, 0)
    assert staked_total(world) == MIN_STAKE
    with reverts("NodeStakingNothingToWithdraw"):
        node.withdraw_stake()


def test_withdraw_is_blocked_while_a_job_lock_is_held(world: World, manager: Protocol) -> None:
    """No withdrawal while any job is in flight, even after the period; allowed once unlocked."""
    node, staking = world.node, manager.staking
    stake_node(node)
    send(manager, staking.functions.lock(node.address))
    node.request_unbond(MIN_STAKE)
    world.advance(UNBONDING + 1)
    with reverts("NodeStakingLocked", node=node.address, locks=1):
        node.withdraw_stake()
    send(manager, staking.functions.unlock(node.address))
    node.withdraw_stake()
    assert node.balance() == FUNDED


# ------------------------------------------------------------------ lock & unlock


def test_lock_and_unlock_count_jobs_in_flight(world: World, manager: Protocol) -> None:
    """Each lock adds one, each unlock removes one, with a LockChanged event each time."""
    node, staking = world.node, manager.staking
    counts = []
    for fn in (staking.functions.lock, staking.functions.lock, staking.functions.unlock):
        receipt = send(manager, fn(node.address))
        counts.append(events(staking, receipt, "LockChanged")[0]["locks"])
    assert counts == [1, 2, 1]
    assert node.node_stake().locks == 1
    send(manager, staking.functions.unlock(node.address))
    with reverts("NodeStakingNotLocked", node=node.address):
        send(manager, staking.functions.unlock(node.address))


@pytest.mark.parametrize("action", ["lock", "unlock", "slash"])
def test_job_manager_functions_need_the_role(world: World, action: str) -> None:
    """Only JOB_MANAGER_ROLE may lock, unlock or slash; not even the admin holds it by default."""
    node = world.node.address
    for caller in (world.admin, world.node, world.outsider):
        fns = caller.staking.functions
        fn = {
            "lock": fns.lock(node),
            "unlock": fns.unlock(node),
            "slash": fns.slash(node, 1, caller.address, REASON),
        }[action]
        with reverts("AccessControlUnauthorizedAccount", account=caller.address, neededRole=JOB_MANAGER_ROLE):
            send(caller, fn)


# --------------------------------------------------------------------------- slash


def test_slash_takes_active_first_then_unbonding(world: World, manager: Protocol) -> None:
    """A slash drains the active stake before touching the unbonding one."""
    node, staking = world.node, manager.staking
    to = treasury_address(900)
    stake_node(node, 3 * MIN_STAKE)
    node.request_unbond(MIN_STAKE)
    fn = staking.functions.slash(node.address, MIN_STAKE, to, REASON)
    assert view(manager, fn) == MIN_STAKE
    send(manager, fn)
    stake = node.node_stake()
    assert (stake.active, stake.unbonding) == (MIN_STAKE, MIN_STAKE)
    receipt = send(manager, staking.functions.slash(node.address, 3 * MIN_STAKE // 2, to, REASON))
    assert events(staking, receipt, "Slashed") == [
        {"node": node.address, "recipient": to, "amount": 3 * MIN_STAKE // 2, "reason": REASON}
    ]
    stake = node.node_stake()
    assert (stake.active, stake.unbonding) == (0, MIN_STAKE // 2)
    assert world.admin.balance(to) == 5 * MIN_STAKE // 2
    assert staked_total(world) == MIN_STAKE // 2


def test_slash_is_capped_at_the_whole_stake(world: World, manager: Protocol) -> None:
    """Slashing more than a node has takes everything and reports what was taken."""
    node, staking = world.node, manager.staking
    to = treasury_address(901)
    stake_node(node, 2 * MIN_STAKE)
    node.request_unbond(MIN_STAKE)
    fn = staking.functions.slash(node.address, 10 * MIN_STAKE, to, REASON)
    assert view(manager, fn) == 2 * MIN_STAKE
    receipt = send(manager, fn)
    assert events(staking, receipt, "Slashed")[0]["amount"] == 2 * MIN_STAKE
    stake = node.node_stake()
    assert (stake.active, stake.unbonding) == (0, 0)
    assert world.admin.balance(to) == 2 * MIN_STAKE
    assert staked_total(world) == 0
    world.advance(UNBONDING + 1)
    with reverts("NodeStakingNothingToWithdraw"):
        node.withdraw_stake()


def test_slash_of_an_unstaked_node_moves_nothing(world: World, manager: Protocol) -> None:
    """Slashing a node without stake reports zero and transfers nothing."""
    staking, to = manager.staking, treasury_address(902)
    stake_node(world.contributors[0])  # someone else's stake must stay untouched
    receipt = send(manager, staking.functions.slash(world.outsider.address, MIN_STAKE, to, REASON))
    assert events(staking, receipt, "Slashed")[0]["amount"] == 0
    assert events(manager.token, receipt, "Transfer") == []
    assert staked_total(world) == MIN_STAKE


# ------------------------------------------------------------------ parameters


def test_set_parameters_is_admin_only(world: World) -> None:
    """The admin sets minStake and unbondingPeriod (with an event); nobody else may."""
    admin = world.admin
    receipt = send(admin, admin.staking.functions.setParameters(5 * OPEN, 60))
    assert events(admin.staking, receipt, "ParametersSet") == [{"minStake": 5 * OPEN, "unbondingPeriod": 60}]
    assert admin.min_node_stake() == 5 * OPEN
    assert view(admin, admin.staking.functions.unbondingPeriod()) == 60
    for who in (world.node, world.outsider):
        with reverts("AccessControlUnauthorizedAccount", account=who.address, neededRole=DEFAULT_ADMIN_ROLE):
            send(who, who.staking.functions.setParameters(0, 0))


def test_new_unbonding_period_applies_to_later_requests(world: World) -> None:
    """unbondingEndsAt uses the period in force when the request is made."""
    admin, node = world.admin, world.node
    send(admin, admin.staking.functions.setParameters(MIN_STAKE, 60))
    stake_node(node)
    node.request_unbond(MIN_STAKE)
    assert node.node_stake().unbondingEndsAt == world.now() + 60
    world.advance(61)
    node.withdraw_stake()
    assert node.balance() == FUNDED


def test_is_eligible_needs_a_nonzero_active_stake_of_at_least_min(world: World) -> None:
    """Eligibility follows the active stake only, against the current minStake."""
    admin, node = world.admin, world.node
    fns = admin.staking.functions

    def eligible() -> bool:
        return bool(view(admin, fns.isEligible(node.address)))

    assert not eligible()
    stake_node(node, MIN_STAKE - 1)
    assert not eligible()
    stake_node(node, 1)
    assert eligible()
    node.request_unbond(1)  # unbonding stake does not count
    assert not eligible()
    send(admin, fns.setParameters(0, UNBONDING))
    assert eligible()
    node.request_unbond(MIN_STAKE - 1)
    assert not eligible(), "a zero active stake is never eligible, even with minStake 0"
    stake_node(node, 1)
    send(admin, fns.setParameters(2, UNBONDING))
    assert not eligible()


def test_stakes_of_several_nodes_are_kept_apart(world: World, manager: Protocol) -> None:
    """Each node's record changes only with its own actions; the contract holds their sum."""
    a, b = world.node, world.contributors[1]
    stake_node(a, 2 * MIN_STAKE)
    stake_node(b, 3 * MIN_STAKE)
    b.request_unbond(MIN_STAKE)
    send(manager, manager.staking.functions.slash(a.address, MIN_STAKE, treasury_address(903), REASON))
    send(manager, manager.staking.functions.lock(b.address))
    sa, sb = a.node_stake(), b.node_stake()
    assert (sa.active, sa.unbonding, sa.locks) == (MIN_STAKE, 0, 0)
    assert (sb.active, sb.unbonding, sb.locks) == (2 * MIN_STAKE, MIN_STAKE, 1)
    assert staked_total(world) == sa.active + sb.active + sb.unbonding
