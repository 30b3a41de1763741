"""Verifier mode (`datanet daemon --verify`): watch results in their challenge window, check each
one's attribution arithmetic against its committed roots, and challenge a provable fault on-chain.

Checking costs a fetch and a few hashes per result, so a verifier checks every pending result it
sees. With `recompute`, it also re-runs the attribution (`datanet verify`), which costs about
what the attribution cost the node; a recomputation mismatch is reported, not challenged: a
recomputation dispute is decided by a verifier committee, which the protocol does not have yet
(docs/protocol.md, "Challenge window").

What it decided about each model is kept in a small JSON file per chain, so a restart neither
checks a result twice nor challenges it twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from node import safe_json
from node.attribution.disputes import DisputeError, ResultTrees, commitment, find_faults, new_salt
from node.attribution.document import AttributionDocument
from node.chain.models import ChallengeKind, ChallengeStatus, ModelStatus
from node.chain.protocol import Protocol
from node.config import Settings
from node.errors import ContractRevertError, NodeError
from node.storage.base import ContentStore

log = logging.getLogger("node.verifier")

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
        faults = find_faults(trees, committed)
        if faults:
            return self._challenge(model_id, faults[0].kind, faults[0].evidence, faults[0].reason)
        if self.recompute:
            from node.daemon.verify import verify_job

            report = verify_job(self.p, self.store, m.jobId, self.settings)
            outcome: Outcome = "match" if report.verdict == "MATCH" else "mismatch"
            if outcome == "mismatch":
                log.warning("model #%d: the scores do not reproduce (%s); a recomputation dispute needs a verifier "
                            "committee, which the protocol does not have yet", model_id, report.verdict)  # fmt: skip
            return ModelCheck(model_id=model_id, outcome=outcome, detail=report.verdict)
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
        return ModelCheck(
            model_id=model_id, outcome="challenged", detail=reason, challenge_id=cid,
            challenge_status=status.name.lower(),
        )  # fmt: skip


__all__ = ["ModelCheck", "Verifier", "VerifierState"]
