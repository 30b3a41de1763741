"""Verifier mode (`node.daemon.verifier`, `datanet daemon --verify`) and `datanet finalize` on the
real dev chain and content store: a result whose published document adds up is left alone; one
whose reward tree pays the node the whole contributors' part (H-1) is challenged by the verifier,
the node cannot answer, and `finalize` settles the challenge and reports the result voided.

The documents are real v1 attribution documents (`build_document`) for a real on-chain job;
the clock is frozen so the (6 s) window's phases are hit on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils import keccak
from typer.testing import CliRunner

from node.attribution.document import (
    AttributionDocument,
    MethodInfo,
    MethodParams,
    QueryInfo,
    build_document,
)
from node.chain.accounts import dev_account
from node.chain.models import ChallengeKind, ChallengeStatus, JobStatus, ModelStatus, ResultParams
from node.cli import app
from node.daemon.outputs import MetricsDocument
from node.daemon.verifier import INTERVAL_TAG, QUERIES_TAG, WHOLE_RESULT, Claim, Verifier, recompute_evidence
from node.data.manifest import ContributionData, Manifest, build_training_set
from node.data.records import Example, SourceRecord
from node.rewards.shares import Share, reward_tree, split_pool
from node.train.config import Method as TrainMethod
from node.train.config import TrainMetrics
from tests.conftest import RELAYER, TEST_DEPLOY, World
from tests.contracts.helpers_jobs import JobSetup, claimed_job, frozen_clock, set_time
from tests.daemon_setup import NodeHome, node_home


@pytest.fixture
def home(world: World, tmp_path: Path, tiny_base_model: Path) -> NodeHome:
    return node_home(world, tmp_path, tiny_base_model)


def _manifest(world: World, job_id: int) -> Manifest:
    def data(cid: int, who: str, n: int) -> ContributionData:
        records = [SourceRecord(line=k + 1, example=Example(kind="text", text=f"fact {cid}-{k}")) for k in range(n)]
        return ContributionData(datanet_id=1, contribution_id=cid, contributor=who, cid=f"bafk{cid}", approved_at=cid,
                                records=records)  # fmt: skip

    a, b = world.contributors[0].address, world.contributors[1].address
    return build_training_set(job_id, [1], [data(1, a, 3), data(2, b, 2)]).manifest


def _document(world: World, job: JobSetup) -> tuple[AttributionDocument, Manifest]:
    chain_job = world.admin.job(job.job_id)
    manifest = _manifest(world, job.job_id)
    scores = [7, 3, -1, 4, 2]
    doc = build_document(
        chain_job, manifest, scores, ["0x" + keccak(text=f"g{k}").hex() for k in range(len(scores))],
        MethodInfo(id="tracin-adam-kernel-v1", versions={"node": "test"},
                   params=MethodParams(snapshots=1, damping=0.1, projection_dim=0, score_scale=1e-4, delta=10**12)),
        QueryInfo(source="held-out", examples=2), [],
        split_pool(chain_job.pool, chain_job.nodeFeeBps, chain_job.datanetFeeBps, len(chain_job.datanetIds)),
        chain_id=world.admin.chain_id, model_registry=world.admin.models.address, dust_recipient=job.treasuries[0],
    )  # fmt: skip
    return doc, manifest


def _submit(
    world: World, home: NodeHome, job: JobSetup, doc: AttributionDocument, manifest: Manifest, metrics_cid: str = ""
) -> int:
    cid = home.store.add_bytes(doc.canonical_json())
    params = ResultParams(
        adapterCID="bafyadapter", adapterHash=keccak(text="adapter"), metricsCID=metrics_cid,
        dataRoot=bytes.fromhex(manifest.data_root[2:]), attributionRoot=bytes.fromhex(doc.reward_root[2:]),
        attributionCID=cid, scoresRoot=bytes.fromhex(doc.scores.root[2:]), totalWeight=doc.total_weight,
        exampleCount=doc.example_count,
    )  # fmt: skip
    return world.node.submit_result(job.job_id, params)


def _forged(world: World, doc: AttributionDocument, job_id: int) -> AttributionDocument:
    """The H-1 theft: one reward leaf paying the node everything the contributors should get."""
    tree = reward_tree(job_id, [Share(account=world.node.address, amount=doc.payout.total)])
    return doc.model_copy(
        update={"reward_tree": tree.dump().model_dump(mode="json"), "reward_root": "0x" + tree.root.hex()}
    )


def _cli(world: World, home: NodeHome, *args: str) -> dict[str, object]:
    s = home.settings
    key = dev_account(RELAYER).key.hex()
    env = {"DATANET_DATA_DIR": str(s.data_dir), "DATANET_NETWORK": "test", "DATANET_RPC_URL": world.rpc_url,
           "DATANET_DEPLOYMENTS_DIR": str(s.deployments_dir), "DATANET_PRIVATE_KEY": key}  # fmt: skip
    out = CliRunner().invoke(app, [*args, "--json"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_a_consistent_result_is_left_alone_and_checked_once(world: World, home: NodeHome) -> None:
    job = claimed_job(world)
    doc, manifest = _document(world, job)
    with frozen_clock(world, world.now() + 1):
        model_id = _submit(world, home, job, doc, manifest)
        verifier = Verifier(world.relayer, home.store, home.settings)
        [check] = verifier.run(once=True)
        assert (check.model_id, check.outcome) == (model_id, "clean")
        assert Verifier(world.relayer, home.store, home.settings).run(once=True) == []  # remembered
        assert world.admin.challenge_count() == 0
        assert _cli(world, home, "challenge", str(job.job_id), "--dry-run")["faults"] == []
        shown = _cli(world, home, "job", "show", str(job.job_id))
        assert (shown["status"], shown["model_status"], shown["open_challenges"]) == ("submitted", "pending", 0)
        assert shown["finalizable_at"] == world.admin.model(model_id).registeredAt + TEST_DEPLOY.challenge_window
        set_time(world, world.admin.finalizable_at(model_id)[0])
        done = _cli(world, home, "finalize", str(job.job_id))
    assert done["status"] == "finalized"
    assert world.admin.model(model_id).status == ModelStatus.FINALIZED


def test_the_verifier_challenges_a_node_paying_itself_and_finalize_voids_it(world: World, home: NodeHome) -> None:
    job = claimed_job(world)
    doc, manifest = _document(world, job)
    forged = _forged(world, doc, job.job_id)
    with frozen_clock(world, world.now() + 1):
        model_id = _submit(world, home, job, forged, manifest)
        dry = _cli(world, home, "challenge", str(job.job_id), "--dry-run")
        assert [f["kind"] for f in dry["faults"]] == ["reward_leaf"]  # type: ignore[union-attr,index]
        [check] = Verifier(world.relayer, home.store, home.settings).run(once=True)
        assert (check.outcome, check.challenge_status) == ("challenged", "answerable")
        c = world.admin.challenge(check.challenge_id or 0)
        assert (c.account, c.amount) == (world.node.address, doc.payout.total)
        set_time(world, world.admin.finalizable_at(model_id)[0])  # the node never answered
        done = _cli(world, home, "finalize", str(job.job_id))
    assert done == {"job_id": job.job_id, "model_id": model_id, "status": "voided", "settled": [c.id]}
    assert world.admin.challenge(c.id).status == ChallengeStatus.UPHELD
    assert world.admin.model(model_id).status == ModelStatus.VOIDED
    assert world.admin.job(job.job_id).status == JobStatus.OPEN


def test_the_verifier_voids_a_result_trained_on_data_it_was_not_permitted(world: World, home: NodeHome) -> None:
    """The node published its manifest (metricsCID -> manifest_cid) and it names contributions 1 and 2,
    which were never approved in the job's Datanet (none exist on this chain): the verifier proves
    one data leaf with the DataNotPermitted challenge and the result is voided at once."""
    job = claimed_job(world)
    doc, manifest = _document(world, job)
    metrics = MetricsDocument(
        job_id=job.job_id, data_root=manifest.data_root, manifest_cid=home.store.add_bytes(manifest.canonical_json()),
        examples=len(manifest.entries), excluded=0, stream=[],
        train=TrainMetrics(method=TrainMethod.LORA, steps=1, epochs=1, train_examples=5, eval_examples=0,
                           train_tokens=1, final_train_loss=None, eval_loss=None, perplexity=None, tokens_per_s=1,
                           train_seconds=1, peak_memory_bytes=0, device="cpu"),
    )  # fmt: skip
    with frozen_clock(world, world.now() + 1):
        metrics_cid = home.store.add_bytes(metrics.model_dump_json().encode())
        model_id = _submit(world, home, job, doc, manifest, metrics_cid=metrics_cid)
        [check] = Verifier(world.relayer, home.store, home.settings).run(once=True)
    assert (check.model_id, check.outcome, check.challenge_status) == (model_id, "challenged", "upheld")
    assert "contribution 1 does not exist" in check.detail
    assert world.admin.challenge(check.challenge_id or 0).kind == ChallengeKind.DATA_NOT_PERMITTED
    assert world.admin.model(model_id).status == ModelStatus.VOIDED


def test_a_recompute_claim_names_the_piece_the_committee_checks() -> None:
    """Example i, interval k, the query vectors of snapshot k, or the whole result round-trip
    through the on-chain evidence; bytes that do not decode dispute the whole result."""
    for claim in (Claim(kind="example", index=0), Claim(kind="example", index=41), Claim(kind="interval", index=2),
                  Claim(kind="queries", index=0), Claim(kind="whole")):  # fmt: skip
        assert Claim.decode(recompute_evidence(claim.evidence_index(), "why")) == claim
    assert Claim(kind="interval", index=3).evidence_index() == INTERVAL_TAG + 3
    assert Claim(kind="queries", index=1).evidence_index() == QUERIES_TAG + 1
    assert Claim(kind="whole").evidence_index() == WHOLE_RESULT
    for junk in (b"", b"\x01" * 7, recompute_evidence(INTERVAL_TAG + 2**20, "beyond any snapshot")):
        assert Claim.decode(junk) == Claim(kind="whole")
