"""What a new user gets wrong prints one line, what was wrong and how to fix it, from `datanet`
itself (`main()`, run in a subprocess as a user runs it): never a traceback, unless `-v` asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.deploy import save_deployment
from node.cli import app
from node.errors import InputError
from node.storage import unixfs
from tests.conftest import World


def datanet(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`datanet *args` in `tmp_path` with its own data dir; COLUMNS wide, so rich wraps nothing."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DATANET_")}
    full_env |= {"COLUMNS": "200", "DATANET_DATA_DIR": str(tmp_path / ".d"),
                 "DATANET_RPC_URL": "http://127.0.0.1:9", "DATANET_RPC_RETRIES": "0"} | env  # fmt: skip
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def one_line_error(run: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "╭─" not in run.stderr, run.stderr
    [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert all(e in line for e in expected), line
    return line


def _cidv0(cid: str) -> str:
    """The CIDv0 ("Qm...") of a dag-pb CIDv1: base58btc of its multihash."""
    _, digest = unixfs.parse_cid(cid)
    n, out = int.from_bytes(bytes([0x12, 32]) + digest, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = unixfs._B58[r] + out
    return out


def test_store_get_accepts_a_cidv0(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(300 * 1024))  # two chunks: a dag-pb root, which a CIDv0 can name
    env = {"DATANET_DATA_DIR": str(tmp_path / ".d")}
    added = CliRunner().invoke(app, ["store", "add", str(src), "--json"], env=env)
    cid = json.loads(added.stdout)[0]["cid"]
    got = datanet(tmp_path, "store", "get", _cidv0(cid), "-o", str(tmp_path / "out.bin"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    one_line_error(datanet(tmp_path, "store", "get", "Qmxyz", "-o", "x"), "'Qmxyz' is not a base32 CIDv1 nor a CIDv0")


def test_an_invalid_setting_names_its_variable(tmp_path: Path) -> None:
    one_line_error(datanet(tmp_path, "status", DATANET_POLL_INTERVAL="abc"), "poll_interval", "DATANET_POLL_INTERVAL")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--curator", "0x123"], "--curator '0x123' is not an address"),
        (["--treasury", "nope"], "--treasury 'nope' is not an address"),
        (["--name", "a" * 129], "--name must be 1 to 128 characters, got 129"),
        (["--slash-percent", "150"], "--slash-percent 150 is out of range"),
        (["--license-file", "missing.txt"], "--license-file missing.txt is not a readable file"),
    ],
)
def test_net_create_refuses_bad_options_before_the_chain(tmp_path: Path, args: list[str], expected: str) -> None:
    # In-process (a subprocess per case is slow): the error is an InputError, which main() prints as one line.
    env = {"DATANET_DATA_DIR": str(tmp_path / ".d"), "DATANET_RPC_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(app, ["net", "create", "--name", "ok", *args], env=env)
    assert isinstance(result.exception, InputError) and expected in str(result.exception), result.output


def test_traceback_only_with_verbose(tmp_path: Path) -> None:
    run = datanet(tmp_path, "-v", "store", "get", "Qmxyz", "-o", "x")
    assert run.returncode == 1 and "Traceback" in run.stderr and "CidError" in run.stderr, run.stderr


def test_a_deployment_file_without_a_contract(world: World, tmp_path: Path) -> None:
    dep = world.deployment.model_copy(deep=True)
    del dep.contracts["ModelRegistry"]
    save_deployment(dep, tmp_path / "deployments" / "cut.json")
    run = datanet(tmp_path, "status", DATANET_RPC_URL=world.rpc_url, DATANET_NETWORK="cut")
    one_line_error(run, "lacks the ModelRegistry contract", "datanet deploy")
