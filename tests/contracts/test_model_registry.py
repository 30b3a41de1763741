"""ModelRegistry: posting, claiming, cancelling, expiring and completing jobs; the model views."""

from __future__ import annotations

from typing import Any

import pytest

from node.chain.deploy import OPEN
from node.chain.models import JobParams, JobStatus, Method, ModelStatus, Permit, job_cost
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_jobs import (
    BASE_HASH,
    CONFIG_HASH,
    DAY,
    EXPIRY_SLASH_BPS,
    JOB_STAKE,
    MAX_TRAINING_TIME,
    MIN_STAKE,
    POOL,
    UNBONDING,
    ZERO_ADDRESS,
    JobSetup,
    claimed_job,
    complete_job,
    contributors_share,
    create_datanets,
    events,
    finalize_job,
    frozen_clock,
    job_params,
    post_job,
    posted_job,
    raw_job,
    result_params,
    reverts,
    send,
    set_time,
    stake_node,
    view,
)

EXPIRY_PENALTY = MIN_STAKE * EXPIRY_SLASH_BPS // 10_000
MAX_UINT = 2**256 - 1


FEE = job_cost(POOL) - POOL
"""The verifiers' fee a POOL job pays on top of the pool (ModelRegistry.VERIFIER_FEE_BPS)."""


def registry_balance(world: World) -> int:
    return world.admin.balance(world.admin.models.address)


def post_raw(poster: Protocol, raw: dict[str, Any]) -> None:
    """Posts a job struct as given (no client-side validation), with an allowance for it."""
    poster.approve(poster.models.address, job_cost(max(int(raw["pool"]), 1)))
    send(poster, poster.models.functions.postJob(raw))


# -------------------------------------------------------------------------- post


def test_post_job_escrows_the_pool_and_records_every_field(world: World) -> None:
    """Posting moves the pool into the registry and stores the job exactly as posted."""
    poster = world.poster
    ids, _ = create_datanets(world.curator, 2)
    params = job_params(world.now(), ids, node_fee_bps=700, datanet_fee_bps=300)
    poster.approve(poster.models.address, poster.job_cost(params.pool))
    receipt = send(poster, poster.models.functions.postJob(params.model_dump()))
    posted_at = world.now()
    assert events(poster.models, receipt, "JobPosted") == [
        {
            "jobId": 1,
            "poster": poster.address,
            "baseModelHash": BASE_HASH,
            "baseModel": params.baseModel,
            "datanetIds": ids,
            "method": Method.QLORA,
            "configCID": params.configCID,
            "configHash": params.configHash,
            "pool": POOL,
            "deadline": params.deadline,
            "nodeFeeBps": 700,
            "datanetFeeBps": 300,
            "parentModelId": params.parentModelId,
        }
    ]
    job = poster.job(1)
    assert job.model_dump() == {
        "id": 1,
        "poster": poster.address,
        "status": JobStatus.OPEN,
        "method": Method.QLORA,
        "nodeFeeBps": 700,
        "datanetFeeBps": 300,
        "deadline": params.deadline,
        "postedAt": posted_at,
        "claimBlock": 0,
        "claimTime": 0,
        "node": ZERO_ADDRESS,
        "claimedAt": 0,
        "bond": 0,
        "baseModelHash": BASE_HASH,
        "configHash": CONFIG_HASH,
        "pool": POOL,
        "parentModelId": 0,
        "modelId": 0,
        "baseModel": params.baseModel,
        "configCID": params.configCID,
        "datanetIds": ids,
        "verifierFee": FEE,
    }
    assert poster.job_count() == 1
    assert poster.balance() == FUNDED - POOL - FEE  # the verifiers' fee comes on top of the pool
    assert registry_balance(world) == POOL + FEE


def _invalid(params: JobParams, case: str) -> tuple[dict[str, Any], str]:
    bad: dict[str, tuple[dict[str, Any], str]] = {
        "pool": ({"pool": 0}, "pool"),
        # The distributor holds a round's total in a uint96: a larger pool could never be paid out.
        "pool-over-uint96": ({"pool": 2**96}, "pool"),
        "deadline-past": ({"deadline": params.deadline - 8 * DAY}, "deadline"),
        "baseModelHash": ({"baseModelHash": b"\0" * 32}, "baseModelHash"),
        "configCID": ({"configCID": ""}, "configCID"),
        "fees": ({"nodeFeeBps": 2_501, "datanetFeeBps": 2_500}, "fees"),
        "fees-node-only": ({"nodeFeeBps": 5_001, "datanetFeeBps": 0}, "fees"),
        "no-datanets": ({"datanetIds": []}, "datanetIds"),
        "too-many": ({"datanetIds": list(range(1, 18))}, "datanetIds"),
        "unsorted": ({"datanetIds": [2, 1]}, "datanetIds"),
        "duplicate": ({"datanetIds": [1, 1]}, "datanetIds"),
    }
    overrides, field = bad[case]
    return raw_job(params, **overrides), field


@pytest.mark.parametrize(
    "case",
    [
        "pool",
        "pool-over-uint96",
        "deadline-past",
        "baseModelHash",
        "configCID",
        "fees",
        "fees-node-only",
        "no-datanets",
        "too-many",
        "unsorted",
        "duplicate",
    ],
)
def test_post_job_validation(world: World, case: str) -> None:
    """Each malformed field is refused by name and nothing is escrowed."""
    ids, _ = create_datanets(world.curator, 2)
    raw, field = _invalid(job_params(world.now(), ids), case)
    with reverts("ModelRegistryInvalidParams", field=field):
        post_raw(world.poster, raw)
    assert world.poster.job_count() == 0
    assert registry_balance(world) == 0


def test_post_job_deadline_must_be_in_the_future(world: World) -> None:
    """A deadline equal to the block time is refused; one second later is accepted."""
    ids, _ = create_datanets(world.curator, 1)
    t = world.now() + 100
    params = job_params(t, ids, deadline_in=0)
    with frozen_clock(world, t):
        with reverts("ModelRegistryInvalidParams", field="deadline"):
            post_raw(world.poster, params.model_dump())
        post_job(world.poster, params.model_copy(update={"deadline": t + 1}))
    assert world.poster.job(1).deadline == t + 1


def test_post_job_fee_cap_is_inclusive(world: World) -> None:
    """nodeFeeBps + datanetFeeBps may reach MAX_FEE_BPS exactly."""
    ids, _ = create_datanets(world.curator, 1)
    for node_bps, datanet_bps in ((5_000, 0), (0, 5_000), (2_500, 2_500)):
        params = job_params(world.now(), ids, node_fee_bps=node_bps, datanet_fee_bps=datanet_bps)
        job_id = post_job(world.poster, params)
        assert world.poster.job(job_id).nodeFeeBps == node_bps


def test_post_job_on_restricted_datanet_needs_a_trainer_grant(world: World) -> None:
    """Only the owner and allowed trainers may post jobs on a restricted Datanet."""
    owner, poster = world.curator, world.poster
    (open_id,), _ = create_datanets(owner, 1)
    (restricted,), _ = create_datanets(owner, 1, restricted=True)
    params = job_params(world.now(), [open_id, restricted])
    with reverts("ModelRegistryDatanetNotTrainable", datanetId=restricted, poster=poster.address):
        post_job(poster, params)
    post_job(owner, params)  # the owner may always train on its own Datanet
    owner.set_trainer(restricted, poster.address)
    post_job(poster, params)
    owner.set_trainer(restricted, poster.address, False)
    with reverts("ModelRegistryDatanetNotTrainable", datanetId=restricted):
        post_job(poster, params)
    assert poster.job_count() == 2


def test_post_job_on_unknown_datanet_is_refused(world: World) -> None:
    """A Datanet id that does not exist cannot be trained on."""
    (known,), _ = create_datanets(world.curator, 1)
    params = job_params(world.now(), [known, known + 1])
    with reverts("ModelRegistryDatanetNotTrainable", datanetId=known + 1, poster=world.poster.address):
        post_job(world.poster, params)


def test_post_job_with_unknown_parent_model_is_refused(world: World) -> None:
    """Lineage can only continue a registered model."""
    ids, _ = create_datanets(world.curator, 1)
    with reverts("ModelRegistryUnknownModel", modelId=1):
        post_job(world.poster, job_params(world.now(), ids, parent_model_id=1))


def test_post_job_needs_an_allowance(world: World) -> None:
    """The pool is pulled through an allowance; without one nothing is posted."""
    poster = world.poster
    ids, _ = create_datanets(world.curator, 1)
    with reverts("ERC20InsufficientAllowance", spender=poster.models.address, needed=POOL + FEE):
        poster.post_job(job_params(world.now(), ids))
    assert poster.job_count() == 0


def test_post_job_with_permit_needs_no_approve(world: World) -> None:
    """postJobWithPermit escrows the pool with a signature alone."""
    poster = world.poster
    ids, _ = create_datanets(world.curator, 1)
    params = job_params(world.now(), ids)
    permit = poster.permit(poster.models.address, job_cost(POOL), world.now() + 3_600)
    job_id = poster.post_job(params, permit)
    assert poster.job(job_id).pool == POOL
    assert registry_balance(world) == POOL + FEE
    assert view(poster, poster.token.functions.nonces(poster.address)) == 1


def test_post_job_with_a_bad_permit_falls_back_to_the_allowance(world: World) -> None:
    """A permit that fails is ignored: the allowance decides."""
    poster = world.poster
    ids, _ = create_datanets(world.curator, 1)
    params = job_params(world.now(), ids)
    foreign = world.contributors[0].permit(poster.models.address, POOL + FEE, world.now() + 3_600)
    with reverts("ERC20InsufficientAllowance", allowance=0, needed=POOL + FEE):
        poster.post_job(params, foreign)
    poster.approve(poster.models.address, POOL + FEE)
    assert poster.post_job(params, Permit()) == 1
    assert registry_balance(world) == POOL + FEE


# ------------------------------------------------------------------------- claim


def test_claim_job_reserves_the_contributors_part_of_the_pool_as_a_bond(world: World) -> None:
    """A claim records the node, time and block, and reserves a bond out of the node's free stake:
    the contributors' part of the pool (what a forged result could divert), at least minStake."""
    node = world.node
    job = posted_job(world)
    bond = contributors_share(job.params, 1)
    assert bond > MIN_STAKE and node.bond_for(job.job_id) == bond
    stake_node(node, bond + 1)
    receipt = node.claim_job(job.job_id)
    assert events(node.models, receipt, "JobClaimed") == [{"jobId": job.job_id, "node": node.address, "bond": bond}]
    assert events(node.staking, receipt, "BondReserved") == [
        {"node": node.address, "amount": bond, "reserved": bond, "jobs": 1}
    ]
    claimed = node.job(job.job_id)
    assert (claimed.status, claimed.node, claimed.claimedAt, claimed.claimBlock, claimed.bond) == (
        JobStatus.CLAIMED,
        node.address,
        world.now(),
        receipt["blockNumber"],
        bond,
    )
    assert (node.node_stake().reserved, node.node_stake().free) == (bond, 1)
    small = posted_job(world, pool=MIN_STAKE)  # the floor: a small pool still reserves minStake
    assert node.bond_for(small.job_id) == MIN_STAKE


def test_one_minimum_stake_cannot_claim_every_job(world: World) -> None:
    """H-2: locks counted jobs, not amounts, so one minimum stake could claim (and freeze) every
    open job. Each claim now reserves its own bond: a stake covering one job claims one."""
    node = world.node
    first, second = posted_job(world), posted_job(world)
    bond = node.bond_for(first.job_id)
    stake_node(node, bond)
    node.claim_job(first.job_id)
    with reverts("NodeStakingInsufficientFree", node=node.address, free=0, needed=bond):
        node.claim_job(second.job_id)
    assert node.job(second.job_id).status == JobStatus.OPEN
    stake_node(node, bond)  # more stake, more jobs
    node.claim_job(second.job_id)
    assert (node.node_stake().reserved, node.node_stake().jobs) == (2 * bond, 2)


def test_claim_job_refuses_nodes_without_an_eligible_stake(world: World) -> None:
    """Invariant: only a node with active stake >= minStake can claim a job."""
    node = world.node
    job = posted_job(world)
    with reverts("ModelRegistryNodeNotStaked", node=node.address):
        node.claim_job(job.job_id)
    stake_node(node, MIN_STAKE - 1)
    with reverts("ModelRegistryNodeNotStaked", node=node.address):
        node.claim_job(job.job_id)
    stake_node(node, 1)
    node.request_unbond(1)
    with reverts("ModelRegistryNodeNotStaked", node=node.address):
        node.claim_job(job.job_id)
    assert node.job(job.job_id).status == JobStatus.OPEN
    assert node.node_stake().jobs == 0


def test_only_a_node_a_restricted_datanet_trusts_can_claim_its_job(world: World) -> None:
    """M-1: `restricted` limited who posts, not who claims, so any staked node could take a
    private or restricted Datanet's job and receive its key grants. Now every such Datanet of a
    job must trust the claimer (its owner decides; a public one checks nothing)."""
    owner, poster, node, other = world.curator, world.poster, world.node, world.outsider
    (restricted,), _ = create_datanets(owner, 1, restricted=True)
    (public,), _ = create_datanets(owner, 1)
    owner.set_trainer(restricted, poster.address)
    job = post_job(poster, job_params(world.now(), [restricted, public]))
    world.admin.transfer(other.address, JOB_STAKE)
    for staked in (node, other):
        stake_node(staked)
    with reverts("ModelRegistryNodeNotTrusted", datanetId=restricted, node=node.address):
        node.claim_job(job)
    with reverts("DatanetNotOwner", datanetId=restricted, account=other.address):
        other.set_trusted_node(restricted, other.address)
    receipt = owner.set_trusted_node(restricted, node.address)
    assert events(owner.datanets, receipt, "TrustedNodeSet") == [
        {"datanetId": restricted, "node": node.address, "trusted": True}
    ]
    assert (node.can_claim(restricted), node.can_claim(restricted, other.address)) == (True, False)
    assert node.can_claim(public, other.address)  # a public Datanet trusts every staked node
    with reverts("ModelRegistryNodeNotTrusted", datanetId=restricted, node=other.address):
        other.claim_job(job)
    node.claim_job(job)
    assert world.admin.job(job).node == node.address


def test_claim_job_needs_an_open_job(world: World) -> None:
    """Unknown, already-claimed and cancelled jobs cannot be claimed."""
    other = world.contributors[2]
    stake_node(other)
    with reverts("ModelRegistryUnknownJob", jobId=1):
        other.claim_job(1)
    job = claimed_job(world)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.CLAIMED):
        other.claim_job(job.job_id)
    with reverts("ModelRegistryWrongStatus", status=JobStatus.CLAIMED):
        world.node.claim_job(job.job_id)
    cancelled = posted_job(world)
    world.poster.cancel_job(cancelled.job_id)
    with reverts("ModelRegistryWrongStatus", jobId=cancelled.job_id, status=JobStatus.CANCELLED):
        other.claim_job(cancelled.job_id)


def test_claim_job_only_before_the_deadline(world: World) -> None:
    """A job can be claimed up to the second before its deadline, not at it."""
    stake_node(world.node)
    stake_node(world.contributors[2])
    late, in_time = posted_job(world), posted_job(world)
    deadline = late.params.deadline
    with frozen_clock(world, deadline - 1):
        world.contributors[2].claim_job(in_time.job_id)
        set_time(world, deadline)
        with reverts("ModelRegistryDeadlinePassed", jobId=late.job_id, deadline=deadline):
            world.node.claim_job(late.job_id)


# ------------------------------------------------------------------------ cancel


def test_cancel_job_refunds_the_poster(world: World) -> None:
    """Cancelling an open job returns the whole pool to the poster."""
    poster = world.poster
    job = posted_job(world)
    receipt = poster.cancel_job(job.job_id)
    assert events(poster.models, receipt, "JobCancelled") == [{"jobId": job.job_id}]
    assert poster.job(job.job_id).status == JobStatus.CANCELLED
    assert poster.balance() == FUNDED
    assert registry_balance(world) == 0


def test_cancel_job_refusals(world: World) -> None:
    """Only the poster cancels, only an open job, and only once."""
    poster = world.poster
    with reverts("ModelRegistryUnknownJob", jobId=7):
        poster.cancel_job(7)
    job = claimed_job(world)
    with reverts("ModelRegistryNotPoster", jobId=job.job_id, account=world.node.address):
        world.node.cancel_job(job.job_id)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.CLAIMED):
        poster.cancel_job(job.job_id)
    other = posted_job(world)
    poster.cancel_job(other.job_id)
    with reverts("ModelRegistryWrongStatus", status=JobStatus.CANCELLED):
        poster.cancel_job(other.job_id)
    assert registry_balance(world) == POOL + FEE


# ------------------------------------------------------------------------ expire


def test_expire_open_job_refunds_the_pool_at_the_deadline(world: World) -> None:
    """Anyone may expire an open job from its deadline on; the poster gets the pool back."""
    job = posted_job(world)
    deadline = job.params.deadline
    with frozen_clock(world, deadline - 1):
        with reverts("ModelRegistryDeadlineNotPassed", jobId=job.job_id, deadline=deadline):
            world.outsider.expire_job(job.job_id)
        set_time(world, deadline)
        receipt = world.outsider.expire_job(job.job_id)
    assert events(world.admin.models, receipt, "JobExpired") == [
        {"jobId": job.job_id, "node": ZERO_ADDRESS, "slashed": 0}
    ]
    assert world.poster.job(job.job_id).status == JobStatus.EXPIRED
    assert world.poster.balance() == FUNDED
    assert registry_balance(world) == 0


def test_expire_claimed_job_slashes_the_node_to_the_poster(world: World) -> None:
    """A claimed job left to expire refunds the pool and pays the poster half of the job's bond;
    the bond is released, so the rest of the stake is free to leave afterwards."""
    node, poster = world.node, world.poster
    job = claimed_job(world)
    bond = node.job(job.job_id).bond
    penalty = bond * EXPIRY_SLASH_BPS // 10_000
    world.advance(8 * DAY)
    receipt = world.outsider.expire_job(job.job_id)
    assert events(node.models, receipt, "JobExpired") == [
        {"jobId": job.job_id, "node": node.address, "slashed": penalty}
    ]
    assert events(node.staking, receipt, "Slashed") == [
        {
            "node": node.address,
            "recipient": poster.address,
            "amount": penalty,
            "reason": b"job-expired".ljust(32, b"\0"),
        }
    ]
    assert events(node.staking, receipt, "BondReleased") == [
        {"node": node.address, "amount": bond, "reserved": 0, "jobs": 0}
    ]
    assert poster.balance() == FUNDED + penalty
    stake = node.node_stake()
    assert (stake.active, stake.reserved, stake.jobs) == (bond - penalty, 0, 0)
    node.request_unbond(stake.active)
    world.advance(UNBONDING)
    node.withdraw_stake()
    assert node.balance() == FUNDED - penalty
    assert registry_balance(world) == 0


def test_unbonding_cannot_dodge_an_expiry_penalty(world: World) -> None:
    """The bond is reserved, so it cannot be unbonded while the job is held: only the free rest
    can leave, and the penalty is paid in full from the bond."""
    node, poster = world.node, world.poster
    job = claimed_job(world)
    bond = node.job(job.job_id).bond
    stake_node(node, MIN_STAKE)  # some free stake beside the bond
    with reverts("NodeStakingInsufficientActive", node=node.address, active=MIN_STAKE, requested=MIN_STAKE + 1):
        node.request_unbond(MIN_STAKE + 1)
    node.request_unbond(MIN_STAKE)
    world.advance(8 * DAY)
    receipt = poster.expire_job(job.job_id)
    assert events(node.models, receipt, "JobExpired")[0]["slashed"] == bond // 2
    stake = node.node_stake()
    assert (stake.active, stake.reserved, stake.unbonding) == (bond - bond // 2, 0, MIN_STAKE)
    assert poster.balance() == FUNDED + bond // 2


def test_a_node_that_overruns_the_training_time_loses_the_job_and_half_its_bond(world: World) -> None:
    """H-2: a claimed job could not be taken back before its deadline, however long the node sat
    on it. After maxTrainingTime anyone reopens it: half the bond to the poster, the job open
    again for another node, its training-set block kept (the eval set may be public by now)."""
    node, poster, other = world.node, world.poster, world.contributors[2]
    job = claimed_job(world, deadline_in=30 * DAY)
    first = node.job(job.job_id)
    limit = node.max_training_time()
    assert limit == MAX_TRAINING_TIME
    with frozen_clock(world, first.claimedAt + limit - 1):
        with reverts("ModelRegistryTrainingTimeNotOver", jobId=job.job_id, reopensAt=first.claimedAt + limit):
            world.outsider.reopen_job(job.job_id)
        set_time(world, first.claimedAt + limit)
        receipt = world.outsider.reopen_job(job.job_id)
    assert events(node.models, receipt, "JobReopened") == [
        {"jobId": job.job_id, "node": node.address, "slashed": first.bond // 2}
    ]
    reopened = node.job(job.job_id)
    assert (reopened.status, reopened.node, reopened.bond, reopened.claimBlock) == (
        JobStatus.OPEN,
        ZERO_ADDRESS,
        0,
        first.claimBlock,
    )
    assert poster.balance() == FUNDED - POOL - FEE + first.bond // 2
    assert (node.node_stake().reserved, node.node_stake().jobs) == (0, 0)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.OPEN):
        node.submit_result(job.job_id, result_params(b"\x01" * 32))  # too late for the old node
    world.admin.transfer(other.address, JOB_STAKE)
    stake_node(other)
    other.claim_job(job.job_id)
    assert (node.job(job.job_id).node, node.job(job.job_id).claimBlock) == (other.address, first.claimBlock)
    other.submit_result(job.job_id, result_params(b"\x01" * 32))


def test_reopen_refusals(world: World) -> None:
    """Only a claimed job can be reopened, and only before its deadline (after it, expire)."""
    job = posted_job(world)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.OPEN):
        world.outsider.reopen_job(job.job_id)
    claimed = claimed_job(world)
    world.advance(8 * DAY)
    deadline = claimed.params.deadline
    with reverts("ModelRegistryDeadlinePassed", jobId=claimed.job_id, deadline=deadline):
        world.outsider.reopen_job(claimed.job_id)


def test_a_deadline_is_at_most_max_job_duration_away(world: World) -> None:
    """No pool is escrowed (and no claim held) for longer than MAX_JOB_DURATION."""
    ids, _ = create_datanets(world.curator, 1)
    limit = view(world.admin, world.admin.models.functions.MAX_JOB_DURATION())
    t = world.now() + 10
    with frozen_clock(world, t):
        with reverts("ModelRegistryInvalidParams", field="deadline"):
            post_raw(world.poster, raw_job(job_params(t, ids), deadline=t + limit + 1))
        post_raw(world.poster, raw_job(job_params(t, ids), deadline=t + limit))
    assert world.poster.job_count() == 1


def test_expire_job_refusals(world: World) -> None:
    """Unknown, completed, cancelled and already-expired jobs cannot be expired."""
    with reverts("ModelRegistryUnknownJob", jobId=3):
        world.outsider.expire_job(3)
    done = claimed_job(world)
    complete_job(world, done, [(world.contributors[0].address, 1)])
    cancelled = posted_job(world)
    world.poster.cancel_job(cancelled.job_id)
    expired = posted_job(world)
    world.advance(8 * DAY)
    world.outsider.expire_job(expired.job_id)
    for job, status in (
        (done, JobStatus.COMPLETED),
        (cancelled, JobStatus.CANCELLED),
        (expired, JobStatus.EXPIRED),
    ):
        with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=status):
            world.outsider.expire_job(job.job_id)


def test_expired_claimed_job_cannot_be_submitted(world: World) -> None:
    """Once expired, the node's late result is refused."""
    job = claimed_job(world)
    world.advance(8 * DAY)
    world.outsider.expire_job(job.job_id)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.EXPIRED):
        world.node.submit_result(job.job_id, result_params(b"\x01" * 32))


# ------------------------------------------------------------------------ submit


def test_submit_result_registers_the_model_and_funds_the_round(world: World) -> None:
    """A result stores the model as pending and moves nothing; `finalize`, after the challenge
    window, pays the node fee and one fee per Datanet treasury, moves the contributors' share to
    the distributor, opens the round and releases the node's bond."""
    node, admin = world.node, world.admin
    job = claimed_job(world, datanets=3, node_fee_bps=1_234, datanet_fee_bps=2_345, pool=POOL + 7)
    result = result_params(b"\x33" * 32)
    submitted = send(node, node.models.functions.submitResult(job.job_id, result.model_dump()))
    registered_at = world.now()
    bond = admin.job(job.job_id).bond
    assert events(admin.rewards, submitted, "FeePaid") == [] and events(admin.staking, submitted, "BondReleased") == []
    fee = job_cost(POOL + 7) - POOL - 7
    assert registry_balance(world) == POOL + 7 + fee and admin.reward_round(job.job_id).total == 0
    assert admin.model(1).status == ModelStatus.PENDING and admin.job(job.job_id).status == JobStatus.SUBMITTED
    assert (node.node_stake().reserved, node.node_stake().jobs) == (bond, 1)
    receipt = finalize_job(world, job.job_id)
    finalized = events(admin.models, receipt, "ModelFinalized")
    assert finalized == [{"modelId": 1, "jobId": job.job_id, "node": node.address}]
    node_fee = (POOL + 7) * 1_234 // 10_000
    each = (POOL + 7) * 2_345 // 10_000 // 3
    share = POOL + 7 - node_fee - 3 * each
    assert share == contributors_share(job.params, 3)
    assert events(node.models, submitted, "ModelRegistered") == [
        {
            "modelId": 1,
            "jobId": job.job_id,
            "node": node.address,
            "baseModelHash": BASE_HASH,
            "parentModelId": 0,
            "adapterCID": result.adapterCID,
            "adapterHash": result.adapterHash,
            "metricsCID": result.metricsCID,
            "dataRoot": result.dataRoot,
            "attributionRoot": result.attributionRoot,
            "attributionCID": result.attributionCID,
            "scoresRoot": result.scoresRoot,
            "totalWeight": result.totalWeight,
            "exampleCount": result.exampleCount,
        }
    ]
    assert [(e["recipient"], e["amount"], e["toNode"]) for e in events(admin.rewards, receipt, "FeePaid")] == [
        (node.address, node_fee, True),
        *[(t, each, False) for t in job.treasuries],
    ]
    assert events(admin.staking, receipt, "BondReleased") == [
        {"node": node.address, "amount": bond, "reserved": 0, "jobs": 0}
    ]
    assert node.balance() == FUNDED - bond + node_fee  # claimed_job staked exactly the bond
    assert [admin.balance(t) for t in job.treasuries] == [each] * 3
    assert admin.balance(admin.rewards.address) == share
    assert registry_balance(world) == 0
    assert world.poster.balance() == FUNDED - POOL - 7 - fee
    # The verifiers' fee went to the court (no verifier staked: it waits for the first deposit after one joins).
    assert events(admin.court, receipt, "FeeDeposited") == [{"jobId": job.job_id, "amount": fee, "totalActive": 0}]
    model = admin.model(1)
    assert model.model_dump() == {
        "id": 1,
        "jobId": job.job_id,
        "parentModelId": 0,
        "node": node.address,
        "method": Method.QLORA,
        "status": ModelStatus.FINALIZED,
        "registeredAt": registered_at,
        "baseModelHash": BASE_HASH,
        "adapterHash": result.adapterHash,
        "dataRoot": result.dataRoot,
        "attributionRoot": result.attributionRoot,
        "configHash": CONFIG_HASH,
        "scoresRoot": result.scoresRoot,
        "totalWeight": result.totalWeight,
        "exampleCount": result.exampleCount,
        "baseModel": job.params.baseModel,
        "adapterCID": result.adapterCID,
        "metricsCID": result.metricsCID,
        "attributionCID": result.attributionCID,
        "configCID": job.params.configCID,
        "datanetIds": job.datanet_ids,
    }
    done = admin.job(job.job_id)
    assert (done.status, done.modelId) == (JobStatus.COMPLETED, 1)
    assert view(admin, admin.models.functions.modelOfJob(job.job_id)) == 1
    assert admin.model_count() == 1
    rnd = admin.reward_round(job.job_id)
    assert (rnd.root, rnd.total, rnd.claimed, rnd.refundTo) == (
        result.attributionRoot,
        share,
        0,
        world.poster.address,
    )
    assert (node.node_stake().reserved, node.node_stake().jobs) == (0, 0)


def test_submit_result_only_by_the_claiming_node(world: World) -> None:
    """Another staked node, the poster or an outsider cannot submit for someone else's claim."""
    job = claimed_job(world)
    other = world.contributors[2]
    stake_node(other)
    for who in (other, world.poster, world.outsider):
        with reverts("ModelRegistryNotJobNode", jobId=job.job_id, account=who.address):
            who.submit_result(job.job_id, result_params(b"\x01" * 32))
    assert world.admin.job(job.job_id).status == JobStatus.CLAIMED


def test_submit_result_only_before_the_deadline(world: World) -> None:
    """A result is accepted up to the second before the deadline, not at it."""
    late = claimed_job(world)
    in_time = claimed_job(world)
    deadline = late.params.deadline
    assert in_time.params.deadline >= deadline
    with frozen_clock(world, deadline - 1):
        world.node.submit_result(in_time.job_id, result_params(b"\x01" * 32))
        set_time(world, deadline)
        with reverts("ModelRegistryDeadlinePassed", jobId=late.job_id, deadline=deadline):
            world.node.submit_result(late.job_id, result_params(b"\x02" * 32))
    assert world.admin.job(in_time.job_id).status == JobStatus.SUBMITTED
    assert world.admin.job(late.job_id).status == JobStatus.CLAIMED


def test_submit_result_refuses_empty_fields(world: World) -> None:
    """adapterCID, adapterHash, dataRoot, attributionRoot, attributionCID (without the document no
    contributor finds a proof, no one can verify), scoresRoot, totalWeight and exampleCount must
    all be set."""
    job = claimed_job(world)
    good = result_params(b"\x01" * 32).model_dump()
    for field, empty in (
        ("adapterCID", ""),
        ("adapterHash", b"\0" * 32),
        ("dataRoot", b"\0" * 32),
        ("attributionRoot", b"\0" * 32),
        ("attributionCID", ""),
        ("scoresRoot", b"\0" * 32),
        ("totalWeight", 0),
        ("exampleCount", 0),
    ):
        with reverts("ModelRegistryInvalidParams", field=field):
            send(world.node, world.node.models.functions.submitResult(job.job_id, {**good, field: empty}))
    assert world.admin.model_count() == 0


def test_submit_result_needs_a_claimed_job(world: World) -> None:
    """Results for unknown, open or already completed jobs are refused."""
    node = world.node
    stake_node(node)
    with reverts("ModelRegistryUnknownJob", jobId=1):
        node.submit_result(1, result_params(b"\x01" * 32))
    job = posted_job(world)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.OPEN):
        node.submit_result(job.job_id, result_params(b"\x01" * 32))
    node.claim_job(job.job_id)
    node.submit_result(job.job_id, result_params(b"\x01" * 32))
    with reverts("ModelRegistryWrongStatus", status=JobStatus.SUBMITTED):
        node.submit_result(job.job_id, result_params(b"\x02" * 32))
    finalize_job(world, job.job_id)
    with reverts("ModelRegistryWrongStatus", status=JobStatus.COMPLETED):
        node.submit_result(job.job_id, result_params(b"\x02" * 32))


def test_a_node_may_run_several_jobs_and_each_holds_a_bond(world: World) -> None:
    """Each job in flight holds its own bond; a delivered job frees its bond, which may then
    leave (while the other job's bond stays)."""
    node = world.node
    first, second = claimed_job(world), claimed_job(world, deadline_in=30 * DAY)
    bond = node.job(first.job_id).bond
    assert (node.node_stake().reserved, node.node_stake().jobs) == (2 * bond, 2)
    node.submit_result(first.job_id, result_params(b"\x01" * 32))
    assert node.node_stake().reserved == 2 * bond  # held through the challenge window
    finalize_job(world, first.job_id)
    assert (node.node_stake().reserved, node.node_stake().jobs, node.node_stake().free) == (bond, 1, bond)
    node.request_unbond(bond)
    world.advance(UNBONDING)
    node.withdraw_stake()
    node.submit_result(second.job_id, result_params(b"\x02" * 32, "b"))
    finalize_job(world, second.job_id)
    assert (node.node_stake().active, node.node_stake().jobs) == (bond, 0)


def test_max_datanets_end_to_end(world: World) -> None:
    """A job on MAX_DATANETS Datanets pays every treasury the same fee."""
    job = claimed_job(world, datanets=16, datanet_fee_bps=5_000, node_fee_bps=0, pool=16 * OPEN + 15)
    world.node.submit_result(job.job_id, result_params(b"\x01" * 32))
    finalize_job(world, job.job_id)
    each = (16 * OPEN + 15) * 5_000 // 10_000 // 16
    assert [world.admin.balance(t) for t in job.treasuries] == [each] * 16
    assert world.admin.balance(world.admin.rewards.address) == 16 * OPEN + 15 - 16 * each


# ------------------------------------------------------------------------- views


def test_unknown_jobs_and_models_revert_in_views(world: World) -> None:
    """getJob, getModel, modelOfJob and lineage name the unknown id."""
    admin = world.admin
    with reverts("ModelRegistryUnknownJob", jobId=0):
        admin.job(0)
    with reverts("ModelRegistryUnknownJob", jobId=5):
        view(admin, admin.models.functions.modelOfJob(5))
    for model_id in (0, 1):
        with reverts("ModelRegistryUnknownModel", modelId=model_id):
            admin.model(model_id)
    with reverts("ModelRegistryUnknownModel", modelId=2):
        admin.lineage(2)
    job = posted_job(world)
    assert view(admin, admin.models.functions.modelOfJob(job.job_id)) == 0


def _three_models(world: World) -> tuple[list[int], Protocol]:
    """Models 1..3: (datanets [a], base A, node), ([a, b], B, node), ([b], A, other node)."""
    other = world.contributors[2]
    stake_node(other)
    (a, b), _ = create_datanets(world.curator, 2)
    base_b = b"\x44" * 32
    specs: list[tuple[list[int], bytes, Protocol]] = [
        ([a], BASE_HASH, world.node),
        ([a, b], base_b, world.node),
        ([b], BASE_HASH, other),
    ]
    for k, (ids, base, node) in enumerate(specs):
        job_id = post_job(world.poster, job_params(world.now(), ids, base_hash=base))
        if not view(node, node.staking.functions.isEligible(node.address)):
            stake_node(node)
        node.claim_job(job_id)
        assert node.submit_result(job_id, result_params(b"\x01" * 32, str(k))) == k + 1
        finalize_job(world, job_id)  # frees the node's bond for the next claim
    return [a, b], other


def test_model_indexes_list_models_oldest_first(world: World) -> None:
    """modelsByDatanet / ByBaseModel / ByNode index every model under each key it has."""
    (a, b), other = _three_models(world)
    admin = world.admin
    assert admin.models_by_datanet(a) == [1, 2]
    assert admin.models_by_datanet(b) == [2, 3]
    assert admin.models_by_datanet(b + 1) == []
    assert admin.models_by_base_model(BASE_HASH) == [1, 3]
    assert admin.models_by_base_model(b"\x44" * 32) == [2]
    assert admin.models_by_base_model(b"\x55" * 32) == []
    assert admin.models_by_node(world.node.address) == [1, 2]
    assert admin.models_by_node(other.address) == [3]
    assert admin.models_by_node(world.outsider.address) == []
    assert admin.model_count() == 3


PAGES = [  # (offset, limit) over the ids [1, 3] of base model A
    (0, 1),
    (1, 1),
    (0, 2),
    (1, 5),
    (2, 1),
    (9, 9),
    (0, 0),
    (0, MAX_UINT),
    (1, MAX_UINT),  # offset + limit overflows uint256: the page must still end at the last id
    (MAX_UINT, MAX_UINT),
]


def test_model_index_pagination(world: World) -> None:
    """Pages are [offset, offset + limit) clipped to the list, for any offset and limit."""
    _three_models(world)
    admin = world.admin
    for offset, limit in PAGES:
        assert admin.models_by_base_model(BASE_HASH, offset, limit) == [1, 3][offset : offset + limit]
        assert admin.models_by_node(world.node.address, offset, limit) == [1, 2][offset : offset + limit]
        assert admin.models_by_datanet(1, offset, limit) == [1, 2][offset : offset + limit]


def test_lineage_follows_parent_models(world: World) -> None:
    """A job continuing a model records the parent; lineage runs child -> parent -> root."""
    poster, node = world.poster, world.node
    first = claimed_job(world)
    m1, _ = complete_job(world, first, [(world.contributors[0].address, 1)])
    parents: list[int] = [m1]
    for k in range(2):
        job_id = post_job(poster, job_params(world.now(), first.datanet_ids, parent_model_id=parents[-1]))
        assert poster.job(job_id).parentModelId == parents[-1]
        node.claim_job(job_id)
        parents.append(node.submit_result(job_id, result_params(b"\x01" * 32, f"child{k}")))
        finalize_job(world, job_id)  # only a final model can be a parent
    m2, m3 = parents[1:]
    assert node.model(m2).parentModelId == m1
    assert node.model(m3).parentModelId == m2
    assert node.lineage(m1) == [m1]
    assert node.lineage(m2) == [m2, m1]
    assert node.lineage(m3) == [m3, m2, m1]


def test_job_with_parent_model_is_independent_of_the_parents_job(world: World) -> None:
    """Continuing a model needs only the model; its datanets and base may differ."""
    first = claimed_job(world)
    m1, _ = complete_job(world, first, [(world.contributors[0].address, 1)])
    child: JobSetup = claimed_job(world, parent_model_id=m1, base_hash=b"\x66" * 32)
    m2, _ = complete_job(world, child, [(world.contributors[1].address, 1)])
    assert world.admin.lineage(m2) == [m2, m1]
    assert world.admin.models_by_base_model(b"\x66" * 32) == [m2]
