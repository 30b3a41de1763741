"""Property tests (hypothesis) against the real dev chain: token conservation and payout bounds
for arbitrary reward rounds, the node-stake ledger, and the job escrow under random actions.

Each example runs inside its own EVM snapshot with fresh clients: a revert rewinds account
nonces, so clients that sent transactions before it would count from stale nonces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.models import JobStatus
from node.chain.protocol import Protocol
from node.errors import ContractRevertError
from tests.conftest import (
    CONTRIBUTORS,
    CURATOR,
    DEPLOYER,
    FUNDED,
    NODE,
    OUTSIDER,
    POSTER,
    RELAYER,
    World,
)
from tests.contracts.helpers_jobs import (
    CLAIM_WINDOW,
    DAY,
    EXPIRY_SLASH_BPS,
    JOB_MANAGER_ROLE,
    MIN_STAKE,
    UNBONDING,
    claim_leaf,
    create_datanets,
    frozen_clock,
    grant_role,
    job_params,
    post_job,
    result_params,
    reward_tree,
    send,
    set_time,
    stake_node,
    total_owed,
    treasury_address,
    view,
)

# Every example is a whole scenario of transactions (~0.5 s), so: few random examples, explicit
# @examples for the paths that must always run, and no shrinking (it can take minutes here and
# would hit the suite's time-out; the unshrunk counterexample is short enough to read).
CHAIN_EXAMPLES = settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAX_UINT = 2**256 - 1


@cache
def _account(index: int) -> LocalAccount:
    return dev_account(index)  # key derivation is slow; every example needs the same keys


@contextmanager
def isolated(world: World) -> Iterator[World]:
    """One example's world: an EVM snapshot, reverted afterwards, seen through fresh clients."""
    snapshot = world.rpc("evm_snapshot")
    try:
        base = world.admin

        def proto(index: int) -> Protocol:
            return base.as_account(_account(index))

        yield World(
            rpc_url=world.rpc_url,
            deployment=world.deployment,
            admin=proto(DEPLOYER),
            curator=proto(CURATOR),
            node=proto(NODE),
            poster=proto(POSTER),
            relayer=proto(RELAYER),
            contributors=[proto(i) for i in CONTRIBUTORS],
            outsider=proto(OUTSIDER),
        )
    finally:
        world.rpc("evm_revert", snapshot)


def outcome(action: Callable[..., object], *args: Any) -> str:
    """Runs `action(*args)`; returns "ok", or the name of the custom error it reverted with."""
    try:
        action(*args)
    except ContractRevertError as e:
        return e.name
    return "ok"


# ------------------------------------------------------------------ reward rounds


def split(pool: int, node_bps: int, datanet_bps: int, n: int) -> tuple[int, int, int]:
    node_fee = pool * node_bps // 10_000
    each = pool * datanet_bps // 10_000 // n
    return node_fee, each, pool - node_fee - each * n


@dataclass(frozen=True)
class RewardCase:
    pool: int
    node_bps: int
    datanet_bps: int
    datanets: int
    leaves: list[tuple[int, int]]  # (contributor, amount); the leaf index is the position
    attempts: list[int]  # leaf positions claimed in this order (repeats are double claims)
    sweep: bool


@st.composite
def reward_cases(draw: st.DrawFn) -> RewardCase:
    pool = draw(st.one_of(st.integers(1, 10_000), st.integers(1, 10**24)))
    node_bps = draw(st.integers(0, 5_000))
    datanet_bps = draw(st.integers(0, 5_000 - node_bps))
    datanets = draw(st.integers(1, 3))
    share = split(pool, node_bps, datanet_bps, datanets)[2]
    n = draw(st.integers(1, 6))
    if draw(st.booleans()):  # leaves summing to exactly the share
        cuts = sorted(draw(st.lists(st.integers(0, share), min_size=n - 1, max_size=n - 1)))
        amounts = [b - a for a, b in zip([0, *cuts], [*cuts, share], strict=True)]
    else:  # anything up to twice a fair part each: often more than the share in total
        amounts = draw(st.lists(st.integers(0, 2 * share // n + 1), min_size=n, max_size=n))
    accounts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    attempts = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    return RewardCase(
        pool,
        node_bps,
        datanet_bps,
        datanets,
        list(zip(accounts, amounts, strict=True)),
        attempts,
        draw(st.booleans()),
    )


_POOL = 10_000 * OPEN  # 10% node fee and 2 x 5% Datanet fees leave a share of 8,000 OPEN
_SHARE = 8_000 * OPEN


@CHAIN_EXAMPLES
@given(case=reward_cases())
@example(  # oversubscribed leaves, double claims, then a sweep of the rest
    case=RewardCase(
        _POOL, 1_000, 1_000, 2, [(0, _SHARE * 7 // 10), (1, _SHARE * 7 // 10), (2, 1)], [0, 0, 1, 2, 1], True
    )
)
@example(  # a pool of 7 base units with rounding everywhere, one zero leaf, no sweep
    case=RewardCase(7, 5_000, 0, 3, [(3, 4), (3, 0)], [1, 0, 1, 0], False)
)
def test_reward_rounds_never_pay_more_than_funded(world: World, case: RewardCase) -> None:
    """For any pool, fees and leaf amounts (even leaves summing past the contributors' share):
    payouts never exceed the share, no leaf pays twice, the distributor always holds totalOwed,
    and every token ends up exactly where the split says."""
    with isolated(world) as w:
        ids, treasuries = create_datanets(w.curator, case.datanets)
        contributors = [c.address for c in w.contributors]
        ledger = [
            w.poster.address,
            w.node.address,
            *treasuries,
            *contributors,
            w.admin.rewards.address,
            w.admin.models.address,
            w.admin.staking.address,
        ]
        before = {a: w.admin.balance(a) for a in ledger}
        stake_node(w.node)
        params = job_params(
            w.now(), ids, pool=case.pool, node_fee_bps=case.node_bps, datanet_fee_bps=case.datanet_bps
        )
        job_id = post_job(w.poster, params)
        w.node.claim_job(job_id)
        tree = reward_tree(job_id, [(contributors[c], amount) for c, amount in case.leaves])
        w.node.submit_result(job_id, result_params(tree.root))
        node_fee, each, share = split(case.pool, case.node_bps, case.datanet_bps, case.datanets)
        assert w.admin.reward_round(job_id).total == share

        paid: dict[str, int] = dict.fromkeys(contributors, 0)
        claimed: set[int] = set()
        for k in case.attempts:
            account, amount = contributors[case.leaves[k][0]], case.leaves[k][1]
            if k in claimed:
                expected = "RewardAlreadyClaimed"
            elif sum(paid.values()) + amount > share:
                expected = "RewardExceedsPool"
            else:
                expected = "ok"
            assert outcome(claim_leaf, w.relayer, tree, k) == expected, (k, amount)
            if expected == "ok":
                claimed.add(k)
                paid[account] += amount
            owed = total_owed(w.admin)
            assert owed == share - sum(paid.values()) <= w.admin.balance(w.admin.rewards.address)
        assert sum(paid.values()) <= share

        remainder = 0
        if case.sweep:
            w.advance(CLAIM_WINDOW + 1)
            w.outsider.sweep(job_id)
            remainder = share - sum(paid.values())
            unclaimed = [k for k in range(len(case.leaves)) if k not in claimed]
            if unclaimed:
                late = outcome(claim_leaf, w.relayer, tree, unclaimed[0])
                assert late == "RewardClaimWindowClosed"
            assert outcome(w.outsider.sweep, job_id) == "RewardAlreadySwept"

        after = {a: w.admin.balance(a) for a in ledger}
        assert sum(after.values()) == sum(before.values()), "tokens created or destroyed"
        assert after[w.node.address] - before[w.node.address] == node_fee - MIN_STAKE
        assert [after[t] - before[t] for t in treasuries] == [each] * case.datanets
        assert {c: after[c] - before[c] for c in contributors} == paid
        assert after[w.poster.address] - before[w.poster.address] == remainder - case.pool
        assert after[w.admin.models.address] == before[w.admin.models.address]
        held = after[w.admin.rewards.address] - before[w.admin.rewards.address]
        assert held == share - sum(paid.values()) - remainder == total_owed(w.admin)
        assert node_fee + each * case.datanets + sum(paid.values()) + remainder + held == case.pool


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pool=st.one_of(st.integers(0, 10**6), st.integers(0, MAX_UINT // 10_000)),
    node_bps=st.integers(0, 10_000),
    datanet_share=st.floats(0, 1),
    datanets=st.integers(0, 16),
)
def test_split_pool_always_adds_up(
    world: World, pool: int, node_bps: int, datanet_share: float, datanets: int
) -> None:
    """splitPool's parts sum to the pool; fees are floors; contributors get at most the dust
    of the Datanet division on top of their exact share."""
    datanet_bps = int((10_000 - node_bps) * datanet_share)
    s = view(world.admin, world.admin.rewards.functions.splitPool(pool, node_bps, datanet_bps, datanets))
    assert s.nodeFee + s.datanetFeeEach * datanets + s.contributors == pool
    assert s.nodeFee == pool * node_bps // 10_000
    if datanets == 0:
        assert s.datanetFeeEach == 0
    else:
        assert s.datanetFeeEach == pool * datanet_bps // 10_000 // datanets
        exact = pool - pool * node_bps // 10_000 - pool * datanet_bps // 10_000
        assert exact <= s.contributors < exact + datanets


# ------------------------------------------------------------------- stake ledger


@dataclass
class StakeModel:
    active: int = 0
    unbonding: int = 0
    ends_at: int = 0
    locks: int = 0


STAKE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("stake"), st.integers(0, 1), st.integers(0, 3 * MIN_STAKE)),
        st.tuples(st.just("unbond"), st.integers(0, 1), st.integers(0, 3 * MIN_STAKE)),
        st.tuples(st.just("slash"), st.integers(0, 1), st.integers(0, 4 * MIN_STAKE)),
        st.tuples(st.just("withdraw"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("lock"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("unlock"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("advance"), st.just(0), st.sampled_from([1, UNBONDING - 1, UNBONDING])),
    ),
    min_size=1,
    max_size=18,
)


def _expected_stake_op(op: str, m: StakeModel, amount: int, now: int) -> str:
    """What NodeStaking must answer, updating the model `m` when it succeeds."""
    if op in ("stake", "unbond") and amount == 0:
        return "NodeStakingZeroAmount"
    if op == "stake":
        m.active += amount
    elif op == "unbond":
        if amount > m.active:
            return "NodeStakingInsufficientActive"
        m.active, m.unbonding, m.ends_at = m.active - amount, m.unbonding + amount, now + UNBONDING
    elif op == "withdraw":
        if m.unbonding == 0:
            return "NodeStakingNothingToWithdraw"
        if now < m.ends_at:
            return "NodeStakingStillUnbonding"
        if m.locks:
            return "NodeStakingLocked"
        m.unbonding = 0
    elif op == "slash":
        from_active = min(amount, m.active)
        m.active -= from_active
        m.unbonding -= min(amount - from_active, m.unbonding)
    elif op == "lock":
        m.locks += 1
    elif op == "unlock":
        if m.locks == 0:
            return "NodeStakingNotLocked"
        m.locks -= 1
    return "ok"


def _send_stake_op(w: World, node: Protocol, op: str, amount: int, slashed_to: str) -> None:
    fns = w.admin.staking.functions
    if op == "stake":
        node.stake(amount)
    elif op == "unbond":
        node.request_unbond(amount)
    elif op == "withdraw":
        node.withdraw_stake()
    elif op == "slash":
        send(w.admin, fns.slash(node.address, amount, slashed_to, b"p".ljust(32, b"\0")))
    else:  # lock / unlock, as the job manager
        send(w.admin, getattr(fns, op)(node.address))


@CHAIN_EXAMPLES
@given(ops=STAKE_OPS)
@example(  # a lock blocks a due withdrawal; withdrawal at exactly unbondingEndsAt; double unlock
    ops=[
        ("stake", 0, MIN_STAKE),
        ("lock", 0, 0),
        ("unbond", 0, MIN_STAKE // 2),
        ("advance", 0, UNBONDING),
        ("withdraw", 0, 0),
        ("unlock", 0, 0),
        ("withdraw", 0, 0),
        ("unlock", 0, 0),
    ]
)
@example(  # a slash across active and unbonding; one second early; nothing left; bad amounts
    ops=[
        ("stake", 1, 2 * MIN_STAKE),
        ("unbond", 1, MIN_STAKE),
        ("slash", 1, 3 * MIN_STAKE // 2),
        ("advance", 0, UNBONDING - 1),
        ("withdraw", 1, 0),
        ("advance", 0, 1),
        ("withdraw", 1, 0),
        ("withdraw", 1, 0),
        ("stake", 0, 0),
        ("unbond", 1, MIN_STAKE),
    ]
)
def test_stake_ledger_matches_a_model(world: World, ops: list[tuple[str, int, int]]) -> None:
    """Any sequence of stakes, unbonds, slashes, locks and withdrawals leaves every record as
    the model predicts, and the contract holding exactly the sum of all stakes."""
    with isolated(world) as w:
        grant_role(w.admin, w.admin.staking, JOB_MANAGER_ROLE, w.admin.address)
        nodes = [w.node, w.contributors[0]]
        for n in nodes:
            n.approve(n.staking.address, MAX_UINT)
        models = [StakeModel(), StakeModel()]
        slashed_to = treasury_address(777)
        slashed_total = 0
        with frozen_clock(w, w.now() + 1):
            now = w.now()
            for op, who, amount in ops:
                if op == "advance":
                    now += amount
                    set_time(w, now)
                    continue
                node, m = nodes[who], models[who]
                before = StakeModel(m.active, m.unbonding, m.ends_at, m.locks)
                expected = _expected_stake_op(op, m, amount, now)
                answer = outcome(_send_stake_op, w, node, op, amount, slashed_to)
                assert answer == expected, (op, who, amount)
                if op == "slash":
                    slashed_total += before.active + before.unbonding - m.active - m.unbonding
                got = node.node_stake()
                assert (got.active, got.unbonding, got.locks) == (m.active, m.unbonding, m.locks)
                if m.unbonding:
                    assert got.unbondingEndsAt == m.ends_at
        held = w.admin.balance(w.admin.staking.address)
        assert held == sum(m.active + m.unbonding for m in models)
        assert w.admin.balance(slashed_to) == slashed_total
        assert sum(FUNDED - n.balance() for n in nodes) == held + slashed_total


# ------------------------------------------------------------------- job escrow


@dataclass
class JobModel:
    pool: int
    deadline: int
    status: JobStatus = JobStatus.OPEN
    node: int = -1


@dataclass
class EscrowModel:
    jobs: list[JobModel]
    active: list[int] = field(default_factory=lambda: [MIN_STAKE, MIN_STAKE])


JOB_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("submit"), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("cancel"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("expire"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([DAY - 1, 1, DAY]), st.just(0)),
    ),
    min_size=1,
    max_size=16,
)
PENALTY = MIN_STAKE * EXPIRY_SLASH_BPS // 10_000


def _expected_job_op(op: str, j: JobModel, who: int, m: EscrowModel, now: int) -> str:
    """What ModelRegistry must answer, updating the model when it succeeds."""
    if op == "claim":
        if j.status != JobStatus.OPEN:
            return "ModelRegistryWrongStatus"
        if now >= j.deadline:
            return "ModelRegistryDeadlinePassed"
        if m.active[who] < MIN_STAKE:
            return "ModelRegistryNodeNotStaked"
        j.status, j.node = JobStatus.CLAIMED, who
    elif op == "submit":
        if j.status != JobStatus.CLAIMED:
            return "ModelRegistryWrongStatus"
        if j.node != who:
            return "ModelRegistryNotJobNode"
        if now >= j.deadline:
            return "ModelRegistryDeadlinePassed"
        j.status = JobStatus.COMPLETED
    elif op == "cancel":
        if j.status != JobStatus.OPEN:
            return "ModelRegistryWrongStatus"
        j.status = JobStatus.CANCELLED
    elif op == "expire":
        if j.status not in (JobStatus.OPEN, JobStatus.CLAIMED):
            return "ModelRegistryWrongStatus"
        if now < j.deadline:
            return "ModelRegistryDeadlineNotPassed"
        if j.status == JobStatus.CLAIMED:
            m.active[j.node] -= min(PENALTY, m.active[j.node])
        j.status = JobStatus.EXPIRED
    return "ok"


def _send_job_op(w: World, node: Protocol, op: str, job_id: int) -> None:
    if op == "claim":
        node.claim_job(job_id)
    elif op == "submit":
        node.submit_result(job_id, result_params(b"\x01" * 32))
    elif op == "cancel":
        w.poster.cancel_job(job_id)
    else:
        w.outsider.expire_job(job_id)


@CHAIN_EXAMPLES
@given(ops=JOB_OPS, deadlines=st.lists(st.sampled_from([DAY, 2 * DAY]), min_size=3, max_size=3))
@example(  # an expiry slashes node 0 below minStake, so it can no longer claim
    ops=[
        ("claim", 0, 0),
        ("claim", 1, 1),
        ("advance", DAY, 0),
        ("expire", 0, 0),
        ("submit", 1, 1),
        ("claim", 2, 0),
        ("cancel", 2, 0),
        ("expire", 2, 0),
        ("submit", 0, 0),
    ],
    deadlines=[DAY, 2 * DAY, 2 * DAY],
)
@example(  # deadline boundaries: expire one second early, submit at the deadline, then expire
    ops=[
        ("claim", 0, 1),
        ("advance", DAY - 1, 0),
        ("expire", 0, 0),
        ("submit", 0, 0),
        ("advance", 1, 0),
        ("submit", 0, 1),
        ("expire", 0, 0),
        ("cancel", 1, 0),
        ("claim", 1, 0),
    ],
    deadlines=[DAY, DAY, 2 * DAY],
)
def test_job_escrow_holds_exactly_the_live_pools(
    world: World, ops: list[tuple[str, int, int]], deadlines: list[int]
) -> None:
    """Under any interleaving of claims, results, cancellations, expiries and time: statuses
    follow the model, the registry holds exactly the pools of open and claimed jobs, each node
    holds one lock per claimed job, and no token is created or lost."""
    with isolated(world) as w:
        nodes = [w.node, w.contributors[3]]
        for n in nodes:
            stake_node(n)
        ids, treasuries = create_datanets(w.curator, 1)
        ledger = [
            w.poster.address,
            *(n.address for n in nodes),
            *treasuries,
            w.admin.models.address,
            w.admin.rewards.address,
            w.admin.staking.address,
        ]
        total = sum(w.admin.balance(a) for a in ledger)
        with frozen_clock(w, w.now() + 1):
            now = w.now()
            m = EscrowModel(jobs=[])
            for k, dl in enumerate(deadlines):
                pool = (k + 1) * 1_000 * OPEN + k
                post_job(w.poster, job_params(now, ids, pool=pool, deadline_in=dl))
                m.jobs.append(JobModel(pool, now + dl))
            for op, arg, who in ops:
                if op == "advance":
                    now += arg
                    set_time(w, now)
                    continue
                job_id, j = arg + 1, m.jobs[arg]
                expected = _expected_job_op(op, j, who, m, now)
                got = outcome(_send_job_op, w, nodes[who], op, job_id)
                assert got == expected, (op, job_id, who)
                assert w.admin.job(job_id).status == j.status
                live = [x for x in m.jobs if x.status in (JobStatus.OPEN, JobStatus.CLAIMED)]
                assert w.admin.balance(w.admin.models.address) == sum(x.pool for x in live)
                for i, n in enumerate(nodes):
                    stake = n.node_stake()
                    claimed = sum(x.status == JobStatus.CLAIMED and x.node == i for x in m.jobs)
                    assert (stake.active, stake.locks) == (m.active[i], claimed)
        assert sum(w.admin.balance(a) for a in ledger) == total
