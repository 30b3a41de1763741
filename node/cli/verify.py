"""`datanet verify JOB`: recompute a job's attribution from public artifacts and compare it with
what the node committed (MATCH or MISMATCH; exits 1 on a mismatch). See `node.daemon.verify`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from node.chain.deploy import fmt_open
from node.cli.common import JsonOpt, console, jsonable, print_json, read_protocol, settings, signer
from node.errors import KeystoreError
from node.storage import open_store

if TYPE_CHECKING:  # the verifier imports torch; `datanet --help` should not
    from node.daemon.verify import VerifyReport


def verify_cmd(
    ctx: typer.Context,
    job: Annotated[int, typer.Argument(help="The job whose registered result to verify.")],
    interval: Annotated[
        int | None,
        typer.Option("--interval", min=0, help="The training interval to replay (0-based; default: one at random)."),
    ] = None,
    replay: Annotated[
        bool, typer.Option("--replay/--no-replay", help="Replay a training interval onto its snapshot.")
    ] = True,
    example: Annotated[
        int | None,
        typer.Option("--example", min=0, help="Check only this manifest example's score (its own gradients against "
                     "the committed query vectors): one example's dispute."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetches the job's config, eval set, training data, snapshots and adapter, checks each
    against its on-chain (or committed) hash, replays one training interval from the snapshot
    before it (it must land on its snapshot), recomputes every example's score in a pinned
    worker, and compares the payout. Needs the base model locally (a CPU suffices for models of
    a few hundred million parameters; billions want a GPU) and, for a private Datanet, a key grant."""
    from node.daemon.verify import verify_job

    p = read_protocol(ctx)
    s = settings(ctx)
    with contextlib.suppress(KeystoreError):  # a private Datanet's files open only with this account's keys
        p = p.as_account(signer(s, p.chain_id)[0])
    replay = (replay and example is None) or interval is not None  # --example alone: that score, nothing else
    report = verify_job(p, open_store(s), job, s, interval=interval, replay=replay, example=example)
    if json_out:
        print_json(jsonable(report))
    else:
        _show(report)
    if report.verdict != "MATCH":
        raise typer.Exit(1)


def _show(r: VerifyReport) -> None:
    table = Table(title=f"job #{r.job_id} (model #{r.model_id}): artifacts")
    for col in ("check", "", "detail"):
        table.add_column(col)
    for check in r.checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAILED[/]", check.detail)
    console.print(table)
    c = r.comparison
    if c is not None:
        console.print(
            f"scores: {c.scores_differing} integer(s) differ, largest deviation {c.max_score_deviation} "
            f"({c.max_relative_deviation:.2e} of the largest score); scores root "
            f"{'equal' if c.scores_root_equal else 'differs'}, "
            f"reward root {'equal' if c.reward_root_equal else 'differs'}"
        )
        amounts = Table(title=f"payout (tolerance {fmt_open(c.delta)})")
        for col in ("account", "committed", "recomputed", "diff"):
            amounts.add_column(col, justify="right" if col != "account" else "left")
        for a in c.amounts:
            amounts.add_row(a.account, fmt_open(a.committed), fmt_open(a.recomputed), str(a.diff))
        console.print(amounts)
        for problem in c.arithmetic_problems:
            console.print(f"[red]inconsistent:[/] {problem}")
    if r.replay is not None:
        console.print(f"training replay: interval {r.replay.interval} (steps {r.replay.start + 1}..{r.replay.end}) "
                      f"landed {r.replay.relative:.2e} of its movement from its snapshot "
                      f"(tolerance {r.replay.tolerance:.0%}, {r.replay.seconds:.1f} s)")  # fmt: skip
    colour = "green" if r.verdict == "MATCH" else "red"
    console.print(f"[bold {colour}]{r.verdict}[/] ({r.method}; {r.seconds:.1f} s)")
