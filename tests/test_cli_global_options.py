"""The root's options (`--rpc-url`, `--network`, `--wallet`, `-v`) work before or after any
sub-command, and `--json` before one too, as with `gh` and `cast`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.deploy import save_deployment
from node.cli import app
from node.cli.common import hoist_global_options
from tests.conftest import CONTRIBUTORS, World


def test_hoisting_leaves_command_arguments_alone() -> None:
    assert hoist_global_options(["job", "show", "3", "--rpc-url", "U", "-v"]) == ["--rpc-url", "U", "-v", "job",
                                                                                   "show", "3"]  # fmt: skip
    assert hoist_global_options(["--json", "--network=n", "status"]) == ["--network=n", "status", "--json"]
    assert hoist_global_options(["store", "add", "--", "--wallet"]) == ["store", "add", "--", "--wallet"]


def test_global_options_anywhere(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_deployment(world.deployment, tmp_path / "deployments" / "mynet.json")
    save_keystore(dev_account(CONTRIBUTORS[0]), tmp_path / ".datanet" / "keystores" / "alice.json", "pw")
    env = {"DATANET_KEYSTORE_PASSWORD": "pw", "DATANET_NETWORK": "nowhere", "DATANET_RPC_URL": "http://127.0.0.1:9"}
    runner = CliRunner()

    def out(*args: str) -> object:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return json.loads(result.stdout)

    where = ["--network", "mynet", "--rpc-url", world.rpc_url]
    before = out(*where, "status", "--json")
    assert out("status", "--json", *where) == before
    assert out("--json", "status", *where) == before
    assert out("status", *where[:2], "--json", "-v", *where[2:]) == before
    alice = dev_account(CONTRIBUTORS[0]).address
    assert out("node", "show", "--json", "--wallet", "alice", *where)["node"] == alice  # type: ignore[index]
    assert out("--wallet", "alice", "--json", "node", "show", *where)["node"] == alice  # type: ignore[index]
