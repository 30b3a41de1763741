"""With the chain down, a command says so at once with the fix (it used to retry silently for
~9 s); long reads report progress (`weights_hash` calls back per MiB for the bar of `job post`)."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from node.chain.deploy import save_deployment
from node.chain.devchain import free_port
from node.cli import app
from node.errors import RpcUnavailableError
from node.train.base_model import weights_hash
from tests.conftest import World


def test_status_with_the_chain_down_fails_fast(world: World, tmp_path: Path) -> None:
    save_deployment(world.deployment, tmp_path / "deployments" / "down.json")
    env = {"DATANET_DATA_DIR": str(tmp_path / ".d"), "DATANET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
           "DATANET_NETWORK": "down", "DATANET_RPC_URL": f"http://127.0.0.1:{free_port()}"}  # fmt: skip
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status"], env=env)
    assert time.monotonic() - started < 4
    assert isinstance(result.exception, RpcUnavailableError), result.output
    assert "No chain answers at" in str(result.exception) and "datanet chain up" in str(result.exception)


def test_weights_hash_reports_progress(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (3 * 2**20 + 5))
    seen: list[tuple[int, int]] = []
    assert weights_hash(tmp_path, lambda done, total: seen.append((done, total))) == weights_hash(tmp_path)
    size = 3 * 2**20 + 5
    assert [d for d, _ in seen] == [2**20, 2 * 2**20, 3 * 2**20, size] and {t for _, t in seen} == {size}
