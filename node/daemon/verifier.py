"""Verifier mode (`datanet daemon --verify`): watch results in their challenge window, check each
one's attribution arithmetic against its committed roots, challenge a provable fault on-chain,
and sit on the VerifierCourt's committees.

Checking costs a fetch and a few hashes per result, so a verifier checks every pending result it
sees. With `recompute`, it also re-runs the attribution (`datanet verify`), which costs about
what the attribution cost the node; scores that do not reproduce are challenged as a Recompute
challenge, which the VerifierCourt's committee decides. When this account (staked in the court
with `datanet verifier join`) is drawn onto a committee, it votes on what `datanet verify` finds
(whether or not `recompute` is on: a drawn member who does not vote loses stake), and every pass
moves open cases along (draw, tally, close), see `node.daemon.court`.

What it decided about each model, and its sealed votes, are kept in small JSON files per chain,
so a restart neither checks a result twice, nor challenges it twice, nor loses a vote's salt.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Literal

from eth_abi import encode
from pydantic import BaseModel, Field

from node import safe_json
from node.attribution.disputes import (
    DisputeError,
    Fault,
    ResultTrees,
    commitment,
    data_not_permitted,
    find_faults,
    new_salt,
)
from node.attribution.document import AttributionDocument
from node.chain.models import ChallengeKind, ChallengeStatus, Contribution, Model, ModelStatus, Vote
from node.chain.protocol import Protocol
from node.config import Settings
from node.daemon.court import CourtClerk, court_state_path
from node.errors import ContractRevertError, NodeError
from node.rewards.merkle import StandardMerkleTree
from node.storage.base import ContentStore

log = logging.getLogger("node.verifier")

WHOLE_RESULT = 2**256 - 1
"""The example index of a Recompute challenge's claim that names no single example."""
INTERVAL_TAG = 2**255
QUERIES_TAG = 2**254
_MAX_PART = 2**16  # snapshots are at most 32; anything beyond is no part of a result


class Claim(BaseModel):
    """What a Recompute challenge disputes, so the committee checks that piece and no more:
    the whole result, one example's score (its gradients against the committed query vectors),
    one training interval (its replay), or one snapshot's query vectors (one solve). On-chain
    it is the `uint256` of the evidence: an example's manifest index, `INTERVAL_TAG + k`,
    `QUERIES_TAG + k`, or `WHOLE_RESULT`."""

    kind: Literal["whole", "example", "interval", "queries"]
    index: int | None = None

    def evidence_index(self) -> int:
        tag = {"whole": None, "example": 0, "interval": INTERVAL_TAG, "queries": QUERIES_TAG}[self.kind]
        return WHOLE_RESULT if tag is None else tag + (self.index or 0)

    @classmethod
    def decode(cls, evidence: bytes) -> Claim:
        """The claim in a challenger's evidence; anything that does not decode is the whole result."""
        from eth_abi import decode

        try:
            index, _reason = decode(["uint256", "string"], evidence)
        except Exception:  # the challenger's bytes: anything at all
            return cls(kind="whole")
        for kind, tag in (("interval", INTERVAL_TAG), ("queries", QUERIES_TAG)):
            if tag <= index < tag + _MAX_PART:
                return cls(kind=kind, index=index - tag)  # type: ignore[arg-type]
        return cls(kind="example", index=index) if index < QUERIES_TAG else cls(kind="whole")


def published_data_tree(store: ContentStore, model: Model) -> StandardMerkleTree | None:
    """The node's training manifest as a Merkle tree, from the metrics document it published
    (`metricsCID` -> `manifest_cid`), or None when it cannot be fetched or read (then only the
    data-free checks apply; a Recompute challenge covers an unavailable artifact)."""
    from node.daemon.outputs import MetricsDocument
    from node.data.manifest import Manifest

    try:
        metrics = safe_json.load_model(MetricsDocument, store.cat(model.metricsCID), f"metrics {model.metricsCID}")
        manifest = Manifest.from_json(store.cat(metrics.manifest_cid), f"manifest {metrics.manifest_cid}")
        return manifest.tree()
    except (NodeError, OSError, ValueError) as e:
        log.info("model #%d: no published manifest to check the data against (%s)", model.id, e)
        return None


def result_faults(p: Protocol, store: ContentStore, model_id: int, trees: ResultTrees) -> list[Fault]:
    """Every fault the challenge contract decides on-chain in result `model_id`: the arithmetic of
    its trees, and (when the node published its manifest) the data against the scores and against
    what the job was permitted to train on."""
    m = p.model(model_id)
    committed = p.result_commitment(model_id)
    data = published_data_tree(store, m)
    faults = find_faults(trees, committed, data)
    if data is not None:

        def contribution(cid: int) -> Contribution | None:
            return p.contribution(cid) if 1 <= cid <= p.contribution_count() else None

        permitted = data_not_permitted(data, committed, p.job(m.jobId), contribution)
        if permitted is not None:
            faults.insert(0, permitted)  # decided at reveal, like the other immediate kinds
    return faults


def recompute_evidence(example_index: int, reason: str) -> bytes:
    """A Recompute challenge's evidence: `abi.encode(uint256 exampleIndex, string reason)`, for the committee."""
    return encode(["uint256", "string"], [example_index, reason])

def claim_of(report: object) -> Claim:
    """The narrowest claim a failed `datanet verify` supports: the replayed interval, a snapshot
    whose query vectors do not reproduce, or the example whose score deviates most."""
    from node.daemon.verify import VerifyReport

    assert isinstance(report, VerifyReport)
    if report.replay is not None and not report.replay.ok:
        return Claim(kind="interval", index=report.replay.interval)
    for c in report.checks:
        if not c.ok and c.name.startswith("query vectors ") and c.name.split()[-1].isdigit():
            return Claim(kind="queries", index=int(c.name.split()[-1]))
    cmp = report.comparison
    if all(c.ok for c in report.checks) and cmp is not None and cmp.differing and cmp.worst_example is not None:
        return Claim(kind="example", index=cmp.worst_example)
    return Claim(kind="whole")


def verify_claim(p: Protocol, store: ContentStore, job_id: int, settings: Settings, claim: Claim) -> object:
    """`datanet verify` of just what `claim` disputes (see `Claim`). A claim naming an example or
    interval the result does not have is checked as the whole result: a challenger cannot make
    an honest node fail by naming nothing."""
    from node.daemon.verify import NoSuchPart, verify_job

    try:
        if claim.kind == "interval":
            return verify_job(p, store, job_id, settings, interval=claim.index, attribute=False)
        if claim.kind == "example":
            return verify_job(p, store, job_id, settings, replay=False, example=claim.index)
    except NoSuchPart as e:
        log.warning("job #%d: the claim names nothing in the result (%s): checking the whole result", job_id, e)
        return verify_job(p, store, job_id, settings)
    if claim.kind == "queries":
        return verify_job(p, store, job_id, settings, replay=False)
    return verify_job(p, store, job_id, settings)


Outcome = Literal["clean", "challenged", "unprovable", "mismatch", "match", "skipped"]


class ModelCheck(BaseModel):
    """What the verifier decided about one result."""

    model_id: int
    outcome: Outcome
    detail: str = ""
    challenge_id: int | None = None
    challenge_status: str | None = None


class VerifierState(BaseModel):
    checked: dict[int, ModelCheck] = Field(default_factory=dict)


class Verifier:
    """`run(once=...)`: checks every pending result not checked yet, then (unless `once`) polls."""

    def __init__(self, protocol: Protocol, store: ContentStore, settings: Settings, *, recompute: bool = False):
        self.p, self.store, self.settings, self.recompute = protocol, store, settings, recompute
        self.stop = threading.Event()
        dep = protocol.deployment
        self.path = settings.data_dir / f"verifier-{dep.network}-{dep.chain_key}.json"
        self.state = self._load(self.path)
        self.clerk = (
            CourtClerk(protocol, court_state_path(settings.data_dir, dep), judge=self.judge)
            if "VerifierCourt" in dep.contracts
            else None
        )
        self._votes: dict[tuple[int, str, int | None], Vote] = {}  # (model, claim kind, claim index)

    @staticmethod
    def _load(path: Path) -> VerifierState:
        if not path.exists():
            return VerifierState()
        return safe_json.load_model(VerifierState, path.read_bytes(), str(path))

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(self.state.model_dump(mode="json"), indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def run(self, *, once: bool = False) -> list[ModelCheck]:
        """Checks the pending results; returns what this pass decided."""
        decided: list[ModelCheck] = []
        while not self.stop.is_set():
            decided += self.pass_once()
            if once:
                break
            self.stop.wait(self.settings.poll_interval)
        return decided

    def pass_once(self) -> list[ModelCheck]:
        out = self._check_new()
        if self.clerk is not None and not self.stop.is_set():
            for action in self.clerk.step_all():
                log.info("%s", action)
        return out

    def judge(self, model_id: int, evidence: bytes = b"") -> Vote:
        """This verifier's vote on `model_id` when drawn: `datanet verify` of what the challenger's
        claim disputes (`Claim`) reproduces within the documented tolerance, or not. An artifact
        that cannot be fetched (or decrypted with a standing key grant) in time is the node's
        fault, as the protocol defines it."""
        claim = Claim.decode(evidence)
        key = (model_id, claim.kind, claim.index)
        if key in self._votes:
            return self._votes[key]
        m = self.p.model(model_id)
        try:
            report = verify_claim(self.p, self.store, m.jobId, self.settings, claim)
            verdict = getattr(report, "verdict", "MISMATCH")
            vote = Vote.REPRODUCES if verdict == "MATCH" else Vote.FAULT
            log.info("model #%d: verify (%s %s) says %s -> vote %s", model_id, claim.kind,
                     "" if claim.index is None else claim.index, verdict, vote.name.lower())  # fmt: skip
        except NodeError as e:
            vote = Vote.FAULT
            log.warning("model #%d: cannot verify (%s) -> vote fault", model_id, e)
        self._votes[key] = vote
        return vote

    def _check_new(self) -> list[ModelCheck]:
        out = []
        for model_id in range(1, self.p.model_count() + 1):
            if model_id in self.state.checked or self.stop.is_set():
                continue
            check = self.check(model_id)
            if check.outcome == "skipped" and "not pending" not in check.detail:
                continue  # e.g. the document is not in the store yet: try again next pass
            self.state.checked[model_id] = check
            self._save()
            out.append(check)
        return out

    def check(self, model_id: int) -> ModelCheck:
        m = self.p.model(model_id)
        if m.status != ModelStatus.PENDING:
            return ModelCheck(model_id=model_id, outcome="skipped", detail=f"not pending ({m.status.name.lower()})")
        committed = self.p.result_commitment(model_id)
        try:
            doc = AttributionDocument.from_json(self.store.cat(m.attributionCID), f"attribution {m.attributionCID}")
            trees = ResultTrees.from_document(doc, committed)
        except DisputeError as e:
            log.warning("model #%d: %s", model_id, e)
            return ModelCheck(model_id=model_id, outcome="unprovable", detail=str(e))
        except NodeError as e:  # not fetchable (yet), or not a document
            log.warning("model #%d: attribution document %s: %s", model_id, m.attributionCID, e)
            return ModelCheck(model_id=model_id, outcome="skipped", detail=str(e))
        faults = result_faults(self.p, self.store, model_id, trees)
        if faults:
            return self._challenge(model_id, faults[0].kind, faults[0].evidence, faults[0].reason)
        if self.recompute:
            from node.daemon.verify import verify_job

            report = verify_job(self.p, self.store, m.jobId, self.settings)
            vote = Vote.REPRODUCES if report.verdict == "MATCH" else Vote.FAULT
            self._votes[(model_id, "whole", None)] = vote
            if report.verdict == "MATCH":
                return ModelCheck(model_id=model_id, outcome="match", detail=report.verdict)
            reason = mismatch_reason(report)
            if self.clerk is None:
                log.warning("model #%d: %s; this deployment has no VerifierCourt to decide it", model_id, reason)
                return ModelCheck(model_id=model_id, outcome="mismatch", detail=reason)
            claim = claim_of(report)  # the committee checks this piece only
            evidence = recompute_evidence(claim.evidence_index(), reason)
            return self._challenge(model_id, ChallengeKind.RECOMPUTE, evidence, reason)
        log.info("model #%d: arithmetic consistent with its committed roots", model_id)
        return ModelCheck(model_id=model_id, outcome="clean")

    def _challenge(self, model_id: int, kind: ChallengeKind, evidence: bytes, reason: str) -> ModelCheck:
        bond = self.p.challenge_bond()
        if self.p.balance() < bond:
            detail = f"fault found ({reason}) but the challenge bond {bond} exceeds this account's OPEN"
            log.error("model #%d: %s", model_id, detail)
            return ModelCheck(model_id=model_id, outcome="unprovable", detail=detail)
        salt = new_salt()
        try:
            self.p.approve(self.p.challenges.address, bond)
            cid = self.p.commit_challenge(model_id, commitment(kind, evidence, salt))
            self.p.reveal_challenge(cid, kind, evidence, salt)
        except ContractRevertError as e:  # the window closed, or someone voided it first
            log.warning("model #%d: challenge not made: %s", model_id, e)
            return ModelCheck(model_id=model_id, outcome="skipped", detail=f"not pending: {e}")
        status = self.p.challenge(cid).status
        log.warning("model #%d: challenged (#%d, %s): %s -> %s", model_id, cid, kind.name.lower(), reason,
                    status.name.lower())  # fmt: skip
        if status == ChallengeStatus.ANSWERABLE:
            log.info("model #%d: the node must answer challenge #%d (`datanet finalize` settles it)", model_id, cid)
        if status == ChallengeStatus.REFERRED:
            log.info("model #%d: challenge #%d goes to a verifier committee (case #%d)", model_id, cid, cid)
        return ModelCheck(
            model_id=model_id, outcome="challenged", detail=reason, challenge_id=cid,
            challenge_status=status.name.lower(),
        )  # fmt: skip


def mismatch_reason(report: object) -> str:
    """One line for the committee: which check failed, or how far the scores are off."""
    from node.daemon.verify import VerifyReport

    assert isinstance(report, VerifyReport)
    failed = [c for c in report.checks if not c.ok]
    if failed:
        return f"{failed[0].name} does not match: {failed[0].detail}"
    c = report.comparison
    if c is None:
        return "the result could not be recomputed"
    return (
        f"scores do not reproduce: {c.scores_differing} differ (max deviation {c.max_score_deviation}, "
        f"{c.max_relative_deviation:.2%}); {len(c.differing)} account(s) paid beyond the tolerance"
    )


__all__ = [
    "INTERVAL_TAG", "QUERIES_TAG", "WHOLE_RESULT", "Claim", "ModelCheck", "Verifier", "VerifierState", "claim_of",
    "mismatch_reason", "recompute_evidence", "verify_claim",
]  # fmt: skip
