"""The `datanet` command: a thin shell over the node's modules, one sub-module per area, and one
command tree grouped by role (below: contributors, curators, posters, nodes, everyone, setup).

Every command that shows data takes `--json` (machine-readable, stable keys). Errors from the
node print one clear line (what went wrong, how to fix it) and exit with status 1.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import typer
from rich.logging import RichHandler
from rich.markup import escape

from node.cli import (
    chain,
    contribute,
    court,
    datanets,
    demo,
    disputes,
    escrow,
    evalset,
    keys,
    operator,
    params,
    poster,
    rewards,
    store,
    verify,
    views,
    wallet,
)
from node.cli import daemon as daemon_cli
from node.cli import serve as serve_cli
from node.cli.common import GlobalOptionsGroup, State, err_console
from node.cli.wallet import wallet_path
from node.config import load_settings
from node.errors import NodeError

# cls: the root's options (and --json) work before or after any sub-command, as with `gh` and `cast`.
app = typer.Typer(
    cls=GlobalOptionsGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Datanet Node: data, models and rewards on-chain.",
)

# The command tree, grouped by role (each group is one `rich_help_panel` of `datanet --help`).
# To add a command, register it in its role's block (e.g. `verify` in EVERYONE, from node/cli/verify.py).
CONTRIBUTORS = "Contributors"
CURATORS = "Datanet owners and curators"
POSTERS = "Job posters"
NODES = "Training nodes"
EVERYONE = "Everyone: read and verify"
SETUP = "Setup: wallets, storage, dev chain"
SERVING = "Serving: the API and the web app"

# Contributors: submit data, follow it, get paid.
app.command("contribute", rich_help_panel=CONTRIBUTORS)(contribute.contribute_cmd)
app.add_typer(contribute.contributions_app, name="contributions", rich_help_panel=CONTRIBUTORS)
app.command("rewards", rich_help_panel=CONTRIBUTORS)(rewards.rewards_cmd)
app.command("claim", rich_help_panel=CONTRIBUTORS)(rewards.claim_cmd)

# Datanet owners and curators: create Datanets, decide on contributions, hand out keys.
app.add_typer(datanets.datanet_app, name="net", rich_help_panel=CURATORS)
app.add_typer(contribute.curate_app, name="curate", rich_help_panel=CURATORS)
app.add_typer(keys.keys_app, name="keys", rich_help_panel=CURATORS)
app.command("grant", rich_help_panel=CURATORS)(keys.grant_cmd)

# Job posters (and anyone, for expire/sweep): jobs on-chain.
app.add_typer(views.job_app, name="job", rich_help_panel=POSTERS)
views.job_app.command("post")(poster.job_post)
views.job_app.command("reveal-eval")(evalset.reveal_eval_cmd)
views.job_app.command("cancel")(poster.job_cancel)
views.job_app.command("expire")(poster.job_expire)
views.job_app.command("reopen")(poster.job_reopen)
views.job_app.command("sweep")(poster.job_sweep)

# Training nodes: stake, run the daemon, see and retry this node's jobs (its local store).
app.add_typer(operator.node_app, name="node", rich_help_panel=NODES)
operator.node_app.command("jobs")(daemon_cli.jobs_cmd)
operator.node_app.command("retry")(daemon_cli.retry_cmd)
operator.node_app.command("pause")(daemon_cli.pause_cmd)
operator.node_app.command("resume")(daemon_cli.resume_cmd)
app.command("daemon", rich_help_panel=NODES)(daemon_cli.daemon_cmd)

# Everyone: the chain's state and the model registry.
app.command("status", rich_help_panel=EVERYONE)(views.status_cmd)
app.command("verify", rich_help_panel=EVERYONE)(verify.verify_cmd)
app.command("challenge", rich_help_panel=EVERYONE)(disputes.challenge_cmd)
app.command("finalize", rich_help_panel=EVERYONE)(disputes.finalize_cmd)
app.add_typer(court.case_app, name="case", rich_help_panel=EVERYONE)
app.add_typer(court.verifier_app, name="verifier", rich_help_panel=EVERYONE)
app.add_typer(views.model_app, name="model", rich_help_panel=EVERYONE)
views.model_app.command("list")(daemon_cli.models_cmd)

# Serving: the OpenAI-compatible API, the ModelFactory pages, their keys.
app.command("serve", rich_help_panel=SERVING)(serve_cli.serve_cmd)
app.add_typer(serve_cli.api_key_app, name="api-key", rich_help_panel=SERVING)
app.add_typer(serve_cli.responses_app, name="responses", rich_help_panel=SERVING)
app.command("export", rich_help_panel=SERVING)(serve_cli.export_cmd)
app.add_typer(serve_cli.epoch_app, name="epoch", rich_help_panel=SERVING)
app.add_typer(escrow.escrow_app, name="escrow", rich_help_panel=SERVING)  # API users prepay inference fees

# Setup.
app.add_typer(wallet.wallet_app, name="wallet", rich_help_panel=SETUP)
app.add_typer(store.store_app, name="store", rich_help_panel=SETUP)
app.add_typer(chain.chain_app, name="chain", rich_help_panel=SETUP)
app.command("deploy", rich_help_panel=SETUP)(chain.deploy_cmd)
app.add_typer(params.params_app, name="params", rich_help_panel=SETUP)
app.command("demo", rich_help_panel=SETUP)(demo.demo_cmd)

# Old spellings, hidden from --help, kept so scripts and muscle memory keep working.
app.add_typer(datanets.datanet_app, name="datanet", hidden=True)  # now `datanet net ...`
app.command("jobs", hidden=True)(daemon_cli.jobs_cmd)  # now `datanet node jobs` (`--retry N`: `node retry N`)
app.command("models", hidden=True)(daemon_cli.models_cmd)  # now `datanet model list`


def _version(value: bool) -> None:
    if value:
        try:
            v = version("datanet-node")
        except PackageNotFoundError:  # running from a source tree that was never installed
            v = "unknown (not installed; `pip install -e .`)"
        typer.echo(f"datanet {v}")
        raise typer.Exit()


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
    _show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
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
    settings = load_settings(**overrides)
    if wallet:
        settings = settings.model_copy(update={"keystore": wallet_path(settings, wallet)})
    ctx.obj = State(settings=settings)


def main() -> None:
    """Console entry point: runs the app. An error the user can fix (every `NodeError`) prints one
    line, what was wrong and how to fix it, and exits with status 1; anything else is a bug or a
    case not handled yet, said as much in one line. `-v`/`--verbose` adds the traceback."""
    argv = sys.argv[1:]
    verbose = "-v" in argv or "--verbose" in argv
    try:
        app(args=argv)
    except NodeError as e:
        _fail(str(e), verbose)
    except Exception as e:
        _fail(f"unexpected {type(e).__name__}: {e} (a bug, or a case datanet does not handle yet; "
              "`datanet -v ...` shows the traceback to report)", verbose)  # fmt: skip


def _fail(message: str, verbose: bool) -> NoReturn:
    if verbose:
        err_console.print_exception()
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)  # one line, however narrow
    raise SystemExit(1) from None
