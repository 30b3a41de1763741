"""Read-only views of the on-chain registries: `datanet status`, `datanet job list|show`,
`datanet model show` (`model list`, with metrics and filters, is in node/cli/daemon.py)."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from node.chain.deploy import fmt_open
from node.chain.models import JobStatus
from node.cli.common import JobIdArg, JsonOpt, ModelIdArg, console, jsonable, print_json, read_protocol
from node.cli.operator import chain_now, fmt_when

job_app = typer.Typer(no_args_is_help=True, help="Fine-tuning jobs registered on-chain.")
model_app = typer.Typer(no_args_is_help=True, help="Models in the on-chain registry.")


def status_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Chain, deployment and registry counts."""
    p = read_protocol(ctx)
    info = {
        "rpc_url": p.client.rpc_url,
        "chain_id": p.chain_id,
        "block": p.client.block_number(),
        "network": p.deployment.network,
        "contracts": p.deployment.contracts,
        "datanets": p.datanet_count(),
        "contributions": p.contribution_count(),
        "jobs": p.job_count(),
        "models": p.model_count(),
        "min_node_stake": p.min_node_stake(),
    }
    if json_out:
        print_json(info)
        return
    t = Table("", "", title="Datanet Node status", show_header=False)
    for k, v in info.items():
        if k == "contracts":
            for name, addr in v.items():  # type: ignore[attr-defined]
                t.add_row(name, addr)
        else:
            t.add_row(k, fmt_open(v) if k == "min_node_stake" else str(v))  # type: ignore[arg-type]
    console.print(t)


@job_app.command("list")
def job_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """All jobs."""
    p = read_protocol(ctx)
    jobs = [p.job(i) for i in range(1, p.job_count() + 1)]
    if json_out:
        print_json(jobs)
        return
    t = Table("#", "status", "base model", "datanets", "method", "pool", "node")
    for j in jobs:
        t.add_row(
            str(j.id),
            j.status.name.lower(),
            j.baseModel,
            ",".join(map(str, j.datanetIds)),
            j.method.name,
            fmt_open(j.pool),
            j.node,
        )
    console.print(t)


@job_app.command("show")
def job_show(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """One job; for a submitted result, its model's status and when its challenge window ends."""
    p = read_protocol(ctx)
    job = p.job(job_id)
    window: dict[str, object] = {}
    at, open_challenges = 0, 0
    if job.modelId:
        at, open_challenges = p.finalizable_at(job.modelId)
        window = {"model_status": p.model(job.modelId).status.name.lower(), "finalizable_at": at,
                  "open_challenges": open_challenges}  # fmt: skip
    if json_out:
        print_json(jsonable(job) | window)
        return
    console.print(fields_table(f"job #{job.id}", jsonable(job) | window, chain_now(p)))
    if job.status == JobStatus.SUBMITTED:
        console.print(f"model #{job.modelId} is pending: finalizable from {fmt_when(at, p.pending_time())}"
                      f"{f', {open_challenges} challenge(s) open' if open_challenges else ''} "
                      f"(`datanet finalize {job_id}`; `datanet challenge {job_id} --dry-run` checks it)")  # fmt: skip


@model_app.command("show")
def model_show(ctx: typer.Context, model_id: ModelIdArg, json_out: JsonOpt = False) -> None:
    """One model with its lineage."""
    p = read_protocol(ctx)
    m = p.model(model_id)
    lineage = p.lineage(model_id)
    if json_out:
        print_json({"model": jsonable(m), "lineage": lineage})
    else:
        console.print(fields_table(f"model #{m.id}", jsonable(m), chain_now(p)))
        console.print(f"lineage: {' <- '.join(map(str, lineage))}")


_OPEN_FIELDS = {"pool", "bond", "verifierFee", "stake", "minStake"}
_TIME_FIELDS = {"deadline", "postedAt", "claimTime", "claimedAt", "registeredAt", "finalizable_at"}


def fields_table(title: str, fields: dict[str, object], now: int) -> Table:
    """One record's fields (as `--json` names them), a row each: amounts in OPEN, timestamps as UTC
    with how far off they are, lists comma-separated, hashes 0x-hex (never a Python repr)."""
    t = Table(title=title, show_header=False, title_justify="left")
    for name, value in fields.items():
        if name in _OPEN_FIELDS and isinstance(value, int):
            shown = fmt_open(value)
        elif name in _TIME_FIELDS and isinstance(value, int):
            shown = fmt_when(value, now) if value else "-"
        elif isinstance(value, list):
            shown = ", ".join(map(str, value)) or "-"
        else:
            shown = "-" if value in ("", None) else str(value)
        t.add_row(name, Text(shown))  # Text: a name or CID may hold [brackets]
    return t
