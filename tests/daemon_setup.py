"""Shared steps of the daemon tests: a node home (settings, store, base model in its cache), a
Datanet with approved contributions, a staked node, and jobs posted with a real config document."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.chain.deploy import OPEN, save_deployment
from node.chain.models import DatanetParams, JobParams, Method
from node.chain.protocol import Protocol
from node.config import Settings
from node.daemon.loop import Daemon
from node.daemon.store import JobState
from node.data.contribute import Journal, contribute_files
from node.demo import world as demo_world
from node.storage.embedded import EmbeddedStore
from node.train.base_model import cached_path, weights_hash
from node.train.config import JobConfig
from tests.conftest import World

BASE_REF = "test/tiny-llama"
# Small and quick: a handful of LoRA steps on the tiny model, a checkpoint every 2 steps.
TRAIN = {"method": "lora", "max_steps": 6, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "max_seq_len": 128,
         "checkpoint_every": 2, "eval_fraction": 0.1, "seed": 0}  # fmt: skip


@dataclass
class NodeHome:
    root: Path
    settings: Settings
    store: EmbeddedStore
    base_hash: bytes

    def daemon(self, node: Protocol, **overrides: Any) -> Daemon:
        return Daemon(node, self.store, self.settings.model_copy(update=overrides))

    def env(self, world: World, private_key: str) -> dict[str, str]:
        """The same settings as environment variables, for a `datanet daemon` subprocess."""
        s = self.settings
        return {
            "DATANET_RPC_URL": world.rpc_url, "DATANET_NETWORK": s.network,
            "DATANET_DEPLOYMENTS_DIR": str(s.deployments_dir), "DATANET_DATA_DIR": str(s.data_dir),
            "DATANET_MODELS_DIR": str(s.models_path), "DATANET_CONFIRMATIONS": "0",
            "DATANET_POLL_INTERVAL": "0.1", "DATANET_RETRY_DELAY": "0.5", "DATANET_PRIVATE_KEY": private_key,
        }  # fmt: skip


def node_home(world: World, tmp_path: Path, tiny_base_model: Path) -> NodeHome:
    settings = Settings(
        rpc_url=world.rpc_url, network="test", data_dir=tmp_path / ".datanet", deployments_dir=tmp_path / "deployments",
        confirmations=0, poll_interval=0.1, retry_delay=0.5, job_retries=2,
    )  # fmt: skip
    save_deployment(world.deployment, settings.deployment_file())
    model_dir = cached_path(BASE_REF, settings.models_path)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_base_model, model_dir)
    return NodeHome(tmp_path, settings, EmbeddedStore(settings.data_dir / "ipfs"), weights_hash(model_dir))


def approved_datanet(world: World, home: NodeHome, contributors: int = 2, first: int = 0, **terms: Any) -> int:
    """A Datanet with `contributors` approved files of demo-world facts (one per contributor,
    from contributor `first` on); `terms` override its DatanetParams (license, commercialUse)."""
    params = DatanetParams(name="facts", treasury=world.admin.address, curators=[world.curator.address],
                           minStake=10 * OPEN)  # fmt: skip
    datanet_id = world.admin.create_datanet(params.model_copy(update=terms))
    journal = Journal(home.root / "journal.json")
    for k in range(first, first + contributors):
        _, records = demo_world.region_facts(100 + k)
        path = home.root / f"facts-{k}.jsonl"
        path.write_bytes(demo_world.to_jsonl(records))
        [r] = contribute_files(world.contributors[k], home.store, datanet_id, [path], 10 * OPEN, journal)
        world.curator.approve_contribution(r.contribution_id)
    return datanet_id


def private_datanet(world: World, home: NodeHome) -> int:
    """A private Datanet owned by contributor 3, trusting `world.node` (its key published, the curator's encryption key
    too) with two approved sealed files of demo-world facts, from contributors 0 and 1."""
    from node.data.grants import ensure_encryption_key, publish_datanet_key, sealer

    owner, curator = world.contributors[3], world.curator
    ensure_encryption_key(curator)
    d = owner.create_datanet(DatanetParams(name="clinic", treasury=owner.address, isPrivate=True,
                                           curators=[curator.address], minStake=OPEN))  # fmt: skip
    publish_datanet_key(owner, home.store, d)
    owner.set_trusted_node(d, world.node.address)  # the node the curators will grant the keys to
    for k, who in enumerate(world.contributors[:2]):
        path = home.root / f"private-{k}.jsonl"
        path.write_bytes(demo_world.to_jsonl(demo_world.region_facts(200 + k)[1]))
        [r] = contribute_files(who, home.store, d, [path], OPEN, Journal(home.root / f"j{k}.json"), seal=sealer(who, d))
        curator.approve_contribution(r.contribution_id)
    return d


def stake(node: Protocol) -> None:
    amount = node.min_node_stake()
    node.approve(node.staking.address, amount)
    node.stake(amount)


def post_job(
    world: World,
    home: NodeHome,
    datanet_id: int | list[int],
    *,
    base_model: str = BASE_REF,
    base_hash: bytes | None = None,
    method: Method = Method.LORA,
    pool: int = 100 * OPEN,
    config: dict[str, Any] | None = None,
    config_hash: bytes | None = None,
    config_bytes: bytes | None = None,
    deadline_in: int = 86_400,
) -> int:
    """Posts a job whose config document is in the node's store, hashed as the chain records
    (`config_bytes`: those bytes instead, as a hostile poster would)."""
    doc = JobConfig(base_model=base_model, **{**TRAIN, "method": method.name.lower(), **(config or {})})
    data = doc.canonical_json() if config_bytes is None else config_bytes
    params = JobParams(
        baseModel=base_model, baseModelHash=base_hash or home.base_hash,
        datanetIds=datanet_id if isinstance(datanet_id, list) else [datanet_id],
        configCID=home.store.add_bytes(data), configHash=config_hash or hashlib.sha256(data).digest(),
        method=method, pool=pool, deadline=world.now() + deadline_in,
    )  # fmt: skip
    world.poster.approve(world.poster.models.address, world.poster.job_cost(pool))
    return world.poster.post_job(params)


def job_events(world: World, name: str, job_id: int) -> list[dict[str, Any]]:
    event = getattr(world.admin.models.events, name)
    logs = event.get_logs(from_block=world.deployment.deploy_block, argument_filters={"jobId": job_id})
    return [dict(log["args"]) | {"tx": "0x" + bytes(log["transactionHash"]).hex()} for log in logs]


def past_challenge_windows(world: World, daemon: Daemon) -> None:
    """Mines a block after the challenge window of every result `daemon` submitted and waits on."""
    waiting = [r for r in daemon.jobs.in_states([JobState.SUBMITTED]) if r.model_id]
    ats = [world.admin.finalizable_at(r.model_id)[0] for r in waiting if r.model_id]
    if ats and max(ats) > world.now():
        world.rpc("evm_mine", max(ats))


def run_to_settled(world: World, daemon: Daemon) -> None:
    """`daemon.run(once=True)`, then, for results waiting on their challenge window, the chain clock
    moved past it and one more run, which finalizes them (a restart nudges every waiting job)."""
    daemon.run(once=True)
    if daemon.jobs.in_states([JobState.SUBMITTED]):
        past_challenge_windows(world, daemon)
        daemon.run(once=True)
