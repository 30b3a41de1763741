"""The training daemon in-process against the real dev chain, embedded store and trainer: a job
goes from JobPosted to a registered model; jobs it cannot run are skipped with reasons; jobs
taken away are lost; `datanet jobs` and `datanet models` show the result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.deploy import OPEN
from node.chain.models import JobStatus, Method
from node.cli import app
from node.daemon.loop import retry
from node.daemon.store import JobState
from node.data.assemble import assemble
from node.rewards.merkle import StandardMerkleTree
from tests.conftest import World
from tests.daemon_setup import (
    NodeHome,
    approved_datanet,
    job_events,
    node_home,
    post_job,
    private_datanet,
    run_to_settled,
    stake,
)


@pytest.fixture
def home(world: World, tmp_path: Path, tiny_base_model: Path) -> NodeHome:
    return node_home(world, tmp_path, tiny_base_model)


def test_a_posted_job_ends_as_a_registered_model(world: World, home: NodeHome, tmp_path: Path) -> None:
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    run_to_settled(world, daemon)

    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SETTLED, (r.state, r.reason, r.last_error)
    assert [t.to_state for t in daemon.jobs.history(job_id)] == [
        "seen", "claimed", "data_ready", "training", "trained", "attributed", "uploaded", "submitted", "settled",
    ]  # fmt: skip
    model = world.admin.model(r.model_id or 0)
    work = Path(r.work_dir or "")
    adapter = work / "train" / "adapter"
    # The adapter CID holds exactly the local adapter directory, and its hash is the weights'.
    fetched = home.store.get(model.adapterCID, tmp_path / "fetched")
    assert sorted(p.name for p in fetched.iterdir()) == sorted(p.name for p in adapter.iterdir())
    assert all((fetched / p.name).read_bytes() == p.read_bytes() for p in adapter.iterdir())
    assert model.adapterHash == hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).digest()
    # The data root is the manifest's, and anyone re-assembling at the claim block gets the same.
    manifest = json.loads((work / "data" / "manifest.json").read_text())
    assert "0x" + model.dataRoot.hex() == manifest["data_root"] == r.data_root
    again = assemble(world.admin, home.store, job_id, block=r.claim_block)
    assert again.manifest.data_root == manifest["data_root"]
    assert (model.baseModelHash, model.node, model.jobId) == (home.base_hash, world.node.address, job_id)
    metrics = json.loads(home.store.cat(model.metricsCID))
    assert metrics["train"]["steps"] == 6 and metrics["data_root"] == r.data_root
    assert json.loads(home.store.cat(metrics["manifest_cid"]))["data_root"] == r.data_root
    # The reward tree is the distributor's, and a contributor can claim from it.
    doc = json.loads(home.store.cat(model.attributionCID))
    tree = StandardMerkleTree.load(doc["reward_tree"])
    assert tree.root == model.attributionRoot == world.admin.reward_round(job_id).root
    assert sum(int(v[3]) for v in tree.values()) == world.admin.reward_round(job_id).total
    _, index, account, amount = tree.values()[0]
    claimer = next(c for c in world.contributors if c.address == account)
    before = claimer.balance()
    claimer.claim_reward(job_id, int(index), account, int(amount), tree.proof(0))
    assert claimer.balance() == before + int(amount)
    assert len(job_events(world, "JobClaimed", job_id)) == len(job_events(world, "ModelRegistered", job_id)) == 1

    # A second pass finds nothing to do and sends nothing.
    run_to_settled(world, daemon)
    assert len(job_events(world, "ModelRegistered", job_id)) == 1
    daemon.close()

    runner = CliRunner()
    env = {"DATANET_DATA_DIR": str(home.settings.data_dir), "DATANET_NETWORK": "test",
           "DATANET_DEPLOYMENTS_DIR": str(home.settings.deployments_dir)}  # fmt: skip
    out = runner.invoke(app, ["jobs", "--json"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    [view] = json.loads(out.stdout)
    assert (view["job"]["state"], view["percent"], view["job"]["model_id"]) == ("settled", 100.0, r.model_id)
    table = runner.invoke(app, ["jobs"], env=env, catch_exceptions=False)
    assert "settled" in table.stdout and "100%" in table.stdout
    base = ["--rpc-url", world.rpc_url, "models", "--json"]
    models = json.loads(runner.invoke(app, base, env=env, catch_exceptions=False).stdout)
    [m] = [m for m in models if m["job_id"] == job_id]
    assert m["adapter_cid"] == model.adapterCID and m["data_root"] == r.data_root
    assert m["adapter_sha256"] == r.adapter_sha256 and m["base_model_hash"] == "0x" + home.base_hash.hex()
    assert m["metrics"]["train"]["steps"] == 6 and m["datanet_ids"] == [datanet_id]
    filtered = runner.invoke(app, [*base, "--datanet", str(datanet_id + 1)], env=env, catch_exceptions=False)
    assert json.loads(filtered.stdout) == []
    by_base = runner.invoke(app, [*base, "--base-model", "0x" + home.base_hash.hex()], env=env)
    assert [x["model_id"] for x in json.loads(by_base.stdout)] == [r.model_id]


SKIPS = {
    "unknown base model": ({"base_model": "nobody/missing"}, {}, "unknown base model"),
    "hash mismatch": ({"base_hash": b"\x01" * 32}, {}, "base model hash mismatch"),
    "unsupported method": ({"method": Method.QLORA}, {"accepted_methods": ["lora"]}, "unsupported method"),
    "pool below minimum": ({"pool": 5 * OPEN}, {"min_pool": 50}, "pool below minimum"),  # min_pool is in OPEN
    "not enough memory": ({}, {"max_memory_gb": 0.001}, "not enough memory"),
    "insufficient stake": ({}, {}, "insufficient stake"),
    # H-2: the minimum stake no longer backs any job: this pool's contributors' part is the bond.
    "bond not covered": ({"pool": 5_000 * OPEN}, {}, "insufficient stake: claiming job"),
    "config hash mismatch": ({"config_hash": b"\x02" * 32}, {}, "config hash mismatch"),
    "hostile config": ({"config_bytes": b"[" * 100_000 + b"]" * 100_000}, {}, "nested 100,000 levels deep"),
    "config not JSON": ({"config_bytes": b"\x89PNG\r\n\x1a\n"}, {}, "not UTF-8"),
}


@pytest.mark.parametrize("case", list(SKIPS))
def test_jobs_this_node_cannot_run_are_skipped_with_a_reason(world: World, home: NodeHome, case: str) -> None:
    job_kw, settings, expected = SKIPS[case]
    datanet_id = approved_datanet(world, home, contributors=1)
    if case != "insufficient stake":
        stake(world.node)
    job_id = post_job(world, home, datanet_id, **job_kw)  # type: ignore[arg-type]
    daemon = home.daemon(world.node, **settings)
    daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SKIPPED and expected in (r.reason or ""), r
    assert job_events(world, "JobClaimed", job_id) == []


def test_jobs_cancelled_or_claimed_by_another_node_are_lost(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home, contributors=1)
    stake(world.node)
    cancelled = post_job(world, home, datanet_id)
    world.poster.cancel_job(cancelled)
    taken = post_job(world, home, datanet_id)
    other = world.outsider
    world.admin.transfer(other.address, 10_000 * OPEN)
    stake(other)
    other.claim_job(taken)
    daemon = home.daemon(world.node)
    daemon.run(once=True)
    assert daemon.jobs.require(cancelled).state == JobState.LOST
    assert "cancelled" in (daemon.jobs.require(cancelled).reason or "")
    assert daemon.jobs.require(taken).state == JobState.LOST
    assert f"claimed by another node ({other.address})" == daemon.jobs.require(taken).reason


def test_a_claimed_job_that_expires_is_lost_and_nothing_is_submitted(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home, contributors=1)
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    daemon.catch_up()
    daemon.advance(daemon.jobs.require(job_id))  # seen -> claimed
    assert daemon.jobs.require(job_id).state == JobState.CLAIMED
    world.advance(2 * 86_400)
    world.poster.expire_job(job_id)
    daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.LOST and "expired" in (r.reason or ""), r
    assert job_events(world, "ModelRegistered", job_id) == []


def test_a_claimed_job_reopened_for_overrunning_is_lost_and_open_to_others(world: World, home: NodeHome) -> None:
    """After maxTrainingTime anyone may reopen a claimed job: its node's daemon gives it up (half
    the bond went to the poster), and a daemon that had lost it to that node sees it open again."""
    datanet_id = approved_datanet(world, home, contributors=1)
    stake(world.node)
    job_id = post_job(world, home, datanet_id, deadline_in=10 * 86_400)
    daemon = home.daemon(world.node)
    daemon.catch_up()
    daemon.advance(daemon.jobs.require(job_id))  # seen -> claimed
    assert daemon.jobs.require(job_id).state == JobState.CLAIMED
    world.advance(world.admin.max_training_time())
    world.outsider.reopen_job(job_id)
    daemon.catch_up()
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.LOST and (r.reason or "").startswith("reopened"), r
    assert world.admin.job(job_id).status == JobStatus.OPEN and world.node.node_stake().reserved == 0


def test_only_max_active_jobs_are_claimed_at_once(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home, contributors=1)
    stake(world.node)
    first, second = post_job(world, home, datanet_id), post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    daemon.catch_up()
    daemon.advance(daemon.next_job())  # type: ignore[arg-type]
    assert [daemon.jobs.require(j).state for j in (first, second)] == [JobState.CLAIMED, JobState.SEEN]
    assert daemon.next_job().job_id == first  # type: ignore[union-attr]  # finish it before claiming more
    assert world.admin.job(first).node == world.node.address


def test_a_skipped_job_runs_after_datanet_jobs_retry(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home, contributors=1)
    job_id = post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    daemon.run(once=True)
    assert daemon.jobs.require(job_id).state == JobState.SKIPPED  # not staked yet
    stake(world.node)
    env = {"DATANET_DATA_DIR": str(home.settings.data_dir), "DATANET_NETWORK": "test",
           "DATANET_DEPLOYMENTS_DIR": str(home.settings.deployments_dir)}  # fmt: skip
    out = CliRunner().invoke(app, ["jobs", "--retry", str(job_id), "--json"], env=env, catch_exceptions=False)
    assert out.exit_code == 0 and json.loads(out.stdout)[0]["job"]["state"] == "seen"
    run_to_settled(world, daemon)
    assert daemon.jobs.require(job_id).state == JobState.SETTLED
    again = CliRunner().invoke(app, ["jobs", "--retry", str(job_id)], env=env)
    assert again.exit_code != 0 and "only skipped jobs and retryable failed ones" in str(again.exception)


def test_a_restricted_datanet_job_is_skipped_until_the_datanet_trusts_the_node(world: World, home: NodeHome) -> None:
    """M-1: a staked node that the Datanet does not name cannot claim its job; the daemon says who
    can fix it and how, and claims after the owner trusts it and the operator retries."""
    datanet_id = approved_datanet(world, home, contributors=1, restricted=True)
    world.admin.set_trainer(datanet_id, world.poster.address)  # restricted: the poster is allowed to post
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SKIPPED and (r.reason or "").startswith("not trusted"), r
    assert f"datanet net trust-node {datanet_id} {world.node.address}" in (r.reason or "")
    assert job_events(world, "JobClaimed", job_id) == []
    world.admin.set_trusted_node(datanet_id, world.node.address)
    retry(daemon.jobs, job_id)
    daemon.advance(daemon.jobs.require(job_id))  # seen -> claimed
    assert world.admin.job(job_id).node == world.node.address


def test_a_private_datanet_job_waits_for_its_key_grant_then_trains(world: World, home: NodeHome) -> None:
    from node.data.grants import grant_job

    d = private_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, d)
    daemon = home.daemon(world.node)
    daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.CLAIMED and "waiting for a key grant" in (r.last_error or ""), r
    assert r.attempts == 0  # waiting is not failing

    grant_job(world.curator, home.store, d, job_id)  # possible now: the daemon published its encryption key
    run_to_settled(world, daemon)  # a restart (or the AccessGranted event) makes the waiting job due again
    r = daemon.jobs.require(job_id)
    assert r.state == JobState.SETTLED, r
    assert world.admin.model(r.model_id or 0).dataRoot.hex() == (r.data_root or "")[2:]


def test_a_commercial_job_leaves_out_datanets_whose_license_forbids_it(world: World, home: NodeHome) -> None:
    free = approved_datanet(world, home, contributors=1)
    nc = approved_datanet(world, home, contributors=1, first=1, name="nc", license="CC-BY-NC-4.0", commercialUse=False)
    stake(world.node)
    commercial = post_job(world, home, [free, nc], config={"commercial_use": True})
    only_nc = post_job(world, home, nc, config={"commercial_use": True})
    research = post_job(world, home, [free, nc])  # commercial_use left at its default (false)
    daemon = home.daemon(world.node)
    daemon.catch_up()
    daemon.advance(daemon.jobs.require(only_nc))  # nothing it may use: skipped before the claim
    r = daemon.jobs.require(only_nc)
    assert r.state == JobState.SKIPPED and "license forbids commercial use" in (r.reason or ""), r
    assert f"#{nc} 'CC-BY-NC-4.0'" in (r.reason or "") and job_events(world, "JobClaimed", only_nc) == []
    daemon.advance(daemon.jobs.require(commercial))  # seen -> claimed
    daemon.advance(daemon.jobs.require(commercial))  # claimed -> data_ready
    r = daemon.jobs.require(commercial)
    assert r.state == JobState.DATA_READY, r
    data = Path(r.work_dir or "") / "data"
    [excluded] = json.loads((data / "excluded.json").read_text())
    assert excluded["datanet_id"] == nc and "commercial use" in excluded["reason"]
    assert "CC-BY-NC-4.0" in excluded["reason"]
    manifest = json.loads((data / "manifest.json").read_text())
    assert {e["datanet_id"] for e in manifest["entries"]} == {free}
    # The same Datanets for a job that does not declare commercial use: both are trained on.
    assert {e.datanet_id for e in assemble(world.admin, home.store, research).manifest.entries} == {free, nc}
    daemon.close()


def test_a_paused_job_waits_and_resumes_where_it_stopped(world: World, home: NodeHome) -> None:
    from node.daemon import control

    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    control.pause(home.settings, world.deployment, job_id)  # the operator pauses it before it trains
    daemon = home.daemon(world.node)
    daemon.run(once=True)
    r = daemon.jobs.require(job_id)
    assert r.state in (JobState.DATA_READY, JobState.TRAINING) and "paused by the operator" in (r.last_error or "")
    assert not (Path(r.work_dir or "") / "train" / "adapter").exists()
    assert control.state(home.settings, world.deployment, job_id).paused
    control.resume(home.settings, world.deployment, job_id)
    daemon.jobs.nudge(job_id)
    run_to_settled(world, daemon)
    assert daemon.jobs.require(job_id).state == JobState.SETTLED
