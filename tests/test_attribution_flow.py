"""Proof of Attribution end to end on the real dev chain, embedded store and trainer: the daemon
attributes a job from its trajectory snapshots and commits the v1 document; `datanet verify`
recomputes it from public artifacts only and says MATCH; a node that commits other scores
(consistent arithmetic, different amounts) is caught as MISMATCH; contributors claim."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_abi import encode
from typer.testing import CliRunner

from node.attribution.disputes import REWARD_CLAIM, commitment, new_salt
from node.attribution.document import AttributionDocument, build_document
from node.chain.accounts import dev_account
from node.chain.models import CasePhase, ChallengeKind, ChallengeStatus, JobStatus, ModelStatus, Verdict, Vote
from node.chain.protocol import Protocol
from node.cli import app
from node.daemon.eligibility import load_config
from node.daemon.loop import Daemon
from node.daemon.steps import JobSteps, WaitJob
from node.daemon.store import JobState, JobStore
from node.daemon.verifier import Claim, Verifier, recompute_evidence
from node.daemon.verify import NoSuchPart, VerifyError, verify_job
from node.data.grants import ensure_encryption_key, grant_job, grant_standing
from node.data.manifest import Manifest
from node.demo import world as demo_world
from node.rewards.merkle import StandardMerkleTree
from node.rewards.shares import split_pool
from node.train.trainer import train
from tests.conftest import OUTSIDER, TEST_DEPLOY, World
from tests.contracts.helpers_jobs import frozen_clock, set_time
from tests.daemon_setup import NodeHome, approved_datanet, node_home, post_job, private_datanet, run_to_settled, stake


@pytest.fixture
def home(world: World, tmp_path: Path, tiny_base_model: Path) -> NodeHome:
    return node_home(world, tmp_path, tiny_base_model)


def _cli_env(home: NodeHome, world: World) -> dict[str, str]:
    s = home.settings
    return {"DATANET_DATA_DIR": str(s.data_dir), "DATANET_NETWORK": "test", "DATANET_RPC_URL": world.rpc_url,
            "DATANET_DEPLOYMENTS_DIR": str(s.deployments_dir), "DATANET_MODELS_DIR": str(s.models_path)}  # fmt: skip


def _drive(steps: JobSteps, jobs: JobStore, job_id: int, until: JobState) -> None:
    """Runs job `job_id`'s steps directly (errors propagate) until it reaches `until`; a result
    waiting on its challenge window gets the chain clock moved past it."""
    for _ in range(12):
        r = jobs.require(job_id)
        if r.state == until:
            return
        try:
            steps.steps[r.state](r)
        except WaitJob:
            if r.state != JobState.SUBMITTED or r.model_id is None:
                raise
            at, _ = steps.p.finalizable_at(r.model_id)
            steps.p.client.w3.provider.make_request("evm_mine", [at])  # type: ignore[arg-type]
    raise AssertionError(f"job #{job_id} stuck in {jobs.require(job_id).state}")


@pytest.mark.timeout(600)
def test_attributed_job_verifies_and_pays_its_contributors(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id, config={"max_steps": 8, "snapshots": 2})
    daemon = home.daemon(world.node)
    with frozen_clock(world, world.now() + 1):  # each phase of the (6 s) challenge window on purpose
        daemon.run(once=True)
        r = daemon.jobs.require(job_id)
        assert r.state == JobState.SUBMITTED, (r.state, r.reason, r.last_error)  # waits out its window
        _challenge_an_honest_leaf(world, home, daemon, job_id, r.model_id or 0)
        set_time(world, world.admin.finalizable_at(r.model_id or 0)[0])
        daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SETTLED, (r.state, r.reason, r.last_error)
    daemon.close()

    model = world.admin.model(r.model_id or 0)
    assert model.status == ModelStatus.FINALIZED
    doc = AttributionDocument.from_json(home.store.cat(model.attributionCID))
    assert doc.format == "datanet-attribution-v1" and doc.method.id.startswith("tracin")
    assert len(doc.snapshots) == 2 and doc.query.source == "held-out" and doc.query.examples >= 1
    # What the chain holds is what the document commits to.
    assert doc.reward_root == "0x" + model.attributionRoot.hex() == "0x" + world.admin.reward_round(job_id).root.hex()
    assert doc.scores.root == "0x" + model.scoresRoot.hex()
    assert (doc.total_weight, doc.example_count) == (model.totalWeight, model.exampleCount)
    # Snapshots are public and content-addressed.
    for s in doc.snapshots:
        assert home.store.has(s.cid)

    report = verify_job(world.admin, home.store, job_id, home.settings)
    assert report.verdict == "MATCH", report.model_dump_json(indent=2)
    assert report.comparison is not None and not report.comparison.differing
    assert all(c.ok for c in report.checks)

    assert report.replay is not None and report.replay.ok  # an interval drawn at random lands on its snapshot

    # One example's score, from its own gradients and the committed query vectors (the CLI, exit 0).
    runner = CliRunner()
    out = runner.invoke(app, ["verify", str(job_id), "--example", "1", "--json"], env=_cli_env(home, world),
                        catch_exceptions=False)  # fmt: skip
    assert out.exit_code == 0, out.output
    narrowed = json.loads(out.stdout)
    assert narrowed["verdict"] == "MATCH" and narrowed["replay"] is None
    assert [c["name"] for c in narrowed["checks"]][-2:] == ["query vectors file 1", "score of example 1"]
    # A claim naming an example the result does not have: the member checks the whole result, honest.
    with pytest.raises(NoSuchPart, match=f"there is no example {doc.example_count}"):
        verify_job(world.admin, home.store, job_id, home.settings, example=doc.example_count)
    bogus = recompute_evidence(Claim(kind="example", index=doc.example_count).evidence_index(), "nothing")
    assert Verifier(world.relayer, home.store, home.settings).judge(model.id, bogus) == Vote.REPRODUCES

    # `model list --json` names the attribution.
    listed = runner.invoke(app, ["model", "list", "--json"], env=_cli_env(home, world), catch_exceptions=False)
    [view] = json.loads(listed.stdout)
    assert view["attribution_cid"] == model.attributionCID and view["attribution_method"].startswith("tracin")

    # Every leaf of the reward tree is claimable, and together they pay exactly the contributors' pool.
    tree = StandardMerkleTree.load(doc.reward_tree)
    assert sum(int(v[3]) for v in tree.values()) == world.admin.reward_round(job_id).total
    for i, (_, index, account, amount) in enumerate(tree.values()):
        before = world.admin.balance(account)
        world.admin.claim_reward(job_id, int(index), account, int(amount), tree.proof(i))
        assert world.admin.balance(account) == before + int(amount)


def _challenge_an_honest_leaf(world: World, home: NodeHome, daemon: Daemon, job_id: int, model_id: int) -> None:
    """In the window: `datanet challenge --dry-run` finds no fault; a reward-leaf challenge anyway
    is answered by the daemon from its attribution document, and the challenger's bond pays the node."""
    out = CliRunner().invoke(app, ["challenge", str(job_id), "--dry-run", "--json"], env=_cli_env(home, world),
                             catch_exceptions=False)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["faults"] == []
    doc = AttributionDocument.from_json(home.store.cat(world.admin.model(model_id).attributionCID))
    tree = StandardMerkleTree.load(doc.reward_tree)
    _, index, account, amount = tree.values()[0]
    evidence = encode([REWARD_CLAIM], [(int(index), account, int(amount), tree.proof(0))])
    challenger, salt = world.relayer, new_salt()
    challenger.approve(challenger.challenges.address, challenger.challenge_bond())
    cid = challenger.commit_challenge(model_id, commitment(ChallengeKind.REWARD_LEAF, evidence, salt))
    challenger.reveal_challenge(cid, ChallengeKind.REWARD_LEAF, evidence, salt)
    assert world.admin.challenge(cid).status == ChallengeStatus.ANSWERABLE
    daemon.run(once=True)  # the node answers with the account's contributions
    assert world.admin.challenge(cid).status == ChallengeStatus.REJECTED
    assert world.admin.model(model_id).status == ModelStatus.PENDING


@pytest.mark.timeout(600)
def test_a_node_committing_other_scores_is_voided_by_a_verifier_committee(world: World, home: NodeHome) -> None:
    """The node commits a document whose arithmetic is consistent but whose scores favour one
    contributor: every on-chain check passes, only the recomputation catches it, and a committee of
    staked verifiers, each recomputing, voids the result before anyone is paid."""
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id, config={"max_steps": 8, "snapshots": 2})
    daemon = home.daemon(world.node)
    steps = daemon.steps
    # Drive the steps one by one so the document can be rewritten between attribute and upload.
    daemon.catch_up()  # sees the JobPosted event
    _drive(steps, daemon.jobs, job_id, JobState.ATTRIBUTED)
    work = steps.work_dir(job_id)
    honest = AttributionDocument.from_json((work / "attribution.json").read_bytes())
    favoured = honest.scores.leaves[0].contributor
    forged_scores = [x.score if x.contributor == favoured else -abs(x.score) for x in honest.scores.leaves]
    job = world.admin.job(job_id)
    manifest = Manifest.from_json((work / "data" / "manifest.json").read_bytes())
    split = split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds))
    forged = build_document(
        job, manifest, forged_scores, [x.gradients_hash for x in honest.scores.leaves], honest.method, honest.query,
        honest.snapshots, split, chain_id=honest.chain_id, model_registry=honest.model_registry,
        dust_recipient=honest.payout.dust_recipient,
    )  # fmt: skip
    (work / "attribution.json").write_bytes(forged.canonical_json())
    daemon.jobs.update(job_id, attribution_root=forged.reward_root)
    # Two verifiers: each recomputes the job (about what the node's attribution cost), so the
    # committee is kept small here; committees of 3 and 7 are tests/contracts/test_verifier_court.py's.
    committee = _staked_verifiers(world, 2)
    with frozen_clock(world, world.now() + 1):  # each phase of the window and of the case on purpose
        _drive(steps, daemon.jobs, job_id, JobState.SUBMITTED)
        model_id = world.admin.job(job_id).modelId
        report = verify_job(world.admin, home.store, job_id, home.settings)
        assert report.verdict == "MISMATCH"
        assert all(c.ok for c in report.checks)  # every artifact matches its hash: only the scores lie
        assert report.comparison is not None and report.comparison.arithmetic_problems == []
        assert report.comparison.differing and not report.comparison.scores_root_equal
        forged_one = max(range(len(forged_scores)), key=lambda i: abs(forged_scores[i] - honest.scores.leaves[i].score))
        out = CliRunner().invoke(app, ["verify", str(job_id), "--example", str(forged_one)],
                                 env=_cli_env(home, world), catch_exceptions=False)  # fmt: skip
        assert out.exit_code == 1 and "MISMATCH" in out.stdout and f"score of example {forged_one}" in out.stdout
        claim = _a_committee_voids_it(world, home, daemon, committee, model_id)
        # The challenge named the example whose score deviates most: each member recomputed that one example.
        assert claim.kind == "example" and claim.index is not None
        assert forged_scores[claim.index] != honest.scores.leaves[claim.index].score
    daemon.close()
    assert world.admin.model(model_id).status == ModelStatus.VOIDED
    assert world.admin.job(job_id).status == JobStatus.OPEN  # for another node, with the pool plus part of the bond


@pytest.mark.timeout(600)
def test_a_node_committing_another_runs_trajectory_fails_the_training_replay(
    world: World, home: NodeHome, tiny_base_model: Path, tmp_path: Path
) -> None:
    """The node trains, but commits the snapshots of another run (trained on half the data, the
    same number of steps) and attributes on them consistently: every hash checks and the scores
    would recompute, yet replaying a training interval from the committed data does not land on its
    snapshot. The verifier challenges naming that interval; a drawn member replays it and votes Fault."""
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id, config={"max_steps": 8, "snapshots": 2})
    daemon = home.daemon(world.node)
    steps = daemon.steps
    daemon.catch_up()
    _drive(steps, daemon.jobs, job_id, JobState.TRAINED)
    _manifest, examples = steps._training_set(daemon.jobs.require(job_id))
    config = load_config(home.store, world.admin.job(job_id)).train_config()
    other = train(tiny_base_model, examples[: len(examples) // 2], config, tmp_path / "other")
    assert other.snapshots_dir is not None
    committed = steps.work_dir(job_id) / "train" / "snapshots"
    shutil.rmtree(committed)
    shutil.copytree(other.snapshots_dir, committed)
    with frozen_clock(world, world.now() + 1):
        _drive(steps, daemon.jobs, job_id, JobState.SUBMITTED)
        model_id = world.admin.job(job_id).modelId
        for k in (0, 1):
            report = verify_job(world.admin, home.store, job_id, home.settings, interval=k)
            assert report.verdict == "MISMATCH" and report.comparison is None
            *artifacts, replay = report.checks
            assert all(c.ok for c in artifacts) and replay.name == f"training replay (interval {k})" and not replay.ok
            assert report.replay is not None and report.replay.relative > 3 * report.replay.tolerance
        out = CliRunner().invoke(app, ["verify", str(job_id), "--interval", "1"], env=_cli_env(home, world),
                                 catch_exceptions=False)  # fmt: skip
        assert out.exit_code == 1 and "training replay" in out.stdout and "MISMATCH" in out.stdout

        [check] = Verifier(world.relayer, home.store, home.settings, recompute=True).run(once=True)
        assert (check.model_id, check.outcome, check.challenge_status) == (model_id, "challenged", "referred")
        claim = world.admin.case_claim(check.challenge_id or 0)
        assert Claim.decode(claim).kind == "interval" and Claim.decode(claim).index in (0, 1)
        [member] = _staked_verifiers(world, 1)
        assert Verifier(member, home.store, home.settings).judge(model_id, claim) == Vote.FAULT
    daemon.close()


def _staked_verifiers(world: World, n: int) -> list[Protocol]:
    """`n` verifiers staked in the VerifierCourt (dev accounts 10..), none of them the node."""
    out = []
    for i in range(10, 10 + n):
        v = world.admin.as_account(dev_account(i))
        world.admin.transfer(v.address, TEST_DEPLOY.min_verifier_stake)
        v.join_court(TEST_DEPLOY.min_verifier_stake)
        out.append(v)
    return out


def _a_committee_voids_it(
    world: World, home: NodeHome, daemon: Daemon, committee: list[Protocol], model_id: int
) -> Claim:
    """A verifier (`--verify --recompute`) finds the scores do not reproduce and files a Recompute
    challenge; the drawn verifiers' daemons recompute, vote Fault sealed, then reveal; the node's
    own daemon tallies and, after the appeal period, closes the case: its result is voided."""
    a = world.admin
    [check] = Verifier(world.relayer, home.store, home.settings, recompute=True).run(once=True)
    assert (check.model_id, check.outcome, check.challenge_status) == (model_id, "challenged", "referred")
    case_id = check.challenge_id or 0
    world.rpc("evm_mine")  # the seed block: its hash was unknown when the challenge was filed
    members = [Verifier(v, home.store, home.settings) for v in committee]
    for _ in range(2):  # the first pass draws the committee, the next one votes
        for m in members:
            m.pass_once()
    rnd = a.court_round(case_id, 0)
    assert sorted(rnd.members) == sorted(v.address for v in committee)  # 2 eligible for 3 seats: both drawn
    assert all(a.ballot(case_id, 0, v.address).commitment != b"\0" * 32 for v in committee)
    assert rnd.faults == 0  # sealed: nobody can copy a vote
    set_time(world, rnd.commitDeadline + 1)
    for m in members:
        m.pass_once()  # each reveals what it sealed
    assert a.court_round(case_id, 0).faults == len(committee)
    set_time(world, max(rnd.revealDeadline, a.finalizable_at(model_id)[0]) + 1)
    daemon.run(once=True)  # the node's settle step tallies the case: upheld, appealable
    case = a.court_case(case_id)
    assert (case.phase, case.verdict) == (CasePhase.APPEALABLE, Verdict.UPHELD)
    assert a.model(model_id).status == ModelStatus.PENDING
    set_time(world, case.appealDeadline + 1)
    daemon.run(once=True)  # no appeal: it closes the case, and its result is voided
    assert a.challenge(case_id).status == ChallengeStatus.UPHELD
    assert all(a.court_fees(v.address) > 0 for v in committee)  # the majority shares half the bond
    return Claim.decode(a.case_claim(case_id))


@pytest.mark.timeout(600)
def test_the_revealed_eval_set_is_the_query_set(world: World, home: NodeHome) -> None:
    """The poster commits an eval set at posting and reveals it after the claim; the node waits
    for it, drops the training record that copies an eval example verbatim, attributes against it,
    and the verifier checks it against the committed sha256."""
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    _, records = demo_world.region_facts(100)  # contributor 0's file: its facts, asked otherwise
    asked = [demo_world.Record(instruction=f"Tell me: {r.instruction.lower()}", output=r.output) for r in records[:4]]
    eval_bytes = demo_world.to_jsonl([*asked, records[5]])  # records[5] is a verbatim copy of a training record
    eval_sha = "0x" + hashlib.sha256(eval_bytes).hexdigest()
    job_id = post_job(world, home, datanet_id, config={"max_steps": 8, "snapshots": 2, "eval_sha256": eval_sha})
    daemon = home.daemon(world.node)
    daemon.catch_up()
    _drive_until_waiting(daemon.steps, daemon.jobs, job_id)  # claimed, then waits for the reveal
    assert daemon.jobs.require(job_id).state == JobState.CLAIMED

    world.rpc("evm_mine")  # the reveal must come in a block after the claim's
    world.poster.reveal_eval(job_id, home.store.add_bytes(eval_bytes))
    _drive(daemon.steps, daemon.jobs, job_id, JobState.SETTLED)
    daemon.close()
    work = daemon.steps.work_dir(job_id)
    dropped = json.loads((work / "data" / "eval-dropped.json").read_text())
    assert len(dropped) == 1 and "copies eval example 4" in dropped[0]["reason"]

    model = world.admin.model(world.admin.job(job_id).modelId)
    doc = AttributionDocument.from_json(home.store.cat(model.attributionCID))
    assert (doc.query.source, doc.query.sha256, doc.query.examples) == ("eval-file", eval_sha, 5)
    manifest = Manifest.from_json((work / "data" / "manifest.json").read_bytes())
    kept = {(e.contribution_id, e.record_line) for e in manifest.entries}
    assert (dropped[0]["contribution_id"], dropped[0]["record_line"]) not in kept
    assert doc.example_count == len(manifest.entries)
    report = verify_job(world.admin, home.store, job_id, home.settings)
    assert report.verdict == "MATCH", report.model_dump_json(indent=2)
    assert any(c.name == "eval set" and c.ok for c in report.checks)


def _drive_until_waiting(steps: JobSteps, jobs: JobStore, job_id: int) -> None:
    for _ in range(4):
        r = jobs.require(job_id)
        try:
            steps.steps[r.state](r)
        except WaitJob as e:
            assert "reveal the eval set" in str(e)
            return
    raise AssertionError("the node did not wait for the eval set's reveal")


@pytest.mark.timeout(600)
def test_a_private_datanet_job_verifies_only_with_a_key_grant(world: World, home: NodeHome) -> None:
    """A job trained on a private Datanet: a verifier without a key grant is refused with the
    commands that get one (and no traceback); once it publishes its key and the owner grants it
    the Datanet key, it recomputes the attribution and says MATCH."""
    # As tests/test_daemon.py's private-Datanet job: sealed files, a node granted its job's keys.
    owner, verifier = world.contributors[3], world.outsider
    d = private_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, d, config={"max_steps": 8, "snapshots": 2})
    daemon = home.daemon(world.node)
    daemon.run(once=True)  # claims, publishes its encryption key, waits for the grant
    grant_job(world.curator, home.store, d, job_id)
    run_to_settled(world, daemon)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SETTLED, (r.state, r.reason, r.last_error)
    daemon.close()
    doc = AttributionDocument.from_json(home.store.cat(world.admin.model(r.model_id or 0).attributionCID))
    assert doc.method.id.startswith("tracin") and len(doc.snapshots) == 2

    # No grant: a clear refusal naming the commands, from the library and from the CLI.
    assert world.admin.grant_of(d, verifier.address, 0) is None
    with pytest.raises(VerifyError, match="no key grant") as refused:
        verify_job(verifier, home.store, job_id, home.settings)
    assert "`datanet keys publish`" in str(refused.value) and "`datanet grant --datanet ID --to" in str(refused.value)
    env = {**os.environ, **_cli_env(home, world), "DATANET_PRIVATE_KEY": dev_account(OUTSIDER).key.hex()}
    proc = subprocess.run([sys.executable, "-m", "node.cli", "verify", str(job_id)], cwd=home.root,
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    said = " ".join(proc.stderr.split())  # rich wraps the error line at 80 columns
    assert proc.returncode == 1 and f"error: job #{job_id} trained on a private Datanet" in said, said
    assert "`datanet keys publish`" in said and "`datanet grant --datanet ID --to" in said, said
    assert "Traceback" not in proc.stderr + proc.stdout

    # `datanet keys publish` (as the verifier), then `datanet grant --datanet D --to VERIFIER` (as the owner).
    ensure_encryption_key(verifier)
    grant_standing(owner, home.store, d, verifier.address)
    report = verify_job(verifier, home.store, job_id, home.settings)
    assert report.verdict == "MATCH", report.model_dump_json(indent=2)
    assert report.comparison is not None and not report.comparison.differing
    assert all(c.ok for c in report.checks)
    proc = subprocess.run([sys.executable, "-m", "node.cli", "verify", str(job_id), "--example", "0", "--json"],
                          cwd=home.root, capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["verdict"] == "MATCH", proc.stderr  # one example's score
