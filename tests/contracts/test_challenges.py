"""The challenge window (H-1): a submitted result holds the bond and the pool until `finalize`,
and each on-chain arithmetic challenge performs its attack against a forged result and voids it,
while the same challenge against an honest result fails and pays the node.

Results here are real: score leaves, data leaves and reward leaves built by the node's own code
(`node.rewards`), roots committed with `submitResult`, evidence from `node.attribution.disputes`.
The chain clock is frozen so each phase of the (6 s) window is hit on purpose."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from eth_utils import keccak

from node.attribution.disputes import (
    PROVEN_SCORE,
    ResultTrees,
    answer_evidence,
    commitment,
    find_faults,
    new_salt,
)
from node.chain.models import ChallengeKind, ChallengeStatus, JobStatus, ModelStatus, ResultParams
from node.chain.protocol import Protocol
from node.data.manifest import LEAF_ENCODING
from node.rewards.merkle import StandardMerkleTree
from node.rewards.payout import ExampleRef, compute_payout
from node.rewards.scores_tree import ScoreLeaf, score_leaves
from node.rewards.shares import Share, reward_tree
from tests.conftest import TEST_DEPLOY, World
from tests.contracts.helpers_jobs import (
    JobSetup,
    claimed_job,
    contributors_share,
    frozen_clock,
    job_params,
    post_job,
    reverts,
    send,
    set_time,
)

BOND = TEST_DEPLOY.challenge_bond
COMMIT, REVEAL, ANSWER = TEST_DEPLOY.commit_period, TEST_DEPLOY.reveal_period, TEST_DEPLOY.answer_period
BURN = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def clock(world: World) -> Iterator[int]:
    """Chain time frozen at a fresh timestamp (every block mined at it until `world.advance`)."""
    t0 = world.now() + 100
    with frozen_clock(world, t0):
        yield t0


@dataclass
class Result:
    """A submitted result and the trees behind it."""

    job: JobSetup
    model_id: int
    leaves: list[ScoreLeaf]
    rewards: StandardMerkleTree
    data: StandardMerkleTree
    total: int
    total_weight: int
    shares: list[Share] = field(default_factory=list)

    def trees(self, p: Protocol) -> ResultTrees:
        return ResultTrees(self.leaves, self.rewards, p.result_commitment(self.model_id))


def advance(world: World, seconds: int) -> None:
    """Mines a block `seconds` later (the frozen clock ignores evm_increaseTime)."""
    set_time(world, world.now() + seconds)


def _contributors(world: World) -> list[str]:
    return [c.address for c in world.contributors[:3]]


def _examples(world: World) -> list[tuple[int, str]]:
    """Manifest order: contribution 1 (3 examples) and 2 (2) of contributor 0, 3 (3) of contributor 1,
    4 (2) of contributor 2: (contribution id, contributor) per example."""
    a, b, c = _contributors(world)
    return [(1, a)] * 3 + [(2, a)] * 2 + [(3, b)] * 3 + [(4, c)] * 2


SCORES = [5, 3, -1, -4, 1, 2, 2, 6, -3, -2]  # contribution sums 7, -3, 10, -5 -> weights 7, 0, 10, 0


def submit(
    world: World,
    job: JobSetup,
    *,
    leaves: Sequence[ScoreLeaf] | None = None,
    shares: Sequence[Share] | None = None,
    total_weight: int | None = None,
    example_count: int | None = None,
    data_refs: Sequence[tuple[int, str]] | None = None,
) -> Result:
    """Submits an honest result of `job` (the payout rule over SCORES), or one with the given
    forged parts; returns it with its trees."""
    refs = _examples(world)
    total = contributors_share(job.params, len(job.datanet_ids))
    payout = compute_payout(
        [ExampleRef(index=k, contribution_id=c, contributor=a) for k, (c, a) in enumerate(refs)],
        SCORES,
        total,
        job.treasuries[0],
    )
    honest = [*payout.amounts, *([Share(account=payout.dust_recipient, amount=payout.dust)] if payout.dust else [])]
    leaves = list(leaves) if leaves is not None else score_leaves(refs, SCORES, ["0x" + "ab" * 32] * len(refs))
    shares = list(shares) if shares is not None else honest
    rewards = reward_tree(job.job_id, shares)
    data_values = [(k, c, a, keccak(text=f"example {k}")) for k, (c, a) in enumerate(data_refs or refs)]
    data = StandardMerkleTree.of(data_values, LEAF_ENCODING)
    w = total_weight if total_weight is not None else payout.total_weight
    params = ResultParams(
        adapterCID="bafyadapter",
        adapterHash=keccak(text="adapter"),
        metricsCID="bafymetrics",
        dataRoot=data.root,
        attributionRoot=rewards.root,
        attributionCID="bafyattribution",
        scoresRoot=_root(leaves),
        totalWeight=w,
        exampleCount=example_count if example_count is not None else len(refs),
    )
    model_id = world.node.submit_result(job.job_id, params)
    return Result(job, model_id, leaves, rewards, data, total, w, shares)


def _root(leaves: Sequence[ScoreLeaf]) -> bytes:
    from node.rewards.scores_tree import ScoresTree

    return ScoresTree(leaves, check_order=False).root


def challenge(
    who: Protocol, model_id: int, kind: ChallengeKind, evidence: bytes, *, reveal: bool = True
) -> tuple[int, bytes]:
    """Commits (bond approved) and, by default, reveals a challenge; returns (id, salt)."""
    salt = new_salt()
    who.approve(who.challenges.address, BOND)
    cid = who.commit_challenge(model_id, commitment(kind, evidence, salt))
    if reveal:
        who.reveal_challenge(cid, kind, evidence, salt)
    return cid, salt


def _fault(world: World, r: Result, kind: ChallengeKind) -> bytes:
    faults = {f.kind: f for f in find_faults(r.trees(world.admin), world.admin.result_commitment(r.model_id), r.data)}
    assert kind in faults, f"{kind.name} not found; found {[k.name for k in faults]}"
    return faults[kind].evidence


def assert_voided(world: World, r: Result, challenger: Protocol, before: dict[str, int]) -> None:
    """The result is void, the job open again with its pool grown, the bond divided as the contract says."""
    m = world.admin.model(r.model_id)
    job = world.admin.job(r.job.job_id)
    assert m.status == ModelStatus.VOIDED and m.node == world.node.address
    assert job.status == JobStatus.OPEN and job.modelId == 0 and job.bond == 0
    bond = before["bond"]
    to_challenger = bond * 4_000 // 10_000
    burned = bond * 2_000 // 10_000
    assert job.pool == r.job.params.pool + bond - to_challenger - burned
    assert challenger.balance() == before["challenger"] + to_challenger  # its own bond came back too
    assert world.admin.balance(BURN) == before["burn"] + burned
    stake = world.node.node_stake()
    assert stake.active == before["active"] - bond and stake.reserved == before["reserved"] - bond
    with reverts("ModelRegistryWrongStatus"):
        world.outsider.finalize(r.job.job_id)


def snapshot(world: World, r: Result, challenger: Protocol) -> dict[str, int]:
    stake = world.node.node_stake()
    return {
        "bond": world.admin.job(r.job.job_id).bond,
        "challenger": challenger.balance(),
        "burn": world.admin.balance(BURN),
        "active": stake.active,
        "reserved": stake.reserved,
    }


# ------------------------------------------------------------------ the window


def test_a_result_holds_bond_and_pool_until_finalize(world: World, clock: int) -> None:
    job = claimed_job(world)
    bond = world.admin.job(job.job_id).bond
    r = submit(world, job)
    assert world.admin.job(job.job_id).status == JobStatus.SUBMITTED
    assert world.admin.model(r.model_id).status == ModelStatus.PENDING
    assert world.node.node_stake().reserved >= bond  # still backing the result
    assert world.admin.reward_round(job.job_id).total == 0  # no round: nothing claimable, no fee paid
    at, open_ = world.admin.finalizable_at(r.model_id)
    assert (at, open_) == (clock + COMMIT + REVEAL + ANSWER, 0)
    advance(world, at - clock - 1)
    with reverts("ModelRegistryChallengeWindowOpen", finalizableAt=at):
        world.outsider.finalize(job.job_id)
    advance(world, 1)
    reserved = world.node.node_stake().reserved
    world.outsider.finalize(job.job_id)
    assert world.admin.job(job.job_id).status == JobStatus.COMPLETED
    assert world.admin.model(r.model_id).status == ModelStatus.FINALIZED
    assert world.node.node_stake().reserved == reserved - bond
    assert world.admin.reward_round(job.job_id).total == r.total
    with reverts("ModelRegistryWrongStatus"):
        world.outsider.finalize(job.job_id)


def test_a_pending_model_cannot_be_a_parent(world: World, clock: int) -> None:
    job = claimed_job(world)
    r = submit(world, job)
    params = job_params(world.now(), job.datanet_ids, parent_model_id=r.model_id)
    with reverts("ModelRegistryParentNotFinal", modelId=r.model_id):
        post_job(world.poster, params)
    advance(world, COMMIT + REVEAL + ANSWER)
    world.outsider.finalize(job.job_id)
    assert post_job(world.poster, params) > job.job_id


def test_only_the_challenge_contract_voids_and_it_is_wired_once(world: World) -> None:
    job = claimed_job(world)
    r = submit(world, job)
    for who in (world.admin, world.node, world.poster):
        with reverts("ModelRegistryNotChallenges"):
            send(who, who.models.functions.voidResult(r.model_id, who.address))
    with reverts("ModelRegistryChallengesSet"):
        send(world.admin, world.admin.models.functions.setChallenges(world.outsider.address))
    with reverts("ModelRegistryNotDeployer"):
        send(world.outsider, world.outsider.models.functions.setChallenges(world.outsider.address))


# ------------------------------------------------------- H-1: a node paying itself


def test_h1_a_node_paying_itself_the_pool_is_voided_and_slashed(world: World, clock: int) -> None:
    """The attack: one reward leaf paying the node the whole contributors' part. Before, it could
    claim it in the same block; now there is no round until finalize, a reward-leaf challenge asks
    the node to justify the leaf, it cannot, and the result is voided."""
    job = claimed_job(world)
    total = contributors_share(job.params, 1)
    r = submit(world, job, shares=[Share(account=world.node.address, amount=total)])
    with reverts("RewardUnknownRound"):
        world.node.claim_reward(job.job_id, 0, world.node.address, total, r.rewards.proof(0))
    challenger = world.relayer
    before = snapshot(world, r, challenger)
    evidence = _fault(world, r, ChallengeKind.REWARD_LEAF)
    cid, _ = challenge(challenger, r.model_id, ChallengeKind.REWARD_LEAF, evidence)
    c = world.admin.challenge(cid)
    assert c.status == ChallengeStatus.ANSWERABLE and c.account == world.node.address and c.amount == total
    assert world.admin.finalizable_at(r.model_id)[1] == 1
    # The node has nothing to show: no examples of its own, and it is not the dust recipient.
    t = r.trees(world.node)
    with pytest.raises(ValueError, match="does not justify"):
        answer_evidence(t, world.node.result_commitment(r.model_id), world.node.address, total, by_count=False, dust=0)
    from eth_abi import encode

    from node.attribution.disputes import RUN

    with reverts("ChallengeBadAnswer", reason="not the dust recipient"):
        world.node.answer_challenge(cid, encode(["bool", f"{RUN}[]"], [False, []]))
    advance(world, COMMIT + REVEAL + ANSWER)
    with reverts("ModelRegistryChallengesOpen", openChallenges=1):
        world.outsider.finalize(job.job_id)
    world.outsider.settle_challenge(cid)  # anyone
    assert world.admin.challenge(cid).status == ChallengeStatus.UPHELD
    assert_voided(world, r, challenger, before)
    with reverts("RewardUnknownRound"):
        world.node.claim_reward(job.job_id, 0, world.node.address, total, r.rewards.proof(0))


def test_an_honest_reward_leaf_is_answered_and_the_challenger_pays(world: World, clock: int) -> None:
    job = claimed_job(world)
    r = submit(world, job)
    committed = world.admin.result_commitment(r.model_id)
    assert find_faults(r.trees(world.admin), committed, r.data) == []
    # Challenge the first contributor's leaf anyway (two contributions, one clipped to zero).
    from eth_abi import encode

    from node.attribution.disputes import REWARD_CLAIM

    values = r.rewards.values()
    k = next(i for i, v in enumerate(values) if v[2] == _contributors(world)[0])
    _, index, account, amount = values[k]
    evidence = encode([REWARD_CLAIM], [(int(index), account, int(amount), r.rewards.proof(k))])
    node_before = world.node.balance()
    cid, _ = challenge(world.relayer, r.model_id, ChallengeKind.REWARD_LEAF, evidence)
    with reverts("ChallengeNotNode"):
        world.relayer.answer_challenge(cid, b"")
    answer = answer_evidence(r.trees(world.node), committed, account, int(amount), by_count=False, dust=0)
    world.node.answer_challenge(cid, answer)
    assert world.admin.challenge(cid).status == ChallengeStatus.REJECTED
    assert world.node.balance() - node_before > BOND - 10**16  # the bond, less the answer's gas
    advance(world, COMMIT + REVEAL + ANSWER)
    world.outsider.finalize(job.job_id)
    assert world.admin.model(r.model_id).status == ModelStatus.FINALIZED


def test_the_dust_leaf_is_answered_as_dust(world: World, clock: int) -> None:
    job = claimed_job(world)
    r = submit(world, job)
    values = r.rewards.values()
    dust = [(i, v) for i, v in enumerate(values) if v[2] == job.treasuries[0]]
    if not dust:
        pytest.skip("this pool splits without rounding dust")
    k, (_, index, account, amount) = dust[0]
    from eth_abi import encode

    from node.attribution.disputes import REWARD_CLAIM

    evidence = encode([REWARD_CLAIM], [(int(index), account, int(amount), r.rewards.proof(k))])
    cid, _ = challenge(world.relayer, r.model_id, ChallengeKind.REWARD_LEAF, evidence)
    committed = world.admin.result_commitment(r.model_id)
    world.node.answer_challenge(
        cid, answer_evidence(r.trees(world.node), committed, account, int(amount), by_count=False, dust=int(amount))
    )
    assert world.admin.challenge(cid).status == ChallengeStatus.REJECTED


# ------------------------------------------------------- immediate arithmetic kinds


def _forged_running_total(world: World) -> list[ScoreLeaf]:
    leaves = score_leaves(_examples(world), SCORES, ["0x" + "ab" * 32] * len(SCORES))
    bad = leaves[4].model_copy(update={"running_total": leaves[4].running_total + 1_000})
    return [*leaves[:4], bad, *leaves[5:]]


def _forged_index(world: World) -> list[ScoreLeaf]:
    leaves = score_leaves(_examples(world), SCORES, ["0x" + "ab" * 32] * len(SCORES))
    extra = leaves[9].model_copy(update={"index": 10, "score": 0})
    return [*leaves, extra]


def _forged_duplicate(world: World) -> list[ScoreLeaf]:
    leaves = score_leaves(_examples(world), SCORES, ["0x" + "ab" * 32] * len(SCORES))
    twin = leaves[3].model_copy(update={"score": 50, "running_total": leaves[2].running_total + 50})
    return [*leaves, twin]


def _forged_split(world: World) -> list[ScoreLeaf]:
    """Contribution 3 (contributor 1) credited at index 1, inside contribution 1."""
    refs = _examples(world)
    refs[1] = refs[6]
    return score_leaves(refs, SCORES, ["0x" + "ab" * 32] * len(SCORES))


FORGERIES = {
    ChallengeKind.RUNNING_TOTAL: (_forged_running_total, {}),
    ChallengeKind.INDEX_OUT_OF_RANGE: (_forged_index, {}),
    ChallengeKind.DUPLICATE_INDEX: (_forged_duplicate, {}),
    ChallengeKind.BROKEN_CONTRIBUTION: (_forged_split, {}),
}


@pytest.mark.parametrize("kind", list(FORGERIES), ids=lambda k: k.name.lower())
def test_a_forged_scores_tree_is_voided_at_reveal(world: World, clock: int, kind: ChallengeKind) -> None:
    forge, extra = FORGERIES[kind]
    job = claimed_job(world)
    r = submit(world, job, leaves=forge(world), **extra)
    challenger = world.relayer
    before = snapshot(world, r, challenger)
    cid, _ = challenge(challenger, r.model_id, kind, _fault(world, r, kind))
    assert world.admin.challenge(cid).status == ChallengeStatus.UPHELD
    assert_voided(world, r, challenger, before)


def test_scores_that_credit_another_contributor_than_the_data_are_voided(world: World, clock: int) -> None:
    job = claimed_job(world)
    refs = _examples(world)
    data_refs = [*refs]
    data_refs[8] = (5, world.contributors[3].address)  # the data says example 8 is someone else's
    r = submit(world, job, data_refs=data_refs)
    before = snapshot(world, r, world.relayer)
    cid, _ = challenge(
        world.relayer, r.model_id, ChallengeKind.DATA_MISMATCH, _fault(world, r, ChallengeKind.DATA_MISMATCH)
    )
    assert world.admin.challenge(cid).status == ChallengeStatus.UPHELD
    assert_voided(world, r, world.relayer, before)


def test_the_same_evidence_against_an_honest_result_pays_the_node(world: World, clock: int) -> None:
    """A running-total 'fault' of two honest neighbours: rejected, the bond goes to the node."""
    job = claimed_job(world)
    r = submit(world, job)
    t = r.trees(world.admin)
    from eth_abi import encode

    evidence = encode(["bool", PROVEN_SCORE, PROVEN_SCORE], [True, t.proven(3), t.proven(4)])
    node_before = world.node.balance()
    cid, _ = challenge(world.relayer, r.model_id, ChallengeKind.RUNNING_TOTAL, evidence)
    assert world.admin.challenge(cid).status == ChallengeStatus.REJECTED
    assert world.node.balance() == node_before + BOND
    assert world.admin.model(r.model_id).status == ModelStatus.PENDING


# --------------------------------------------------------------- commit-reveal


def test_a_copied_challenge_comes_too_late_and_the_first_committer_wins(world: World, clock: int) -> None:
    """A copier (who learnt the evidence somehow) commits it too, but later: the first reveal voids
    the result and pays the first challenger; the copy is moot, its bond returned and no reward."""
    job = claimed_job(world)
    r = submit(world, job, leaves=_forged_running_total(world))
    evidence = _fault(world, r, ChallengeKind.RUNNING_TOTAL)
    before = snapshot(world, r, world.relayer)
    first, salt = challenge(world.relayer, r.model_id, ChallengeKind.RUNNING_TOTAL, evidence, reveal=False)
    copier = world.contributors[3]
    copy, copy_salt = challenge(copier, r.model_id, ChallengeKind.RUNNING_TOTAL, evidence, reveal=False)
    with reverts("ChallengeNotChallenger"):
        copier.reveal_challenge(first, ChallengeKind.RUNNING_TOTAL, evidence, salt)
    world.relayer.reveal_challenge(first, ChallengeKind.RUNNING_TOTAL, evidence, salt)
    assert_voided(world, r, world.relayer, before)
    copier_before = copier.balance()
    copier.reveal_challenge(copy, ChallengeKind.RUNNING_TOTAL, evidence, copy_salt)
    assert world.admin.challenge(copy).status == ChallengeStatus.MOOT
    assert copier.balance() == copier_before + BOND
    world.relayer.approve(world.outsider.challenges.address, BOND)
    with reverts("ChallengeNotPending"):
        world.relayer.commit_challenge(r.model_id, b"\x02" * 32)


def test_reveals_must_match_the_commit_and_come_in_time(world: World, clock: int) -> None:
    job = claimed_job(world)
    r = submit(world, job, leaves=_forged_running_total(world))
    evidence = _fault(world, r, ChallengeKind.RUNNING_TOTAL)
    cid, salt = challenge(world.relayer, r.model_id, ChallengeKind.RUNNING_TOTAL, evidence, reveal=False)
    with reverts("ChallengeWrongCommitment"):
        world.relayer.reveal_challenge(cid, ChallengeKind.RUNNING_TOTAL, evidence, new_salt())
    with reverts("ChallengeWrongCommitment"):
        world.relayer.reveal_challenge(cid, ChallengeKind.INDEX_OUT_OF_RANGE, evidence, salt)
    advance(world, COMMIT)
    world.relayer.approve(world.outsider.challenges.address, BOND)
    with reverts("ChallengeCommitsClosed"):
        world.relayer.commit_challenge(r.model_id, b"\x01" * 32)
    advance(world, REVEAL)
    with reverts("ChallengeRevealsClosed"):
        world.relayer.reveal_challenge(cid, ChallengeKind.RUNNING_TOTAL, evidence, salt)
    node_before = world.node.balance()
    world.outsider.forfeit_challenge(cid)  # never revealed: the bond pays the node
    assert world.admin.challenge(cid).status == ChallengeStatus.FORFEITED
    assert world.node.balance() == node_before + BOND
    advance(world, ANSWER)
    world.outsider.finalize(job.job_id)  # the forged tree passed unchallenged: the window never extends
    assert world.admin.model(r.model_id).status == ModelStatus.FINALIZED


def test_a_reveal_needs_a_later_block_than_its_commit(world: World, clock: int) -> None:
    job = claimed_job(world)
    r = submit(world, job, leaves=_forged_running_total(world))
    evidence = _fault(world, r, ChallengeKind.RUNNING_TOTAL)
    salt = new_salt()
    me = world.relayer
    me.approve(me.challenges.address, BOND)
    world.rpc("evm_setAutomine", False)
    try:
        commit_tx = me.challenges.functions.commit(r.model_id, commitment(ChallengeKind.RUNNING_TOTAL, evidence, salt))
        h1 = commit_tx.transact({"from": me.address, "gas": 300_000})
        reveal_tx = me.challenges.functions.reveal(
            1 + me.challenge_count(), int(ChallengeKind.RUNNING_TOTAL), evidence, salt
        )
        h2 = reveal_tx.transact({"from": me.address, "gas": 3_000_000})
        world.rpc("evm_mine")
    finally:
        world.rpc("evm_setAutomine", True)
    w3 = me.client.w3
    assert w3.eth.get_transaction_receipt(h1)["status"] == 1
    assert w3.eth.get_transaction_receipt(h2)["status"] == 0  # same block: ChallengeRevealTooEarly
    assert world.admin.model(r.model_id).status == ModelStatus.PENDING
