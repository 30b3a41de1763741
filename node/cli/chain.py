"""`datanet chain` and `datanet deploy`: run a dev chain, deploy the protocol."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from node.chain.client import ChainClient
from node.chain.deploy import DeployConfig, deploy, save_deployment
from node.chain.devchain import DevChain, DevChainConfig
from node.cli.common import JsonOpt, console, err_console, print_json, settings, signer
from node.demo.run import stop_chain_from_pidfile, write_chain_pidfile

chain_app = typer.Typer(no_args_is_help=True, help="Run a local EVM dev chain (anvil).")


@chain_app.command("up")
def chain_up(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8545,
    detach: Annotated[
        bool, typer.Option(help="Return and leave the chain running (stop: `datanet chain down`).")
    ] = False,
) -> None:
    """Start a local dev chain (anvil, chain id 31337, 20 funded dev accounts)."""
    s = settings(ctx)
    chain = DevChain(DevChainConfig(port=port))
    s.data_dir.mkdir(parents=True, exist_ok=True)
    chain.start(log_path=s.data_dir / "anvil.log")
    if detach:
        pidfile = write_chain_pidfile(s.data_dir, chain)
        console.print(
            f"dev chain running at [bold]{chain.rpc_url}[/] (pid {chain.pid}, {pidfile}); "
            "stop it with `datanet chain down`"
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
    url = stop_chain_from_pidfile(settings(ctx).data_dir)
    console.print(f"stopped the dev chain at {url}" if url else "no detached dev chain to stop")


def deploy_cmd(
    ctx: typer.Context,
    min_node_stake: Annotated[float, typer.Option(help="OPEN a node must stake to claim jobs.")] = 1000.0,
    json_out: JsonOpt = False,
) -> None:
    """Deploy the protocol contracts and write deployments/<network>.json."""
    s = settings(ctx)
    account, source = signer(s, ChainClient.from_settings(s).chain_id)
    err_console.print(f"deploying from {account.address} ({source}) to {s.rpc_url}")
    client = ChainClient.from_settings(s, account)
    dep = deploy(client, s.network, DeployConfig(min_node_stake=int(min_node_stake * 10**18)))
    path = save_deployment(dep, s.deployment_file())
    if json_out:
        print_json(dep)
        return
    table = Table("contract", "address", title=f"deployed to chain {dep.chain_id} ({path})")
    for name, addr in dep.contracts.items():
        table.add_row(name, addr)
    console.print(table)
