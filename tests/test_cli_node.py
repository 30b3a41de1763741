"""Node operators through the CLI on the real dev chain: stake, show, unbond, withdraw; the dev
chain commands (`chain up --detach`, `chain down`) and dev-account funding by `deploy`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.client import ChainClient
from node.chain.deploy import DEV_FUNDED_ACCOUNTS, OPEN, DeployConfig, save_deployment
from node.cli import app
from node.errors import NodeError
from tests.conftest import NODE, World
from tests.contracts.helpers_jobs import MIN_STAKE, UNBONDING

runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def node_cli(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The session's deployment in a fresh working directory and a `node` wallet (dev account NODE)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw")
    save_deployment(world.deployment, tmp_path / "deployments" / "localhost.json")
    save_keystore(dev_account(NODE), tmp_path / ".datanet" / "keystores" / "node.json", "pw")
    return ["--rpc-url", world.rpc_url, "--wallet", "node"]


def test_stake_show_unbond_withdraw(world: World, node_cli: list[str]) -> None:
    base = node_cli
    before = world.node.balance()
    shown = _json([*base, "node", "show"])
    assert (shown["active"], shown["eligible"], shown["min_stake"]) == (0, False, MIN_STAKE)

    staked = _json([*base, "node", "stake"])  # default: the minimum node stake, by permit
    assert staked["staked"] == MIN_STAKE and staked["eligible"] and staked["tx"].startswith("0x")
    assert world.node.node_stake().active == MIN_STAKE and world.node.balance() == before - MIN_STAKE
    again = _json([*base, "node", "stake"])  # already at the minimum: nothing more is staked
    assert again["staked"] == 0 and again["tx"] is None
    _json([*base, "node", "stake", "250.5"])
    assert world.node.node_stake().active == MIN_STAKE + 250_500_000_000_000_000_000

    unbond = _json([*base, "node", "unbond", "250.5"])
    assert unbond["unbonding"] == 250_500_000_000_000_000_000 and unbond["active"] == MIN_STAKE
    assert unbond["unbonding_ends_at"] == world.now() + UNBONDING
    shown = _json(["--rpc-url", world.rpc_url, "node", "show", world.node.address])  # by address, no wallet
    assert shown["unbonding"] == unbond["unbonding"] and not shown["withdrawable_now"]
    assert shown["eligible"] and shown["unbonding_period"] == UNBONDING
    assert (shown["reserved"], shown["jobs"], shown["free"]) == (0, 0, MIN_STAKE)  # no claimed job: all free
    text = runner.invoke(app, [*base, "node", "show"], catch_exceptions=False).stdout
    assert "withdrawable after" in text and "eligible to claim jobs" in text

    early = runner.invoke(app, [*base, "node", "withdraw"])
    assert early.exit_code != 0 and isinstance(early.exception, NodeError)
    assert "still unbonding until" in str(early.exception)

    world.advance(UNBONDING + 1)
    assert _json([*base, "node", "show"])["withdrawable_now"]
    withdrawn = _json([*base, "node", "withdraw"])
    assert withdrawn["withdrawn"] == unbond["unbonding"] and withdrawn["tx"].startswith("0x")
    assert world.node.balance() == before - MIN_STAKE
    final = _json([*base, "node", "show"])
    assert (final["active"], final["unbonding"], final["unbonding_ends_at"]) == (MIN_STAKE, 0, None)


def test_staking_errors_are_one_clear_line(world: World, node_cli: list[str]) -> None:
    base = node_cli
    for args, says in (
        (["node", "unbond", "1"], "cannot unbond"),
        (["node", "withdraw"], "datanet node unbond AMOUNT"),
        (["node", "stake", "lots"], "not a number of OPEN"),
        (["node", "stake", "2000000"], "holds 1,000,000.00 OPEN"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code != 0 and isinstance(result.exception, NodeError), result.output
        assert says in str(result.exception) and "\n" not in str(result.exception)
    assert world.node.node_stake().active == 0


def test_chain_up_detached_then_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    up = _json(["chain", "up", "--port", "0", "--detach"])
    try:
        assert up["detached"] and up["chain_id"] == 31337 and up["pid"]
        assert ChainClient(up["rpc_url"]).chain_id == 31337
        assert json.loads(Path(up["pidfile"]).read_text())["rpc_url"] == up["rpc_url"]
        second = runner.invoke(app, ["chain", "up", "--port", "0", "--detach"])
        assert second.exit_code != 0 and "already runs at" in str(second.exception)
    finally:
        down = _json(["chain", "down"])
    assert down == {"stopped": True, "rpc_url": up["rpc_url"]}
    assert _json(["chain", "down"]) == {"stopped": False, "rpc_url": None}


def test_deploy_on_the_dev_chain_funds_dev_accounts(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dep = _json(["--rpc-url", world.rpc_url, "--network", "dev", "deploy"])
    each = DeployConfig().dev_account_funding
    funded = {dev_account(i).address: each for i in DEV_FUNDED_ACCOUNTS}
    assert dep["dev_funding"] == funded and each == 100_000 * OPEN
    token = world.admin.client.contract("OpenToken", dep["contracts"]["OpenToken"])
    for address in funded:
        assert token.functions.balanceOf(address).call() == each
    assert token.functions.balanceOf(dev_account(10).address).call() == 0
    bare = _json(["--rpc-url", world.rpc_url, "--network", "bare", "deploy", "--no-fund-dev-accounts"])
    assert bare["dev_funding"] == {}
    token = world.admin.client.contract("OpenToken", bare["contracts"]["OpenToken"])
    assert token.functions.balanceOf(dev_account(1).address).call() == 0


def test_dev_funding_is_refused_off_the_dev_chain() -> None:
    """Dev-mnemonic keys are public: funding them anywhere but chain 31337 would give OPEN away."""
    from types import SimpleNamespace

    from node.chain.deploy import deploy
    from node.errors import DeploymentError

    mainnet_like = SimpleNamespace(chain_id=1, rpc_url="https://rpc.example")
    with pytest.raises(DeploymentError, match="local dev chain"):
        deploy(mainnet_like, "prod", DeployConfig(fund_dev_accounts=True))  # type: ignore[arg-type]
