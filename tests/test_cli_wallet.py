"""`datanet wallet`: keystores are encrypted, listed without decryption, and usable to sign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from node.cli import app
from tests.conftest import World

runner = CliRunner()


def _run(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".datanet").mkdir()  # a checkout's own state directory: used because it exists
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw-for-tests")
    return tmp_path


def test_new_import_list(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created = json.loads(_run(["wallet", "new", "--name", "alice", "--json"]))
    keystore = in_tmp / ".datanet" / "keystores" / "alice.json"
    assert created["path"] == str(Path(".datanet/keystores/alice.json"))
    assert json.loads(keystore.read_text())["crypto"]["kdf"] == "scrypt"

    imported_acct = Account.create()
    monkeypatch.setenv("DATANET_IMPORT_PRIVATE_KEY", imported_acct.key.hex())
    out = _run(["wallet", "import", "--name", "bob"])
    assert imported_acct.address in out and imported_acct.key.hex()[2:] not in out

    listed = json.loads(_run(["wallet", "list", "--json"]))
    assert [(w["name"], w["address"]) for w in listed] == [
        ("alice", created["address"]),
        ("bob", imported_acct.address),
    ]


def test_existing_name_and_bad_name_refused(in_tmp: Path) -> None:
    _run(["wallet", "new", "--name", "carol"])
    before = (in_tmp / ".datanet" / "keystores" / "carol.json").read_text()
    again = runner.invoke(app, ["wallet", "new", "--name", "carol"])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    assert (in_tmp / ".datanet" / "keystores" / "carol.json").read_text() == before  # nothing lost
    bad = runner.invoke(app, ["wallet", "new", "--name", "no spaces!"])
    assert bad.exit_code != 0 and "invalid" in str(bad.exception)


def test_wallet_signs_transactions(world: World, in_tmp: Path) -> None:
    """`--wallet NAME` makes write commands sign with that keystore."""
    info = json.loads(_run(["wallet", "new", "--name", "ops", "--json"]))
    world.admin.client.send_value(info["address"], 10**18)
    _run(["--rpc-url", world.rpc_url, "--network", "w", "--wallet", "ops", "deploy", "--json"])
    dep = json.loads((in_tmp / "deployments" / "w.json").read_text())
    assert dep["deployer"] == info["address"]
