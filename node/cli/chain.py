"""`datanet chain` and `datanet deploy`: run a dev chain, deploy the protocol."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.chain.client import ChainClient
from node.chain.deploy import DeployConfig, deploy, dev_funding, fmt_open, save_deployment
from node.chain.devchain import (
    DEV_CHAIN_ID,
    PIDFILE,
    DevChain,
    DevChainConfig,
    refuse_if_kept,
    stop_kept_chain,
    write_pidfile,
)
from node.chain.units import parse_open
from node.cli.common import JsonOpt, console, err_console, jsonable, print_json, settings, signer
from node.errors import DeploymentError

chain_app = typer.Typer(no_args_is_help=True, help="Run a local EVM dev chain (anvil).")


@chain_app.command("up")
def chain_up(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8545,
    detach: Annotated[
        bool, typer.Option(help="Return and leave the chain running (stop: `datanet chain down`).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start a local dev chain (anvil, chain id 31337, 20 funded dev accounts)."""
    s = settings(ctx)
    if detach:  # one detached chain per data dir: a second pid file would orphan the first chain
        refuse_if_kept(s.data_dir, "start a second one")
    chain = DevChain(DevChainConfig(port=port))
    s.data_dir.mkdir(parents=True, exist_ok=True)
    chain.start(log_path=s.data_dir / "anvil.log")
    try:
        pidfile = write_pidfile(s.data_dir, chain) if detach else None
    except BaseException:
        chain.stop()  # never a detached chain without its record
        raise
    if json_out:
        print_json({"rpc_url": chain.rpc_url, "chain_id": DEV_CHAIN_ID, "pid": chain.pid, "detached": detach,
                    "pidfile": str(pidfile) if pidfile else None})  # fmt: skip
    if detach:
        if not json_out:
            console.print(
                f"dev chain running at [bold]{chain.rpc_url}[/] (pid {chain.pid}, {pidfile}); "
                "stop it with `datanet chain down`"
            )
        return
    if not json_out:
        console.print(f"dev chain running at [bold]{chain.rpc_url}[/]; Ctrl-C stops it")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        chain.stop()


@chain_app.command("down")
def chain_down(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Stop a dev chain left running by `chain up --detach` or `demo --keep` (and wait until its port is free)."""
    s = settings(ctx)
    stale = (s.data_dir / PIDFILE).exists()
    kept = stop_kept_chain(s.data_dir)
    from node.demo.serving import stop_kept

    server = stop_kept(s.data_dir)  # `demo --keep`'s server serves this chain: it goes with it
    if server is not None and not json_out:
        console.print(f"stopped the server at {server}")
    if json_out:
        print_json({"stopped": kept is not None, "rpc_url": kept.rpc_url if kept else None})
        return
    if kept is not None:
        console.print(f"stopped the dev chain at {kept.rpc_url} (pid {kept.pid})")
    else:
        console.print("no detached dev chain to stop" + (" (the one recorded had already exited)" if stale else ""))


def deploy_cmd(
    ctx: typer.Context,
    min_node_stake: Annotated[str, typer.Option(help="OPEN a node must stake to claim jobs (e.g. 1000).")] = "1000",
    fund_dev_accounts: Annotated[
        bool | None,
        typer.Option(help="Give dev accounts 1..9 OPEN (default: on for the dev chain 31337; never elsewhere)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing deployment file (always done on the dev chain).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Deploy the protocol contracts and write deployments/<network>.json (an existing file only
    with --force, except on the dev chain 31337, whose contracts vanish when it stops)."""
    s = settings(ctx)
    min_stake_units = parse_open(min_node_stake, "--min-node-stake", allow_zero=True)
    reader = ChainClient.from_settings(s)
    with err_console.status(f"connecting to the chain at {s.rpc_url}..."):
        reader.check_reachable()
        chain_id = reader.chain_id
    _refuse_overwrite(s.deployment_file(), chain_id, force)
    account, source = signer(s, chain_id)
    err_console.print(f"deploying from {account.address} ({source}) to {s.rpc_url}")
    client = ChainClient.from_settings(s, account)
    config = DeployConfig.for_chain(
        chain_id,
        min_node_stake=min_stake_units,
        fund_dev_accounts=chain_id == DEV_CHAIN_ID if fund_dev_accounts is None else fund_dev_accounts,
    )
    dep = deploy(client, s.network, config)
    path = save_deployment(dep, s.deployment_file())
    funded = dev_funding(config)
    if json_out:
        print_json(jsonable(dep) | {"dev_funding": funded})
        return
    table = Table("contract", "address", title=f"deployed to chain {dep.chain_id} ({path})")
    for name, addr in dep.contracts.items():
        table.add_row(name, addr)
    console.print(table)
    if funded:
        console.print(f"dev accounts 1..9 got {fmt_open(config.dev_account_funding)} each: {', '.join(funded)}")


def _refuse_overwrite(path: Path, chain_id: int, force: bool) -> None:
    """A deployment file names the contracts every node and user of a network talks to: replacing
    it by mistake strands them (the old contracts keep their stakes and jobs). The dev chain's is
    replaced freely: its contracts are gone once it stops."""
    if chain_id == DEV_CHAIN_ID or force or not path.exists():
        return
    raise DeploymentError(
        f"{path} already exists; deploying again on chain {chain_id} would replace the contract addresses everyone "
        "using it reads. Pass --force to replace it, or choose another file with --network NAME."
    )
