"""NodeStaking: bonding, unbonding, withdrawal, job bonds (reserve, release, slash), parameters, eligibility."""

from __future__ import annotations

import pytest

from node.chain.deploy import OPEN
from node.chain.models import Permit
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import (
    CHALLENGE_WINDOW,
    DEFAULT_ADMIN_ROLE,
    MIN_STAKE,
    UNBONDING,
    events,
    frozen_clock,
    own_staking,
    reverts,
    send,
    set_staking_parameters,
    set_time,
    stake_node,
    treasury_address,
    view,
)

REASON = b"fault".ljust(32, b"\0")


@pytest.fixture
def manager(world: World) -> Protocol:
    """The admin as job manager (as the ModelRegistry is) of a NodeStaking of the test's own, to
    drive bonds and slashes; every account of `world` uses that one."""
    return own_staking(world.admin, world.node, world.outsider, world.poster, world.curator, *world.contributors)


def staked_total(world: World) -> int:
    return world.admin.balance(world.admin.staking.address)


# --------------------------------------------------------------------------- stake


def test_stake_bonds_tokens_and_accumulates(world: World) -> None:
    """Staking moves exactly `amount` into the contract and adds it to the active stake."""
    node, staking = world.node, world.node.staking
    node.approve(staking.address, 3 * MIN_STAKE)
    receipt = node.stake(MIN_STAKE)
    assert events(staking, receipt, "Staked") == [{"node": node.address, "amount": MIN_STAKE, "active": MIN_STAKE}]
    receipt = node.stake(2 * MIN_STAKE)
    assert events(staking, receipt, "Staked")[0]["active"] == 3 * MIN_STAKE
    stake = node.node_stake()
    assert (stake.active, stake.reserved, stake.unbonding, stake.jobs) == (3 * MIN_STAKE, 0, 0, 0)
    assert node.balance() == FUNDED - 3 * MIN_STAKE
    assert staked_total(world) == 3 * MIN_STAKE


def test_stake_zero_is_refused(world: World) -> None:
    """A zero bond is an error, not a no-op."""
    with reverts("NodeStakingZeroAmount"):
        world.node.stake(0)


def test_stake_without_allowance_is_refused(world: World) -> None:
    """Staking pulls tokens only through an allowance."""
    with reverts("ERC20InsufficientAllowance", spender=world.node.staking.address, allowance=0, needed=MIN_STAKE):
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


def test_a_reserved_bond_can_be_neither_unbonded_nor_withdrawn(world: World, manager: Protocol) -> None:
    """Unbonding takes only free stake (active minus bonds); what is free can leave while a job is
    in flight, and the job's bond stays behind, still covering it."""
    node, staking = world.node, manager.staking
    stake_node(node, 2 * MIN_STAKE)
    send(manager, staking.functions.reserve(node.address, 3 * MIN_STAKE // 2))
    with reverts("NodeStakingInsufficientActive", node=node.address, active=MIN_STAKE // 2, requested=MIN_STAKE):
        node.request_unbond(MIN_STAKE)
    node.request_unbond(MIN_STAKE // 2)
    world.advance(UNBONDING + 1)
    node.withdraw_stake()
    stake = node.node_stake()
    assert (stake.active, stake.reserved, stake.unbonding, stake.free) == (3 * MIN_STAKE // 2, 3 * MIN_STAKE // 2, 0, 0)
    assert node.balance() == FUNDED - 3 * MIN_STAKE // 2


# ------------------------------------------------------------------ bonds


def test_one_stake_backs_only_as_many_jobs_as_it_covers(world: World, manager: Protocol) -> None:
    """H-2: locks used to count jobs, not amounts, so one minimum stake could back every job. A
    bond is now reserved out of free stake: a second bond the stake cannot cover is refused, and
    a released bond can back the next job."""
    node, staking = world.node, manager.staking
    stake_node(node, 3 * MIN_STAKE // 2)
    receipt = send(manager, staking.functions.reserve(node.address, MIN_STAKE))
    assert events(staking, receipt, "BondReserved") == [
        {"node": node.address, "amount": MIN_STAKE, "reserved": MIN_STAKE, "jobs": 1}
    ]
    assert view(manager, staking.functions.freeStake(node.address)) == MIN_STAKE // 2
    with reverts("NodeStakingInsufficientFree", node=node.address, free=MIN_STAKE // 2, needed=MIN_STAKE):
        send(manager, staking.functions.reserve(node.address, MIN_STAKE))
    receipt = send(manager, staking.functions.release(node.address, MIN_STAKE))
    assert events(staking, receipt, "BondReleased") == [
        {"node": node.address, "amount": MIN_STAKE, "reserved": 0, "jobs": 0}
    ]
    send(manager, staking.functions.reserve(node.address, MIN_STAKE))
    assert (node.node_stake().reserved, node.node_stake().jobs) == (MIN_STAKE, 1)
    with reverts("NodeStakingNotReserved", node=node.address, reserved=MIN_STAKE, amount=MIN_STAKE + 1):
        send(manager, staking.functions.release(node.address, MIN_STAKE + 1))


def test_a_bond_needs_the_minimum_active_stake(world: World, manager: Protocol) -> None:
    """Below minStake no bond can be reserved, however small."""
    node, staking = world.node, manager.staking
    stake_node(node, MIN_STAKE // 2)
    with reverts("NodeStakingInsufficientFree", node=node.address, free=MIN_STAKE // 2, needed=1):
        send(manager, staking.functions.reserve(node.address, 1))
    with reverts("NodeStakingNotReserved", node=node.address, reserved=0, amount=0):
        send(manager, staking.functions.release(node.address, 0))


@pytest.mark.parametrize("action", ["reserve", "release", "slashBond"])
def test_only_the_job_manager_touches_bonds(world: World, action: str) -> None:
    """Only the ModelRegistry may reserve, release or slash bonds: not the admin, not a node."""
    node = world.node.address
    assert view(world.admin, world.admin.staking.functions.jobManager()) == world.admin.models.address
    for caller in (world.admin, world.node, world.outsider):
        fns = caller.staking.functions
        fn = {
            "reserve": fns.reserve(node, 1),
            "release": fns.release(node, 1),
            "slashBond": fns.slashBond(node, 1, 1, caller.address, REASON),
        }[action]
        with reverts("NodeStakingNotJobManager", caller=caller.address):
            send(caller, fn)


def test_the_admin_cannot_make_itself_job_manager(world: World) -> None:
    """M-4: the admin held DEFAULT_ADMIN_ROLE over a grantable job-manager role, so it could grant
    itself the role and slash every bond to itself. The job manager is wired once at deployment
    (the ModelRegistry) and can never be changed, by the admin or anyone."""
    admin, models = world.admin, world.admin.models.address
    for who in (admin, world.outsider):
        with (
            reverts("NodeStakingJobManagerSet", jobManager=models)
            if who is admin
            else reverts("NodeStakingNotDeployer", caller=who.address)
        ):
            send(who, who.staking.functions.setJobManager(who.address))
    assert view(admin, admin.staking.functions.jobManager()) == models


# --------------------------------------------------------------------------- slash


def test_slash_bond_releases_the_bond_and_takes_the_penalty(world: World, manager: Protocol) -> None:
    """A fault releases the job's bond and moves `amount` of it to the recipient; the rest of
    the stake stays the node's, free again."""
    node, staking = world.node, manager.staking
    to = treasury_address(900)
    stake_node(node, 3 * MIN_STAKE)
    node.request_unbond(MIN_STAKE // 2)  # unbonding stake is never touched by a bond's slash
    send(manager, staking.functions.reserve(node.address, 2 * MIN_STAKE))
    receipt = send(manager, staking.functions.slashBond(node.address, 2 * MIN_STAKE, MIN_STAKE, to, REASON))
    assert events(staking, receipt, "Slashed") == [
        {"node": node.address, "recipient": to, "amount": MIN_STAKE, "reason": REASON}
    ]
    stake = node.node_stake()
    assert (stake.active, stake.reserved, stake.jobs, stake.unbonding) == (3 * MIN_STAKE // 2, 0, 0, MIN_STAKE // 2)
    assert world.admin.balance(to) == MIN_STAKE
    assert staked_total(world) == 2 * MIN_STAKE


def test_slash_bond_refuses_more_than_the_bond_or_an_unreserved_bond(world: World, manager: Protocol) -> None:
    node, staking, to = world.node, manager.staking, treasury_address(901)
    stake_node(node, 2 * MIN_STAKE)
    send(manager, staking.functions.reserve(node.address, MIN_STAKE))
    with reverts("NodeStakingSlashExceedsBond", amount=MIN_STAKE + 1, bond=MIN_STAKE):
        send(manager, staking.functions.slashBond(node.address, MIN_STAKE, MIN_STAKE + 1, to, REASON))
    with reverts("NodeStakingNotReserved", node=node.address, reserved=MIN_STAKE, amount=2 * MIN_STAKE):
        send(manager, staking.functions.slashBond(node.address, 2 * MIN_STAKE, 1, to, REASON))
    assert staked_total(world) == 2 * MIN_STAKE


def test_every_fault_pays_its_full_penalty(world: World, manager: Protocol) -> None:
    """H-2: the expiry penalty was half the minimum stake capped by what was left, so after two
    expiries it was zero. A penalty now comes out of the job's reserved bond: every fault pays in
    full, and a node whose stake no longer covers a bond cannot claim again."""
    node, staking, to = world.node, manager.staking, treasury_address(902)
    stake_node(node, 2 * MIN_STAKE)
    for _ in range(2):
        send(manager, staking.functions.reserve(node.address, MIN_STAKE))
        receipt = send(manager, staking.functions.slashBond(node.address, MIN_STAKE, MIN_STAKE // 2, to, REASON))
        assert events(staking, receipt, "Slashed")[0]["amount"] == MIN_STAKE // 2
    assert world.admin.balance(to) == MIN_STAKE and node.node_stake().active == MIN_STAKE
    send(manager, staking.functions.reserve(node.address, MIN_STAKE))
    send(manager, staking.functions.slashBond(node.address, MIN_STAKE, MIN_STAKE // 2, to, REASON))
    with reverts("NodeStakingInsufficientFree", node=node.address, free=MIN_STAKE // 2, needed=MIN_STAKE):
        send(manager, staking.functions.reserve(node.address, MIN_STAKE))


# ------------------------------------------------------------------ parameters


def test_parameters_change_only_through_the_timelock_after_its_delay(world: World) -> None:
    """M-4: the deployer held DEFAULT_ADMIN_ROLE and could change minStake or the unbonding
    period at once, under nodes with jobs in flight. Only the ProtocolTimelock holds the role; the
    deployer (its proposer) schedules a change, and nobody can execute it before the delay, which is
    at least the unbonding period plus the challenge window: every node can leave first."""
    admin, timelock = world.admin, world.admin.timelock.address
    delay = view(admin, admin.timelock.functions.getMinDelay())
    assert delay >= UNBONDING + CHALLENGE_WINDOW
    assert view(admin, admin.staking.functions.hasRole(DEFAULT_ADMIN_ROLE, timelock))
    for who in (admin, world.node, world.outsider):  # no account holds the role, the deployer included
        assert not view(admin, admin.staking.functions.hasRole(DEFAULT_ADMIN_ROLE, who.address))
        with reverts("AccessControlUnauthorizedAccount", account=who.address, neededRole=DEFAULT_ADMIN_ROLE):
            send(who, who.staking.functions.setParameters(0, 0))
    with reverts("AccessControlUnauthorizedAccount", account=world.outsider.address):
        world.outsider.propose_staking_parameters(0, 0)  # only the proposer schedules
    salt = b"\x07" * 32
    op = admin.propose_staking_parameters(5 * OPEN, 60, salt)
    ready = admin.operation_ready_at(op)
    assert ready == world.now() + delay
    set_time(world, ready - 1)
    with reverts("TimelockUnexpectedOperationState"):
        world.outsider.execute_staking_parameters(5 * OPEN, 60, salt)
    set_time(world, ready)
    receipt = world.outsider.execute_staking_parameters(5 * OPEN, 60, salt)  # anyone executes
    assert events(admin.staking, receipt, "ParametersSet") == [{"minStake": 5 * OPEN, "unbondingPeriod": 60}]
    assert admin.min_node_stake() == 5 * OPEN
    assert view(admin, admin.staking.functions.unbondingPeriod()) == 60
    assert admin.operation_ready_at(op) == 1  # done: it cannot be replayed
    with reverts("TimelockUnexpectedOperationState"):
        world.outsider.execute_staking_parameters(5 * OPEN, 60, salt)


def test_the_unbonding_period_is_bounded(world: World) -> None:
    """M-4: the admin could set an unbonding period near 2**64, after which every requestUnbond
    overflowed (a panic) and no node could ever leave. It is now at most MAX_UNBONDING_PERIOD."""
    admin, node = world.admin, world.node
    limit = view(admin, admin.staking.functions.MAX_UNBONDING_PERIOD())
    assert limit == 365 * 86_400
    for bad in (limit + 1, 2**64 - 1):
        with reverts("NodeStakingInvalidParameter", parameter="unbondingPeriod"):
            set_staking_parameters(world, MIN_STAKE, bad)
    set_staking_parameters(world, MIN_STAKE, limit)
    stake_node(node, MIN_STAKE)
    node.request_unbond(MIN_STAKE)  # the longest period still leaves a way out
    assert node.node_stake().unbondingEndsAt == world.now() + limit


def test_new_unbonding_period_applies_to_later_requests(world: World) -> None:
    """unbondingEndsAt uses the period in force when the request is made."""
    node = world.node
    set_staking_parameters(world, MIN_STAKE, 60)
    stake_node(node, MIN_STAKE)
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
    set_staking_parameters(world, 0, UNBONDING)
    assert eligible()
    node.request_unbond(MIN_STAKE - 1)
    assert not eligible(), "a zero active stake is never eligible, even with minStake 0"
    stake_node(node, 1)
    set_staking_parameters(world, 2, UNBONDING)
    assert not eligible()


def test_stakes_of_several_nodes_are_kept_apart(world: World, manager: Protocol) -> None:
    """Each node's record changes only with its own actions; the contract holds their sum."""
    a, b = world.node, world.contributors[1]
    stake_node(a, 2 * MIN_STAKE)
    stake_node(b, 3 * MIN_STAKE)
    b.request_unbond(MIN_STAKE)
    send(manager, manager.staking.functions.reserve(a.address, MIN_STAKE))
    send(manager, manager.staking.functions.slashBond(a.address, MIN_STAKE, MIN_STAKE, treasury_address(903), REASON))
    send(manager, manager.staking.functions.reserve(b.address, MIN_STAKE))
    sa, sb = a.node_stake(), b.node_stake()
    assert (sa.active, sa.reserved, sa.unbonding, sa.jobs) == (MIN_STAKE, 0, 0, 0)
    assert (sb.active, sb.reserved, sb.unbonding, sb.jobs) == (2 * MIN_STAKE, MIN_STAKE, MIN_STAKE, 1)
    assert staked_total(world) == sa.active + sb.active + sb.unbonding
