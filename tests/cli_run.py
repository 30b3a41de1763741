"""Runs `datanet ...` in-process against the test chain as one dev account (for CLI tests)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from node.chain.accounts import dev_account
from node.chain.deploy import save_deployment
from node.cli import app
from tests.conftest import DEPLOYER, World


def run_cli(world: World, tmp_path: Path, *args: str, key: int = DEPLOYER) -> tuple[int, str]:
    """(exit code, stdout plus the exception's message if any) of `datanet *args` signed by dev account `key`."""
    save_deployment(world.deployment, tmp_path / "deployments" / "test.json")
    env = {"DATANET_RPC_URL": world.rpc_url, "DATANET_NETWORK": "test", "DATANET_DATA_DIR": str(tmp_path / ".d"),
           "DATANET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
           "DATANET_PRIVATE_KEY": dev_account(key).key.hex()}  # fmt: skip
    out = CliRunner().invoke(app, list(args), env=env)
    return out.exit_code, out.stdout + (str(out.exception) if out.exception else "")
