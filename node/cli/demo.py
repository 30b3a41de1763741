"""`datanet demo`: the whole protocol on a fresh local dev chain."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from node.cli.common import JsonOpt, console, print_json, settings
from node.demo.run import Demo, DemoSummary, start_chain, write_chain_pidfile


def demo_cmd(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Leave the dev chain running afterwards.")] = False,
    port: Annotated[int | None, typer.Option(help="Dev chain port (default 8545, or a free one).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole protocol on a fresh local dev chain and print what happened."""
    s = settings(ctx)
    quiet = json_out
    chain = start_chain(port)
    say = (lambda _m: None) if quiet else console.print
    say(f"dev chain started at [bold]{chain.rpc_url}[/]")
    try:
        summary = Demo(s.data_dir, s.deployments_dir, say).run(chain)
        if keep:
            write_chain_pidfile(s.data_dir, chain)
            summary.chain_kept, summary.chain_pid = True, chain.pid
    finally:
        if not keep:
            chain.stop()
    if json_out:
        print_json(summary)
    else:
        _print_summary(summary)


def _print_summary(s: DemoSummary) -> None:
    t = Table("#", "contributor", "records", "stake", "status", title=f"Datanet #{s.datanet_id} contributions")
    for c in s.contributions:
        who = c.contributor + (" (relayed, no ETH)" if c.relayed else "")
        t.add_row(str(c.id), who, str(c.records), c.stake, c.status)
    console.print(t)
    for c in s.contributions:
        console.print(f"  #{c.id} {c.cid}  {c.file}")
    console.print(f"Slashed to the Datanet treasury: {s.treasury_slashed}")
    console.print(f"Job #{s.job_id} (pool {s.job_pool}) claimed by node {s.node}")
    ts = s.training_set
    console.print(
        f"Permitted training set: {ts.examples} examples from {len(ts.per_contributor)} contributors "
        f"(as of block {ts.block}), data root {ts.data_root}; manifest {ts.manifest}"
    )
    if s.chain_kept:
        console.print(f"\nThe dev chain keeps running at [bold]{s.rpc_url}[/] (pid {s.chain_pid}).")
        console.print(f"Deployment file: [bold]{s.deployment_file}[/]")
        console.print(
            f"Explore: `datanet status`, `datanet datanet show {s.datanet_id}`, "
            f"`datanet job show {s.job_id}`; stop: `datanet chain down`."
        )
