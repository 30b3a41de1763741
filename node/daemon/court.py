"""Recomputation cases in the VerifierCourt, moved along from a node: draw the committee, vote
when drawn, reveal, tally, close.

Every step but voting may be taken by anyone, and every step has a deadline, so any party with
an interest (the challenger, the node whose result waits, a verifier) keeps a case moving; the
`CourtClerk` does whatever is due now, once per call. With a `judge` it also votes when its
account is drawn: the judge is `datanet verify` (the committed scores reproduce within the
documented tolerance, or not; an artifact that cannot be fetched counts as the node's fault).

A vote is sealed (commit), then opened (reveal) after the commits close; the salt must survive
a restart in between, so it is written to a small JSON file *before* the commit is sent.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from node import safe_json
from node.chain.models import CasePhase, Deployment, Vote
from node.chain.protocol import Protocol
from node.errors import ContractRevertError

log = logging.getLogger("node.court")

Judge = Callable[[int, bytes], Vote]
"""(model id, the challenger's claim) -> this verifier's vote on it."""


def court_state_path(data_dir: Path, deployment: Deployment) -> Path:
    """Where a node keeps its sealed votes for one chain (`data_dir/court-<network>-<chain>.json`)."""
    return data_dir / f"court-{deployment.network}-{deployment.chain_key}.json"


class SealedVote(BaseModel):
    vote: Vote
    salt: str = Field(description="0x-hex bytes32 the commitment was sealed with.")


class CourtState(BaseModel):
    votes: dict[str, SealedVote] = Field(
        default_factory=dict, description='"case:round:member" -> the sealed vote (one file may serve several wallets).'
    )


class CourtClerk:
    """Moves the court's open cases along; votes with `judge` when this account is drawn."""

    def __init__(self, protocol: Protocol, state_path: Path, judge: Judge | None = None):
        self.p, self.path, self.judge = protocol, state_path, judge
        self.state = (
            safe_json.load_model(CourtState, state_path.read_bytes(), str(state_path))
            if state_path.exists()
            else CourtState()
        )

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.model_dump(mode="json"), indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def open_cases(self, model_id: int | None = None) -> list[int]:
        """Cases not closed yet (of `model_id`, or all), from the court's CaseOpened logs."""
        event = self.p.court.events.CaseOpened
        filters = {"modelId": model_id} if model_id is not None else {}
        logs = self.p.client.rpc(
            lambda: event.get_logs(from_block=self.p.deployment.deploy_block, argument_filters=filters),
            "get CaseOpened logs",
        )
        ids = [int(log_["args"]["caseId"]) for log_ in logs]
        return [i for i in ids if self.p.court_case(i).phase in (CasePhase.VOTING, CasePhase.APPEALABLE)]

    def step_all(self, model_id: int | None = None) -> list[str]:
        """One due action per open case; what was done, for logs and tests."""
        done = []
        for case_id in self.open_cases(model_id):
            try:
                action = self.step(case_id)
            except ContractRevertError as e:  # someone else took the same step first, or a deadline just passed
                log.info("case #%d: %s", case_id, e)
                continue
            if action:
                done.append(f"case #{case_id}: {action}")
        return done

    def step(self, case_id: int) -> str | None:
        """Takes the step case `case_id` is due for now, if any; returns what it did."""
        p = self.p
        case = p.court_case(case_id)
        now = p.pending_time()
        if case.phase == CasePhase.APPEALABLE:
            if now > case.appealDeadline:
                p.close_case(case_id)
                return f"closed ({case.verdict.name.lower()})"
            return None
        if case.phase != CasePhase.VOTING:
            return None
        r = case.round
        rnd = p.court_round(case_id, r)
        if now > rnd.revealDeadline:
            p.tally(case_id)
            return f"tallied round {r}"
        if not rnd.drawn:
            if now <= rnd.commitDeadline and p.client.block_number() > rnd.seedBlock:
                p.draw_committee(case_id)
                return f"drew round {r}"
            return None
        if self.judge is None or p.address not in rnd.members:
            return None
        return self._vote(case_id, case.modelId, r, rnd.commitDeadline, now)

    def _vote(self, case_id: int, model_id: int, r: int, commit_deadline: int, now: int) -> str | None:
        p = self.p
        key = f"{case_id}:{r}:{p.address}"
        ballot = p.ballot(case_id, r)
        if ballot.commitment == b"\0" * 32:
            if now > commit_deadline:
                return None  # too late: the tally will slash this member
            sealed = self.state.votes.get(key)
            if sealed is None:
                assert self.judge is not None
                vote = self.judge(model_id, p.case_claim(case_id))
                sealed = SealedVote(vote=vote, salt="0x" + secrets.token_hex(32))
                self.state.votes[key] = sealed
                self._save()  # before the commit: the reveal needs the salt, whatever happens next
            salt = bytes.fromhex(sealed.salt[2:])
            p.commit_vote(case_id, p.vote_commitment(case_id, r, sealed.vote, salt))
            log.info("case #%d round %d: committed a sealed vote on model #%d", case_id, r, model_id)
            return "committed a vote"
        if ballot.vote == Vote.NONE and now > commit_deadline:
            sealed = self.state.votes.get(key)
            if sealed is None:
                log.error("case #%d round %d: a vote was committed from this account but its salt is not in %s; "
                          "it cannot be revealed", case_id, r, self.path)  # fmt: skip
                return None
            p.reveal_vote(case_id, sealed.vote, bytes.fromhex(sealed.salt[2:]))
            log.info("case #%d round %d: revealed %s", case_id, r, sealed.vote.name.lower())
            return f"revealed {sealed.vote.name.lower()}"
        return None


__all__ = ["CourtClerk", "CourtState", "Judge", "SealedVote", "court_state_path"]
