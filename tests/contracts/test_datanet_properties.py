"""Property tests (hypothesis) of the DatanetRegistry against the real dev chain: a decision
conserves tokens exactly for any stake and slash share, no signature is ever used twice, only
current curators decide, and a stake unlocks exactly at its lock time for any lock period.

Each example runs inside its own EVM snapshot with fresh clients (see `isolated`)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from web3 import Web3

from node.chain.deploy import OPEN
from node.chain.models import MAX_LOCK_PERIOD, MIN_LOCK_PERIOD, ContributionStatus
from tests.conftest import CURATOR, DEPLOYER, FUNDED, NODE, OUTSIDER, World, chain_examples
from tests.contracts.helpers_datanets import (
    account,
    call_as,
    contribute,
    entry,
    isolated,
    new_datanet,
    outcome,
    registry_nonce,
    relay,
    sign_with_nonce,
    signer,
)
from tests.contracts.helpers_jobs import events, frozen_clock, reverts, set_time

# Every example is a scenario of several transactions, so few of them, with @examples pinning
# the edges; no shrinking (slow on a chain, and the unshrunk case is short enough to read).
CHAIN_EXAMPLES = settings(
    max_examples=chain_examples(12),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STAKES = st.one_of(st.integers(1, 10_000), st.integers(1, 10**26))


# ------------------------------------------------------------ token conservation


@CHAIN_EXAMPLES
@given(
    stake=STAKES,
    slash_bps=st.integers(0, 10_000),
    min_part=st.integers(0, 100),
    bystander=STAKES,
    decision=st.sampled_from(["reject", "approve-withdraw", "pending-withdraw"]),
)
@example(stake=1, slash_bps=9_999, min_part=100, bystander=1, decision="reject")  # slashes 0
@example(stake=10**26, slash_bps=10_000, min_part=100, bystander=7, decision="reject")  # all
@example(stake=10_001, slash_bps=1, min_part=50, bystander=10**26, decision="approve-withdraw")
def test_decisions_conserve_tokens_exactly(
    world: World, stake: int, slash_bps: int, min_part: int, bystander: int, decision: str
) -> None:
    """Treasury + contributor + registry hold the same total before and after any decision; a
    rejection moves exactly floor(stake * slashBps / 10000) to the treasury and refunds the rest;
    a withdrawal refunds the whole stake; another contributor's bonded stake is never touched."""
    with isolated(world) as w:
        min_stake = stake * min_part // 100
        datanet_id, treasury = new_datanet(
            w.curator,
            curators=[w.curator.address],
            slash_bps=slash_bps,
            min_stake=min_stake,
            lock_period=MIN_LOCK_PERIOD,
        )
        c, other = w.poster, w.node  # fewer distinct clients keep examples fast
        bystander = max(bystander, min_stake)
        for p, amount in ((c, stake), (other, bystander)):
            if amount > FUNDED:
                w.admin.transfer(p.address, amount - FUNDED)
        contribute(other, entry(datanet_id, "bystander", stake=bystander))
        held = c.balance(c.datanets.address)
        ledger = [treasury, c.address, c.datanets.address]
        before = [c.balance(a) for a in ledger]
        cid = contribute(c, entry(datanet_id, "subject", stake=stake))
        if decision == "reject":
            receipt = w.curator.reject_contribution(cid, "no")
            slashed = stake * slash_bps // 10_000
            assert events(c.datanets, receipt, "ContributionRejected")[0]["slashed"] == slashed
        else:
            if decision == "approve-withdraw":
                w.curator.approve_contribution(cid)
            w.advance(MIN_LOCK_PERIOD)
            c.withdraw_contribution(cid)
            slashed = 0
        after = [c.balance(a) for a in ledger]
        assert sum(after) == sum(before)
        assert after == [before[0] + slashed, before[1] - slashed, held]
        assert c.contribution(cid).stake == 0
        assert c.datanet(datanet_id).approvedCount == 0


# ------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Signed:
    owner: int  # index into world.contributors
    nonce: int
    tag: str


@st.composite
def relay_plans(draw: st.DrawFn) -> tuple[list[Signed], list[tuple[int, int]]]:
    """Signatures by two contributors (consecutive nonces each) and relay attempts (signature
    index, relayer index) in any order, with repeats."""
    counts = [draw(st.integers(0, 3)), draw(st.integers(1, 3))]
    signed = [Signed(o, n, f"s{o}-{n}") for o in (0, 1) for n in range(counts[o])]
    attempts = draw(st.lists(st.tuples(st.integers(0, len(signed) - 1), st.integers(0, 3)), min_size=1, max_size=8))
    return signed, attempts


@CHAIN_EXAMPLES
@given(plan=relay_plans())
@example(plan=([Signed(1, 0, "a")], [(0, 0), (0, 1), (0, 2)]))  # the same signature thrice
@example(  # out of order: nonce 1 first, then 0, then 1 again, then both replayed
    plan=([Signed(1, 0, "a"), Signed(1, 1, "b")], [(1, 0), (0, 0), (1, 3), (0, 1), (1, 2)])
)
def test_no_signature_is_ever_used_twice(world: World, plan: tuple[list[Signed], list[tuple[int, int]]]) -> None:
    """Whatever the order and whoever relays: a signature succeeds only when its nonce is the
    signer's next one, at most once; nonces count successes per account; stakes match."""
    signed, attempts = plan
    with isolated(world) as w:
        signers = [w.poster, w.node]
        relayers = [w.relayer, w.outsider, *signers]  # a signer may relay the other's signature
        datanet_id, _ = new_datanet(w.relayer)
        for p in signers:
            p.approve(p.datanets.address, 10 * OPEN)
        deadline = w.now() + 3_600
        items = [entry(datanet_id, s.tag, stake=OPEN) for s in signed]
        sigs = [
            sign_with_nonce(w.relayer, signer(signers[s.owner]), items[k], s.nonce, deadline)
            for k, s in enumerate(signed)
        ]
        expected_nonce = [0, 0]
        used: set[int] = set()
        for k, r in attempts:
            s = signed[k]
            got = outcome(relay, relayers[r], items[k], signers[s.owner].address, deadline, sigs[k])
            should = s.nonce == expected_nonce[s.owner]
            assert got == ("ok" if should else "DatanetInvalidSignature"), (k, r, expected_nonce)
            if should:
                assert k not in used
                used.add(k)
                expected_nonce[s.owner] += 1
        for o, p in enumerate(signers):
            assert registry_nonce(p, p.address) == expected_nonce[o]
            assert p.balance() == FUNDED - expected_nonce[o] * OPEN
        assert w.relayer.datanet(datanet_id).contributionCount == len(used)


# --------------------------------------------------------------------- curators

ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: Web3.to_checksum_address(b))


@CHAIN_EXAMPLES
@given(
    initial=st.lists(st.integers(0, 3), max_size=3),
    toggles=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=4),
    stranger=ADDRESSES,
)
def test_only_current_curators_decide(
    world: World, initial: list[int], toggles: list[tuple[int, bool]], stranger: str
) -> None:
    """After any sequence of curator grants and revocations, isCurator matches the owner's last
    word for each account, and approve/reject succeed exactly for current curators; any other
    address (the owner, the contributor, a random one) gets DatanetNotCurator(datanetId, it)."""
    with isolated(world) as w:
        # Candidates need no client: decisions are tried as eth_calls from their addresses.
        candidates = [account(i).address for i in (CURATOR, NODE, OUTSIDER, DEPLOYER)]
        owner, c = w.relayer, w.poster
        datanet_id, _ = new_datanet(owner, curators=[candidates[i] for i in initial])
        state = {i: i in initial for i in range(4)}
        for i, allowed in toggles:
            owner.set_curator(datanet_id, candidates[i], allowed)
            state[i] = allowed
        cid = contribute(c, entry(datanet_id, "x"))
        reg = owner.datanets.functions
        callers: list[tuple[str, bool]] = [(a, state[i]) for i, a in enumerate(candidates)]
        callers += [(owner.address, False), (c.address, False), (stranger, False)]
        for who, allowed in callers:
            assert owner.is_curator(datanet_id, who) == allowed
            for fn in (reg.approve(cid), reg.reject(cid, "r")):
                if allowed:
                    call_as(owner, who, fn)  # would succeed
                else:
                    with reverts("DatanetNotCurator", datanetId=datanet_id, account=who):
                        call_as(owner, who, fn)
        assert c.contribution(cid).status == ContributionStatus.PENDING


# -------------------------------------------------------------------- lock time


@CHAIN_EXAMPLES
@given(
    lock=st.one_of(st.integers(MIN_LOCK_PERIOD, 10**6), st.integers(MIN_LOCK_PERIOD, MAX_LOCK_PERIOD)),
    decide_after=st.one_of(st.none(), st.integers(0, 2 * 10**6)),
    wait=st.integers(0, 2 * 10**6),
)
@example(lock=MAX_LOCK_PERIOD, decide_after=None, wait=10)  # the longest: no overflow
@example(lock=MAX_LOCK_PERIOD, decide_after=5, wait=0)
@example(lock=86_400, decide_after=100, wait=86_400)  # exactly at unlock
@example(lock=86_400, decide_after=86_399, wait=0)  # the window's last second
@example(lock=86_400, decide_after=86_400, wait=0)  # the window closed
def test_stake_unlocks_exactly_at_its_lock_time(world: World, lock: int, decide_after: int | None, wait: int) -> None:
    """For any lock period, approved (lock from the decision) or left pending (lock from the
    submission): withdraw succeeds iff `wait` >= lockPeriod, else reverts DatanetStillLocked
    with the exact unlock time, never with an arithmetic panic. A decision `decide_after` >=
    lockPeriod after submission reverts DatanetDecisionWindowClosed and leaves it pending."""
    with isolated(world) as w:
        datanet_id, _ = new_datanet(w.curator, curators=[w.curator.address], lock_period=lock)
        c = w.poster
        c.approve(c.datanets.address, OPEN)
        t0 = w.now() + 10
        with frozen_clock(w, t0):
            cid = c.contribute(entry(datanet_id, "x", stake=OPEN))
            since = t0
            if decide_after is not None:
                set_time(w, t0 + decide_after)
                if decide_after < lock:
                    since = t0 + decide_after
                    w.curator.approve_contribution(cid)
                else:
                    with reverts("DatanetDecisionWindowClosed", contributionId=cid, closedAt=t0 + lock):
                        w.curator.approve_contribution(cid)
                    c.withdraw_contribution(cid)  # still pending, its lock from the submission over
                    assert c.balance() == FUNDED
                    return
            if wait:
                set_time(w, since + wait)
            if wait >= lock:
                c.withdraw_contribution(cid)
                assert c.balance() == FUNDED
            else:
                with reverts("DatanetStillLocked", contributionId=cid, unlocksAt=since + lock):
                    c.withdraw_contribution(cid)
                assert c.contribution(cid).stake == OPEN
