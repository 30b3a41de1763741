"""DatanetRegistry contributions: submitting (stake pulled, every invalid input), curation
(approve/reject by curators only, slash to the treasury, refund of the rest) and withdrawal after
the lock period, with the Datanet's counters and every event."""

from __future__ import annotations

from typing import Any

import pytest

from node.chain.models import MAX_LOCK_PERIOD, MIN_LOCK_PERIOD, ContributionStatus, DatanetParams
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_datanets import (
    LOCK,
    OPEN,
    STAKE,
    allowance,
    block_time,
    content_hash,
    contribute,
    entry,
    new_datanet,
    raw_entry,
    send,
)
from tests.contracts.helpers_jobs import events, frozen_clock, reverts, set_time

NO_SALT = b"\0" * 32  # for calls that must fail before the commitment is looked at


def _setup(world: World, **kw: Any) -> tuple[int, str]:
    """A Datanet owned by the admin, curated by `world.curator`."""
    return new_datanet(world.admin, curators=[world.curator.address], **kw)


def _balances(proto: Protocol, *who: str) -> list[int]:
    return [proto.balance(a) for a in who]


# -------------------------------------------------------------------- contribute


def test_contribute_pulls_the_stake_and_records_everything(world: World) -> None:
    """The stake moves from the contributor to the registry, every field is stored, the counters
    and the content index advance, and ContributionSubmitted carries the whole input."""
    datanet_id, _ = _setup(world)
    c = world.contributors[0]
    registry = c.datanets.address
    global_before = c.contribution_count()
    inp = entry(datanet_id, "alpaca-part-1", stake=3 * OPEN + 1)
    c.approve(registry, inp.stake)
    salt = c.commit_contribution(inp)
    committed_at = world.now()
    receipt = c.client.transact(c.datanets.functions.contribute(inp.model_dump(), salt), estimate_at="pending")
    cid = global_before + 1
    assert c.contribution_count() == cid
    assert c.datanets.functions.contributionByContent(datanet_id, inp.contentHash).call() == cid
    assert _balances(c, c.address, registry) == [FUNDED - inp.stake, inp.stake]
    assert allowance(c, c.address, registry) == 0
    assert c.contribution(cid).model_dump() == {
        "id": cid,
        "datanetId": datanet_id,
        "contributor": c.address,
        "status": ContributionStatus.PENDING,
        "byteSize": inp.byteSize,
        "recordCount": 10,
        "submittedAt": block_time(c, receipt),
        "decidedAt": 0,
        "committedAt": committed_at,
        "contentHash": inp.contentHash,
        "stake": inp.stake,
        "cid": "bafkalpaca-part-1",
    }
    d = c.datanet(datanet_id)
    assert (d.contributionCount, d.approvedCount) == (1, 0)
    assert events(c.datanets, receipt, "ContributionSubmitted") == [
        {
            "contributionId": cid,
            "datanetId": datanet_id,
            "contributor": c.address,
            "cid": inp.cid,
            "contentHash": inp.contentHash,
            "byteSize": inp.byteSize,
            "recordCount": 10,
            "stake": inp.stake,
        }
    ]
    assert events(c.token, receipt, "Transfer") == [{"from": c.address, "to": registry, "value": inp.stake}]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"cid": ""}, "DatanetEmptyContribution"),
        ({"contentHash": b"\0" * 32}, "DatanetEmptyContribution"),
        ({"recordCount": 0}, "DatanetEmptyContribution"),
        ({"stake": 2 * OPEN - 1}, "DatanetStakeTooLow"),
        ({"datanetId": 10_000}, "DatanetUnknown"),
    ],
    ids=["empty-cid", "zero-hash", "no-records", "stake-below-min", "unknown-datanet"],
)
def test_contribute_rejects_invalid_input(world: World, overrides: dict[str, Any], error: str) -> None:
    """Each invalid input reverts with its error and arguments; no stake moves, nothing is stored."""
    datanet_id, _ = _setup(world, min_stake=2 * OPEN)
    c = world.contributors[0]
    c.approve(c.datanets.address, 10 * OPEN)
    before = c.contribution_count()
    struct = raw_entry(entry(datanet_id, "x"), **overrides)
    expected: dict[str, Any] = {
        "DatanetStakeTooLow": {"datanetId": datanet_id, "stake": 2 * OPEN - 1, "minStake": 2 * OPEN},
        "DatanetUnknown": {"datanetId": 10_000},
    }.get(error, {})
    with reverts(error, **expected):
        send(c, c.datanets.functions.contribute(struct, NO_SALT))
    assert c.contribution_count() == before
    assert c.balance() == FUNDED


def test_stake_equal_to_min_is_enough_and_zero_never_is(world: World) -> None:
    """minStake itself is accepted; with minStake 0 a zero stake is still refused."""
    strict, _ = _setup(world, min_stake=2 * OPEN)
    free, _ = _setup(world, min_stake=0)
    c = world.contributors[0]
    contribute(c, entry(strict, "a", stake=2 * OPEN))
    c.approve(c.datanets.address, 0)
    with reverts("DatanetStakeTooLow", datanetId=free, stake=0, minStake=0):
        send(c, c.datanets.functions.contribute(raw_entry(entry(free, "b"), stake=0), NO_SALT))
    contribute(c, entry(free, "c", stake=1))
    assert c.datanet(free).contributionCount == 1


def test_duplicate_content_is_refused_while_held_and_free_again_after_reject_or_withdraw(world: World) -> None:
    """The same sha256 cannot enter one Datanet twice (from anyone, with any CID) while a
    contribution holds it; another Datanet accepts it. M-3: a rejected or withdrawn contribution
    used to hold its content forever, so a squatter's rejected copy blocked the real owner; now
    the content is free again once its holder is rejected or withdrawn."""
    d1, _ = _setup(world, lock_period=MIN_LOCK_PERIOD)
    d2, _ = _setup(world)
    first = contribute(world.contributors[0], entry(d1, "same"))
    other = world.contributors[1]
    other.approve(other.datanets.address, STAKE)
    dup = raw_entry(entry(d1, "same"), cid="bafkdifferentcid")
    with reverts("DatanetDuplicateContent", datanetId=d1, contentHash=content_hash("same"), existingId=first):
        send(other, other.datanets.functions.contribute(dup, NO_SALT))
    contribute(other, entry(d2, "same"))

    rejected = contribute(world.contributors[0], entry(d1, "rejected"))
    world.curator.reject_contribution(rejected, "spam")
    withdrawn = contribute(world.contributors[0], entry(d1, "withdrawn"))
    world.advance(MIN_LOCK_PERIOD)
    world.contributors[0].withdraw_contribution(withdrawn)
    for tag, old in (("rejected", rejected), ("withdrawn", withdrawn)):
        assert other.datanets.functions.contributionByContent(d1, content_hash(tag)).call() == 0
        again = contribute(other, entry(d1, tag))
        assert again != old and other.datanets.functions.contributionByContent(d1, content_hash(tag)).call() == again


def test_a_reveal_needs_an_earlier_commitment_so_a_copy_from_the_mempool_comes_too_late(world: World) -> None:
    """M-3: anyone watching the mempool could copy a contribution's (cid, contentHash) and submit
    it first with more gas, taking the credit. Now a contribution is revealed only against a
    commitment mined in an earlier block: the copier has none, and one it sends with its copy is
    too recent, while the owner's earlier commitment lets its reveal through in that same block."""
    d, _ = _setup(world)
    owner, copier = world.contributors[0], world.contributors[1]
    inp = entry(d, "owned")
    owner.approve(owner.datanets.address, STAKE)
    copier.approve(copier.datanets.address, STAKE)
    salt = owner.commit_contribution(inp)  # mined: the owner committed first
    with reverts("DatanetNoCommitment"):
        send(copier, copier.datanets.functions.contribute(inp.model_dump(), salt))  # the owner's salt binds the owner
    copy_salt = b"\x01" * 32
    commitment = copier.contribution_commitment(inp, copier.address, copy_salt)
    world.rpc("evm_setAutomine", False)
    try:  # one block: the copier's commit and copy, then the owner's reveal
        fns = copier.datanets.functions
        h_commit = fns.commitContribution(commitment).transact({"from": copier.address, "gas": 200_000})
        h_copy = fns.contribute(inp.model_dump(), copy_salt).transact({"from": copier.address, "gas": 600_000})
        h_owner = owner.datanets.functions.contribute(inp.model_dump(), salt).transact(
            {"from": owner.address, "gas": 600_000}
        )
        world.rpc("evm_mine")
    finally:
        world.rpc("evm_setAutomine", True)
    status = {name: owner.client.w3.eth.get_transaction_receipt(h)["status"]
              for name, h in (("commit", h_commit), ("copy", h_copy), ("owner", h_owner))}  # fmt: skip
    assert status == {"commit": 1, "copy": 0, "owner": 1}
    held = owner.datanets.functions.contributionByContent(d, inp.contentHash).call()
    assert owner.contribution(held).contributor == owner.address
    with reverts("DatanetDuplicateContent", existingId=held):  # the copier's commitment is now useless
        send(copier, copier.datanets.functions.contribute(inp.model_dump(), copy_salt))


def test_contribute_needs_allowance_and_balance(world: World) -> None:
    """Without an allowance the token's own error surfaces; so does a stake the account lacks."""
    datanet_id, _ = _setup(world)
    c = world.contributors[0]
    with reverts("ERC20InsufficientAllowance", spender=c.datanets.address, allowance=0, needed=STAKE):
        c.contribute(entry(datanet_id, "a"))
    broke = world.outsider
    broke.approve(broke.datanets.address, STAKE)
    with reverts("ERC20InsufficientBalance", sender=broke.address, balance=0, needed=STAKE):
        broke.contribute(entry(datanet_id, "a"))
    assert c.datanet(datanet_id).contributionCount == 0


def test_unknown_contribution_views(world: World) -> None:
    """getContribution of id 0 or past the count reverts DatanetUnknownContribution."""
    nxt = world.admin.contribution_count() + 1
    for cid in (0, nxt):
        with reverts("DatanetUnknownContribution", contributionId=cid):
            world.admin.contribution(cid)
    assert world.admin.datanets.functions.contributionByContent(1, content_hash("nope")).call() == 0


# ---------------------------------------------------------------------- curation


def test_curator_approves(world: World) -> None:
    """Approval marks the contribution, stamps decidedAt, counts it, keeps the stake bonded and
    emits ContributionApproved naming the curator."""
    datanet_id, _ = _setup(world)
    c = world.contributors[0]
    cid = contribute(c, entry(datanet_id, "a"))
    receipt = world.curator.approve_contribution(cid)
    got = c.contribution(cid)
    assert (got.status, got.decidedAt, got.stake) == (
        ContributionStatus.APPROVED,
        block_time(c, receipt),
        STAKE,
    )
    assert c.datanet(datanet_id).approvedCount == 1
    assert c.balance(c.datanets.address) == STAKE
    assert events(c.datanets, receipt, "ContributionApproved") == [
        {"contributionId": cid, "datanetId": datanet_id, "curator": world.curator.address}
    ]
    assert events(c.token, receipt, "Transfer") == []


@pytest.mark.parametrize(
    ("slash_bps", "stake", "slashed"),
    [(5_000, 7, 3), (2_500, 10 * OPEN, 25 * OPEN // 10), (0, 10 * OPEN, 0), (10_000, 10 * OPEN, 10 * OPEN)],
    ids=["rounds-down", "quarter", "no-slash", "full-slash"],
)
def test_reject_slashes_to_treasury_and_refunds_the_rest(
    world: World, slash_bps: int, stake: int, slashed: int
) -> None:
    """Rejection sends floor(stake * slashBps / 10000) to the treasury and the rest back, emits
    ContributionRejected with the slashed amount and reason, and leaves the registry empty; a zero
    part is not transferred at all."""
    datanet_id, treasury = _setup(world, slash_bps=slash_bps, min_stake=1)
    c = world.contributors[0]
    registry = c.datanets.address
    cid = contribute(c, entry(datanet_id, "a", stake=stake))
    receipt = world.curator.reject_contribution(cid, "low quality")
    assert _balances(c, treasury, c.address, registry) == [slashed, FUNDED - slashed, 0]
    got = c.contribution(cid)
    assert (got.status, got.stake, got.decidedAt) == (ContributionStatus.REJECTED, 0, block_time(c, receipt))
    d = c.datanet(datanet_id)
    assert (d.contributionCount, d.approvedCount) == (1, 0)
    assert events(c.datanets, receipt, "ContributionRejected") == [
        {
            "contributionId": cid,
            "datanetId": datanet_id,
            "curator": world.curator.address,
            "slashed": slashed,
            "reason": "low quality",
        }
    ]
    transfers = [(t["to"], t["value"]) for t in events(c.token, receipt, "Transfer")]
    expected = [(treasury, slashed), (c.address, stake - slashed)]
    assert transfers == [t for t in expected if t[1] != 0]


def test_only_curators_of_that_datanet_decide(world: World) -> None:
    """Outsiders, the Datanet's owner, the contributor and a curator of another Datanet are all
    refused with DatanetNotCurator; the contribution stays pending."""
    owner = world.contributors[3]
    datanet_id, _ = new_datanet(owner, curators=[world.curator.address])
    _, _ = new_datanet(owner, curators=[world.outsider.address])  # curates elsewhere
    c = world.contributors[0]
    cid = contribute(c, entry(datanet_id, "a"))
    for intruder in (world.outsider, owner, c, world.admin):
        with reverts("DatanetNotCurator", datanetId=datanet_id, account=intruder.address):
            intruder.approve_contribution(cid)
        with reverts("DatanetNotCurator", datanetId=datanet_id, account=intruder.address):
            intruder.reject_contribution(cid, "x")
    assert c.contribution(cid).status == ContributionStatus.PENDING


def test_unset_curator_loses_the_right_and_a_new_one_gains_it(world: World) -> None:
    """Curator rights follow setCurator immediately, in both directions."""
    owner = world.contributors[3]
    datanet_id, _ = new_datanet(owner, curators=[world.curator.address])
    c = world.contributors[0]
    a = contribute(c, entry(datanet_id, "a"))
    b = contribute(c, entry(datanet_id, "b"))
    owner.set_curator(datanet_id, world.curator.address, False)
    with reverts("DatanetNotCurator", account=world.curator.address):
        world.curator.approve_contribution(a)
    owner.set_curator(datanet_id, world.outsider.address, True)
    world.outsider.approve_contribution(a)
    world.outsider.reject_contribution(b, "dup")
    assert [c.contribution(i).status for i in (a, b)] == [
        ContributionStatus.APPROVED,
        ContributionStatus.REJECTED,
    ]


def test_decisions_need_a_pending_contribution(world: World) -> None:
    """Approve or reject of an unknown id, or of one already approved, rejected or withdrawn,
    reverts with the status it is in; a rejection never slashes twice."""
    datanet_id, treasury = _setup(world, lock_period=MIN_LOCK_PERIOD)
    c = world.contributors[0]
    cur = world.curator
    with reverts("DatanetUnknownContribution", contributionId=0):
        cur.approve_contribution(0)
    with reverts("DatanetUnknownContribution", contributionId=c.contribution_count() + 1):
        cur.reject_contribution(c.contribution_count() + 1, "x")
    approved = contribute(c, entry(datanet_id, "a"))
    rejected = contribute(c, entry(datanet_id, "r"))
    withdrawn = contribute(c, entry(datanet_id, "w"))
    cur.approve_contribution(approved)
    cur.reject_contribution(rejected, "x")
    world.advance(MIN_LOCK_PERIOD)  # left undecided past the window: its contributor takes it back
    c.withdraw_contribution(withdrawn)
    cases = ((approved, ContributionStatus.APPROVED), (rejected, ContributionStatus.REJECTED))
    for cid, status in (*cases, (withdrawn, ContributionStatus.WITHDRAWN)):
        for act in (lambda i: cur.approve_contribution(i), lambda i: cur.reject_contribution(i, "again")):
            with reverts("DatanetWrongStatus", contributionId=cid, status=int(status)):
                act(cid)
    assert c.balance(treasury) == STAKE // 2
    assert c.datanet(datanet_id).approvedCount == 1


# -------------------------------------------------------------------- withdrawal


def test_withdraw_approved_after_lock_period_to_the_second(world: World) -> None:
    """An approved stake unlocks exactly lockPeriod after approval: one second earlier reverts
    DatanetStillLocked(unlocksAt); at unlocksAt the whole stake returns, the contribution leaves
    the Datanet (approvedCount drops) and ContributionWithdrawn is emitted."""
    datanet_id, treasury = _setup(world, lock_period=LOCK)
    c = world.contributors[0]
    cid = contribute(c, entry(datanet_id, "a"))
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        world.curator.approve_contribution(cid)
        assert c.contribution(cid).decidedAt == t0
        set_time(world, t0 + LOCK - 1)
        with reverts("DatanetStillLocked", contributionId=cid, unlocksAt=t0 + LOCK):
            c.withdraw_contribution(cid)
        set_time(world, t0 + LOCK)
        receipt = c.withdraw_contribution(cid)
    assert _balances(c, c.address, c.datanets.address, treasury) == [FUNDED, 0, 0]
    got = c.contribution(cid)
    assert (got.status, got.stake) == (ContributionStatus.WITHDRAWN, 0)
    d = c.datanet(datanet_id)
    assert (d.contributionCount, d.approvedCount) == (1, 0)
    assert events(c.datanets, receipt, "ContributionWithdrawn") == [
        {"contributionId": cid, "datanetId": datanet_id, "contributor": c.address, "amount": STAKE}
    ]


def test_approved_lock_counts_from_the_decision_not_the_submission(world: World) -> None:
    """A late approval restarts the lock: submission time + lockPeriod is not enough."""
    datanet_id, _ = _setup(world, lock_period=LOCK)
    c = world.contributors[0]
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        cid = contribute(c, entry(datanet_id, "a"))
        set_time(world, t0 + LOCK // 2)
        world.curator.approve_contribution(cid)
        set_time(world, t0 + LOCK)
        with reverts("DatanetStillLocked", contributionId=cid, unlocksAt=t0 + LOCK // 2 + LOCK):
            c.withdraw_contribution(cid)


def test_withdraw_undecided_after_lock_period(world: World) -> None:
    """A contribution no curator decided within lockPeriod of its submission can be withdrawn
    whole (it was never approved, so approvedCount stays 0); curators cannot decide it after."""
    datanet_id, _ = _setup(world, lock_period=LOCK)
    c = world.contributors[0]
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        cid = contribute(c, entry(datanet_id, "a"))
        set_time(world, t0 + LOCK - 1)
        with reverts("DatanetStillLocked", contributionId=cid, unlocksAt=t0 + LOCK):
            c.withdraw_contribution(cid)
        set_time(world, t0 + LOCK)
        c.withdraw_contribution(cid)
    assert c.balance() == FUNDED
    assert c.datanet(datanet_id).approvedCount == 0
    with reverts("DatanetWrongStatus", contributionId=cid, status=int(ContributionStatus.WITHDRAWN)):
        world.curator.reject_contribution(cid, "too late")


def test_the_lock_period_is_bounded_at_creation(world: World) -> None:
    """0 would leave curators no time to decide (and every decision could front-run a withdrawal),
    "never" would bond a stake forever: lockPeriod must lie in [MIN_LOCK_PERIOD, MAX_LOCK_PERIOD]."""
    reg = world.admin.datanets.functions
    assert (reg.MIN_LOCK_PERIOD().call(), reg.MAX_LOCK_PERIOD().call()) == (MIN_LOCK_PERIOD, MAX_LOCK_PERIOD)
    for bad in (0, MIN_LOCK_PERIOD - 1, MAX_LOCK_PERIOD + 1, 2**64 - 1):
        params = DatanetParams.model_construct(**{**_params(world), "lockPeriod": bad})
        with reverts("DatanetInvalidParams", field="lockPeriod"):
            world.admin.create_datanet(params)
    for good in (MIN_LOCK_PERIOD, MAX_LOCK_PERIOD):
        d = world.admin.create_datanet(DatanetParams(**{**_params(world), "lockPeriod": good}))
        assert world.admin.datanet(d).lockPeriod == good


def _params(world: World) -> dict[str, Any]:
    return {"name": "bounded", "treasury": world.admin.address, "curators": [world.curator.address]}


def test_a_curator_cannot_front_run_a_withdrawal(world: World) -> None:
    """The decision window is lockPeriod from submission. At its last second a curator may still
    decide; from the second the contributor may withdraw an undecided stake, neither a rejection
    (which would slash it) nor an approval (which would restart its lock) is accepted, so a curator
    watching the mempool cannot jump ahead of the withdrawal."""
    datanet_id, treasury = _setup(world, lock_period=LOCK, slash_bps=5_000)
    c = world.contributors[0]
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        late, racing = contribute(c, entry(datanet_id, "late")), contribute(c, entry(datanet_id, "race"))
        set_time(world, t0 + LOCK - 1)
        world.curator.approve_contribution(late)  # the window's last second
        set_time(world, t0 + LOCK)
        for decide in (lambda: world.curator.reject_contribution(racing, "front-run"),
                       lambda: world.curator.approve_contribution(racing)):  # fmt: skip
            with reverts("DatanetDecisionWindowClosed", contributionId=racing, closedAt=t0 + LOCK):
                decide()
        c.withdraw_contribution(racing)
    assert c.contribution(racing).status == ContributionStatus.WITHDRAWN
    assert c.balance(treasury) == 0  # nothing was slashed
    assert c.balance() == FUNDED - STAKE  # the approved one stays bonded


def test_withdraw_refusals(world: World) -> None:
    """Unknown ids, someone else's contribution (even for its curator or the Datanet's owner), a
    rejected one, and a second withdrawal are all refused, and pay nothing."""
    datanet_id, _ = _setup(world, lock_period=MIN_LOCK_PERIOD)
    c = world.contributors[0]
    with reverts("DatanetUnknownContribution", contributionId=0):
        c.withdraw_contribution(0)
    cid = contribute(c, entry(datanet_id, "a"))
    for intruder in (world.curator, world.admin, world.outsider):
        with reverts("DatanetNotContributor", contributionId=cid, account=intruder.address):
            intruder.withdraw_contribution(cid)
    world.advance(MIN_LOCK_PERIOD)
    c.withdraw_contribution(cid)
    with reverts("DatanetWrongStatus", contributionId=cid, status=int(ContributionStatus.WITHDRAWN)):
        c.withdraw_contribution(cid)
    rejected = contribute(c, entry(datanet_id, "r"))
    world.curator.reject_contribution(rejected, "no")
    with reverts("DatanetWrongStatus", contributionId=rejected, status=int(ContributionStatus.REJECTED)):
        c.withdraw_contribution(rejected)
    assert c.balance() == FUNDED - STAKE // 2
    assert c.balance(c.datanets.address) == 0


def test_counters_track_a_mixed_history(world: World) -> None:
    """contributionCount counts every submission ever; approvedCount counts approved, not yet
    withdrawn ones; the registry holds exactly the stakes still bonded."""
    datanet_id, treasury = _setup(world, lock_period=MIN_LOCK_PERIOD, slash_bps=1_000)
    cs = world.contributors
    ids = [contribute(cs[i % 4], entry(datanet_id, f"r{i}", stake=(i + 1) * OPEN)) for i in range(6)]
    for i in (0, 1, 2, 3):
        world.curator.approve_contribution(ids[i])
    world.curator.reject_contribution(ids[4], "no")
    world.advance(MIN_LOCK_PERIOD)
    cs[1].withdraw_contribution(ids[1])
    d = world.admin.datanet(datanet_id)
    assert (d.contributionCount, d.approvedCount) == (6, 3)
    bonded = (1 + 3 + 4 + 6) * OPEN  # ids 0, 2, 3 approved and 5 pending
    assert world.admin.balance(world.admin.datanets.address) == bonded
    assert world.admin.balance(treasury) == 5 * OPEN // 10
