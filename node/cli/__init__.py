"""The `datanet` command: a thin shell over the node's modules, one sub-module per area.

Every command that shows data takes `--json` (machine-readable, stable keys). Errors from the
node print one clear line (what went wrong, how to fix it) and exit with status 1.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

from node.cli import chain, contribute, datanets, demo, keys, operator, poster, store, views, wallet
from node.cli import daemon as daemon_cli
from node.cli.common import State, err_console
from node.cli.wallet import wallet_path
from node.config import Settings
from node.errors import NodeError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Datanet Node: data, models and rewards on-chain.")
app.add_typer(chain.chain_app, name="chain")
app.add_typer(wallet.wallet_app, name="wallet")
app.add_typer(store.store_app, name="store")
app.command("contribute")(contribute.contribute_cmd)
app.command("contributions")(contribute.contributions_cmd)
app.add_typer(contribute.curate_app, name="curate")
app.command("deploy")(chain.deploy_cmd)
app.command("demo")(demo.demo_cmd)
app.command("status")(views.status_cmd)
app.add_typer(datanets.datanet_app, name="datanet")
app.add_typer(keys.keys_app, name="keys")
app.command("grant")(keys.grant_cmd)
app.add_typer(views.job_app, name="job")
views.job_app.command("post")(poster.job_post)
views.job_app.command("cancel")(poster.job_cancel)
app.add_typer(operator.node_app, name="node")
app.add_typer(views.model_app, name="model")
app.command("daemon")(daemon_cli.daemon_cmd)
app.command("jobs")(daemon_cli.jobs_cmd)
app.command("models")(daemon_cli.models_cmd)


@app.callback()
def _root(
    ctx: typer.Context,
    rpc_url: Annotated[
        str | None, typer.Option(help="JSON-RPC URL (default: the deployment's, else 127.0.0.1:8545).")
    ] = None,
    network: Annotated[str | None, typer.Option(help="Deployment name: deployments/<network>.json.")] = None,
    wallet: Annotated[
        str | None, typer.Option(help="Sign with this wallet (a keystore made by `datanet wallet`).")
    ] = None,
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
    settings = Settings(**overrides)
    if wallet:
        settings = settings.model_copy(update={"keystore": wallet_path(settings, wallet)})
    ctx.obj = State(settings=settings)


def main() -> None:
    """Console entry point: runs the app, turning node errors into one readable line."""
    try:
        app()
    except NodeError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise SystemExit(1) from None
