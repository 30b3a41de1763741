"""The steps that move one job along the state machine of `node.daemon.store`, one state at a time.

Each step starts from what the job store and the chain say (never from memory of an earlier
call), does its work, and ends with one atomic transition that records the work's result. So a
`kill -9` anywhere leaves the job in the state before the step, and running the step again is
safe: file outputs are written atomically and re-checked, uploads are content-addressed (the same
bytes give the same CID), training resumes from its own checkpoints, and the two transactions are
preceded by a read of the chain: `claimJob` is not sent if the job is already ours, and
`submitResult` is not sent if the job already has our model. A transaction mined just before a
crash is found that way; one still pending makes the step wait until it is mined or dropped.

Step outcomes other than success are exceptions the daemon turns into states: `SkipJob`
(-> skipped), `LostJob` (-> lost), `WaitJob` (stay, retry later, not a failure), `Interrupted`
(the daemon is stopping; stay, resume later).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from web3.types import TxReceipt

from node.chain.models import ChallengeStatus, Deployment, Job, JobStatus, ModelStatus, ResultParams
from node.chain.protocol import Protocol
from node.config import Settings
from node.daemon.attribute import attribute_job
from node.daemon.eligibility import NotEligibleError, check_job, load_config, local_base_model
from node.daemon.outputs import MetricsDocument, finished_run, write_atomic
from node.daemon.query_set import RevealPending, fetch_eval_set, written_eval_set
from node.daemon.store import HOLDING, JobRecord, JobState, JobStore
from node.data.assemble import AssembledSet, AssemblyConfig, assemble
from node.data.manifest import Manifest
from node.data.records import Example
from node.errors import AccessDeniedError, ContractRevertError, NodeError
from node.storage.base import ContentStore, verify_sha256
from node.train.config import Progress, TrainMetrics

log = logging.getLogger("node.daemon")


class SkipJob(NodeError):
    """This node will not run the job (the message is the reason)."""


class LostJob(NodeError):
    """The job is no longer this node's to run: cancelled, expired, or another node's."""


class WaitJob(NodeError):
    """Not now: something the job needs is not there yet (a key grant, confirmations)."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class Interrupted(Exception):
    """The daemon is stopping; the job stays where it is and resumes on the next start."""


def failpoint(name: str) -> None:
    """Test hook: `DATANET_FAILPOINT=<name>` kills this process (SIGKILL, no clean-up) right
    here, so the crash-recovery tests can crash exactly between a transaction and its record.
    Points, in job order: claim-sent, data-fetching (after each contribution read), data-ready,
    upload-adapter (adapter stored, other documents not), uploaded, submit-before, submit-sent."""
    if os.environ.get("DATANET_FAILPOINT") == name:
        import signal

        log.warning("failpoint %s: killing the daemon (SIGKILL)", name)
        os.kill(os.getpid(), signal.SIGKILL)


class _FailpointReader:
    """The content store as assembly reads it, with the `data-fetching` failpoint after each
    read: a kill mid-download, with some contributions fetched and nothing recorded."""

    def __init__(self, store: ContentStore):
        self.store = store

    def cat(self, cid: str) -> bytes:
        data = self.store.cat(cid)
        failpoint("data-fetching")
        return data


def _tx(receipt: TxReceipt) -> tuple[str, int]:
    return "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])


def jobs_root(settings: Settings, deployment: Deployment) -> Path:
    """Where this node keeps its jobs' working directories (``job-<id>``) for one deployment: per
    network and chain (genesis too: a restarted dev chain reuses job ids and addresses)."""
    return settings.jobs_path / f"{deployment.network}-{deployment.chain_key}"


class JobSteps:
    """The step functions, bound to one node account, one content store and one job store."""

    def __init__(
        self, protocol: Protocol, store: ContentStore, jobs: JobStore, settings: Settings, stop: threading.Event
    ):
        self.p, self.store, self.jobs, self.settings, self.stop = protocol, store, jobs, settings, stop
        self.root = jobs_root(settings, protocol.deployment)
        self.steps: dict[JobState, Callable[[JobRecord], None]] = {
            JobState.SEEN: self.claim,
            JobState.CLAIMED: self.build_data,
            JobState.DATA_READY: self.train,
            JobState.TRAINING: self.train,
            JobState.TRAINED: self.attribute,
            JobState.ATTRIBUTED: self.upload,
            JobState.UPLOADED: self.submit,
            JobState.SUBMITTED: self.settle,
        }

    def work_dir(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}"

    # ------------------------------------------------------------------ seen → claimed

    def claim(self, r: JobRecord) -> None:
        job = self.p.job(r.job_id)
        if job.status != JobStatus.OPEN:
            self._recover_claim(r, job)
            return
        if self._chain_time() >= job.deadline:
            raise LostJob(f"expired: the deadline passed before this node claimed it (job #{job.id})")
        try:
            runnable = check_job(self.p, self.store, job, self.settings)
        except NotEligibleError as e:
            raise SkipJob(str(e)) from e
        holding = len(self.jobs.in_states(HOLDING))
        if holding >= self.settings.max_active_jobs:
            raise WaitJob(f"this node already holds {holding} job(s) (max_active_jobs)")
        self._no_pending_tx()
        if self.p.job(r.job_id).status != JobStatus.OPEN:  # re-read right before sending
            raise WaitJob("the job changed while it was checked; deciding again")
        try:
            receipt = self.p.claim_job(r.job_id)
        except ContractRevertError as e:
            self._recover_claim(r, self.p.job(r.job_id), e)
            return
        failpoint("claim-sent")
        tx, block = _tx(receipt)
        self.jobs.transition(
            r.job_id,
            JobState.CLAIMED,
            from_=[JobState.SEEN],
            claim_tx=tx,
            claim_block=block,
            work_dir=str(self.work_dir(r.job_id)),
        )
        log.info(
            "job #%d: claimed (tx %s, block %d); base model %s, %s, needs ~%.1f GiB",
            r.job_id,
            tx,
            block,
            job.baseModel,
            job.method.name,
            runnable.memory_needed / (1 << 30),
        )

    def _recover_claim(self, r: JobRecord, job: Job, cause: Exception | None = None) -> None:
        """The job is not open: ours (a claim mined before a crash: record it), or lost."""
        if job.status in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.COMPLETED) and job.node == self.p.address:
            tx, block = self._claim_log(job.id)
            self.jobs.transition(
                r.job_id,
                JobState.CLAIMED,
                from_=[JobState.SEEN],
                claim_tx=tx,
                claim_block=block,
                work_dir=str(self.work_dir(r.job_id)),
                note="claim found on-chain, not resent",
            )
            log.info("job #%d: already claimed by this node on-chain (tx %s); not claiming again", job.id, tx)
            return
        raise LostJob(_why_not_ours(job, self.p.address)) from cause

    def _claim_log(self, job_id: int) -> tuple[str, int]:
        event = self.p.models.events.JobClaimed
        logs = self.p.client.rpc(
            lambda: event.get_logs(from_block=self.p.deployment.deploy_block, argument_filters={"jobId": job_id}),
            "get JobClaimed logs",
        )
        mine = [lg for lg in logs if lg["args"]["node"] == self.p.address]
        if not mine:
            raise WaitJob(f"job #{job_id} is claimed by this node but its JobClaimed log is not visible yet")
        return "0x" + bytes(mine[-1]["transactionHash"]).hex(), int(mine[-1]["blockNumber"])

    # ------------------------------------------------------------------ claimed → data_ready

    def build_data(self, r: JobRecord) -> None:
        job = self._ours(r)
        evaluation = self._eval_set(r, job)
        try:
            assembled = self._assemble(r, job, evaluation)
        except AccessDeniedError as e:
            raise WaitJob(f"waiting for a key grant: {e}") from e
        data = assembled.write(self.work_dir(r.job_id) / "data")
        write_atomic(data / "excluded.json", json.dumps([e.model_dump() for e in assembled.excluded]).encode())
        write_atomic(data / "eval-dropped.json", json.dumps([e.model_dump() for e in assembled.eval_dropped]).encode())
        m = assembled.manifest
        self.jobs.transition(
            r.job_id, JobState.DATA_READY, from_=[JobState.CLAIMED], data_root=m.data_root, examples=len(m.entries)
        )
        log.info(
            "job #%d: training set ready at block %d: %d examples from %d contributors, %d excluded, "
            "%d dropped as eval copies, data root %s",
            r.job_id,
            r.claim_block,
            len(m.entries),
            len(m.contributors()),
            len(assembled.excluded),
            len(assembled.eval_dropped),
            m.data_root,
        )
        failpoint("data-ready")

    def _eval_set(self, r: JobRecord, job: Job) -> list[Example] | None:
        """The poster's revealed eval set (see `node.daemon.query_set`); waits while it may still come."""
        claim_block = r.claim_block
        assert claim_block is not None
        rpc, w3 = self.p.client.rpc, self.p.client.w3
        claimed_at = int(rpc(lambda: w3.eth.get_block(claim_block)["timestamp"], "get block"))
        try:
            return fetch_eval_set(self.p, self.store, r.job_id, load_config(self.store, job), claimed_at,
                                  self._chain_time, self.work_dir(r.job_id) / "data")  # fmt: skip
        except RevealPending as e:
            raise WaitJob(str(e), delay=min(e.seconds_left, 30)) from e

    def _assemble(self, r: JobRecord, job: Job, evaluation: list[Example] | None = None) -> AssembledSet:
        """The job's training set at its claim block, under the terms its config declares."""
        assert r.claim_block is not None
        config = AssemblyConfig(commercial=load_config(self.store, job).commercial_use)
        reader = _FailpointReader(self.store)
        return assemble(
            self.p, reader, r.job_id, block=r.claim_block, decrypt=self._decrypt(job), config=config,
            evaluation=evaluation,
        )  # fmt: skip

    def _written_eval(self, job_id: int) -> list[Example] | None:
        written = written_eval_set(self.work_dir(job_id) / "data")
        return None if written is None else [q.example for q in written.queries]

    def _decrypt(self, job: Job) -> Any:
        """The private-Datanet decrypt hook (key grants), only when the job needs one."""
        if not any(self.p.datanet(d).isPrivate for d in job.datanetIds):
            return None
        from node.data.grants import JobKeys, ensure_encryption_key  # private Datanets only: KeyRegistry

        ensure_encryption_key(self.p)  # grants are wrapped to this key: publish it once (checked on-chain first)
        return JobKeys(self.p, self.store, job.id)

    def _training_set(self, r: JobRecord) -> tuple[Manifest, list[Example]]:
        """The written set, checked against the recorded data root (re-assembled if it does not
        match: the same claim block gives the same set)."""
        data = self.work_dir(r.job_id) / "data"
        try:
            manifest = Manifest.from_json((data / "manifest.json").read_bytes())
            lines = (data / "examples.jsonl").read_text().splitlines()
            examples = [Example.model_validate_json(line) for line in lines]
            manifest.tree()  # raises unless the entries give data_root
            ok = manifest.data_root == r.data_root and len(examples) == len(manifest.entries)
            ok = ok and all(
                "0x" + ex.sha256().hex() == e.example_sha256 for ex, e in zip(examples, manifest.entries, strict=True)
            )
        except (OSError, ValueError) as e:
            log.warning("job #%d: written training set unusable (%s); assembling it again", r.job_id, e)
            ok = False
        if ok:
            return manifest, examples
        assembled = self._assemble(r, self.p.job(r.job_id), self._written_eval(r.job_id))
        if assembled.manifest.data_root != r.data_root:
            raise NodeError(
                f"job #{r.job_id}: the training set at block {r.claim_block} now has data root "
                f"{assembled.manifest.data_root}, not the recorded {r.data_root}; refusing to train on another set"
            )
        assembled.write(data)
        return assembled.manifest, assembled.examples

    # ------------------------------------------------------------------ data_ready → training → trained

    def train(self, r: JobRecord) -> None:
        from node.train.trainer import ModelCard, TrainingPaused, train

        job = self._ours(r)
        paused = self.work_dir(r.job_id) / "PAUSED"  # node.daemon.control: the operator's pause
        if paused.exists():
            raise WaitJob(self._paused_note(job), delay=max(self.settings.poll_interval, 1.0))
        if r.state == JobState.DATA_READY:
            self.jobs.transition(r.job_id, JobState.TRAINING, from_=[JobState.DATA_READY], step=0)
        manifest, examples = self._training_set(r)
        config = load_config(self.store, job)
        base_dir = local_base_model(job, self.settings)
        out = self.work_dir(r.job_id) / "train"
        card = ModelCard(
            base_model=job.baseModel,
            base_model_hash="0x" + job.baseModelHash.hex(),
            job_id=job.id,
            datanet_ids=job.datanetIds,
            data_root=manifest.data_root,
            chain_id=self.p.chain_id,
            model_registry=str(self.p.models.address),
        )
        result = finished_run(out, config.train_config())
        if result is None:
            log.info("job #%d: training %s on %d examples (%s)", r.job_id, job.baseModel, len(examples), out)
            try:
                result = train(
                    base_dir, examples, config.train_config(), out, card=card, on_progress=self._progress(r.job_id),
                    should_pause=paused.exists,
                )  # fmt: skip
            except TrainingPaused as e:
                log.info("job #%d: %s", r.job_id, e)
                raise WaitJob(self._paused_note(job), delay=max(self.settings.poll_interval, 1.0)) from e
        m = result.metrics
        self.jobs.transition(
            r.job_id,
            JobState.TRAINED,
            from_=[JobState.TRAINING],
            adapter_sha256=result.adapter_sha256,
            step=m.steps,
            total_steps=m.steps,
            loss=m.final_train_loss,
            eval_loss=m.eval_loss,
            eta_s=0.0,
        )
        log.info(
            "job #%d: trained, %d steps in %.1f s, loss %s, eval loss %s, adapter sha256 %s",
            r.job_id,
            m.steps,
            m.train_seconds,
            _f(m.final_train_loss),
            _f(m.eval_loss),
            result.adapter_sha256,
        )

    def _paused_note(self, job: Job) -> str:
        """Why the job waits, and by when it must go on (the chain's maximum training time)."""
        try:
            due = job.claimedAt + self.p.max_training_time()
            left = f"; it must be submitted within {max(due - int(time.time()), 0) // 60} min of chain time or the job "
            left += "can be reopened for another node"
        except Exception:  # the note is advice: never fail the step over it
            left = ""
        return f"paused by the operator (resume: `datanet node resume {job.id}` or the web app's run page){left}"

    def _progress(self, job_id: int) -> Callable[[Progress], None]:
        """Writes progress to the job row (at most once a second, and on every eval/end) and stops
        the run when the daemon stops or the job was lost meanwhile (an event in another thread)."""
        last = [0.0]

        def on_progress(p: Progress) -> None:
            now = time.monotonic()
            if p.kind == "train" and now - last[0] < 1.0 and p.step < p.total_steps:
                return
            last[0] = now
            fields: dict[str, Any] = {"step": p.step, "total_steps": p.total_steps}
            if p.kind == "train":
                fields.update(loss=p.loss, tokens_per_s=p.tokens_per_s, eta_s=p.eta_s)
            elif p.eval_loss is not None:
                fields["eval_loss"] = p.eval_loss
            if not self.jobs.update(job_id, state=JobState.TRAINING, **fields):
                raise Interrupted(f"job #{job_id} left the training state (lost?)")
            if p.kind == "train":
                log.info(
                    "job #%d: step %d/%d loss %s eta %ss", job_id, p.step, p.total_steps, _f(p.loss), _f(p.eta_s, 0)
                )
            if self.stop.is_set():
                raise Interrupted("the daemon is stopping")

        return on_progress

    # ------------------------------------------------------------------ trained → attributed

    def attribute(self, r: JobRecord) -> None:
        """Per-example training-time attribution and the reward tree built from it (`attribute_job`)."""
        job = self._ours(r)
        manifest, examples = self._training_set(r)
        base_dir = local_base_model(job, self.settings)
        doc = attribute_job(self.p, self.store, job, self.work_dir(r.job_id), manifest, examples,
                            load_config(self.store, job), base_dir, self.settings)  # fmt: skip
        write_atomic(self.work_dir(r.job_id) / "attribution.json", doc.canonical_json())
        self.jobs.transition(r.job_id, JobState.ATTRIBUTED, from_=[JobState.TRAINED], attribution_root=doc.reward_root)
        log.info(
            "job #%d: %s weights over %d contributors (W=%d), reward root %s", r.job_id, doc.method.id,
            len(doc.weights), doc.total_weight, doc.reward_root,
        )  # fmt: skip

    # ------------------------------------------------------------------ attributed → uploaded

    def upload(self, r: JobRecord) -> None:
        self._ours(r)
        work = self.work_dir(r.job_id)
        adapter = work / "train" / "adapter"
        assert r.adapter_sha256 is not None
        verify_sha256(
            (adapter / "adapter_model.safetensors").read_bytes(),
            bytes.fromhex(r.adapter_sha256[2:]),
            f"adapter of job #{r.job_id}",
        )
        adapter_cid = self.store.add_path(adapter)
        failpoint("upload-adapter")  # the adapter is in the store, the other documents are not yet
        manifest_bytes = (work / "data" / "manifest.json").read_bytes()
        manifest = Manifest.from_json(manifest_bytes)
        stream = [
            Progress.model_validate_json(ln) for ln in (work / "train" / "metrics.jsonl").read_text().splitlines()
        ]
        metrics = MetricsDocument(
            job_id=r.job_id,
            data_root=manifest.data_root,
            manifest_cid=self.store.add_bytes(manifest_bytes),
            examples=len(manifest.entries),
            excluded=len(json.loads((work / "data" / "excluded.json").read_text())),
            train=TrainMetrics.model_validate_json((adapter / "metrics.json").read_bytes()),
            stream=stream,
        )
        metrics_cid = self.store.add_bytes(metrics.model_dump_json().encode())
        attribution_cid = self.store.add_bytes((work / "attribution.json").read_bytes())
        self.jobs.transition(
            r.job_id,
            JobState.UPLOADED,
            from_=[JobState.ATTRIBUTED],
            adapter_cid=adapter_cid,
            metrics_cid=metrics_cid,
            attribution_cid=attribution_cid,
        )
        log.info(
            "job #%d: uploaded adapter %s, metrics %s, attribution %s",
            r.job_id,
            adapter_cid,
            metrics_cid,
            attribution_cid,
        )
        failpoint("uploaded")

    # ------------------------------------------------------------------ uploaded → submitted → settled

    def submit(self, r: JobRecord) -> None:
        if self._recover_submit(r, self.p.job(r.job_id)):
            return
        self._no_pending_tx()
        if self._recover_submit(r, self.p.job(r.job_id)):  # re-read right before sending
            return
        assert r.adapter_cid and r.adapter_sha256 and r.data_root and r.attribution_root
        from node.attribution.document import AttributionDocument

        doc = AttributionDocument.from_json((self.work_dir(r.job_id) / "attribution.json").read_bytes())
        params = ResultParams(
            adapterCID=r.adapter_cid,
            adapterHash=bytes.fromhex(r.adapter_sha256[2:]),
            metricsCID=r.metrics_cid or "",
            dataRoot=bytes.fromhex(r.data_root[2:]),
            attributionRoot=bytes.fromhex(r.attribution_root[2:]),
            attributionCID=r.attribution_cid or "",
            scoresRoot=bytes.fromhex(doc.scores.root[2:]),
            totalWeight=doc.total_weight,
            exampleCount=doc.example_count,
        )
        failpoint("submit-before")
        try:
            model_id = self.p.submit_result(r.job_id, params)
        except ContractRevertError as e:
            if self._recover_submit(r, self.p.job(r.job_id)):
                return
            raise LostJob(f"submitResult reverted: {e}") from e
        assert self.p.client.last_receipt is not None
        failpoint("submit-sent")
        tx, block = _tx(self.p.client.last_receipt)
        self.jobs.transition(
            r.job_id, JobState.SUBMITTED, from_=[JobState.UPLOADED], model_id=model_id, submit_tx=tx, submit_block=block
        )
        log.info("job #%d: result submitted, model #%d registered (tx %s, block %d)", r.job_id, model_id, tx, block)

    def _recover_submit(self, r: JobRecord, job: Job) -> bool:
        """True if the chain already has our model for the job (recorded now, never resent);
        raises LostJob if the job is no longer ours; False if the result is still to be sent."""
        if job.status == JobStatus.CLAIMED and job.node == self.p.address:
            return False
        if job.status in (JobStatus.SUBMITTED, JobStatus.COMPLETED) and job.node == self.p.address and job.modelId:
            tx, block = self._registered_log(job.id)
            self.jobs.transition(
                r.job_id,
                JobState.SUBMITTED,
                from_=[JobState.UPLOADED],
                model_id=job.modelId,
                submit_tx=tx,
                submit_block=block,
                note="result found on-chain, not resent",
            )
            log.info(
                "job #%d: result already on-chain as model #%d (tx %s); not submitting again", job.id, job.modelId, tx
            )
            return True
        raise LostJob(_why_not_ours(job, self.p.address))

    def _registered_log(self, job_id: int) -> tuple[str, int]:
        event = self.p.models.events.ModelRegistered
        logs = self.p.client.rpc(
            lambda: event.get_logs(from_block=self.p.deployment.deploy_block, argument_filters={"jobId": job_id}),
            "get ModelRegistered logs",
        )
        if not logs:
            raise WaitJob(f"job #{job_id} has a model on-chain but its ModelRegistered log is not visible yet")
        return "0x" + bytes(logs[-1]["transactionHash"]).hex(), int(logs[-1]["blockNumber"])

    def settle(self, r: JobRecord) -> None:
        """Settled once the registration is `confirmations` blocks deep and the result finalized:
        through its challenge window, answering every reward-leaf challenge against it from the
        attribution document, then `finalize` (or seeing that someone else did). A reorg that
        dropped the registration sends the job back to `uploaded`, so the result is submitted
        again (once); a result voided by an upheld challenge loses the job."""
        job = self.p.job(r.job_id)
        if r.model_id is not None and job.modelId != r.model_id:
            model = self.p.model(r.model_id) if r.model_id <= self.p.model_count() else None
            if model is not None and model.status == ModelStatus.VOIDED:
                raise LostJob(f"model #{r.model_id} was voided by an upheld challenge; the bond was slashed")
        if job.modelId != r.model_id or job.node != self.p.address:
            if job.status == JobStatus.CLAIMED and job.node == self.p.address:
                self.jobs.transition(
                    r.job_id,
                    JobState.UPLOADED,
                    from_=[JobState.SUBMITTED],
                    model_id=None,
                    submit_tx=None,
                    submit_block=None,
                    note="submission dropped by a reorg",
                )
                log.warning(
                    "job #%d: the registration of model #%s is gone (reorg); submitting again", r.job_id, r.model_id
                )
                return
            raise LostJob(_why_not_ours(job, self.p.address))
        assert r.submit_block is not None
        depth = self.p.client.block_number() - r.submit_block
        if depth < self.settings.confirmations:
            raise WaitJob(f"{depth}/{self.settings.confirmations} confirmations", delay=self.settings.poll_interval)
        if job.status == JobStatus.SUBMITTED:
            self._through_window(r, job)
        self.jobs.transition(r.job_id, JobState.SETTLED, from_=[JobState.SUBMITTED])
        log.info("job #%d: settled (model #%d finalized, %d confirmations)", r.job_id, job.modelId, depth)

    def _through_window(self, r: JobRecord, job: Job) -> None:
        """Answers the open reward-leaf challenges, waits out the window, then finalizes."""
        from node.attribution.disputes import DisputeError, answer_from_document
        from node.attribution.document import AttributionDocument

        model_id = job.modelId
        now = self.p.pending_time()  # the next block's time: an idle dev chain's latest block stands still
        for c in self.p.challenges_of(model_id):
            if c.status != ChallengeStatus.ANSWERABLE or now > c.answerDeadline:
                continue
            doc = AttributionDocument.from_json((self.work_dir(r.job_id) / "attribution.json").read_bytes())
            try:
                evidence = answer_from_document(doc, self.p.result_commitment(model_id), c.account, c.amount)
            except DisputeError as e:
                log.error("job #%d: cannot answer challenge #%d: %s", r.job_id, c.id, e)
                continue
            self.p.answer_challenge(c.id, evidence)
            log.info("job #%d: answered challenge #%d (reward leaf of %s)", r.job_id, c.id, c.account)
        at, open_ = self.p.finalizable_at(model_id)
        if now < at:
            raise WaitJob(f"challenge window: finalizable in {at - now} s", delay=min(max(at - now, 1), 30))
        referred = False
        for c in self.p.challenges_of(model_id) if open_ else []:
            if c.status == ChallengeStatus.ANSWERABLE and now > c.answerDeadline:
                self.p.settle_challenge(c.id)  # unanswered in time: upheld, and our result is voided
            referred |= c.status == ChallengeStatus.REFERRED
        if referred and self.p.model(model_id).status == ModelStatus.PENDING:
            # A recomputation case before the VerifierCourt: move it along (draw, tally, close: anyone
            # may), so our pool never waits on others; the committee's verdict decides the result.
            from node.daemon.court import CourtClerk, court_state_path

            clerk = CourtClerk(self.p, court_state_path(self.settings.data_dir, self.p.deployment))
            for action in clerk.step_all(model_id):
                log.info("job #%d: %s", r.job_id, action)
            if self.p.finalizable_at(model_id)[1] and self.p.model(model_id).status == ModelStatus.PENDING:
                raise WaitJob(f"model #{model_id}: a recomputation case is before a verifier committee",
                              delay=min(self.settings.poll_interval, 5))  # fmt: skip
        try:
            self.p.finalize(r.job_id)
        except ContractRevertError:
            after = self.p.job(r.job_id)
            if after.status == JobStatus.COMPLETED and after.modelId == model_id:
                return  # someone else finalized it first
            if self.p.model(model_id).status == ModelStatus.VOIDED:
                raise LostJob(f"model #{model_id} was voided by an upheld challenge; the bond was slashed") from None
            raise
        log.info("job #%d: model #%d finalized: bond released, reward round open", r.job_id, model_id)

    # ------------------------------------------------------------------ helpers

    def _ours(self, r: JobRecord) -> Job:
        """The job, if it is still this node's to deliver; LostJob otherwise."""
        job = self.p.job(r.job_id)
        if job.status != JobStatus.CLAIMED or job.node != self.p.address:
            raise LostJob(_why_not_ours(job, self.p.address))
        return job

    def _chain_time(self) -> int:
        return int(self.p.client.rpc(lambda: self.p.client.w3.eth.get_block("latest"), "get block")["timestamp"])

    def _no_pending_tx(self) -> None:
        """Waits while this account has transactions in the mempool: one may be our own claim
        or result, sent just before a crash, and must be mined (or dropped) before we decide."""
        w3, me = self.p.client.w3, self.p.address
        pending = self.p.client.rpc(lambda: w3.eth.get_transaction_count(me, "pending"), "get nonce")
        mined = self.p.client.rpc(lambda: w3.eth.get_transaction_count(me, "latest"), "get nonce")
        if pending > mined:
            raise WaitJob(f"{pending - mined} transaction(s) of {me} still pending", delay=self.settings.poll_interval)


def _why_not_ours(job: Job, me: str) -> str:
    if job.status == JobStatus.CANCELLED:
        return "cancelled by the poster"
    if job.status == JobStatus.EXPIRED:
        return "expired: the deadline passed without a result"
    if job.node != me and job.status in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.COMPLETED):
        return f"claimed by another node ({job.node})"
    return f"job #{job.id} is {job.status.name.lower()} on-chain"


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


__all__ = ["Interrupted", "JobSteps", "LostJob", "SkipJob", "WaitJob", "failpoint"]
