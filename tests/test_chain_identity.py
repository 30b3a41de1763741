"""Two dev chains, one node data dir: a dev chain restarted on the same port keeps its chain id
(31337) and, deployed by the same account, its contract addresses, but not its genesis hash, and
everything the node keeps per chain is keyed by it: the watcher's checkpoint, the job store, the
daemon's work dirs, the contributions journal, and the deployment file."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from node.chain.accounts import dev_account
from node.chain.checkpoints import CheckpointStore
from node.chain.client import ChainClient
from node.chain.deploy import OPEN, deploy, load_deployment, save_deployment
from node.chain.devchain import DevChain, DevChainConfig, free_port
from node.chain.models import DatanetParams, Deployment, JobParams, Method
from node.chain.protocol import Protocol
from node.chain.watcher import EventWatcher, ReorgTooDeepError, WatcherStateError
from node.config import Settings
from node.daemon.loop import Daemon
from node.daemon.store import JobState, JobStore, namespace_of
from node.data.contribute import Journal, contribute_files
from node.demo import world as demo_world
from node.errors import DeploymentError
from node.storage.embedded import EmbeddedStore
from node.train.config import JobConfig

ADMIN, CURATOR, NODE, POSTER, CONTRIBUTOR = (dev_account(i) for i in range(5))


def _populate(url: str, settings: Settings, facts: Path, base_model: str) -> tuple[Deployment, Protocol, int]:
    """Deploys, has a contributor submit `facts` (journal in the data dir, as the CLI keeps it) and
    posts job #1 naming `base_model`, a model the node does not have (so its daemon skips it)."""
    dep = deploy(ChainClient(url, ADMIN), "dev")
    save_deployment(dep, settings.deployment_file())
    admin = Protocol(ChainClient(url, ADMIN), dep)
    for who in (CONTRIBUTOR, POSTER):
        admin.transfer(who.address, 1_000 * OPEN)
    datanet = admin.create_datanet(DatanetParams(name="facts", treasury=ADMIN.address, curators=[CURATOR.address]))
    store = EmbeddedStore(settings.data_dir / "ipfs")
    journal = Journal(settings.data_dir / "contributions-journal.json")
    [r] = contribute_files(admin.as_account(CONTRIBUTOR), store, datanet, [facts], OPEN, journal)
    assert not r.reused_upload and not r.already_submitted  # nothing of another chain's is taken for this one's
    doc = JobConfig(base_model=base_model, method="lora").canonical_json()
    poster = admin.as_account(POSTER)
    deadline = int(poster.client.w3.eth.get_block("latest")["timestamp"]) + 86_400
    params = JobParams(
        baseModel=base_model, baseModelHash=b"\1" * 32, datanetIds=[datanet], configCID=store.add_bytes(doc),
        configHash=hashlib.sha256(doc).digest(), method=Method.LORA, pool=10 * OPEN, deadline=deadline,
    )  # fmt: skip
    poster.approve(poster.models.address, poster.job_cost(params.pool))
    return dep, admin, poster.post_job(params)


def _run_daemon(admin: Protocol, settings: Settings) -> Daemon:
    daemon = Daemon(admin.as_account(NODE), EmbeddedStore(settings.data_dir / "ipfs"), settings)
    try:
        daemon.run(once=True)
    finally:
        daemon.close()
    return daemon


def test_a_restarted_dev_chain_shares_no_state_with_the_last_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(rpc_url=url, network="dev", data_dir=tmp_path / ".datanet",
                        deployments_dir=tmp_path / "deployments", confirmations=0, retry_delay=0.5)  # fmt: skip
    facts = tmp_path / "facts.jsonl"
    facts.write_bytes(demo_world.to_jsonl(demo_world.region_facts(100)[1]))
    with DevChain(DevChainConfig(port=port)):
        dep_a, admin_a, job_a = _populate(url, settings, facts, "test/model-of-chain-a")
        _run_daemon(admin_a, settings)
    with DevChain(DevChainConfig(port=port)):  # the same port, a new chain
        client = ChainClient(url, ADMIN)
        assert client.genesis_hash != dep_a.genesis_hash
        # The first chain's deployment file is refused with the command that fixes it.
        with pytest.raises(DeploymentError, match=r"genesis.*`datanet deploy`"):
            Protocol(client, load_deployment(settings.deployment_file()))
        dep_b, admin_b, job_b = _populate(url, settings, facts, "test/model-of-chain-b")
        # Without the genesis hash the two chains would share every key: same id, same addresses, same job id.
        assert (dep_b.chain_id, dep_b.contracts, job_b) == (dep_a.chain_id, dep_a.contracts, job_a)
        legacy = [d.model_copy(update={"genesis_hash": None}) for d in (dep_a, dep_b)]
        assert namespace_of(legacy[0]) == namespace_of(legacy[1]) != namespace_of(dep_b)

        # A generic watcher refuses the other chain's checkpoint, naming the command that resets it.
        with CheckpointStore(settings.state_db) as cps:
            assert cps.checkpoint("daemon-dev").genesis_hash == dep_a.genesis_hash  # type: ignore[union-attr]
            reader = EventWatcher(client, {"ModelRegistry": admin_b.models}, cps, name="daemon-dev", confirmations=0)
            with pytest.raises(WatcherStateError, match=r"genesis.*`datanet daemon --reset-watcher`"):
                reader.poll_once()
        # The daemon, whose state is keyed by the chain, says so and reads the new chain from its start.
        with caplog.at_level(logging.WARNING, logger="node.chain.watcher"):
            daemon = _run_daemon(admin_b, settings)
        assert any("restarted or replaced" in r.getMessage() for r in caplog.records)
        with CheckpointStore(settings.state_db) as cps:
            cp = cps.checkpoint("daemon-dev")
            assert cp is not None and cp.genesis_hash == dep_b.genesis_hash
            assert cp.block_number >= dep_b.deploy_block

    # Job #1 of each chain has its own row: chain B's job was seen, not mistaken for chain A's.
    for dep, base in ((dep_a, "test/model-of-chain-a"), (dep_b, "test/model-of-chain-b")):
        with JobStore(settings.state_db, namespace_of(dep)) as jobs:
            row = jobs.require(job_a)
            assert row.base_model == base and row.state == JobState.SKIPPED, row
            assert [t.to_state for t in jobs.history(job_a)] == ["seen", "skipped"]
    assert daemon.steps.root.name == f"dev-{dep_b.chain_key}" != f"dev-{dep_a.chain_key}"
    # One journal entry per chain for the same file.
    entries = Journal(settings.data_dir / "contributions-journal.json")._entries
    assert len(entries) == 2 and {k.split(":")[1] for k in entries} == {dep_a.genesis_hash, dep_b.genesis_hash}


def test_a_deep_reorg_names_the_reset_command_and_the_command_resets(tmp_path: Path) -> None:
    """A checkpoint from before genesis hashes were kept meets a replaced chain: the watcher finds
    none of its block hashes (the deep-reorg case) and says which command starts over;
    `datanet daemon --reset-watcher` does, and the daemon then reads the chain from its deployment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(rpc_url=url, network="dev", data_dir=tmp_path / ".datanet",
                        deployments_dir=tmp_path / "deployments", confirmations=0, retry_delay=0.5)  # fmt: skip
    facts = tmp_path / "facts.jsonl"
    facts.write_bytes(demo_world.to_jsonl(demo_world.region_facts(101)[1]))
    with DevChain(DevChainConfig(port=port)):
        _, admin_a, _ = _populate(url, settings, facts, "test/a")
        _run_daemon(admin_a, settings)
    with sqlite3.connect(settings.state_db) as db:  # as an older node left it: no genesis hash
        db.execute("UPDATE watcher_checkpoints SET genesis_hash = NULL")
    with DevChain(DevChainConfig(port=port)):
        dep_b, admin_b, job_b = _populate(url, settings, facts, "test/b")
        with pytest.raises(ReorgTooDeepError, match="`datanet daemon --reset-watcher`"):
            _run_daemon(admin_b, settings)
        env = {
            **os.environ, "DATANET_RPC_URL": url, "DATANET_NETWORK": "dev", "DATANET_DATA_DIR": str(settings.data_dir),
            "DATANET_DEPLOYMENTS_DIR": str(settings.deployments_dir), "DATANET_CONFIRMATIONS": "0",
            "DATANET_PRIVATE_KEY": "0x" + bytes(NODE.key).hex(),
        }  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "node.cli", "daemon", "--once", "--reset-watcher"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "watcher checkpoint reset" in proc.stderr
        with JobStore(settings.state_db, namespace_of(dep_b)) as jobs:
            assert jobs.require(job_b).base_model == "test/b"


def test_an_older_state_file_gains_the_genesis_column(tmp_path: Path) -> None:
    """A state file written before genesis hashes were kept opens, and its checkpoint still loads."""
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE watcher_checkpoints (name TEXT PRIMARY KEY, chain_id INTEGER NOT NULL, "
            "fingerprint TEXT NOT NULL, block_number INTEGER NOT NULL, updated_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO watcher_checkpoints VALUES ('daemon-x', 31337, 'f', 41, 0.0)")
    with CheckpointStore(path) as store:
        cp = store.checkpoint("daemon-x")
        assert cp is not None and (cp.block_number, cp.genesis_hash) == (41, None)
    with CheckpointStore(path) as store:  # a second open migrates nothing twice
        assert store.checkpoint("daemon-x") is not None


def test_a_deployment_file_without_a_genesis_hash_still_loads(tmp_path: Path) -> None:
    dep = Deployment(
        network="old", chain_id=31337, rpc_url="http://127.0.0.1:1", deployer=ADMIN.address, deploy_block=1,
        deployed_at=0, contracts={"ModelRegistry": CURATOR.address},
    )  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(dep.model_dump_json(exclude={"genesis_hash"}))
    loaded = load_deployment(path)
    assert loaded.genesis_hash is None and loaded.chain_key == "31337"
    assert namespace_of(loaded) == f"31337:{CURATOR.address.lower()}"  # where older nodes kept its jobs
