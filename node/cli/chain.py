"""`datanet chain` and `datanet deploy`: run a dev chain, deploy the protocol."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.chain.client import ChainClient
from node.chain.deploy import DeployConfig, deploy, dev_funding, fmt_open, save_deployment
from node.chain.devchain import DEV_CHAIN_ID, DevChain, DevChainConfig
from node.cli.common import JsonOpt, console, err_console, print_json, settings, signer
from node.demo.run import stop_chain_from_pidfile, write_chain_pidfile
from node.errors import ChainError

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
    if detach:
        _refuse_second_detached(s.data_dir)
    chain = DevChain(DevChainConfig(port=port))
    s.data_dir.mkdir(parents=True, exist_ok=True)
    chain.start(log_path=s.data_dir / "anvil.log")
    pidfile = write_chain_pidfile(s.data_dir, chain) if detach else None
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


def _refuse_second_detached(data_dir: Path) -> None:
    """One detached chain per data dir: a second would overwrite the pid file and orphan the first."""
    path = data_dir / "devchain.json"
    if not path.exists():
        return
    info = json.loads(path.read_text())
    try:
        os.killpg(int(info["pid"]), 0)
    except ProcessLookupError:
        return  # left over from a chain that is gone; `write_chain_pidfile` replaces it
    except PermissionError:
        pass
    raise ChainError(
        f"A detached dev chain already runs at {info['rpc_url']} (pid {info['pid']}, {path}). "
        "Use it, or stop it first with `datanet chain down`."
    )


@chain_app.command("down")
def chain_down(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Stop a dev chain left running by `chain up --detach` or `demo --keep`."""
    url = stop_chain_from_pidfile(settings(ctx).data_dir)
    if json_out:
        print_json({"stopped": url is not None, "rpc_url": url})
        return
    console.print(f"stopped the dev chain at {url}" if url else "no detached dev chain to stop")


def deploy_cmd(
    ctx: typer.Context,
    min_node_stake: Annotated[float, typer.Option(help="OPEN a node must stake to claim jobs.")] = 1000.0,
    fund_dev_accounts: Annotated[
        bool | None,
        typer.Option(help="Give dev accounts 1..9 OPEN (default: on for the dev chain 31337; never elsewhere)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Deploy the protocol contracts and write deployments/<network>.json."""
    s = settings(ctx)
    chain_id = ChainClient.from_settings(s).chain_id
    account, source = signer(s, chain_id)
    err_console.print(f"deploying from {account.address} ({source}) to {s.rpc_url}")
    client = ChainClient.from_settings(s, account)
    config = DeployConfig(
        min_node_stake=int(min_node_stake * 10**18),
        fund_dev_accounts=chain_id == DEV_CHAIN_ID if fund_dev_accounts is None else fund_dev_accounts,
    )
    dep = deploy(client, s.network, config)
    path = save_deployment(dep, s.deployment_file())
    funded = dev_funding(config)
    if json_out:
        print_json(dep.model_dump(mode="json") | {"dev_funding": funded})
        return
    table = Table("contract", "address", title=f"deployed to chain {dep.chain_id} ({path})")
    for name, addr in dep.contracts.items():
        table.add_row(name, addr)
    console.print(table)
    if funded:
        console.print(f"dev accounts 1..9 got {fmt_open(config.dev_account_funding)} each: {', '.join(funded)}")
