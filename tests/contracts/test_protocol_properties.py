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
from node.chain.models import JobStatus, job_cost
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
    chain_examples,
)
from tests.contracts.helpers_jobs import (
    CHALLENGE_WINDOW,
    CLAIM_WINDOW,
    DAY,
    EXPIRY_SLASH_BPS,
    MIN_STAKE,
    UNBONDING,
    claim_leaf,
    create_datanets,
    finalize_job,
    frozen_clock,
    job_params,
    own_staking,
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
# `DATANET_FUZZ_SCALE=10 .venv/bin/python -m pytest tests/contracts` runs ten times as many.
CHAIN_EXAMPLES = settings(
    max_examples=chain_examples(8),
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
    # Up to everything the poster holds, less the verifiers' fee it pays on top (1 %).
    pool = draw(st.one_of(st.integers(1, 10_000), st.integers(1, FUNDED * 100 // 101)))
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
            w.admin.court.address,  # the job's verifier fee, at finalize
        ]
        before = {a: w.admin.balance(a) for a in ledger}
        params = job_params(w.now(), ids, pool=case.pool, node_fee_bps=case.node_bps, datanet_fee_bps=case.datanet_bps)
        job_id = post_job(w.poster, params)
        bond = w.node.bond_for(job_id)
        stake_node(w.node, bond)  # exactly the bond: it is all reserved while the job is held
        w.node.claim_job(job_id)
        tree = reward_tree(job_id, [(contributors[c], amount) for c, amount in case.leaves])
        w.node.submit_result(job_id, result_params(tree.root))
        finalize_job(w, job_id)
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
        assert after[w.node.address] - before[w.node.address] == node_fee - bond
        assert [after[t] - before[t] for t in treasuries] == [each] * case.datanets
        assert {c: after[c] - before[c] for c in contributors} == paid
        fee = job_cost(case.pool) - case.pool  # the verifiers' fee, paid on top of the pool, to the court
        assert after[w.poster.address] - before[w.poster.address] == remainder - case.pool - fee
        assert after[w.admin.court.address] - before[w.admin.court.address] == fee
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
def test_split_pool_always_adds_up(world: World, pool: int, node_bps: int, datanet_share: float, datanets: int) -> None:
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
    reserved: int = 0
    unbonding: int = 0
    ends_at: int = 0
    bonds: list[int] = field(default_factory=list)  # reserved bonds, the latest last


STAKE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("stake"), st.integers(0, 1), st.integers(0, 3 * MIN_STAKE)),
        st.tuples(st.just("unbond"), st.integers(0, 1), st.integers(0, 3 * MIN_STAKE)),
        st.tuples(st.just("withdraw"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(0, 2 * MIN_STAKE)),
        st.tuples(st.just("release"), st.integers(0, 1), st.integers(0, 2 * MIN_STAKE)),
        st.tuples(st.just("slash"), st.integers(0, 1), st.integers(0, 2 * MIN_STAKE)),
        st.tuples(st.just("advance"), st.just(0), st.sampled_from([1, UNBONDING - 1, UNBONDING])),
    ),
    min_size=1,
    max_size=18,
)


def _bond(m: StakeModel, amount: int) -> int:
    """The bond a release or slash names: the latest reserved one, or `amount` when none is."""
    return m.bonds[-1] if m.bonds else amount


def _expected_stake_op(op: str, m: StakeModel, amount: int, now: int) -> str:
    """What NodeStaking must answer, updating the model `m` when it succeeds."""
    if op in ("stake", "unbond") and amount == 0:
        return "NodeStakingZeroAmount"
    if op == "stake":
        m.active += amount
    elif op == "unbond":
        if amount > m.active - m.reserved:
            return "NodeStakingInsufficientActive"
        m.active, m.unbonding, m.ends_at = m.active - amount, m.unbonding + amount, now + UNBONDING
    elif op == "withdraw":
        if m.unbonding == 0:
            return "NodeStakingNothingToWithdraw"
        if now < m.ends_at:
            return "NodeStakingStillUnbonding"
        m.unbonding = 0
    elif op == "reserve":
        if m.active < MIN_STAKE or m.active - m.reserved < amount:
            return "NodeStakingInsufficientFree"
        m.reserved += amount
        m.bonds.append(amount)
    elif op in ("release", "slash"):
        bond = _bond(m, amount)
        penalty = amount if op == "slash" else 0
        if penalty > bond:
            return "NodeStakingSlashExceedsBond"
        if not m.bonds or m.reserved < bond:
            return "NodeStakingNotReserved"
        m.bonds.pop()
        m.reserved -= bond
        m.active -= penalty
    return "ok"


def _send_stake_op(w: World, node: Protocol, op: str, amount: int, bond: int, slashed_to: str) -> None:
    fns = w.admin.staking.functions
    if op == "stake":
        node.stake(amount)
    elif op == "unbond":
        node.request_unbond(amount)
    elif op == "withdraw":
        node.withdraw_stake()
    elif op == "reserve":
        send(w.admin, fns.reserve(node.address, amount))
    elif op == "release":
        send(w.admin, fns.release(node.address, bond))
    else:  # slash `amount` out of the bond, as the job manager
        send(w.admin, fns.slashBond(node.address, bond, amount, slashed_to, b"p".ljust(32, b"\0")))


@CHAIN_EXAMPLES
@given(ops=STAKE_OPS)
@example(  # a bond cannot be unbonded; withdrawal at exactly unbondingEndsAt; double release
    ops=[
        ("stake", 0, MIN_STAKE),
        ("reserve", 0, MIN_STAKE // 2),
        ("unbond", 0, MIN_STAKE // 2 + 1),
        ("unbond", 0, MIN_STAKE // 2),
        ("advance", 0, UNBONDING),
        ("withdraw", 0, 0),
        ("release", 0, 0),
        ("release", 0, 0),
        ("reserve", 0, 1),
    ]
)
@example(  # a second bond the stake cannot cover; a slash above the bond; repeated full penalties
    ops=[
        ("stake", 1, 2 * MIN_STAKE),
        ("reserve", 1, MIN_STAKE),
        ("reserve", 1, MIN_STAKE + 1),
        ("slash", 1, MIN_STAKE + 1),
        ("slash", 1, MIN_STAKE // 2),
        ("reserve", 1, MIN_STAKE),
        ("slash", 1, MIN_STAKE // 2),
        ("reserve", 1, MIN_STAKE),
        ("stake", 0, 0),
        ("unbond", 1, MIN_STAKE),
    ]
)
def test_stake_ledger_matches_a_model(world: World, ops: list[tuple[str, int, int]]) -> None:
    """Any sequence of stakes, unbonds, withdrawals and job bonds (reserve, release, slash)
    leaves every record as the model predicts: a bond never exceeds the free stake, a penalty
    never exceeds its bond, and the contract holds exactly the sum of all stakes."""
    with isolated(world) as w:
        nodes = [w.node, w.contributors[0]]
        own_staking(w.admin, *nodes)
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
                before, bond = m.active, _bond(m, amount)
                expected = _expected_stake_op(op, m, amount, now)
                answer = outcome(_send_stake_op, w, node, op, amount, bond, slashed_to)
                assert answer == expected, (op, who, amount)
                slashed_total += before - m.active if op == "slash" else 0
                got = node.node_stake()
                assert (got.active, got.reserved, got.unbonding, got.jobs) == (
                    m.active,
                    m.reserved,
                    m.unbonding,
                    len(m.bonds),
                )
                assert got.reserved <= got.active
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
    bond: int  # what a claim reserves: the contributors' part (80 % here), at least MIN_STAKE
    status: JobStatus = JobStatus.OPEN
    node: int = -1
    submitted_at: int = 0


NODE_STAKE = 2 * MIN_STAKE
"""Each node's stake in the escrow test: enough for the first job's bond and the second's, not
for both at once, and never for the third's."""


@dataclass
class EscrowModel:
    jobs: list[JobModel]
    active: list[int] = field(default_factory=lambda: [NODE_STAKE, NODE_STAKE])
    reserved: list[int] = field(default_factory=lambda: [0, 0])


JOB_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("submit"), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("cancel"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("expire"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("reopen"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("finalize"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([DAY - 1, 1, DAY]), st.just(0)),
    ),
    min_size=1,
    max_size=16,
)


def _expected_job_op(op: str, j: JobModel, who: int, m: EscrowModel, now: int) -> str:
    """What ModelRegistry must answer, updating the model when it succeeds."""
    if op == "claim":
        if j.status != JobStatus.OPEN:
            return "ModelRegistryWrongStatus"
        if now >= j.deadline:
            return "ModelRegistryDeadlinePassed"
        if m.active[who] < MIN_STAKE:
            return "ModelRegistryNodeNotStaked"
        if m.active[who] - m.reserved[who] < j.bond:
            return "NodeStakingInsufficientFree"
        j.status, j.node = JobStatus.CLAIMED, who
        m.reserved[who] += j.bond
    elif op == "submit":
        if j.status != JobStatus.CLAIMED:
            return "ModelRegistryWrongStatus"
        if j.node != who:
            return "ModelRegistryNotJobNode"
        if now >= j.deadline:
            return "ModelRegistryDeadlinePassed"
        j.status, j.submitted_at = JobStatus.SUBMITTED, now  # the bond stays reserved until finalize
    elif op == "finalize":
        if j.status != JobStatus.SUBMITTED:
            return "ModelRegistryWrongStatus"
        if now < j.submitted_at + CHALLENGE_WINDOW:
            return "ModelRegistryChallengeWindowOpen"
        j.status = JobStatus.COMPLETED
        m.reserved[j.node] -= j.bond
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
            m.active[j.node] -= j.bond * EXPIRY_SLASH_BPS // 10_000
            m.reserved[j.node] -= j.bond
        j.status = JobStatus.EXPIRED
    elif op == "reopen":  # deadlines here are within maxTrainingTime: it is never over in time
        if j.status != JobStatus.CLAIMED:
            return "ModelRegistryWrongStatus"
        if now >= j.deadline:
            return "ModelRegistryDeadlinePassed"
        return "ModelRegistryTrainingTimeNotOver"
    return "ok"


def _send_job_op(w: World, node: Protocol, op: str, job_id: int) -> None:
    if op == "claim":
        node.claim_job(job_id)
    elif op == "submit":
        node.submit_result(job_id, result_params(b"\x01" * 32))
    elif op == "cancel":
        w.poster.cancel_job(job_id)
    elif op == "finalize":
        w.outsider.finalize(job_id)
    elif op == "reopen":
        w.outsider.reopen_job(job_id)
    else:
        w.outsider.expire_job(job_id)


@CHAIN_EXAMPLES
@given(ops=JOB_OPS, deadlines=st.lists(st.sampled_from([DAY, 2 * DAY]), min_size=3, max_size=3))
@example(  # an expiry takes half of node 0's bond; node 1 cannot cover a second bond
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
    """Under any interleaving of claims, results, cancellations, expiries, reopen attempts and
    time: statuses follow the model, the registry holds exactly the pools of open and claimed jobs,
    each node has exactly the bonds of its claimed jobs reserved (never more than its stake), and
    no token is created or lost."""
    with isolated(world) as w:
        nodes = [w.node, w.contributors[3]]
        for n in nodes:
            stake_node(n, NODE_STAKE)
        ids, treasuries = create_datanets(w.curator, 1)
        ledger = [
            w.poster.address,
            *(n.address for n in nodes),
            *treasuries,
            w.admin.models.address,
            w.admin.rewards.address,
            w.admin.staking.address,
            w.admin.court.address,  # finalized jobs' verifier fees
        ]
        total = sum(w.admin.balance(a) for a in ledger)
        with frozen_clock(w, w.now() + 1):
            now = w.now()
            m = EscrowModel(jobs=[])
            for k, dl in enumerate(deadlines):
                pool = (k + 1) * 1_000 * OPEN + k
                job_id = post_job(w.poster, job_params(now, ids, pool=pool, deadline_in=dl))
                m.jobs.append(JobModel(pool, now + dl, bond=max(MIN_STAKE, pool - 2 * (pool // 10))))
                assert w.admin.bond_for(job_id) == m.jobs[-1].bond
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
                live = [x for x in m.jobs if x.status in (JobStatus.OPEN, JobStatus.CLAIMED, JobStatus.SUBMITTED)]
                # Each live job's pool, and the verifiers' fee its poster paid on top.
                assert w.admin.balance(w.admin.models.address) == sum(job_cost(x.pool) for x in live)
                for i, n in enumerate(nodes):
                    stake = n.node_stake()
                    claimed = sum(x.status in (JobStatus.CLAIMED, JobStatus.SUBMITTED) and x.node == i for x in m.jobs)
                    assert (stake.active, stake.reserved, stake.jobs) == (m.active[i], m.reserved[i], claimed)
        assert sum(w.admin.balance(a) for a in ledger) == total
