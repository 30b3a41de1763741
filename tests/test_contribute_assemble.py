"""Contributing data end to end (validate → upload → permit + submit, relayed or not) and the
permitted training set of a job, against the real dev chain and the embedded content store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from eth_account import Account

from node.chain.deploy import OPEN
from node.chain.models import ContributionInput, DatanetParams, JobParams, Method
from node.data.assemble import AssemblyConfig, LicenseError, assemble
from node.data.contribute import Journal, contribute_files
from node.data.manifest import verify
from node.demo import world as demo_world
from node.errors import ContributionError, DataValidationError
from node.storage.embedded import EmbeddedStore
from tests.conftest import World


def _datanet(world: World, **kw: object) -> int:
    params = DatanetParams(
        name="facts", treasury=world.admin.address, curators=[world.curator.address], minStake=10 * OPEN
    )
    return world.admin.create_datanet(params.model_copy(update=kw))


def _file(tmp: Path, name: str, seed: int) -> Path:
    _, records = demo_world.region_facts(seed)
    path = tmp / name
    path.write_bytes(demo_world.to_jsonl(records))
    return path


def _job(world: World, datanet_ids: list[int]) -> int:
    deadline = world.now() + 86400
    params = JobParams(baseModel="tiny", baseModelHash=b"\x01" * 32, datanetIds=datanet_ids, configCID="bafk-config",
                       configHash=b"\x02" * 32, method=Method.LORA, pool=100 * OPEN, deadline=deadline)  # fmt: skip
    world.poster.approve(world.poster.models.address, world.poster.job_cost(params.pool))
    return world.poster.post_job(params)


def test_a_bad_file_stops_the_batch_before_any_upload_or_stake(world: World, tmp_path: Path) -> None:
    d = _datanet(world)
    good = _file(tmp_path, "good.jsonl", 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "", "output": "x"}\n')
    store = EmbeddedStore(tmp_path / "ipfs")
    before = world.contributors[0].balance()
    with pytest.raises(DataValidationError) as exc:
        contribute_files(world.contributors[0], store, d, [good, bad], 10 * OPEN, Journal(tmp_path / "j.json"))
    assert "bad.jsonl:2" in str(exc.value) and "instruction" in str(exc.value)
    assert "Nothing was uploaded or staked" in str(exc.value)
    assert list(store.blocks_dir.iterdir()) == []
    assert world.contributors[0].balance() == before
    assert world.admin.contribution_count() == 0


def test_contribute_direct_and_relayed_then_retry_reuses_the_upload(world: World, tmp_path: Path) -> None:
    d = _datanet(world)
    store = EmbeddedStore(tmp_path / "ipfs")
    journal = Journal(tmp_path / "journal.json")
    f1, f2 = _file(tmp_path, "a.jsonl", 1), _file(tmp_path, "b.jsonl", 2)
    alice = world.contributors[0]
    [r1] = contribute_files(alice, store, d, [f1], 12 * OPEN, journal)
    c1 = world.admin.contribution(r1.contribution_id)
    assert (c1.contributor, c1.cid, c1.stake) == (alice.address, r1.cid, 12 * OPEN)
    assert c1.contentHash == hashlib.sha256(f1.read_bytes()).digest()
    assert store.cat(r1.cid) == f1.read_bytes()

    # A relayer without ETH cannot send: the chain step fails after the upload, clearly.
    broke = world.admin.as_account(Account.create())
    with pytest.raises(ContributionError) as exc:
        contribute_files(alice, store, d, [f2], 10 * OPEN, journal, relayer=broke)
    cid2 = json.loads((tmp_path / "journal.json").read_text())
    assert any(e["file"] == str(f2) and e["contribution_id"] is None for e in cid2.values())
    assert "uploaded as bafk" in str(exc.value) and "Run the same command again" in str(exc.value)
    # Retry with a funded relayer: same upload, submitted by the relayer, contributor paid no gas.
    eth_before = world.admin.client.w3.eth.get_balance(alice.address)
    [r2] = contribute_files(alice, store, d, [f2], 10 * OPEN, journal, relayer=world.relayer)
    assert r2.reused_upload and r2.relayed
    assert world.admin.contribution(r2.contribution_id).contributor == alice.address
    assert world.admin.client.w3.eth.get_balance(alice.address) == eth_before
    # Running it yet again finds it on-chain and submits nothing twice.
    [r3] = contribute_files(alice, store, d, [f2], 10 * OPEN, journal)
    assert r3.already_submitted and r3.contribution_id == r2.contribution_id
    assert world.admin.contribution_count() == 2


def test_stake_below_minimum_is_refused_before_upload(world: World, tmp_path: Path) -> None:
    d = _datanet(world)
    store = EmbeddedStore(tmp_path / "ipfs")
    with pytest.raises(ContributionError, match="below Datanet"):
        contribute_files(
            world.contributors[0], store, d, [_file(tmp_path, "a.jsonl", 1)], OPEN, Journal(tmp_path / "j")
        )
    assert list(store.blocks_dir.iterdir()) == []


def test_training_set_has_exactly_the_approved_data_of_the_job(world: World, tmp_path: Path) -> None:
    d1, d2 = _datanet(world), _datanet(world, name="other")
    store = EmbeddedStore(tmp_path / "ipfs")
    journal = Journal(tmp_path / "j.json")
    alice, bob, carol, dave = world.contributors
    [a] = contribute_files(alice, store, d1, [_file(tmp_path, "a.jsonl", 1)], 10 * OPEN, journal)
    # Bob copies Alice's file with one extra record: his copies are duplicates, credited to Alice.
    copied = tmp_path / "b.jsonl"
    copied.write_bytes(_file(tmp_path, "tmp.jsonl", 1).read_bytes() + b'{"instruction":"new q","output":"new a"}\n')
    [b] = contribute_files(bob, store, d1, [copied], 10 * OPEN, journal)
    [c] = contribute_files(carol, store, d1, [_file(tmp_path, "c.jsonl", 3)], 10 * OPEN, journal)  # stays pending
    [o] = contribute_files(dave, store, d2, [_file(tmp_path, "o.jsonl", 4)], 10 * OPEN, journal)  # other datanet
    # Dave also registers content whose sha256 does not match its CID; a careless curator approves it.
    lie = ContributionInput(
        datanetId=d1, cid=a.cid, contentHash=b"\x07" * 32, byteSize=1, recordCount=1, stake=10 * OPEN
    )
    dave.approve(dave.datanets.address, lie.stake)
    lie_id = dave.contribute(lie)
    for cid in (a.contribution_id, b.contribution_id, o.contribution_id, lie_id):
        world.curator.approve_contribution(cid)
    job = _job(world, [d1])

    got = assemble(world.admin, store, job)
    m = got.manifest
    assert verify(m, got.examples)
    assert {e.contribution_id for e in m.entries} == {a.contribution_id, b.contribution_id}
    assert c.contribution_id not in {e.contribution_id for e in m.entries}
    assert [x.contribution_id for x in got.excluded] == [lie_id]
    assert "sha256" in got.excluded[0].reason
    per = m.contributors()
    assert per[bob.address] == 1 and per[alice.address] == a.records  # credit to the earliest approved
    assert m.dedup.exact_dropped == a.records
    # Deterministic: the same chain state gives byte-identical manifests.
    again = assemble(world.admin, store, job, block=got.block)
    assert again.manifest.canonical_json() == m.canonical_json()
    out = got.write(tmp_path / "set")
    assert json.loads((out / "manifest.json").read_text())["data_root"] == m.data_root


def test_license_terms_are_respected_at_assembly(world: World, tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "ipfs")
    d = _datanet(world, commercialUse=False, restricted=True)
    world.admin.set_trainer(d, world.poster.address, True)
    [a] = contribute_files(
        world.contributors[0], store, d, [_file(tmp_path, "a.jsonl", 1)], 10 * OPEN, Journal(tmp_path / "j")
    )
    world.curator.approve_contribution(a.contribution_id)
    job = _job(world, [d])
    assert assemble(world.admin, store, job).manifest.entries
    commercial = AssemblyConfig(commercial=True)
    with pytest.raises(LicenseError, match=r"nothing to train on.*without commercial use"):
        assemble(world.admin, store, job, config=commercial)
    # Next to a Datanet that allows commercial use, the other one's contributions are excluded.
    ok = _datanet(world, name="open")
    [b] = contribute_files(
        world.contributors[1], store, ok, [_file(tmp_path, "b.jsonl", 2)], 10 * OPEN, Journal(tmp_path / "j")
    )
    world.curator.approve_contribution(b.contribution_id)
    both = _job(world, [d, ok])
    got = assemble(world.admin, store, both, config=commercial)
    assert {e.contribution_id for e in got.manifest.entries} == {b.contribution_id}
    [x] = got.excluded
    assert (x.contribution_id, x.datanet_id) == (a.contribution_id, d)
    assert x.reason.startswith("license:") and "'CC-BY-4.0' without commercial use" in x.reason
    world.admin.set_trainer(d, world.poster.address, False)  # the owner revokes the poster
    with pytest.raises(LicenseError, match="no longer allows"):
        assemble(world.admin, store, job)
