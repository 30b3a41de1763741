"""The training daemon: watches the job events, keeps one row per job in the job store, and
moves jobs along the state machine one step at a time.

    daemon = Daemon(node_protocol, content_store, settings)
    daemon.run()                      # until daemon.stop is set (Ctrl-C / SIGTERM in the CLI)
    daemon.run(once=True)             # catch up with the chain, do what can be done now, return
    daemon.run(exit_when_idle=True)   # like run(), but return once every job is finished

Two loops, one writer each way. The watcher (a thread) only records what the chain says: a new
job (`JobPosted` -> a `seen` row), a job gone to someone else or cancelled or expired (-> `lost`),
and events that may unblock a waiting job (a claim, a registration, a key grant: made due now).
The worker (the calling thread) takes the due job that is furthest along and runs the step for
its state (`node.daemon.steps`); each step ends in one atomic transition. Failures are sorted here:

- `SkipJob` -> skipped (never claimed; the reason says why), `LostJob` -> lost;
- `WaitJob` (a key grant, confirmations, a pending transaction) -> the same state, retried after
  `retry_delay` without counting as a failure;
- a transient error (RPC, IPFS, a transaction that did not go through) -> retried with backoff,
  `job_retries` times, then failed (retryable: `datanet jobs --retry ID` resumes it);
- any other node error -> skipped before the claim, failed (not retryable) after it; an
  unexpected exception -> failed (retryable), with its traceback in the log.

Nothing is ever sent twice: see `node.daemon.steps` for how claims and results are checked on-chain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from web3.exceptions import Web3RPCError

from node.chain.checkpoints import CheckpointStore
from node.chain.client import ChainClient
from node.chain.models import Method
from node.chain.protocol import Protocol
from node.chain.watcher import ChainEvent, EventWatcher
from node.config import Settings
from node.daemon.steps import Interrupted, JobSteps, LostJob, SkipJob, WaitJob
from node.daemon.store import HOLDING, TERMINAL, JobRecord, JobState, JobStore
from node.errors import ContentNotFoundError, NodeError, RpcUnavailableError, StorageError, TransactionError
from node.storage.base import ContentStore

log = logging.getLogger("node.daemon")

TRANSIENT = (RpcUnavailableError, TransactionError, StorageError, ContentNotFoundError, ConnectionError, TimeoutError,
             Web3RPCError)  # fmt: skip
"""Errors worth retrying as they are: the chain, the store or the network may come back."""
_NOT_TRANSIENT = (ValueError,)  # e.g. ContentMismatchError is a StorageError but will not heal by itself
_OPEN = frozenset(JobState) - TERMINAL


class Daemon:
    """Life cycle: construct (opens the job store and the watcher's checkpoint) → `run(...)` →
    `close()`. One daemon per node account and state file at a time."""

    def __init__(self, protocol: Protocol, store: ContentStore, settings: Settings):
        settings = settings.for_chain(protocol.chain_id)  # e.g. no confirmations to wait for on the dev chain
        self.p, self.settings = protocol, settings
        self._last_report = ""
        self.stop = threading.Event()
        self.jobs = JobStore.from_settings(settings, protocol.deployment)
        self.checkpoints = CheckpointStore.from_settings(settings)
        self.steps = JobSteps(protocol, store, self.jobs, settings, self.stop)
        self.watcher = self._make_watcher()
        self._watch_error: BaseException | None = None

    def close(self) -> None:
        self.stop.set()
        self.jobs.close()
        self.checkpoints.close()

    # ------------------------------------------------------------------ watching

    def _make_watcher(self) -> EventWatcher:
        """A watcher on its own client (the worker thread sends transactions on the node's)."""
        c = self.p.client
        reader = Protocol(ChainClient(c.rpc_url, retries=c.retries, backoff=c.backoff), self.p.deployment)
        contracts = {"ModelRegistry": reader.models}
        if "KeyRegistry" in self.p.deployment.contracts:
            contracts["KeyRegistry"] = reader.keys
        # A checkpoint of another chain or deployment is stale state here, never a reason to stop: the
        # deployment file is checked against the chain's genesis (Protocol) and the job store and work
        # dirs are keyed by it, so the daemon forgets it and reads this deployment from its first block.
        # Without a genesis hash in the file, the chain is unverified and a mismatch stops the daemon.
        verified = self.p.deployment.genesis_hash is not None
        watcher = EventWatcher(
            reader.client, contracts, self.checkpoints, confirmations=self.settings.confirmations,
            start_block=self.p.deployment.deploy_block, name=f"daemon-{self.p.deployment.network}",
            on_other_chain="restart" if verified else "fail",
        )  # fmt: skip
        handlers: dict[str, Callable[[ChainEvent], None]] = {
            "JobPosted": self._on_posted,
            "JobClaimed": self._on_claimed,
            "JobCancelled": lambda e: self._lose(e.args["jobId"], "cancelled by the poster"),
            "JobExpired": lambda e: self._lose(e.args["jobId"], "expired: the deadline passed without a result"),
            "ModelRegistered": lambda e: self._nudge(e.args["jobId"]),
            "JobReopened": self._on_reopened,
            "ModelFinalized": lambda e: self._nudge(e.args["jobId"]),
            "ModelVoided": self._on_voided,
        }
        if "KeyRegistry" in contracts:
            handlers["AccessGranted"] = self._on_access_granted
        for name, handler in handlers.items():
            watcher.on(name, handler)
        return watcher

    def _on_posted(self, e: ChainEvent) -> None:
        a = e.args
        record = JobRecord(
            job_id=a["jobId"], state=JobState.SEEN, poster=a["poster"], base_model=a["baseModel"],
            base_model_hash=a["baseModelHash"], method=Method(a["method"]).name.lower(), pool=a["pool"],
            deadline=a["deadline"], datanet_ids=a["datanetIds"], posted_block=e.block_number,
        )  # fmt: skip
        if self.jobs.see(record):
            log.info(
                "job #%d: posted in block %d: %s on %s, Datanets %s, pool %s OPEN",
                record.job_id, e.block_number, record.method, record.base_model, record.datanet_ids,
                f"{record.pool / 10**18:,.2f}",
            )  # fmt: skip

    def _on_claimed(self, e: ChainEvent) -> None:
        if e.args["node"] == self.p.address:
            self._nudge(e.args["jobId"])
        else:  # only a job we have not claimed can be claimed by another node
            self._lose(e.args["jobId"], f"claimed by another node ({e.args['node']})", only=[JobState.SEEN])

    def _on_reopened(self, e: ChainEvent) -> None:
        job_id = int(e.args["jobId"])
        if e.args["node"] == self.p.address:
            self._lose(job_id, "reopened: the maximum training time passed before this node submitted, and half "
                       "its bond went to the poster")  # fmt: skip
        elif self.jobs.transition(job_id, JobState.SEEN, from_=[JobState.LOST], reason=None,
                                  note="reopened: its node overran the training time"):  # fmt: skip
            log.info("job #%d: reopened by the chain; claimable again", job_id)

    def _on_voided(self, e: ChainEvent) -> None:
        job_id = int(e.args["jobId"])
        if e.args["node"] == self.p.address:
            self._lose(job_id, f"model #{e.args['modelId']} voided by an upheld challenge: the whole bond was slashed")
        elif self.jobs.transition(job_id, JobState.SEEN, from_=[JobState.LOST], reason=None,
                                  note="reopened: its result was voided by a challenge"):  # fmt: skip
            log.info("job #%d: its result was voided; claimable again", job_id)

    def _on_access_granted(self, e: ChainEvent) -> None:
        if e.args["grantee"] != self.p.address:
            return
        job_id = int(e.args["jobId"])
        targets = [job_id] if job_id else [r.job_id for r in self.jobs.in_states([JobState.CLAIMED])]
        for t in targets:
            self._nudge(t)

    def _lose(self, job_id: int, reason: str, only: list[JobState] | None = None) -> None:
        if self.jobs.transition(job_id, JobState.LOST, from_=only or _OPEN, reason=reason):
            log.warning("job #%d: lost: %s", job_id, reason)

    def _nudge(self, job_id: int) -> None:
        if self.jobs.get(job_id) is not None:
            self.jobs.nudge(job_id)

    def _watch(self) -> None:
        try:
            self.watcher.run(self.stop, self.settings.poll_interval)
        except BaseException as e:  # fatal (state mismatch, reorg too deep): stop the daemon
            self._watch_error = e
            self.stop.set()

    def reset_watcher(self) -> int | None:
        """Forgets the watcher's checkpoint (`datanet daemon --reset-watcher`): the next poll reads
        from the deployment block. Returns the forgotten checkpoint's block (None: there was none)."""
        cp = self.checkpoints.checkpoint(self.watcher.name)
        self.checkpoints.reset(self.watcher.name)
        return None if cp is None else cp.block_number

    def catch_up(self) -> None:
        """Polls until every confirmed block is processed."""
        while True:
            self.watcher.poll_once()
            if self.watcher.checkpoint() >= self.p.client.block_number() - self.settings.confirmations:
                return

    # ------------------------------------------------------------------ working

    def run(self, *, once: bool = False, exit_when_idle: bool = False) -> None:
        """See the module docstring for the modes."""
        log.info("daemon: node %s on %s (chain %d), state in %s", self.p.address, self.p.client.rpc_url,
                 self.p.chain_id, self.settings.state_db)  # fmt: skip
        self.watcher.resume()  # another chain's checkpoint: fail now or forget it, before `_idle` reads it
        for waiting in self.jobs.in_states(_OPEN):  # a restart is the moment to try every waiting job again
            self.jobs.nudge(waiting.job_id)
        if once:
            self.catch_up()
            while not self.stop.is_set() and (due := self.next_job()) is not None:
                self.advance(due)
                self.watcher.poll_once()
            self._report_waiting()
            return
        thread = threading.Thread(target=self._watch, name="watcher", daemon=True)
        thread.start()
        try:
            while not self.stop.is_set():
                r = self.next_job()
                if r is not None:
                    self.advance(r)
                elif exit_when_idle and self._idle():
                    log.info("daemon: every job is finished; exiting (--exit-when-idle)")
                    break
                else:
                    self._report_waiting()
                    self.stop.wait(self.settings.poll_interval)
        finally:
            self.stop.set()
            thread.join(timeout=30)
        if self._watch_error is not None:
            raise self._watch_error

    def _report_waiting(self) -> None:
        """Says (once per change) what the daemon waits for when it has nothing to do now: blocks
        not yet buried under `confirmations` (their events are not read yet), or no job open."""
        head, cp, n = self.p.client.block_number(), self.watcher.checkpoint(), self.settings.confirmations
        waiting = self.jobs.in_states(_OPEN)
        if n and head > cp:
            report = (f"daemon: waiting for {n} confirmation(s) of block {cp + 1}"
                      f"{f'..{head}' if head > cp + 1 else ''} (its events are read once {n} block(s) are mined "
                      f"on top; DATANET_CONFIRMATIONS sets how many)")  # fmt: skip
        elif waiting:
            report = f"daemon: {len(waiting)} job(s) waiting to be retried or for the chain (`datanet node jobs`)"
        else:
            report = f"daemon: no jobs open; read the chain up to block {cp}, watching for new ones"
        if report != self._last_report:
            log.info("%s", report)
            self._last_report = report

    def _idle(self) -> bool:
        caught_up = self.watcher.checkpoint() >= self.p.client.block_number() - self.settings.confirmations
        return caught_up and not self.jobs.in_states(_OPEN)

    def next_job(self) -> JobRecord | None:
        """The due job furthest along; a `seen` job only while this node holds fewer than
        `max_active_jobs` claimed ones (finish what you hold before claiming more)."""
        holding = len(self.jobs.in_states(HOLDING))
        for r in self.jobs.runnable():
            if r.state != JobState.SEEN or holding < self.settings.max_active_jobs:
                return r
        return None

    def advance(self, r: JobRecord) -> None:
        """Runs the step of `r`'s state once and turns its outcome into the job's next state."""
        try:
            self.steps.steps[r.state](r)
        except SkipJob as e:
            self._end(r.job_id, JobState.SKIPPED, str(e))
        except LostJob as e:
            self._end(r.job_id, JobState.LOST, str(e))
        except WaitJob as e:
            self._defer(r.job_id, str(e), e.delay or self.settings.retry_delay, count=False)
        except Interrupted as e:
            log.info("job #%d: interrupted (%s); it resumes from its last checkpoint", r.job_id, e)
            return
        except TRANSIENT as e:
            if isinstance(e, _NOT_TRANSIENT):
                self._fail(r.job_id, e)
            else:
                self._retry(r.job_id, e)
        except NodeError as e:
            self._fail(r.job_id, e)
        except Exception as e:
            log.exception("job #%d: unexpected error in state %s", r.job_id, r.state)
            self._end(r.job_id, JobState.FAILED, f"unexpected {type(e).__name__}: {e}", retryable=True)
        after = self.jobs.get(r.job_id)
        if after is not None and (after.state, after.updated_at) == (r.state, r.updated_at):
            # A step that changed nothing would be picked again at once: make it wait instead.
            self._defer(r.job_id, "no progress in this step", self.settings.retry_delay, count=False)

    def _fail(self, job_id: int, e: Exception) -> None:
        current = self.jobs.require(job_id).state
        if current == JobState.SEEN:  # nothing claimed yet: this node just cannot run it
            self._end(job_id, JobState.SKIPPED, str(e))
        else:
            self._end(job_id, JobState.FAILED, str(e), retryable=False)

    def _retry(self, job_id: int, e: Exception) -> None:
        current = self.jobs.require(job_id)
        delay = self.settings.retry_delay * 2 ** min(current.attempts, 6)
        attempts = self._defer(job_id, f"{type(e).__name__}: {e}", delay, count=True)
        if attempts > self.settings.job_retries:
            self._end(job_id, JobState.FAILED, f"gave up after {attempts} tries: {e}", retryable=True)

    def _defer(self, job_id: int, why: str, delay: float, *, count: bool) -> int:
        state = self.jobs.require(job_id).state
        attempts = self.jobs.defer(job_id, state, why, delay, count=count)
        log.info("job #%d: %s: %s; next try in %.0f s", job_id, state, why, delay)
        return attempts

    def _end(self, job_id: int, to: JobState, reason: str, *, retryable: bool = False) -> None:
        current = self.jobs.require(job_id).state
        if current in TERMINAL:
            return
        fields: dict[str, Any] = {"reason": reason}
        if to == JobState.FAILED:
            fields.update(retryable=retryable, failed_from=current)
        if self.jobs.transition(job_id, to, from_=[current], **fields):
            level = logging.INFO if to == JobState.SKIPPED else logging.WARNING
            log.log(level, "job #%d: %s: %s", job_id, to, reason)


def retry(jobs: JobStore, job_id: int) -> JobRecord:
    """Puts a failed (retryable) or skipped job back where it can run again: a failed one in the
    state it failed in, a skipped one in `seen` (the checks run again)."""
    r = jobs.require(job_id)
    if r.state == JobState.FAILED and r.retryable and r.failed_from is not None:
        jobs.transition(job_id, r.failed_from, from_=[JobState.FAILED], reason=None, failed_from=None, retryable=False,
                        note="retry requested")  # fmt: skip
    elif r.state == JobState.SKIPPED:
        jobs.transition(job_id, JobState.SEEN, from_=[JobState.SKIPPED], reason=None, note="retry requested")
    else:
        raise NodeError(
            f"Job #{job_id} is {r.state}" + (" (not retryable)" if r.state == JobState.FAILED else "")
            + "; only skipped jobs and retryable failed ones can be retried."
        )  # fmt: skip
    return jobs.require(job_id)


__all__ = ["TRANSIENT", "Daemon", "retry"]
