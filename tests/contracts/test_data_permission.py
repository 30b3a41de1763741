"""DataNotPermitted: a node that trains on data it had no right to (a pending, rejected or
late-approved contribution, another Datanet's, another contributor's, or none at all) is caught
by one proven data leaf, and its result voided; the same challenge against a permitted example
fails and pays the node.

The contributions are real (DatanetRegistry, commit-reveal, curator decisions), the data tree is
the manifest's leaf encoding, and the evidence comes from `node.attribution.disputes`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_abi import encode
from eth_utils import keccak

from node.attribution.disputes import PROVEN_DATA, commitment, data_not_permitted, new_salt
from node.chain.models import ChallengeKind, ChallengeStatus, Contribution, ModelStatus, ResultParams
from node.chain.protocol import Protocol
from node.data.manifest import LEAF_ENCODING
from node.rewards.merkle import StandardMerkleTree
from tests.conftest import TEST_DEPLOY, World
from tests.contracts.helpers_datanets import contribute, entry, new_datanet
from tests.contracts.helpers_jobs import frozen_clock, job_params, post_job, set_time, stake_node

BOND = TEST_DEPLOY.challenge_bond


def _lookup(p: Protocol) -> Callable[[int], Contribution | None]:
    def get(contribution_id: int) -> Contribution | None:
        return p.contribution(contribution_id) if 1 <= contribution_id <= p.contribution_count() else None

    return get


def _challenge(world: World, model_id: int, evidence: bytes) -> ChallengeStatus:
    c, salt = world.contributors[3], new_salt()
    c.approve(c.challenges.address, BOND)
    cid = c.commit_challenge(model_id, commitment(ChallengeKind.DATA_NOT_PERMITTED, evidence, salt))
    c.reveal_challenge(cid, ChallengeKind.DATA_NOT_PERMITTED, evidence, salt)
    return world.admin.challenge(cid).status


CASES = ["pending", "rejected", "approved_after_claim", "other_datanet", "other_contributor", "unknown"]


@pytest.mark.parametrize("case", CASES)
def test_training_on_data_not_permitted_at_the_claim_is_voided(world: World, case: str) -> None:
    a, curator, node = world.admin, world.curator, world.node
    alice, bob = world.contributors[0], world.contributors[1]
    d1, _ = new_datanet(curator, curators=[curator.address])
    d2, _ = new_datanet(curator, curators=[curator.address], name="other")
    with frozen_clock(world, world.now() + 10):
        ok = contribute(alice, entry(d1, "ok"))
        pending = contribute(alice, entry(d1, "pending"))
        rejected = contribute(bob, entry(d1, "rejected"))
        late = contribute(bob, entry(d1, "late"))
        other = contribute(alice, entry(d2, "other"))
        for cid in (ok, other):
            curator.approve_contribution(cid)
        curator.reject_contribution(rejected, "spam")
        job_id = post_job(world.poster, job_params(world.now(), [d1]))
        stake_node(node, node.bond_for(job_id))
        node.claim_job(job_id)
        set_time(world, world.now() + 1)
        curator.approve_contribution(late)  # one second after the claim block
        bad = {
            "pending": (pending, alice.address),
            "rejected": (rejected, bob.address),
            "approved_after_claim": (late, bob.address),
            "other_datanet": (other, alice.address),
            "other_contributor": (ok, bob.address),
            "unknown": (10_000, bob.address),
        }[case]
        refs = [(ok, alice.address)] * 2 + [bad] * 2
        data = StandardMerkleTree.of(
            [(k, c, who, keccak(text=f"example {k}")) for k, (c, who) in enumerate(refs)], LEAF_ENCODING
        )
        params = ResultParams(
            adapterCID="bafyadapter", adapterHash=keccak(text="adapter"), metricsCID="bafymetrics",
            dataRoot=data.root, attributionRoot=keccak(text="rewards"), attributionCID="bafyattribution",
            scoresRoot=keccak(text="scores"), totalWeight=4, exampleCount=4,
        )  # fmt: skip
        model_id = node.submit_result(job_id, params)
        committed, job = a.result_commitment(model_id), a.job(job_id)
        # The permitted example proves nothing: the challenge fails and pays the node.
        honest = StandardMerkleTree.of([data.values()[0]], LEAF_ENCODING)
        only_ok = committed.model_copy(update={"dataRoot": honest.root})
        assert data_not_permitted(honest, only_ok, job, _lookup(a)) is None
        ok_leaf = encode([PROVEN_DATA], [(tuple(data.values()[0]), data.proof(0))])
        assert _challenge(world, model_id, ok_leaf) == ChallengeStatus.REJECTED
        assert a.model(model_id).status == ModelStatus.PENDING
        fault = data_not_permitted(data, committed, job, _lookup(a))
        assert fault is not None and fault.kind == ChallengeKind.DATA_NOT_PERMITTED, case
        assert _challenge(world, model_id, fault.evidence) == ChallengeStatus.UPHELD, fault.reason
    assert a.model(model_id).status == ModelStatus.VOIDED
