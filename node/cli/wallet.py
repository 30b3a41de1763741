"""`datanet wallet`: encrypted JSON keystores for contributors, curators and node operators.

Passwords come from a hidden prompt or DATANET_KEYSTORE_PASSWORD; keys are never printed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import BaseModel
from rich.table import Table
from web3 import Web3

from node.chain.accounts import from_private_key, load_keystore, save_keystore
from node.cli.common import JsonOpt, console, print_json, settings
from node.config import Settings
from node.errors import KeystoreError

wallet_app = typer.Typer(no_args_is_help=True, help="Create, import and list encrypted wallets.")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class WalletInfo(BaseModel):
    name: str
    address: str
    path: str


def wallet_path(s: Settings, name: str) -> Path:
    """The keystore file of wallet `name` (a name, or a path to any keystore file)."""
    if "/" in name or name.endswith(".json"):
        return Path(name)
    if not _NAME.match(name):
        raise KeystoreError(f"Wallet name {name!r} is invalid: use letters, digits, '.', '_' or '-'.")
    return s.keystore_dir / f"{name}.json"


def _new_password(s: Settings) -> str:
    if s.keystore_password is not None:
        return s.keystore_password.get_secret_value()
    first = getpass.getpass("New wallet password: ")
    if first != getpass.getpass("Repeat the password: "):
        raise KeystoreError("The two passwords differ; nothing was written.")
    return first


def _store(s: Settings, name: str, account: LocalAccount) -> WalletInfo:
    path = wallet_path(s, name)
    if path.exists():
        raise KeystoreError(f"Wallet {name!r} already exists at {path}; choose another --name.")
    save_keystore(account, path, _new_password(s))
    return WalletInfo(name=name, address=account.address, path=str(path))


@wallet_app.command("new")
def wallet_new(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Wallet name (file name of its keystore).")] = "default",
    json_out: JsonOpt = False,
) -> None:
    """Create a fresh account and save it encrypted."""
    info = _store(settings(ctx), name, Account.create())
    print_json(info) if json_out else console.print(f"created wallet {info.name}: {info.address} ({info.path})")


@wallet_app.command("import")
def wallet_import(
    ctx: typer.Context,
    keystore: Annotated[
        Path | None, typer.Argument(help="An existing keystore JSON to import (else a private key is asked).")
    ] = None,
    name: Annotated[str, typer.Option(help="Wallet name for the imported account.")] = "default",
    json_out: JsonOpt = False,
) -> None:
    """Import a private key (hidden prompt, or DATANET_IMPORT_PRIVATE_KEY) or a keystore file."""
    s = settings(ctx)
    if keystore is not None:
        password = (
            s.keystore_password.get_secret_value()
            if s.keystore_password
            else getpass.getpass(f"Password of {keystore}: ")
        )
        account = load_keystore(keystore, password)
    else:
        key = os.environ.get("DATANET_IMPORT_PRIVATE_KEY") or getpass.getpass("Private key (hex): ")
        account = from_private_key(key.strip())
    info = _store(s, name, account)
    print_json(info) if json_out else console.print(f"imported wallet {info.name}: {info.address}")


@wallet_app.command("list")
def wallet_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Wallets in the keystore directory (addresses only; nothing is decrypted)."""
    s = settings(ctx)
    items = []
    for path in sorted(s.keystore_dir.glob("*.json")):
        try:
            address = json.loads(path.read_text())["address"]
        except (ValueError, KeyError):
            continue  # not a keystore
        checksummed = Web3.to_checksum_address("0x" + address.removeprefix("0x"))
        items.append(WalletInfo(name=path.stem, address=checksummed, path=str(path)))
    if json_out:
        print_json(items)
        return
    if not items:
        console.print(f"no wallets in {s.keystore_dir}; create one with `datanet wallet new`")
        return
    table = Table("name", "address", "keystore")
    for w in items:
        table.add_row(w.name, w.address, w.path)
    console.print(table)
