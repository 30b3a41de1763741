"""`datanet challenge JOB` and `datanet finalize JOB`: the challenge window, for people.

`challenge` fetches the pending result's attribution document, finds a fault the challenge
contract decides on-chain (`node.attribution.disputes.find_faults`), and commits and reveals it
(commit-reveal, so no one can copy it from the mempool); with `--dry-run` it only reports.
Scores that do not reproduce are not on-chain arithmetic: `datanet verify JOB` finds those, and
`challenge --recompute` reruns it and, on a mismatch, files a Recompute challenge that a
committee of staked verifiers decides (`datanet case show ID`).
`finalize` ends the window: it settles reward-leaf challenges the node left unanswered, then
finalizes (the bond is released and the contributors' claims open), anyone may run it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from node.attribution.disputes import Fault, ResultTrees, commitment, new_salt
from node.attribution.document import AttributionDocument
from node.chain.deploy import fmt_open
from node.chain.models import ChallengeKind, ChallengeStatus, JobStatus, ModelStatus
from node.chain.protocol import Protocol
from node.cli.common import JobIdArg, JsonOpt, console, print_json, read_protocol, settings, write_protocol
from node.cli.operator import chain_now, fmt_when
from node.daemon.court import CourtClerk, court_state_path
from node.daemon.verifier import claim_of, mismatch_reason, recompute_evidence, result_faults
from node.errors import NodeError
from node.storage import open_store


class DisputeCommandError(NodeError, ValueError):
    """A challenge or finalize that cannot be done now (says why and what to do)."""


def _pending_model(p: Protocol, job_id: int) -> int:
    if not 1 <= job_id <= p.job_count():
        raise DisputeCommandError(f"No job #{job_id} (`datanet job list`).")
    job = p.job(job_id)
    if job.status != JobStatus.SUBMITTED:
        raise DisputeCommandError(
            f"Job #{job_id} is {job.status.name.lower()}: only a submitted result in its challenge window can be "
            "challenged or finalized."
        )
    return job.modelId


def challenge_cmd(
    ctx: typer.Context,
    job_id: JobIdArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report the faults found; send nothing.")] = False,
    recompute: Annotated[
        bool,
        typer.Option("--recompute", help="Also rerun the attribution (`datanet verify`); challenge scores that do not "
                     "reproduce before a verifier committee."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check a pending result's attribution arithmetic and challenge a fault the contract can prove.

    Escrows the challenge bond; an upheld challenge voids the result and pays you a share of the
    node's bond, a rejected one pays your bond to the node."""
    p = read_protocol(ctx) if dry_run else write_protocol(ctx)
    model_id = _pending_model(p, job_id)
    model = p.model(model_id)
    committed = p.result_commitment(model_id)
    store = open_store(settings(ctx))
    doc = AttributionDocument.from_json(store.cat(model.attributionCID), f"attribution document {model.attributionCID}")
    faults = result_faults(p, store, model_id, ResultTrees.from_document(doc, committed))
    if not faults and recompute:
        faults = _recompute_fault(p, store, job_id, ctx)
    out: dict[str, Any] = {
        "job_id": job_id,
        "model_id": model_id,
        "faults": [{"kind": f.kind.name.lower(), "reason": f.reason} for f in faults],
    }
    if not faults or dry_run:
        if json_out:
            print_json(out)
            return
        if not faults:
            console.print(f"job #{job_id}, model #{model_id}: no fault the contract can decide in its arithmetic "
                          f"(`datanet verify {job_id}` recomputes the scores themselves)")  # fmt: skip
        for f in faults:
            console.print(f"{f.kind.name.lower()}: {f.reason}")
        return
    fault = faults[0]
    bond = p.challenge_bond()
    if p.balance() < bond:
        raise DisputeCommandError(f"A challenge escrows {fmt_open(bond)}; {p.address} holds {fmt_open(p.balance())}.")
    salt = new_salt()
    p.approve(p.challenges.address, bond)
    challenge_id = p.commit_challenge(model_id, commitment(fault.kind, fault.evidence, salt))
    p.reveal_challenge(challenge_id, fault.kind, fault.evidence, salt)
    c = p.challenge(challenge_id)
    out |= {
        "challenge_id": challenge_id,
        "kind": fault.kind.name.lower(),
        "status": c.status.name.lower(),
        "answer_deadline": c.answerDeadline or None,
        "bond": bond,
        "tx": p.client.last_tx,
    }
    if json_out:
        print_json(out)
        return
    console.print(f"challenge #{challenge_id} ({fault.kind.name.lower()}): {fault.reason}")
    if c.status == ChallengeStatus.REFERRED:
        console.print(f"referred to a verifier committee: case #{challenge_id} (`datanet case show {challenge_id}`); "
                      "its verdict decides the result")  # fmt: skip
    elif c.status == ChallengeStatus.UPHELD:
        console.print(f"upheld: model #{model_id} is voided, job #{job_id} reopened; you got your bond back and a "
                      "share of the node's bond")  # fmt: skip
    elif c.status == ChallengeStatus.ANSWERABLE:
        console.print(f"the node must justify the leaf by {fmt_when(c.answerDeadline, chain_now(p))}; if it does "
                      f"not, `datanet finalize {job_id}` settles the challenge (upheld) after that")  # fmt: skip
    else:
        console.print(f"{c.status.name.lower()}: your bond of {fmt_open(bond)} went to the node")


def _recompute_fault(p: Protocol, store: Any, job_id: int, ctx: typer.Context) -> list[Fault]:
    """`datanet verify` on the job: a mismatch as a Recompute fault naming the narrowest piece that
    does not reproduce (an interval, a snapshot's query vectors, an example), for the committee."""
    from node.daemon.verify import verify_job  # imports torch: only when asked to recompute

    report = verify_job(p, store, job_id, settings(ctx))
    if report.verdict == "MATCH":
        return []
    reason = mismatch_reason(report)
    evidence = recompute_evidence(claim_of(report).evidence_index(), reason)
    return [Fault(kind=ChallengeKind.RECOMPUTE, reason=reason, evidence=evidence)]


def finalize_cmd(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """End a result's challenge window (anyone may): the model becomes final and rewards claimable.

    Settles reward-leaf challenges the node did not answer in time first (upheld: the result is
    voided); otherwise the node's bond is released and the contributors' reward claims open."""
    p = write_protocol(ctx)
    model_id = _pending_model(p, job_id)
    now = p.pending_time()
    at, _ = p.finalizable_at(model_id)
    if now < at:
        raise DisputeCommandError(
            f"Job #{job_id}'s result (model #{model_id}) is in its challenge window until {fmt_when(at, now)}; "
            f"finalize after that (`datanet finalize {job_id}`)."
        )
    settled = []
    for c in p.challenges_of(model_id):
        if c.status == ChallengeStatus.ANSWERABLE and now > c.answerDeadline:
            p.settle_challenge(c.id)
            settled.append(c.id)
    referred = [c.id for c in p.challenges_of(model_id) if c.status == ChallengeStatus.REFERRED]
    if referred and p.model(model_id).status == ModelStatus.PENDING:
        from node.cli.court import case_summary

        clerk = CourtClerk(p, court_state_path(settings(ctx).data_dir, p.deployment))
        done = clerk.step_all(model_id)
        waiting = [case_summary(p, i) for i in referred if p.challenge(i).status == ChallengeStatus.REFERRED]
        if waiting and p.model(model_id).status == ModelStatus.PENDING:
            out = {"job_id": job_id, "model_id": model_id, "status": "before a committee", "done": done,
                   "cases": waiting}  # fmt: skip
            if json_out:
                print_json(out)
                return
            for line in done:
                console.print(line)
            for case in waiting:
                console.print(f"case #{case['case_id']} is {case['phase']} (round {case['round']}): "
                              f"next, {case['due']}; finalize after it closes")  # fmt: skip
            return
    if p.model(model_id).status == ModelStatus.VOIDED:
        out = {"job_id": job_id, "model_id": model_id, "status": "voided", "settled": settled}
        if json_out:
            print_json(out)
            return
        why = f"the node left challenge(s) {settled} unanswered" if settled else "a challenge was upheld"
        console.print(f"model #{model_id} was voided: {why}; job #{job_id} is open again")
        return
    p.finalize(job_id)
    out = {"job_id": job_id, "model_id": model_id, "status": "finalized", "settled": settled, "tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    console.print(f"finalized job #{job_id} in tx {out['tx']}: model #{model_id} is final, the node's bond released, "
                  f"contributors can claim (`datanet rewards`)")  # fmt: skip
