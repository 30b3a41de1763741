"""The `datanet` command: a thin shell over the node's modules.

Every command that shows data takes `--json` (machine-readable, stable keys). Errors from the
node print one clear line (what went wrong, how to fix it) and exit with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from node.chain.accounts import resolve_account
from node.chain.client import ChainClient
from node.chain.deploy import DeployConfig, deploy, load_deployment, save_deployment
from node.chain.devchain import DevChain, DevChainConfig
from node.chain.protocol import Protocol
from node.config import Settings
from node.demo.run import (
    Demo,
    DemoSummary,
    fmt_open,
    start_chain,
    stop_chain_from_pidfile,
    write_chain_pidfile,
)
from node.errors import NodeError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Datanet Node: data, models and rewards on-chain."
)
chain_app = typer.Typer(no_args_is_help=True, help="Run a local EVM dev chain (anvil).")
datanet_app = typer.Typer(no_args_is_help=True, help="Datanets registered on-chain.")
job_app = typer.Typer(no_args_is_help=True, help="Fine-tuning jobs registered on-chain.")
model_app = typer.Typer(no_args_is_help=True, help="Models in the on-chain registry.")
app.add_typer(chain_app, name="chain")
app.add_typer(datanet_app, name="datanet")
app.add_typer(job_app, name="job")
app.add_typer(model_app, name="model")

# Wide enough for CIDs and tx hashes on one line when piped (rich defaults to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class State(BaseModel):
    settings: Settings


@app.callback()
def _root(
    ctx: typer.Context,
    rpc_url: Annotated[
        str | None, typer.Option(help="JSON-RPC URL (default: the deployment's, else 127.0.0.1:8545).")
    ] = None,
    network: Annotated[str | None, typer.Option(help="Deployment name: deployments/<network>.json.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    overrides: dict[str, Any] = {}
    if rpc_url:
        overrides["rpc_url"] = rpc_url
    if network:
        overrides["network"] = network
    ctx.obj = State(settings=Settings(**overrides))


def _settings(ctx: typer.Context) -> Settings:
    state: State = ctx.obj
    return state.settings


def _print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return "0x" + o.hex()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read_protocol(ctx: typer.Context) -> Protocol:
    """A read-only view of the deployed protocol (no signing key needed)."""
    s = _settings(ctx)
    deployment = load_deployment(s.deployment_file())
    rpc = s.rpc_url if "rpc_url" in s.model_fields_set else deployment.rpc_url
    return Protocol(ChainClient(rpc, timeout=s.rpc_timeout, retries=s.rpc_retries), deployment)


# ----------------------------------------------------------------------- chain


@chain_app.command("up")
def chain_up(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8545,
    detach: Annotated[
        bool, typer.Option(help="Return and leave the chain running (stop: `datanet chain down`).")
    ] = False,
) -> None:
    """Start a local dev chain (anvil, chain id 31337, 20 funded dev accounts)."""
    s = _settings(ctx)
    chain = DevChain(DevChainConfig(port=port))
    s.data_dir.mkdir(parents=True, exist_ok=True)
    chain.start(log_path=s.data_dir / "anvil.log")
    if detach:
        pidfile = write_chain_pidfile(s.data_dir, chain)
        console.print(
            f"dev chain running at [bold]{chain.rpc_url}[/] (pid {chain.pid}, {pidfile}); stop it with `datanet chain down`"
        )
        return
    console.print(f"dev chain running at [bold]{chain.rpc_url}[/]; Ctrl-C stops it")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        chain.stop()


@chain_app.command("down")
def chain_down(ctx: typer.Context) -> None:
    """Stop a dev chain left running by `chain up --detach` or `demo --keep`."""
    url = stop_chain_from_pidfile(_settings(ctx).data_dir)
    console.print(f"stopped the dev chain at {url}" if url else "no detached dev chain to stop")


# ---------------------------------------------------------------------- deploy


@app.command("deploy")
def deploy_cmd(
    ctx: typer.Context,
    min_node_stake: Annotated[float, typer.Option(help="OPEN a node must stake to claim jobs.")] = 1000.0,
    json_out: JsonOpt = False,
) -> None:
    """Deploy the protocol contracts and write deployments/<network>.json."""
    s = _settings(ctx)
    reader = ChainClient.from_settings(s)
    account, source = resolve_account(
        s.keystore,
        s.keystore_password.get_secret_value() if s.keystore_password else None,
        s.private_key.get_secret_value() if s.private_key else None,
        reader.chain_id,
    )
    err_console.print(f"deploying from {account.address} ({source}) to {s.rpc_url}")
    client = ChainClient.from_settings(s, account)
    dep = deploy(client, s.network, DeployConfig(min_node_stake=int(min_node_stake * 10**18)))
    path = save_deployment(dep, s.deployment_file())
    if json_out:
        _print_json(dep)
        return
    table = Table("contract", "address", title=f"deployed to chain {dep.chain_id} ({path})")
    for name, addr in dep.contracts.items():
        table.add_row(name, addr)
    console.print(table)


# ------------------------------------------------------------------------ demo


@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Leave the dev chain running afterwards.")] = False,
    port: Annotated[int | None, typer.Option(help="Dev chain port (default 8545, or a free one).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole protocol on a fresh local dev chain and print what happened."""
    s = _settings(ctx)
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
        _print_json(summary)
    else:
        _print_summary(summary)


def _print_summary(s: DemoSummary) -> None:
    t = Table(
        "#", "contributor", "records", "stake", "status", title=f"Datanet #{s.datanet_id} contributions"
    )
    for c in s.contributions:
        who = c.contributor + (" (relayed, no ETH)" if c.relayed else "")
        t.add_row(str(c.id), who, str(c.records), c.stake, c.status)
    console.print(t)
    for c in s.contributions:
        console.print(f"  #{c.id} {c.cid}  {c.file}")
    console.print(f"Slashed to the Datanet treasury: {s.treasury_slashed}")
    console.print(f"Job #{s.job_id} (pool {s.job_pool}) claimed by node {s.node}")
    if s.chain_kept:
        console.print(f"\nThe dev chain keeps running at [bold]{s.rpc_url}[/] (pid {s.chain_pid}).")
        console.print(f"Deployment file: [bold]{s.deployment_file}[/]")
        console.print(
            f"Explore: `datanet status`, `datanet datanet show {s.datanet_id}`, `datanet job show {s.job_id}`; stop: `datanet chain down`."
        )


# ---------------------------------------------------------------- read views


@app.command("status")
def status_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Chain, deployment and registry counts."""
    p = _read_protocol(ctx)
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
        _print_json(info)
        return
    t = Table("", "", title="Datanet Node status", show_header=False)
    for k, v in info.items():
        if k == "contracts":
            for name, addr in v.items():  # type: ignore[attr-defined]
                t.add_row(name, addr)
        else:
            t.add_row(k, fmt_open(v) if k == "min_node_stake" else str(v))  # type: ignore[arg-type]
    console.print(t)


@datanet_app.command("list")
def datanet_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """All Datanets."""
    p = _read_protocol(ctx)
    items = [p.datanet(i) for i in range(1, p.datanet_count() + 1)]
    if json_out:
        _print_json(items)
        return
    t = Table("#", "name", "owner", "contributions", "approved", "min stake", "private")
    for d in items:
        t.add_row(
            str(d.id),
            d.name,
            d.owner,
            str(d.contributionCount),
            str(d.approvedCount),
            fmt_open(d.minStake),
            "yes" if d.isPrivate else "",
        )
    console.print(t)


@datanet_app.command("show")
def datanet_show(ctx: typer.Context, datanet_id: int, json_out: JsonOpt = False) -> None:
    """One Datanet with its contributions."""
    p = _read_protocol(ctx)
    d = p.datanet(datanet_id)
    contribs = [
        c
        for c in (p.contribution(i) for i in range(1, p.contribution_count() + 1))
        if c.datanetId == datanet_id
    ]
    if json_out:
        _print_json(
            {
                "datanet": d.model_dump(mode="json"),
                "contributions": [c.model_dump(mode="json") for c in contribs],
            }
        )
        return
    console.print(d)
    t = Table("#", "contributor", "CID", "records", "stake", "status")
    for c in contribs:
        t.add_row(
            str(c.id), c.contributor, c.cid, str(c.recordCount), fmt_open(c.stake), c.status.name.lower()
        )
    console.print(t)


@job_app.command("list")
def job_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """All jobs."""
    p = _read_protocol(ctx)
    jobs = [p.job(i) for i in range(1, p.job_count() + 1)]
    if json_out:
        _print_json(jobs)
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
def job_show(ctx: typer.Context, job_id: int, json_out: JsonOpt = False) -> None:
    """One job."""
    job = _read_protocol(ctx).job(job_id)
    if json_out:
        _print_json(job)
    else:
        console.print(job)


@model_app.command("list")
def model_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """All registered models with their provenance."""
    p = _read_protocol(ctx)
    models = [p.model(i) for i in range(1, p.model_count() + 1)]
    if json_out:
        _print_json(models)
        return
    t = Table("#", "job", "base model", "datanets", "adapter CID", "data root")
    for m in models:
        t.add_row(
            str(m.id),
            str(m.jobId),
            m.baseModel,
            ",".join(map(str, m.datanetIds)),
            m.adapterCID,
            "0x" + m.dataRoot.hex(),
        )
    console.print(t)


@model_app.command("show")
def model_show(ctx: typer.Context, model_id: int, json_out: JsonOpt = False) -> None:
    """One model with its lineage."""
    p = _read_protocol(ctx)
    m = p.model(model_id)
    lineage = p.lineage(model_id)
    if json_out:
        _print_json({"model": m.model_dump(mode="json"), "lineage": lineage})
    else:
        console.print(m)
        console.print(f"lineage: {' <- '.join(map(str, lineage))}")


def main() -> None:
    """Console entry point: runs the app, turning node errors into one readable line."""
    try:
        app()
    except NodeError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
