"""Recomputation challenges before the VerifierCourt: a committee of staked verifiers, drawn by
stake from a block hash after the challenge, votes by commit-reveal; a majority decides, no quorum
redraws then lapses, the losing side may appeal once, non-voters lose stake, and verifiers earn a
fee on every finalized job. Each rule is attacked here against the real contracts.

The chain clock is frozen so every phase boundary is hit on purpose."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from eth_abi import encode
from eth_utils import keccak

from node.attribution.disputes import commitment, new_salt
from node.chain.accounts import dev_account
from node.chain.models import CasePhase, ChallengeKind, ChallengeStatus, JobStatus, ModelStatus, Verdict, Vote
from node.chain.protocol import Protocol
from tests.conftest import TEST_DEPLOY, World
from tests.contracts.helpers_jobs import (
    JobSetup,
    claimed_job,
    create_datanets,
    events,
    finalize_job,
    frozen_clock,
    job_params,
    post_job,
    result_params,
    reverts,
    set_time,
    stake_node,
)

BOND = TEST_DEPLOY.challenge_bond
APPEAL_BOND = TEST_DEPLOY.appeal_bond
MIN_VERIFIER = TEST_DEPLOY.min_verifier_stake
SIZE = TEST_DEPLOY.committee_size
COMMITTEE_BPS, NO_VOTE_SLASH_BPS = 5_000, 1_000
BURN = "0x000000000000000000000000000000000000dEaD"
VERIFIER_ACCOUNTS = range(10, 17)  # dev accounts with ETH and no OPEN yet
CLAIM = encode(["uint256", "string"], [3, "example 3's score does not reproduce"])


@pytest.fixture
def clock(world: World) -> Iterator[int]:
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        yield t0


def advance(world: World, seconds: int) -> None:
    set_time(world, world.now() + seconds)


def verifiers(world: World, stakes: Sequence[int]) -> list[Protocol]:
    """Verifiers with these stakes, joined in order (dev accounts 10, 11, ...)."""
    out = []
    for i, amount in zip(VERIFIER_ACCOUNTS, stakes, strict=False):
        v = world.as_(dev_account(i))
        world.admin.transfer(v.address, amount + APPEAL_BOND)
        v.join_court(amount)
        out.append(v)
    return out


def submitted(world: World, job: JobSetup | None = None) -> tuple[JobSetup, int]:
    job = job or claimed_job(world)
    return job, world.node.submit_result(job.job_id, result_params(b"\x33" * 32))


def refer(challenger: Protocol, model_id: int) -> int:
    """A Recompute challenge committed and revealed against `model_id`: the court's case id."""
    salt = new_salt()
    challenger.approve(challenger.challenges.address, BOND)
    cid = challenger.commit_challenge(model_id, commitment(ChallengeKind.RECOMPUTE, CLAIM, salt))
    challenger.reveal_challenge(cid, ChallengeKind.RECOMPUTE, CLAIM, salt)
    return cid


def drawn(world: World, case_id: int) -> list[str]:
    """Mines the seed block, draws the committee, returns its members."""
    world.rpc("evm_mine")
    world.outsider.draw_committee(case_id)
    case = world.admin.court_case(case_id)
    return world.admin.court_round(case_id, case.round).members


def vote(world: World, case_id: int, pool: Sequence[Protocol], votes: dict[str, Vote]) -> None:
    """Members in `votes` commit, the commits close, they reveal, the reveals close."""
    a = world.admin
    r = a.court_case(case_id).round
    by_address = {p.address: p for p in pool}
    salts = {}
    for member, v in votes.items():
        salts[member] = new_salt()
        by_address[member].commit_vote(case_id, a.vote_commitment(case_id, r, v, salts[member], member))
    rnd = a.court_round(case_id, r)
    set_time(world, rnd.commitDeadline + 1)
    for member, v in votes.items():
        by_address[member].reveal_vote(case_id, v, salts[member])
    set_time(world, rnd.revealDeadline + 1)


def test_a_fault_majority_voids_the_result_and_pays_the_committee(world: World, clock: int) -> None:
    """Three verifiers are drawn (never the node or the challenger); two vote Fault, one
    Reproduces: upheld after the appeal period, the result voided and the node's bond slashed; the
    two majority voters share half the bond, the challenger gets the rest back."""
    a, challenger = world.admin, world.contributors[0]
    pool = verifiers(world, [MIN_VERIFIER] * 4)
    job, model_id = submitted(world)
    case_id = refer(challenger, model_id)
    assert a.challenge(case_id).status == ChallengeStatus.REFERRED
    assert a.balance(a.court.address) == 4 * MIN_VERIFIER + BOND
    members = drawn(world, case_id)
    assert len(members) == SIZE == len(set(members))
    assert set(members) <= {v.address for v in pool}
    fault, fault2, honest = members
    vote(world, case_id, pool, {fault: Vote.FAULT, fault2: Vote.FAULT, honest: Vote.REPRODUCES})
    before = a.balance(challenger.address)
    receipt = world.outsider.tally(case_id)
    assert events(a.court, receipt, "RoundTallied") == [
        {"caseId": case_id, "round": 0, "reproduces": 1, "faults": 2, "verdict": Verdict.UPHELD}
    ]
    case = a.court_case(case_id)
    assert (case.phase, case.verdict) == (CasePhase.APPEALABLE, Verdict.UPHELD)
    with reverts("CourtAppealOpen", caseId=case_id):
        world.outsider.close_case(case_id)
    with reverts("ModelRegistryChallengesOpen", jobId=job.job_id, openChallenges=1):
        finalize_job(world, job.job_id)  # the window is over, the case is not
    set_time(world, case.appealDeadline + 1)
    closed = world.outsider.close_case(case_id)
    assert a.challenge(case_id).status == ChallengeStatus.UPHELD
    assert a.model(model_id).status == ModelStatus.VOIDED and a.job(job.job_id).status == JobStatus.OPEN
    (voided,) = events(a.models, closed, "ModelVoided")
    assert voided["challenger"] == challenger.address and voided["toChallenger"] > 0
    fee = BOND * COMMITTEE_BPS // 10_000
    # Its bond back less the committee's half, plus its share of the node's slashed bond.
    assert a.balance(challenger.address) - before == BOND - fee + voided["toChallenger"]
    assert [a.court_fees(m) for m in (fault, fault2, honest)] == [fee // 2, fee // 2, 0]
    world.as_(dev_account(10 + [v.address for v in pool].index(fault))).claim_court_fees()
    assert a.court_fees(fault) == 0


def test_a_reproducing_majority_rejects_the_challenge_and_pays_the_node(world: World, clock: int) -> None:
    a, challenger = world.admin, world.contributors[0]
    pool = verifiers(world, [MIN_VERIFIER] * 3)
    job, model_id = submitted(world)
    case_id = refer(challenger, model_id)
    members = drawn(world, case_id)
    vote(world, case_id, pool, {m: Vote.REPRODUCES for m in members})
    world.outsider.tally(case_id)
    set_time(world, a.court_case(case_id).appealDeadline + 1)
    node_before = a.balance(world.node.address)
    world.outsider.close_case(case_id)
    fee = BOND * COMMITTEE_BPS // 10_000
    assert a.challenge(case_id).status == ChallengeStatus.REJECTED
    assert a.balance(world.node.address) - node_before == BOND - fee + fee % 3  # the rounding dust stays with the bond
    assert sum(a.court_fees(m) for m in members) == fee - fee % 3
    finalize_job(world, job.job_id)  # nothing open: the result stands
    assert a.model(model_id).status == ModelStatus.FINALIZED


def test_a_tie_is_never_a_slash(world: World, clock: int) -> None:
    """One Fault, one Reproduces, one silent member: a quorum, but no Fault majority, so the
    result stands (disagreement within tolerance is never slashed) and the silent one loses stake."""
    a = world.admin
    pool = verifiers(world, [MIN_VERIFIER] * 3)
    _, model_id = submitted(world)
    case_id = refer(world.contributors[0], model_id)
    m1, m2, silent = drawn(world, case_id)
    vote(world, case_id, pool, {m1: Vote.FAULT, m2: Vote.REPRODUCES})
    receipt = world.outsider.tally(case_id)
    cut = MIN_VERIFIER * NO_VOTE_SLASH_BPS // 10_000
    assert events(a.court, receipt, "VerifierSlashed") == [{"verifier": silent, "caseId": case_id, "amount": cut}]
    assert a.verifier(silent).active == MIN_VERIFIER - cut
    assert a.court_case(case_id).verdict == Verdict.REJECTED


def test_no_quorum_redraws_once_then_lapses_with_the_bond_returned(world: World, clock: int) -> None:
    """Nobody votes: each silent member is slashed, a second committee is drawn, and when it is
    silent too the case lapses: the challenger's bond comes back whole and the result can be finalized."""
    a, challenger = world.admin, world.contributors[0]
    verifiers(world, [2 * MIN_VERIFIER] * 3)  # still above the minimum after one slash
    job, model_id = submitted(world)
    before = a.balance(challenger.address)
    case_id = refer(challenger, model_id)
    first = drawn(world, case_id)
    set_time(world, a.court_round(case_id, 0).revealDeadline + 1)
    burned = a.balance(BURN)
    world.outsider.tally(case_id)
    cut = 2 * MIN_VERIFIER * NO_VOTE_SLASH_BPS // 10_000
    assert a.balance(BURN) - burned == 3 * cut
    assert a.court_case(case_id).round == 1 and a.court_case(case_id).phase == CasePhase.VOTING
    second = drawn(world, case_id)
    assert sorted(second) == sorted(first)  # all three are eligible again
    set_time(world, a.court_round(case_id, 1).revealDeadline + 1)
    world.outsider.tally(case_id)
    assert a.court_case(case_id).verdict == Verdict.LAPSED
    assert a.challenge(case_id).status == ChallengeStatus.LAPSED
    assert a.balance(challenger.address) == before
    finalize_job(world, job.job_id)


def test_an_empty_court_lapses_the_case_instead_of_freezing_the_pool(world: World, clock: int) -> None:
    """No verifier is staked (or none eligible): each round ends at its deadline with no committee;
    the case lapses and the job can still be finalized."""
    a = world.admin
    job, model_id = submitted(world)
    case_id = refer(world.contributors[0], model_id)
    assert drawn(world, case_id) == []
    for r in (0, 1):
        set_time(world, a.court_round(case_id, r).revealDeadline + 1)
        world.outsider.tally(case_id)
    assert a.challenge(case_id).status == ChallengeStatus.LAPSED
    finalize_job(world, job.job_id)


def test_the_losing_node_appeals_to_a_larger_committee_whose_verdict_is_final(world: World, clock: int) -> None:
    """Upheld by a committee of three; the node appeals (only it may), a committee of up to seven
    (here all five eligible verifiers) votes Reproduces: rejected, the result stands, the node gets
    its appeal bond back less the appeal committee's half, and the challenge bond's rest."""
    a, node, challenger = world.admin, world.node, world.contributors[0]
    pool = verifiers(world, [MIN_VERIFIER] * 5)
    a.transfer(node.address, APPEAL_BOND)
    job, model_id = submitted(world)
    case_id = refer(challenger, model_id)
    members = drawn(world, case_id)
    vote(world, case_id, pool, {m: Vote.FAULT for m in members})
    world.outsider.tally(case_id)
    with reverts("CourtNotLosingSide", caseId=case_id, account=challenger.address):
        challenger.appeal(case_id)
    node_before = a.balance(node.address)
    node.appeal(case_id)
    assert a.court_case(case_id).round == 2
    appeal_members = drawn(world, case_id)
    assert sorted(appeal_members) == sorted(v.address for v in pool)  # 2*3+1 = 7 > 5 eligible
    vote(world, case_id, pool, {m: Vote.REPRODUCES for m in appeal_members})
    world.outsider.tally(case_id)
    case = a.court_case(case_id)
    assert (case.phase, case.verdict) == (CasePhase.CLOSED, Verdict.REJECTED)
    assert a.challenge(case_id).status == ChallengeStatus.REJECTED
    fee, appeal_fee = BOND * COMMITTEE_BPS // 10_000, APPEAL_BOND * COMMITTEE_BPS // 10_000
    # Paid: the appeal bond. Back: the challenge bond less the first committee's share (its dust
    # stays with the bond), and the appeal bond less the appeal committee's share.
    back = (BOND - fee + fee % SIZE) + (APPEAL_BOND - appeal_fee + appeal_fee % 5)
    assert a.balance(node.address) - node_before == back - APPEAL_BOND
    with reverts("CourtWrongPhase", caseId=case_id):
        node.appeal(case_id)  # once
    finalize_job(world, job.job_id)


def test_the_committee_is_drawn_by_stake_from_a_later_block_hash(world: World, clock: int) -> None:
    """The draw is the stake-weighted sortition documented in VerifierCourt, seeded by the hash of
    the block the case opened in (unknown when the challenge was filed), excluding the node and the
    challenger and verifiers below the minimum stake; replayed here from the seed, pick by pick."""
    a, challenger = world.admin, world.contributors[0]
    stakes = [MIN_VERIFIER, 5 * MIN_VERIFIER, 2 * MIN_VERIFIER, 3 * MIN_VERIFIER, MIN_VERIFIER]
    pool = verifiers(world, stakes)
    # The challenger is a verifier too: it must never judge its own challenge.
    a.transfer(challenger.address, MIN_VERIFIER)
    challenger.join_court(MIN_VERIFIER)
    _, model_id = submitted(world)
    case_id = refer(challenger, model_id)
    seed_block = a.court_round(case_id, 0).seedBlock
    with reverts("CourtSeedNotMined", caseId=case_id, seedBlock=seed_block):
        a.client.call(a.court.functions.draw(case_id))  # in the seed block itself: its hash is unknown
    members = drawn(world, case_id)
    seed = bytes(a.client.w3.eth.get_block(seed_block)["hash"])
    weights = {v.address: s for v, s in zip(pool, stakes, strict=True)}
    assert members == replay_sortition(seed, a.verifier_set(), weights, SIZE)
    assert challenger.address not in members


def test_a_stale_seed_is_renewed_rather_than_reused(world: World, clock: int) -> None:
    """Drawn more than 256 blocks after its seed block, the hash is gone (0): a newer block is
    named instead, and the draw uses that one."""
    a = world.admin
    verifiers(world, [MIN_VERIFIER] * 3)
    _, model_id = submitted(world)
    case_id = refer(world.contributors[0], model_id)
    old = a.court_round(case_id, 0).seedBlock
    world.rpc("anvil_mine", hex(300))
    receipt = world.outsider.draw_committee(case_id)
    renewed = events(a.court, receipt, "SeedRenewed")
    assert len(renewed) == 1 and renewed[0]["seedBlock"] > old + 256
    assert not a.court_round(case_id, 0).drawn
    assert len(drawn(world, case_id)) == SIZE


def test_a_private_datanets_committee_comes_from_the_nodes_it_trusts(world: World, clock: int) -> None:
    """Only verifiers the restricted Datanet trusts (they hold its key grants) may sit on its cases."""
    curator = world.curator
    pool = verifiers(world, [MIN_VERIFIER] * 5)
    ids, _ = create_datanets(curator, 1, restricted=True)
    trusted = [pool[1].address, pool[3].address]
    for n in (world.node.address, *trusted):
        curator.set_trusted_node(ids[0], n)
    curator.set_trainer(ids[0], world.poster.address)
    job_id = post_job(world.poster, job_params(world.now(), ids))
    missing = world.node.bond_for(job_id) - world.node.node_stake().free
    if missing > 0:
        stake_node(world.node, missing)
    world.node.claim_job(job_id)
    model_id = world.node.submit_result(job_id, result_params(b"\x44" * 32))
    case_id = refer(world.contributors[0], model_id)
    assert sorted(drawn(world, case_id)) == sorted(trusted)


def test_votes_are_sealed_and_only_members_vote(world: World, clock: int) -> None:
    a = world.admin
    pool = verifiers(world, [MIN_VERIFIER] * 4)
    _, model_id = submitted(world)
    case_id = refer(world.contributors[0], model_id)
    members = drawn(world, case_id)
    outsider = next(v for v in pool if v.address not in members)
    with reverts("CourtNotMember", caseId=case_id, account=outsider.address):
        outsider.commit_vote(case_id, b"\x01" * 32)
    member = next(v for v in pool if v.address == members[0])
    salt = new_salt()
    member.commit_vote(case_id, a.vote_commitment(case_id, 0, Vote.REPRODUCES, salt, member.address))
    with reverts("CourtAlreadyCommitted", caseId=case_id, member=member.address):
        member.commit_vote(case_id, b"\x02" * 32)
    with reverts("CourtRevealsNotOpen", caseId=case_id):
        member.reveal_vote(case_id, Vote.REPRODUCES, salt)  # nobody sees a vote while others still commit
    with reverts("CourtOnDuty", verifier=member.address, duties=1):
        member.leave_court(MIN_VERIFIER)  # cannot dodge the duty by leaving
    set_time(world, a.court_round(case_id, 0).commitDeadline + 1)
    with reverts("CourtWrongVote", caseId=case_id, member=member.address):
        member.reveal_vote(case_id, Vote.FAULT, salt)  # not what it sealed
    member.reveal_vote(case_id, Vote.REPRODUCES, salt)
    with reverts("CourtCommitsClosed", caseId=case_id):
        next(v for v in pool if v.address == members[1]).commit_vote(case_id, b"\x03" * 32)


def test_only_the_protocol_contracts_open_and_decide_cases(world: World) -> None:
    a, outsider = world.admin, world.outsider
    with reverts("CourtNotChallenges", caller=outsider.address):
        outsider.client.transact(outsider.court.functions.open(1, 1, outsider.address, BOND, b""))
    with reverts("ChallengeNotCourt", caller=outsider.address):
        outsider.client.transact(outsider.challenges.functions.decide(1, int(Verdict.UPHELD)))
    with reverts("ChallengeCourtSet", court=a.court.address):
        a.client.transact(a.challenges.functions.setCourt(outsider.address))


def test_every_finalized_job_pays_the_verifiers_by_stake(world: World, clock: int) -> None:
    """Verifiers earn on every job, not only disputed ones: a finalized job's fee is shared in
    proportion to stake, nothing is paid twice, and a leaving verifier waits out its delay."""
    a = world.admin
    small, big = verifiers(world, [MIN_VERIFIER, 3 * MIN_VERIFIER])
    waiting = a.client.call(a.court.functions.undistributed())
    job, _ = submitted(world)
    finalize_job(world, job.job_id)
    fee = a.job(job.job_id).verifierFee
    assert fee == job.params.pool // 100 > 0
    shared = fee + waiting
    got_small, got_big = a.court_fees(small.address), a.court_fees(big.address)
    assert got_small + got_big <= shared and shared - (got_small + got_big) <= 2
    assert abs(got_big - 3 * got_small) <= 3
    before = a.balance(big.address)
    big.claim_court_fees()
    assert a.balance(big.address) - before == got_big and a.court_fees(big.address) == 0
    with reverts("CourtZeroAmount"):
        big.claim_court_fees()
    small.leave_court(MIN_VERIFIER)
    assert small.address not in a.verifier_set()
    with reverts("CourtStillLeaving", verifier=small.address):
        small.withdraw_court()
    advance(world, TEST_DEPLOY.verifier_leave_delay)
    small.withdraw_court()
    assert a.verifier(small.address).leaving == 0


def replay_sortition(seed: bytes, members: Sequence[str], weights: dict[str, int], size: int) -> list[str]:
    """VerifierCourt._sortition in Python: `size` picks without replacement, pick k at
    keccak(seed, k) mod the remaining weight, walking the set in its on-chain order."""
    w = [weights.get(m, 0) if weights.get(m, 0) >= MIN_VERIFIER else 0 for m in members]
    total, picked = sum(w), []
    for k in range(size):
        if total == 0:
            break
        x = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, k])), "big") % total
        i = 0
        while x >= w[i]:
            x -= w[i]
            i += 1
        picked.append(members[i])
        total -= w[i]
        w[i] = 0
    return picked
