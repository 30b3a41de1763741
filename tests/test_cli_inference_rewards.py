"""Inference rewards end to end on the dev chain: a payer prepays through `datanet escrow deposit`,
the serving node settles an epoch (`node.rewards.epochs.settle_epoch`: payers charged, round
funded, tree published) and sponsors another, a contributor sees both in `datanet rewards` and
claims them with `datanet claim --all`; a junk round someone else opened is skipped; the payer
takes the rest back with the two-step `datanet escrow withdraw`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.chain import inference
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN, DeployConfig
from node.chain.inference import Charge
from node.rewards.epochs import EpochError, settle_epoch
from node.storage.embedded import EmbeddedStore
from tests.cli_run import run_cli
from tests.conftest import POSTER, World

ALICE_KEY = 10  # a contributor: ETH for gas, no OPEN
ALICE, BOB = dev_account(10).address, dev_account(11).address


def _json(world: World, tmp_path: Path, *args: str, key: int) -> Any:
    code, out = run_cli(world, tmp_path, *args, "--json", key=key)
    assert code == 0, out
    return json.loads(out[out.index("{") if out.lstrip().startswith("{") else out.index("[") :])


def test_deposit_settle_claim_and_withdraw_through_the_cli(world: World, tmp_path: Path) -> None:
    node, payer = world.node, world.poster
    store = EmbeddedStore(tmp_path / ".d" / "ipfs")  # the store the CLI opens (DATANET_DATA_DIR)

    dep = _json(world, tmp_path, "escrow", "deposit", node.address, "10", key=POSTER)
    assert (dep["balance"], dep["deposited"], dep["node"]) == (10 * OPEN, 10 * OPEN, node.address)

    paid = settle_epoch(node, store, 1, {ALICE: 3, BOB: 1}, charges=[Charge(payer=payer.address, amount=4 * OPEN)])
    assert paid.rewards.funding == "escrow" and paid.rewards.total == 4 * OPEN
    assert {s.account: s.amount for s in paid.rewards.amounts} == {ALICE: 3 * OPEN, BOB: OPEN}
    again = settle_epoch(node, store, 1, {ALICE: 3, BOB: 1}, charges=[Charge(payer=payer.address, amount=4 * OPEN)])
    assert again.tx is None and again.rewards.root == paid.rewards.root  # re-running sends nothing
    free = settle_epoch(node, store, 2, {ALICE: 1}, total=OPEN)  # the node sponsors epoch 2 (free inference)
    assert (free.rewards.funding, free.rewards.funder) == ("sponsored", node.address)
    try:
        settle_epoch(node, store, 2, {ALICE: 1, BOB: 1}, total=OPEN)
        raise AssertionError("a second, different settlement of epoch 2 went through")
    except EpochError as e:
        assert "already settled" in str(e)
    # Someone opens a junk round (no document anywhere): listed as skipped, never an error.
    inference.open_epoch_round(world.relayer, 1, b"\x01" * 32, 1, "bafkreinotstoredanywhere")

    bal = _json(world, tmp_path, "escrow", "balance", node.address, key=POSTER)
    assert (bal["balance"], bal["requested"]) == (6 * OPEN, 0)

    items = _json(world, tmp_path, "rewards", key=ALICE_KEY)
    epochs = sorted((r for r in items if r.get("kind") == "epoch"), key=lambda r: r["node_epoch"])
    assert [(r["node_epoch"], r["funding"], r["amount"], r["status"], r["credit"], r["total_credit"])
            for r in epochs] == [(1, "escrow", 3 * OPEN, "claimable", 3, 4),
                                 (2, "sponsored", OPEN, "claimable", 1, 1)]  # fmt: skip
    assert epochs[0]["funder"] == node.escrow.address
    assert epochs[0]["epoch"] == inference.escrow_round_id(node.address, 1)
    code, table = run_cli(world, tmp_path, "rewards", key=ALICE_KEY)
    assert code == 0 and "inference rewards of" in table and "attested by the serving node alone" in table

    out = _json(world, tmp_path, "claim", "--all", key=ALICE_KEY)
    assert sorted(c["amount"] for c in out["claims"]) == [OPEN, 3 * OPEN]
    assert out["balance_after"] - out["balance_before"] == 4 * OPEN == world.admin.balance(ALICE)
    again_out = _json(world, tmp_path, "claim", "--all", key=ALICE_KEY)
    assert again_out["claims"] == []
    assert {r["status"] for r in _json(world, tmp_path, "rewards", key=ALICE_KEY)} == {"claimed"}

    # The payer takes its unspent 6 OPEN back: request, wait, take.
    req = _json(world, tmp_path, "escrow", "withdraw", node.address, "--all", key=POSTER)
    assert (req["step"], req["requested"]) == ("requested", 6 * OPEN)
    code, msg = run_cli(world, tmp_path, "escrow", "withdraw", node.address, key=POSTER)
    assert code != 0 and "not ready yet" in msg
    world.advance(DeployConfig().escrow_withdraw_delay)
    before = payer.balance()
    done = _json(world, tmp_path, "escrow", "withdraw", node.address, key=POSTER)
    assert (done["step"], done["withdrawn"], done["balance"]) == ("withdrawn", 6 * OPEN, 0)
    assert payer.balance() == before + 6 * OPEN
