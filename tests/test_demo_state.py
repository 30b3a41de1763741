"""`datanet demo` starts from a clean state and, when it fails, stops the chain it started (with
`--keep` too), so `datanet chain down` tells the truth and the port is free for the next
`chain up`. The failure is forced cheaply right after the deploy step (`DATANET_DEMO_FAIL_AFTER`)
instead of running the whole demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.devchain import _answers, free_port
from node.cli import app

runner = CliRunner()


def _anvils_on(port: int) -> list[int]:
    """Pids of live anvil processes serving `port` (zombies excluded): an orphan shows up here."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and cmd and cmd[0].endswith(b"anvil") and str(port).encode() in cmd:
            pids.append(int(proc.name))
    return pids


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_failed_demo_keep_stops_its_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_DEMO_FAIL_AFTER", "deploy")
    # What a previous run left: its journal, its node's job store (another chain's state).
    old = tmp_path / ".datanet" / "demo"
    (old / "node").mkdir(parents=True)
    (old / "contributions-journal.json").write_text("{}")
    (old / "node" / "state.sqlite").write_bytes(b"the last chain's job store")
    port = free_port()

    result = runner.invoke(app, ["demo", "--keep", "--port", str(port)])
    assert result.exit_code != 0 and "DATANET_DEMO_FAIL_AFTER" in str(result.exception)
    assert not (old / "contributions-journal.json").exists() and not (old / "node").exists()
    assert json.loads((tmp_path / "deployments" / "localhost.json").read_text())["genesis_hash"]
    # The failed run left nothing running and no record of a chain.
    assert _anvils_on(port) == [] and not _answers(f"http://127.0.0.1:{port}")
    assert not (tmp_path / ".datanet" / "devchain.json").exists()
    down = runner.invoke(app, ["chain", "down"], catch_exceptions=False)
    assert "no detached dev chain to stop" in down.stdout

    # The next `chain up` gets the port; while it runs, a demo refuses to wipe the state it serves.
    up = _json(["chain", "up", "--port", str(port), "--detach", "--json"])
    try:
        assert up["rpc_url"] == f"http://127.0.0.1:{port}"
        (old / "keep-me").parent.mkdir(parents=True, exist_ok=True)
        (old / "keep-me").write_text("state of the kept chain")
        again = runner.invoke(app, ["demo", "--port", "0"])
        assert again.exit_code != 0 and "already runs at" in str(again.exception)
        assert "`datanet chain down`" in str(again.exception) and (old / "keep-me").exists()
    finally:
        assert _json(["chain", "down", "--json"]) == {"stopped": True, "rpc_url": up["rpc_url"]}
    assert _anvils_on(port) == [] and not _answers(up["rpc_url"])  # `chain down` waited for it to exit


def test_chain_down_does_not_claim_to_stop_a_chain_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    up = _json(["chain", "up", "--port", "0", "--detach", "--json"])
    pidfile = Path(up["pidfile"])
    record = pidfile.read_text()
    assert _json(["chain", "down", "--json"])["stopped"]
    pidfile.write_text(record)  # a record whose chain has exited (killed, machine rebooted)
    down = runner.invoke(app, ["chain", "down"], catch_exceptions=False)
    assert "no detached dev chain to stop" in down.stdout and "already exited" in down.stdout
    assert not pidfile.exists()
