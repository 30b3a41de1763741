"""Private Datanets end to end on the real dev chain and a real content store: contributors seal
their files to the Datanet's key, a curator previews by decrypting locally, a node without a key
grant is refused clearly, and with the grant it assembles and trains on the plaintext."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from node.chain.deploy import OPEN
from node.chain.models import DatanetParams, JobParams, Method
from node.data.assemble import assemble
from node.data.contribute import Journal, contribute_files
from node.data.encryption import is_envelope
from node.data.grants import (
    JobKeys,
    KeyGrantError,
    ensure_encryption_key,
    grant_job,
    grant_standing,
    on_job_claimed,
    open_as_holder,
    publish_datanet_key,
    sealer,
)
from node.data.manifest import ContributionData, build_training_set
from node.data.validate import load_file
from node.demo import world as demo_world
from node.errors import AccessDeniedError, ContributionError
from node.storage.embedded import EmbeddedStore
from node.train.config import TrainConfig
from node.train.trainer import train
from tests.conftest import World
from tests.contracts.helpers_jobs import JOB_STAKE, reverts, stake_node


def _file(tmp: Path, name: str, seed: int) -> Path:
    path = tmp / name
    path.write_bytes(demo_world.to_jsonl(demo_world.region_facts(seed)[1][:6]))
    return path


def _job(world: World, datanet_id: int) -> int:
    params = JobParams(
        baseModel="tiny", baseModelHash=b"\x01" * 32, datanetIds=[datanet_id], configCID="bafk",
        configHash=b"\x02" * 32, method=Method.LORA, pool=50 * OPEN, deadline=world.now() + 9999,
    )  # fmt: skip
    world.poster.approve(world.poster.models.address, world.poster.job_cost(params.pool))
    return world.poster.post_job(params)


def test_private_datanet_from_sealed_upload_to_training(world: World, tmp_path: Path, tiny_base_model: Path) -> None:
    owner, curator, node, outsider = world.contributors[3], world.curator, world.node, world.outsider
    alice, bob = world.contributors[0], world.contributors[1]
    store = EmbeddedStore(tmp_path / "ipfs")
    ensure_encryption_key(curator)  # key holders publish their encryption key first
    d = owner.create_datanet(DatanetParams(name="clinic", treasury=owner.address, isPrivate=True,
                                           curators=[curator.address], minStake=OPEN))  # fmt: skip
    with pytest.raises(KeyGrantError, match="has not published its encryption key"):
        sealer(alice, d)
    assert publish_datanet_key(owner, store, d).keyVersion == 1

    # Contributors seal before upload: the store never sees the plaintext.
    fa, fb = _file(tmp_path, "a.jsonl", 1), _file(tmp_path, "b.jsonl", 2)
    with pytest.raises(ContributionError, match="private"):
        contribute_files(alice, store, d, [fa], OPEN, Journal(tmp_path / "ja.json"))
    [ra] = contribute_files(alice, store, d, [fa], OPEN, Journal(tmp_path / "ja.json"), seal=sealer(alice, d))
    [rb] = contribute_files(bob, store, d, [fb], OPEN, Journal(tmp_path / "jb.json"), seal=sealer(bob, d))
    stored = store.cat(ra.cid)
    assert is_envelope(stored) and b"capital" not in stored
    assert world.admin.contribution(ra.contribution_id).contentHash == hashlib.sha256(stored).digest()

    # The curator previews by decrypting locally, then approves; others hold no key.
    assert open_as_holder(curator, store, ra.contribution_id) == fa.read_bytes()
    assert open_as_holder(owner, store, rb.contribution_id) == fb.read_bytes()
    with pytest.raises(AccessDeniedError, match="holds no key"):
        open_as_holder(outsider, store, ra.contribution_id)
    curator.approve_contribution(ra.contribution_id)
    curator.approve_contribution(rb.contribution_id)

    # Only a node the Datanet trusts may claim its job: the claimer is who the keys get granted to.
    job = _job(world, d)
    stake_node(node)
    world.admin.transfer(outsider.address, JOB_STAKE)
    stake_node(outsider)
    for staked in (outsider, node):
        with reverts("ModelRegistryNodeNotTrusted", datanetId=d, node=staked.address):
            staked.claim_job(job)
    owner.set_trusted_node(d, node.address)
    with reverts("ModelRegistryNodeNotTrusted", datanetId=d, node=outsider.address):
        outsider.claim_job(job)

    # The trusted node claims it; without a grant it is refused, with a clear next step.
    node.claim_job(job)
    ensure_encryption_key(node)
    with pytest.raises(AccessDeniedError, match=f"datanet grant --job {job}"):
        assemble(node, store, job, decrypt=JobKeys(node, store, job))

    # The curator grants the node this job's files: it assembles exactly the plaintext records.
    result = grant_job(curator, store, d, job)
    assert sorted(result.files) == sorted([ra.contribution_id, rb.contribution_id]) and not result.skipped
    got = assemble(node, store, job, decrypt=JobKeys(node, store, job))
    contributions = [
        ContributionData(datanet_id=d, contribution_id=r.contribution_id, contributor=who.address, cid=r.cid,
                         approved_at=world.admin.contribution(r.contribution_id).decidedAt, records=load_file(f))
        for r, who, f in ((ra, alice, fa), (rb, bob, fb))
    ]  # fmt: skip
    expected = build_training_set(job, [d], contributions)
    assert got.examples == expected.examples and got.manifest.data_root == expected.manifest.data_root
    assert not got.excluded

    # ...and trains on it: the adapter learns the plaintext facts.
    cfg = TrainConfig(method="lora", max_steps=3, batch_size=4, max_seq_len=128, eval_fraction=0.0)
    trained = train(tiny_base_model, got.examples, cfg, tmp_path / "run")
    assert trained.metrics.train_examples == len(expected.examples) and trained.metrics.final_train_loss

    # A grant opens one job for one node: not another job, not another account.
    with pytest.raises(AccessDeniedError, match="no key grant"):
        JobKeys(node, store, job + 1).open(d, ra.contribution_id)
    with pytest.raises(AccessDeniedError):
        JobKeys(outsider, store, job).open(d, ra.contribution_id)

    # A file approved after the grant is left out with its reason until the grant is renewed.
    fc = _file(tmp_path, "c.jsonl", 3)
    [rc] = contribute_files(alice, store, d, [fc], OPEN, Journal(tmp_path / "ja.json"), seal=sealer(alice, d))
    curator.approve_contribution(rc.contribution_id)
    partial = assemble(node, store, job, decrypt=JobKeys(node, store, job))
    assert [e.contribution_id for e in partial.excluded] == [rc.contribution_id]
    assert "not covered by this node's key grant" in partial.excluded[0].reason
    assert on_job_claimed(owner, store, job) == []  # already granted for this job: idempotent
    grant_job(owner, store, d, job)
    assert not assemble(node, store, job, decrypt=JobKeys(node, store, job)).excluded


def test_rotation_and_a_late_curator(world: World, tmp_path: Path) -> None:
    owner, curator, late = world.contributors[3], world.curator, world.contributors[2]
    store = EmbeddedStore(tmp_path / "ipfs")
    for p in (curator, late):
        ensure_encryption_key(p)
    d = owner.create_datanet(DatanetParams(name="p", treasury=owner.address, isPrivate=True,
                                           curators=[curator.address], minStake=OPEN))  # fmt: skip
    publish_datanet_key(owner, store, d)
    f1 = _file(tmp_path, "one.jsonl", 4)
    [r1] = contribute_files(world.contributors[0], store, d, [f1], OPEN, Journal(tmp_path / "j.json"),
                            seal=sealer(world.contributors[0], d))  # fmt: skip
    owner.set_curator(d, late.address)
    with pytest.raises(AccessDeniedError):
        open_as_holder(late, store, r1.contribution_id)  # added after the key was made
    grant_standing(owner, store, d, late.address)
    assert open_as_holder(late, store, r1.contribution_id) == f1.read_bytes()
    # Rotation: a removed curator does not get the new key; files under the old key stay readable.
    owner.set_curator(d, curator.address, False)
    assert publish_datanet_key(owner, store, d).keyVersion == 2
    f2 = _file(tmp_path, "two.jsonl", 5)
    [r2] = contribute_files(world.contributors[1], store, d, [f2], OPEN, Journal(tmp_path / "j2.json"),
                            seal=sealer(world.contributors[1], d))  # fmt: skip
    assert open_as_holder(owner, store, r1.contribution_id) == f1.read_bytes()
    assert open_as_holder(owner, store, r2.contribution_id) == f2.read_bytes()
    with pytest.raises(AccessDeniedError, match="version 2"):
        open_as_holder(curator, store, r2.contribution_id)
