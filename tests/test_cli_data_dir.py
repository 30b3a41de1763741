"""Where state lives: DATANET_DATA_DIR if set, else a `.datanet/` in the current directory if it
exists (a checkout's, the demo's), else the user's data directory ($XDG_DATA_HOME/datanet)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.config import LOCAL_DATA_DIR, Settings


def test_the_data_dir_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATANET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().data_dir == tmp_path / "xdg" / "datanet"  # from anywhere, the user's directory
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "datanet"
    (tmp_path / ".datanet").mkdir()
    assert Settings().data_dir == LOCAL_DATA_DIR  # a checkout's own state wins
    monkeypatch.setenv("DATANET_DATA_DIR", str(tmp_path / "chosen"))
    assert Settings().data_dir == tmp_path / "chosen"


def test_a_wallet_made_anywhere_lands_in_the_user_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "somewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("DATANET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw")
    made = CliRunner().invoke(app, ["wallet", "new", "--name", "op", "--json"])
    assert made.exit_code == 0, made.output
    assert Path(json.loads(made.stdout)["path"]).resolve() == tmp_path / "xdg" / "datanet" / "keystores" / "op.json"
    assert not (work / ".datanet").exists()
