"""`datanet demo`: the protocol end to end on a local dev chain.

Starts anvil, deploys, creates a Datanet, has three fresh contributor wallets stake and submit
(one gasless, relayed with EIP-712 + EIP-2612 signatures), a curator approves two and rejects
(and slashes) the third, a job with an OPEN pool is posted and a staked node claims it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, Field

from node.chain.accounts import dev_account, save_keystore
from node.chain.client import ChainClient
from node.chain.deploy import OPEN, deploy, save_deployment
from node.chain.devchain import DevChain, DevChainConfig, free_port
from node.chain.models import ContributionStatus, DatanetParams, JobParams, Method
from node.chain.protocol import Protocol
from node.data.assemble import assemble
from node.data.contribute import Journal, contribute_files
from node.demo import world
from node.storage.embedded import EmbeddedStore

DEMO_KEYSTORE_PASSWORD = "datanet-demo"  # dev-chain wallets only; documented in the README


class DemoStep(BaseModel):
    step: str
    actor: str
    detail: str
    tx: str | None = None


class DemoContribution(BaseModel):
    id: int
    contributor: str
    file: str
    cid: str
    sha256: str
    records: int
    stake: str
    status: str
    relayed: bool


class DemoTrainingSet(BaseModel):
    """The job's permitted training set as the node assembled it."""

    examples: int
    per_contributor: dict[str, int]
    data_root: str
    dropped_duplicates: int
    excluded: int
    manifest: str
    block: int


class DemoSummary(BaseModel):
    rpc_url: str
    chain_id: int
    deployment_file: str
    contracts: dict[str, str]
    datanet_id: int
    contributions: list[DemoContribution]
    job_id: int
    job_pool: str
    node: str
    treasury_slashed: str
    training_set: DemoTrainingSet
    steps: list[DemoStep] = Field(default_factory=list)
    chain_kept: bool = False
    chain_pid: int | None = None


def fmt_open(amount: int) -> str:
    return f"{amount / OPEN:,.2f} OPEN"


class Demo:
    """One run of the demo; `run()` returns the summary. Prints progress through `say`."""

    def __init__(self, data_dir: Path, deployments_dir: Path, say: Callable[[str], None]):
        self.data_dir = data_dir / "demo"
        self.deployments_dir = deployments_dir
        self.say = say
        self.steps: list[DemoStep] = []
        self.store = EmbeddedStore(data_dir / "ipfs")  # the embedded content store (Kubo-identical CIDs)

    def _record(self, step: str, actor: str, detail: str, proto: Protocol | None = None) -> None:
        tx = None
        if proto is not None and proto.client.last_receipt is not None:
            tx = "0x" + bytes(proto.client.last_receipt["transactionHash"]).hex()
        self.steps.append(DemoStep(step=step, actor=actor, detail=detail, tx=tx))
        self.say(f"[green]✓[/] [bold]{step}[/] ({actor}): {detail}")
        if tx:
            self.say(f"    [dim]tx {tx}[/]")

    def run(self, chain: DevChain) -> DemoSummary:
        admin_client = ChainClient(chain.rpc_url, dev_account(0))
        deployment = deploy(admin_client, "localhost")
        dep_file = save_deployment(deployment, self.deployments_dir / "localhost.json")
        admin = Protocol(admin_client, deployment)
        self._record(
            "deploy", "deployer", f"{len(deployment.contracts)} contracts deployed, addresses in {dep_file}", admin
        )

        owner, curator, node, poster, relayer = (admin.as_account(dev_account(i)) for i in (1, 2, 3, 4, 5))
        for who in (owner, node, poster):
            admin.transfer(who.address, 100_000 * OPEN)
        datanet_id = self._create_datanet(owner, curator)
        contributions = self._contribute(admin, relayer, datanet_id)
        slashed = self._curate(curator, owner, contributions)
        job_id = self._post_and_claim(poster, node, datanet_id)
        training_set = self._training_set(node, job_id)
        return DemoSummary(
            rpc_url=chain.rpc_url,
            chain_id=deployment.chain_id,
            deployment_file=str(dep_file),
            contracts={k: str(v) for k, v in deployment.contracts.items()},
            datanet_id=datanet_id,
            contributions=[
                c.model_copy(update={"status": admin.contribution(c.id).status.name.lower()}) for c in contributions
            ],
            job_id=job_id,
            job_pool=fmt_open(admin.job(job_id).pool),
            node=node.address,
            treasury_slashed=fmt_open(slashed),
            training_set=training_set,
            steps=self.steps,
        )

    def _create_datanet(self, owner: Protocol, curator: Protocol) -> int:
        params = DatanetParams(
            name="Quillmarsh Atlas",
            metadataCID=self.store.add_bytes(
                b'{"description":"Facts about the islands of Quillmarsh",'
                b'"formats":["alpaca"],"name":"Quillmarsh Atlas"}'
            ),
            license="CC-BY-4.0",
            minStake=10 * OPEN,
            slashBps=5_000,
            lockPeriod=7 * 24 * 3600,
            treasury=owner.address,
            curators=[curator.address],
        )
        datanet_id = owner.create_datanet(params)
        self._record(
            "create datanet",
            "owner",
            f"Datanet #{datanet_id} '{params.name}', curator {curator.address}",
            owner,
        )
        return datanet_id

    def _new_wallet(self, label: str) -> LocalAccount:
        acct: LocalAccount = Account.create()
        save_keystore(acct, self.data_dir / "keystores" / f"{label}.json", DEMO_KEYSTORE_PASSWORD)
        return acct

    def _write(self, name: str, data: bytes) -> Path:
        path = self.data_dir / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def _contribute(self, admin: Protocol, relayer: Protocol, datanet_id: int) -> list[DemoContribution]:
        files = []
        for k in range(2):
            region, records = world.region_facts(region_seed=1000 + k)
            files.append((f"contributor-{k + 1}-{region.lower()}.jsonl", records))
        files.append(("contributor-3-spam.jsonl", world.junk_records(seed=7)))
        journal = Journal(self.data_dir / "contributions-journal.json")
        out: list[DemoContribution] = []
        for k, (name, records) in enumerate(files):
            wallet = self._new_wallet(f"contributor-{k + 1}")
            relayed = k == 2  # the third contributor holds no ETH at all: a relayer pays gas
            if not relayed:
                admin.client.send_value(wallet.address, 10**18)
            admin.transfer(wallet.address, 50 * OPEN)
            me = admin.as_account(wallet)
            path = self._write(name, world.to_jsonl(records))
            # Validate, upload to the content store, then stake by permit and submit.
            [r] = contribute_files(
                me, self.store, datanet_id, [path], 20 * OPEN, journal, relayer=relayer if relayed else None
            )
            how = "signed offline, relayer paid gas" if relayed else "stake 20 OPEN by permit"
            self._record(
                "contribute (relayed)" if relayed else "contribute",
                f"contributor {k + 1}",
                f"#{r.contribution_id} {r.cid} ({r.records} records, {how})",
                relayer if relayed else me,
            )
            out.append(
                DemoContribution(
                    id=r.contribution_id, contributor=wallet.address, file=str(path), cid=r.cid, sha256=r.sha256,
                    records=r.records, stake=fmt_open(r.stake), status="pending", relayed=relayed,
                )
            )  # fmt: skip
        return out

    def _curate(self, curator: Protocol, owner: Protocol, contributions: list[DemoContribution]) -> int:
        before = owner.balance()
        for c in contributions[:2]:
            curator.approve_contribution(c.id)
            self._record("approve", "curator", f"contribution #{c.id} approved", curator)
        spam = contributions[2]
        curator.reject_contribution(spam.id, "spam: contentless, repeated answers")
        slashed = owner.balance() - before
        self._record(
            "reject",
            "curator",
            f"contribution #{spam.id} rejected, {fmt_open(slashed)} slashed to the treasury",
            curator,
        )
        assert curator.contribution(spam.id).status == ContributionStatus.REJECTED
        return slashed

    def _post_and_claim(self, poster: Protocol, node: Protocol, datanet_id: int) -> int:
        config = {"method": "qlora", "base_model": "datanet/tiny-llama-demo", "learning_rate": 2e-4,
                  "epochs": 3, "batch_size": 8, "lora_rank": 8, "lora_alpha": 16, "seed": 0}  # fmt: skip
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        self._write("job-config.json", config_bytes)
        deadline = poster.client.w3.eth.get_block("latest")["timestamp"] + 24 * 3600
        pool = 1_000 * OPEN
        params = JobParams(
            baseModel=config["base_model"],  # type: ignore[arg-type]
            # Identity of the base weights; the training work replaces this name hash with the
            # sha256 over the real weight files once the demo builds its tiny model.
            baseModelHash=hashlib.sha256(str(config["base_model"]).encode()).digest(),
            datanetIds=[datanet_id],
            configCID=self.store.add_bytes(config_bytes),
            configHash=hashlib.sha256(config_bytes).digest(),
            method=Method.QLORA,
            pool=pool,
            deadline=deadline,
        )
        job_id = poster.post_job(params, poster.permit(poster.models.address, pool, deadline))
        self._record(
            "post job",
            "poster",
            f"job #{job_id}: QLoRA on Datanet #{datanet_id}, pool {fmt_open(pool)}",
            poster,
        )
        min_stake = node.min_node_stake()
        node.stake(min_stake, node.permit(node.staking.address, min_stake, deadline))
        self._record("stake", "node", f"node {node.address} staked {fmt_open(min_stake)}", node)
        node.claim_job(job_id)
        self._record("claim job", "node", f"job #{job_id} claimed", node)
        return job_id

    def _training_set(self, node: Protocol, job_id: int) -> DemoTrainingSet:
        """What the node trains on: approved data of the job's Datanets, verified and deduplicated."""
        assembled = assemble(node, self.store, job_id)
        out = assembled.write(self.data_dir / f"job-{job_id}")
        m = assembled.manifest
        per = m.contributors()
        summary = ", ".join(f"{addr[:10]}…: {n}" for addr, n in per.items())
        self._record(
            "training set",
            "node",
            f"job #{job_id}: {len(m.entries)} examples ({summary}), data root {m.data_root}",
        )
        return DemoTrainingSet(
            examples=len(m.entries), per_contributor=per, data_root=m.data_root,
            dropped_duplicates=m.dedup.exact_dropped + m.dedup.near_dropped, excluded=len(assembled.excluded),
            manifest=str(out / "manifest.json"), block=assembled.block,
        )  # fmt: skip


def start_chain(port: int | None) -> DevChain:
    """anvil on `port`, or 8545 if free, else any free port."""
    chosen = port if port is not None else (8545 if _port_free(8545) else free_port())
    return DevChain(DevChainConfig(port=chosen)).start()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_chain_pidfile(data_dir: Path, chain: DevChain) -> Path:
    path = data_dir / "devchain.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": chain.pid, "rpc_url": chain.rpc_url}))
    return path


def stop_chain_from_pidfile(data_dir: Path) -> str | None:
    """Stops a chain left running by `--keep` / `chain up --detach`; returns its URL."""
    import signal

    path = data_dir / "devchain.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(info["pid"]), signal.SIGTERM)
    path.unlink()
    return str(info["rpc_url"])
