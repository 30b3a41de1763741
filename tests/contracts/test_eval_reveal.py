"""ModelRegistry's query-set reveal (`revealEval`, `getEval`) and the scores commitment that
`submitResult` stores for the next issue's challenges (`scoresRoot`, `totalWeight`, `exampleCount`)."""

from __future__ import annotations

from typing import Any

from node.chain.models import JobStatus
from tests.conftest import World
from tests.contracts.helpers_jobs import (
    claimed_job,
    complete_job,
    events,
    posted_job,
    result_params,
    reverts,
    send,
    stake_node,
)

EVAL_CID = "bafkreievalsetcid"


def test_the_poster_reveals_once_after_the_claim_block(world: World) -> None:
    job = claimed_job(world)
    claim_block = world.admin.job(job.job_id).claimBlock
    assert claim_block > 0
    assert not world.admin.eval_reveal(job.job_id).revealed
    # Gas is estimated against the latest block, the claim block itself: one block must pass.
    with reverts("ModelRegistryEvalTooEarly", jobId=job.job_id, claimBlock=claim_block):
        world.poster.reveal_eval(job.job_id, EVAL_CID)
    world.rpc("evm_mine")
    receipt = world.poster.reveal_eval(job.job_id, EVAL_CID)
    assert receipt["blockNumber"] > claim_block
    assert events(world.admin.models, receipt, "EvalRevealed") == [{"jobId": job.job_id, "evalCID": EVAL_CID}]
    got = world.outsider.eval_reveal(job.job_id)
    assert got.revealed and got.evalCID == EVAL_CID
    assert got.revealedBlock == receipt["blockNumber"] and got.revealedAt == world.now()
    with reverts("ModelRegistryEvalAlreadyRevealed", jobId=job.job_id):
        world.poster.reveal_eval(job.job_id, "bafkreiother")
    assert world.admin.eval_reveal(job.job_id).evalCID == EVAL_CID


def test_only_the_poster_may_reveal(world: World) -> None:
    job = claimed_job(world)
    world.rpc("evm_mine")
    for who in (world.node, world.outsider, world.curator):
        with reverts("ModelRegistryNotPoster", jobId=job.job_id, account=who.address):
            who.reveal_eval(job.job_id, EVAL_CID)


def test_no_reveal_before_the_claim_nor_after_the_result(world: World) -> None:
    job = posted_job(world)
    with reverts("ModelRegistryWrongStatus", jobId=job.job_id, status=JobStatus.OPEN):
        world.poster.reveal_eval(job.job_id, EVAL_CID)
    with reverts("ModelRegistryUnknownJob", jobId=999):
        world.poster.reveal_eval(999, EVAL_CID)
    with reverts("ModelRegistryUnknownJob", jobId=999):
        world.poster.eval_reveal(999)
    stake_node(world.node)
    world.node.claim_job(job.job_id)
    world.rpc("evm_mine")
    with reverts("ModelRegistryEmptyEvalCID", jobId=job.job_id):
        world.poster.reveal_eval(job.job_id, "")
    complete_job(world, job, [(world.contributors[0].address, 1)])
    with reverts("ModelRegistryWrongStatus", status=JobStatus.COMPLETED):
        world.poster.reveal_eval(job.job_id, EVAL_CID)


def test_no_reveal_in_the_claim_block_itself(world: World) -> None:
    """A reveal mined in the claim block could land before approvals counted at that block."""
    job = posted_job(world)
    stake_node(world.node)
    world.rpc("evm_setAutomine", False)
    try:
        claim = world.node.models.functions.claimJob(job.job_id).build_transaction(
            {
                "from": world.node.address,
                "gas": 300_000,
                "nonce": world.node.client.w3.eth.get_transaction_count(world.node.address),
            }
        )
        reveal = world.poster.models.functions.revealEval(job.job_id, EVAL_CID).build_transaction(
            {
                "from": world.poster.address,
                "gas": 300_000,
                "nonce": world.poster.client.w3.eth.get_transaction_count(world.poster.address),
            }
        )
        w3 = world.admin.client.w3
        assert world.node.client.account is not None and world.poster.client.account is not None
        h1 = w3.eth.send_raw_transaction(
            world.node.client.account.sign_transaction(dict[str, Any](claim)).raw_transaction
        )
        h2 = w3.eth.send_raw_transaction(
            world.poster.client.account.sign_transaction(dict[str, Any](reveal)).raw_transaction
        )
        world.rpc("evm_mine")
    finally:
        world.rpc("evm_setAutomine", True)
    r1, r2 = w3.eth.get_transaction_receipt(h1), w3.eth.get_transaction_receipt(h2)
    assert r1["blockNumber"] == r2["blockNumber"]
    assert (r1["status"], r2["status"]) == (1, 0)  # claimed; the same-block reveal reverted
    assert not world.admin.eval_reveal(job.job_id).revealed


def test_the_scores_commitment_is_stored_and_bounded(world: World) -> None:
    job = claimed_job(world)
    good = result_params(b"\x01" * 32).model_dump()
    for field, value in (("exampleCount", 2**64), ("totalWeight", 2**128)):
        bad = {**good, field: value}
        with reverts("ModelRegistryScoresOutOfRange", exampleCount=bad["exampleCount"], totalWeight=bad["totalWeight"]):
            send(world.node, world.node.models.functions.submitResult(job.job_id, bad))
    top = {**good, "exampleCount": 2**64 - 1, "totalWeight": 2**128 - 1}
    send(world.node, world.node.models.functions.submitResult(job.job_id, top))
    model = world.admin.model(world.admin.model_count())
    assert (model.scoresRoot, model.totalWeight, model.exampleCount) == (good["scoresRoot"], 2**128 - 1, 2**64 - 1)
