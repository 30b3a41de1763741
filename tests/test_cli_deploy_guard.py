"""`datanet deploy` never silently replaces a deployment file, except the dev chain's (31337),
whose contracts vanish when it stops (the demo and `chain up` + `deploy` redeploy freely)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.devchain import DEV_CHAIN_ID
from node.cli import app
from node.cli.chain import _refuse_overwrite
from node.errors import DeploymentError


def test_an_existing_file_is_replaced_only_with_force_off_the_dev_chain(tmp_path: Path) -> None:
    path = tmp_path / "mainnet.json"
    _refuse_overwrite(path, 1, force=False)  # nothing there yet
    path.write_text("{}")
    with pytest.raises(DeploymentError, match=r"already exists.*--force"):
        _refuse_overwrite(path, 1, force=False)
    _refuse_overwrite(path, 1, force=True)
    _refuse_overwrite(path, DEV_CHAIN_ID, force=False)


def test_deploy_offers_force() -> None:
    assert "--force" in CliRunner().invoke(app, ["deploy", "--help"], env={"COLUMNS": "200"}).stdout
