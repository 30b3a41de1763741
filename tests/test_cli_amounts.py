"""OPEN amounts are exact decimals everywhere (`--stake`, `--min-stake`, `--min-node-stake`, `--pool`,
`DATANET_MIN_POOL`): never a float times 10**18 (`int(1.1 * 10**18)` is 1100000000000000128)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.chain.deploy import OPEN
from node.chain.units import parse_open
from node.config import load_settings
from node.errors import ConfigError, InputError
from tests.cli_run import run_cli
from tests.conftest import World


def test_parse_open_is_exact() -> None:
    assert parse_open("1.1", "--stake") == 11 * OPEN // 10
    assert parse_open("0.000000000000000001", "--stake") == 1
    assert parse_open("0", "--min-stake", allow_zero=True) == 0
    for bad, why in (("1.0000000000000000001", "more than 18 decimal places"), ("abc", "not a number"),
                     ("-1", "positive"), ("0", "positive"), ("inf", "positive")):  # fmt: skip
        with pytest.raises(InputError, match=why):
            parse_open(bad, "--stake")


def test_min_pool_is_in_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATANET_MIN_POOL", "1.1")
    assert load_settings().min_pool_units == 11 * OPEN // 10
    monkeypatch.setenv("DATANET_MIN_POOL", "0.0000000000000000001")
    with pytest.raises(ConfigError, match="DATANET_MIN_POOL"):
        load_settings()


def test_min_stake_and_stake_flags_are_exact(world: World, tmp_path: Path) -> None:
    code, out = run_cli(world, tmp_path, "net", "create", "--name", "exact", "--min-stake", "1.1", "--json")
    assert code == 0, out
    datanet_id = json.loads(out)["datanet_id"]
    code, out = run_cli(world, tmp_path, "net", "show", str(datanet_id), "--json")
    assert json.loads(out)["datanet"]["minStake"] == 11 * OPEN // 10, out  # was 1100000000000000128
    code, out = run_cli(world, tmp_path, "contribute", "x.jsonl", "--datanet", str(datanet_id), "--stake", "1e-19")
    assert code == 1 and "--stake '1e-19' has more than 18 decimal places" in out, out
