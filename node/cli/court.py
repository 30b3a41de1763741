"""`datanet verifier join|leave|withdraw|fees|show` and `datanet case show|appeal`: the VerifierCourt.

Verifiers stake OPEN in the court to be drawn (by stake) onto the committees that decide
recomputation challenges, and are paid a share of every finalized job's verifier fee by stake.
A drawn verifier must vote (`datanet daemon --verify` does it) or lose part of its stake; it
cannot leave while it sits on a committee. `case show` says where a case stands and what is due;
`case appeal` is the losing side's one appeal to a larger committee.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from node.chain.deploy import fmt_open
from node.chain.models import CasePhase, Verdict
from node.chain.protocol import Protocol
from node.cli.common import CaseIdArg, JsonOpt, console, print_json, read_protocol, write_protocol
from node.cli.operator import chain_now, fmt_when, open_units
from node.errors import NodeError

verifier_app = typer.Typer(no_args_is_help=True, help="Stake OPEN as a verifier in the VerifierCourt.")
case_app = typer.Typer(no_args_is_help=True, help="Recomputation cases before a verifier committee.")


class CourtCommandError(NodeError, ValueError):
    """A court command that cannot work as asked (says why and what to do)."""


def _show(p: Protocol, json_out: bool, tx: str | None = None, note: str = "") -> None:
    v, minimum = p.verifier(), p.min_verifier_stake()
    fees = p.court_fees()
    out = {"verifier": p.address, "active": v.active, "leaving": v.leaving, "leave_at": v.leaveAt or None,
           "duties": v.duties, "fees": fees, "min_stake": minimum, "drawable": v.active >= minimum,
           "tx": tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    if note:
        console.print(note)
    console.print(f"{p.address}: verifier stake {fmt_open(v.active)} (minimum {fmt_open(minimum)}: "
                  f"{'drawable onto committees' if v.active >= minimum else 'not drawable'}), "
                  f"{v.duties} committee(s) to vote on, fees to claim {fmt_open(fees)}")  # fmt: skip
    if v.leaving:
        console.print(f"leaving: {fmt_open(v.leaving)}, withdrawable {fmt_when(v.leaveAt, chain_now(p))}")


@verifier_app.command("join")
def verifier_join(
    ctx: typer.Context,
    amount: Annotated[str | None, typer.Argument(help="OPEN to stake (default: the minimum verifier stake).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Stake OPEN in the VerifierCourt (drawn by stake onto committees; paid on every finalized job)."""
    p = write_protocol(ctx)
    value = open_units(amount, "AMOUNT") if amount is not None else max(p.min_verifier_stake() - p.verifier().active, 0)
    if value == 0:
        _show(p, json_out, note="already at or above the minimum verifier stake; nothing staked")
        return
    if p.balance() < value:
        raise CourtCommandError(f"Wallet {p.address} holds {fmt_open(p.balance())}; joining needs {fmt_open(value)}.")
    p.join_court(value)
    _show(p, json_out, p.client.last_tx, f"staked {fmt_open(value)} as a verifier in tx {p.client.last_tx}")


@verifier_app.command("leave")
def verifier_leave(
    ctx: typer.Context,
    amount: Annotated[str | None, typer.Argument(help="OPEN to take out (default: all of it).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start taking verifier stake out (not while on a committee); withdraw it after the leave delay."""
    p = write_protocol(ctx)
    v = p.verifier()
    value = open_units(amount, "AMOUNT") if amount is not None else v.active
    if v.duties:
        raise CourtCommandError(
            f"{p.address} sits on {v.duties} committee(s) not yet tallied; vote (`datanet daemon --verify`) and "
            "leave after the tally."
        )
    if value == 0 or value > v.active:
        raise CourtCommandError(f"{p.address} has {fmt_open(v.active)} staked as a verifier; cannot take out "
                                f"{fmt_open(value)}.")  # fmt: skip
    p.leave_court(value)
    _show(p, json_out, p.client.last_tx, f"leaving with {fmt_open(value)} in tx {p.client.last_tx}")


@verifier_app.command("withdraw")
def verifier_withdraw(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Withdraw verifier stake whose leave delay has passed."""
    p = write_protocol(ctx)
    v = p.verifier()
    if v.leaving == 0:
        raise CourtCommandError(f"{p.address} has nothing leaving the court (`datanet verifier leave` first).")
    if chain_now(p) < v.leaveAt:
        raise CourtCommandError(f"{fmt_open(v.leaving)} is withdrawable {fmt_when(v.leaveAt, chain_now(p))}.")
    p.withdraw_court()
    _show(p, json_out, p.client.last_tx, f"withdrew {fmt_open(v.leaving)} in tx {p.client.last_tx}")


@verifier_app.command("fees")
def verifier_fees(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Claim the verifier fees and committee fees this wallet has earned."""
    p = write_protocol(ctx)
    fees = p.court_fees()
    if fees == 0:
        raise CourtCommandError(f"{p.address} has no verifier fees to claim yet.")
    p.claim_court_fees()
    _show(p, json_out, p.client.last_tx, f"claimed {fmt_open(fees)} in tx {p.client.last_tx}")


@verifier_app.command("show")
def verifier_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """This wallet's verifier stake, duties and fees."""
    _show(read_protocol(ctx), json_out)


def case_summary(p: Protocol, case_id: int) -> dict[str, Any]:
    """Where case `case_id` stands, and what is due next."""
    try:
        case = p.court_case(case_id)
    except NodeError:
        raise CourtCommandError(f"No recomputation case #{case_id} (case ids are challenge ids).") from None
    rnd = p.court_round(case_id, case.round)
    now = p.pending_time()
    if case.phase == CasePhase.CLOSED:
        due = "nothing: closed"
    elif case.phase == CasePhase.APPEALABLE:
        loser = "node" if case.verdict == Verdict.UPHELD else "challenger"
        due = (f"the {loser} may appeal until {fmt_when(case.appealDeadline, now)}" if now <= case.appealDeadline
               else "anyone may close it")  # fmt: skip
    elif now > rnd.revealDeadline:
        due = "anyone may tally it"
    elif not rnd.drawn:
        due = "anyone may draw the committee"
    elif now <= rnd.commitDeadline:
        due = f"members commit their votes until {fmt_when(rnd.commitDeadline, now)}"
    else:
        due = f"members reveal their votes until {fmt_when(rnd.revealDeadline, now)}"
    return {
        "case_id": case_id, "model_id": case.modelId, "job_id": case.jobId, "node": case.node,
        "challenger": case.challenger, "phase": case.phase.name.lower(), "round": case.round,
        "verdict": case.verdict.name.lower(), "members": rnd.members, "reproduces": rnd.reproduces,
        "faults": rnd.faults, "due": due,
    }  # fmt: skip


@case_app.command("show")
def case_show(ctx: typer.Context, case_id: CaseIdArg, json_out: JsonOpt = False) -> None:
    """A recomputation case: its committee, its votes so far, its verdict, what is due next."""
    out = case_summary(read_protocol(ctx), case_id)
    if json_out:
        print_json(out)
        return
    console.print(f"case #{case_id}: model #{out['model_id']} (job #{out['job_id']}), {out['phase']}, round "
                  f"{out['round']}, verdict {out['verdict']}; committee {len(out['members'])} member(s), "
                  f"{out['reproduces']} reproduce / {out['faults']} fault revealed")  # fmt: skip
    console.print(f"next: {out['due']}")


@case_app.command("appeal")
def case_appeal(ctx: typer.Context, case_id: CaseIdArg, json_out: JsonOpt = False) -> None:
    """Appeal a committee's verdict once (its losing side), escrowing the appeal bond."""
    p = write_protocol(ctx)
    case = p.court_case(case_id)
    if case.phase != CasePhase.APPEALABLE:
        raise CourtCommandError(f"Case #{case_id} is {case.phase.name.lower()}: only a decided, unappealed verdict "
                                "can be appealed (`datanet case show`).")  # fmt: skip
    loser = case.node if case.verdict == Verdict.UPHELD else case.challenger
    if p.address != loser:
        raise CourtCommandError(
            f"Only the losing side ({loser}) may appeal case #{case_id}; this wallet is {p.address}."
        )
    p.appeal(case_id)
    out = case_summary(p, case_id) | {"tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    console.print(f"appealed case #{case_id} in tx {out['tx']}: a committee of up to "
                  f"{2 * int(p.client.call(p.court.functions.committeeSize())) + 1} decides, finally")  # fmt: skip
