"""Shared pieces of the `datanet` sub-commands: console, settings, JSON output, protocol access."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from node.chain.accounts import resolve_account
from node.chain.client import ChainClient
from node.chain.deploy import load_deployment
from node.chain.protocol import Protocol
from node.config import Settings

# Wide enough for CIDs and tx hashes on one line when piped (rich defaults to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# The ids positional arguments take, each with where to find one.
JobIdArg = Annotated[int, typer.Argument(help="Job id (`datanet job list`).", show_default=False)]
ModelIdArg = Annotated[int, typer.Argument(help="Model id (`datanet model list`).", show_default=False)]
DatanetIdArg = Annotated[int, typer.Argument(help="Datanet id (`datanet net list`).", show_default=False)]
ContributionIdArg = Annotated[
    int, typer.Argument(help="Contribution id (`datanet curate list --datanet N`).", show_default=False)
]
CaseIdArg = Annotated[int, typer.Argument(help="Case id: the id of the challenge referred to the court.")]


_TYPE_NAMES = {"int": "INTEGER", "str": "TEXT", "float": "NUMBER", "Path": "PATH", "path": "PATH", "file": "FILE",
               "directory": "DIR", "bool": "BOOLEAN"}  # fmt: skip
_typer_display_type = typer.core._TyperParameter.display_type


def _display_type(param: Any, ctx: Any) -> str:
    """The value column of `--help` without Python's spelling of types: typer 0.29 prints
    `<list[Path]>`, `<int>`, and `<bool>` after every flag; here `PATH...`, `INTEGER`, nothing."""
    if getattr(param, "is_flag", False):
        return ""  # a flag takes no value
    shown = _typer_display_type(param, ctx)
    if not (shown.startswith("<") and shown.endswith(">")):
        return shown  # a metavar the command chose
    label = shown[1:-1]
    if label.startswith("list[") and label.endswith("]"):  # a repeatable option or a FILES... argument
        label = label[5:-1]
    return " ".join(_TYPE_NAMES.get(w, w) for w in label.split(" "))  # "int range" -> "INTEGER range"


typer.core._TyperParameter.display_type = _display_type  # type: ignore[method-assign,assignment]

GLOBAL_VALUE_OPTIONS = ("--rpc-url", "--network", "--wallet")
GLOBAL_FLAGS = ("-v", "--verbose")


def hoist_global_options(args: list[str]) -> list[str]:
    """`args` with the root's options moved before the command, wherever they were given, and a
    `--json` given before the command moved after it, so `datanet job list --rpc-url URL --json`,
    `datanet --json job list` and `datanet --rpc-url URL job list --json` all mean the same (as with
    `gh` and `cast`). Nothing after a `--` is touched."""
    front: list[str] = []
    rest: list[str] = []
    early_json = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUE_OPTIONS:
            taken = 1 if "=" in arg else 2
            front.extend(args[i : i + taken])
            i += taken
            continue
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg == "--json" and not any(not a.startswith("-") for a in rest):
            early_json = True  # before the command name: the command takes it
        else:
            rest.append(arg)
        i += 1
    if early_json:
        cut = rest.index("--") if "--" in rest else len(rest)
        rest.insert(cut, "--json")
    return front + rest


class GlobalOptionsGroup(TyperGroup):
    """The root command group: takes its options (`--rpc-url`, `--network`, `--wallet`, `-v`)
    before or after any sub-command, and `--json` before one (`hoist_global_options`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: typer vendors its own click
        return super().parse_args(ctx, hoist_global_options(args))


class State(BaseModel):
    """What the root callback resolves once for every sub-command."""

    settings: Settings


def settings(ctx: typer.Context) -> Settings:
    state: State = ctx.find_root().obj
    return state.settings


def print_json(data: Any) -> None:
    """Writes `data` (pydantic models, lists of them, plain values) as JSON to stdout (`jsonable`)."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, default=_json_default) + "\n")


def jsonable(data: Any) -> Any:
    """`data` (pydantic models, dicts and lists of them, plain values) as JSON values, the way every
    `--json` prints them: a status, method or other on-chain enum by its lower-case name ("open",
    "lora"), as the tables print it, never its number; the rest as pydantic's JSON mode has it."""
    if isinstance(data, BaseModel):
        return _enum_names(data.model_dump(mode="python"), data.model_dump(mode="json"))
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [jsonable(v) for v in data]
    if isinstance(data, Enum) and isinstance(data.value, int):
        return data.name.lower()
    return data


def _enum_names(py: Any, js: Any) -> Any:
    """The JSON dump `js` with each int enum of the Python dump `py` (same shape) as its name."""
    if isinstance(py, Enum) and isinstance(py.value, int):
        return py.name.lower()
    if isinstance(py, dict) and isinstance(js, dict):
        return {k: _enum_names(py[k], v) if k in py else v for k, v in js.items()}
    if isinstance(py, list | tuple) and isinstance(js, list) and len(py) == len(js):
        return [_enum_names(a, b) for a, b in zip(py, js, strict=True)]
    return js


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return "0x" + o.hex()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def progress_bar(what: str, total: int | None = None) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar (bytes; a spinner until a total is known) on stderr while the block runs,
    gone after it; nothing at all when stderr is not a terminal. Yields `update(done, total)`."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(what, total=total)

        def update(done: int, total: int | None = None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def read_protocol(ctx: typer.Context) -> Protocol:
    """A read-only view of the deployed protocol (no signing key needed)."""
    s = settings(ctx)
    deployment = load_deployment(s.deployment_file())
    rpc = s.rpc_url if "rpc_url" in s.model_fields_set else deployment.rpc_url
    client = ChainClient(rpc, timeout=s.rpc_timeout, retries=s.rpc_retries)
    with err_console.status(f"connecting to the chain at {rpc} (deployment '{deployment.network}')..."):
        client.check_reachable()
        return Protocol(client, deployment)


def signer(s: Settings, chain_id: int) -> tuple[LocalAccount, str]:
    """The configured signing account (keystore, env key, or the dev account on a dev chain)."""
    return resolve_account(
        s.keystore,
        s.keystore_password.get_secret_value() if s.keystore_password else None,
        s.private_key.get_secret_value() if s.private_key else None,
        chain_id,
    )


def write_protocol(ctx: typer.Context) -> Protocol:
    """The deployed protocol bound to the configured signing account."""
    reader = read_protocol(ctx)
    account, source = signer(settings(ctx), reader.chain_id)
    err_console.print(f"[dim]signing as {account.address} ({source})[/]")
    return reader.as_account(account)
