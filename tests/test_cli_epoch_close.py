"""`datanet epoch close`: after an epoch round's claim window, what contributors left unclaimed goes
back: to the paying accounts' escrow balances for a round the API keys paid, to the node for a
round it sponsored. Not before the window ends, and once only."""

from __future__ import annotations

import json
from pathlib import Path

from node.chain import inference
from node.chain.deploy import OPEN
from node.rewards.epochs import epoch_tree
from node.rewards.shares import Share
from tests.cli_run import run_cli
from tests.conftest import NODE, OUTSIDER, World
from tests.contracts.helpers_jobs import CLAIM_WINDOW

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _claim_first(world: World, tree: object) -> None:
    funder, epoch, index, account, amount = tree.values()[0]  # type: ignore[attr-defined]
    inference.claim_epoch(world.outsider, funder, epoch, index, account, amount, tree.proof(0))  # type: ignore[attr-defined]


def test_an_escrow_paid_round_returns_its_rest_to_the_payers(world: World, tmp_path: Path) -> None:
    node, alice = world.node, world.poster
    inference.deposit(alice, node.address, 10 * OPEN)
    round_id = inference.escrow_round_id(node.address, 4)
    shares = [Share(account="0x" + "51" * 20, amount=OPEN), Share(account="0x" + "52" * 20, amount=2 * OPEN)]
    tree = epoch_tree(node.escrow.address, round_id, shares)
    inference.settle(node, 4, tree.root, [inference.Charge(payer=alice.address, amount=3 * OPEN)], CID)
    _claim_first(world, tree)  # 1 OPEN claimed, 2 OPEN left

    code, out = run_cli(world, tmp_path, "epoch", "close", "4", "--node", node.address, key=OUTSIDER)
    assert code != 0 and "can claim epoch 4's rewards until" in out
    world.advance(CLAIM_WINDOW + 1)
    code, out = run_cli(world, tmp_path, "epoch", "close", "4", "--node", node.address, "--json", key=OUTSIDER)
    assert code == 0, out
    done = json.loads(out[out.index("{") :])
    assert done["returned"] == 2 * OPEN and done["escrow"] and done["to"] == [alice.address]
    assert inference.escrow_account(alice, node.address).balance == 7 * OPEN + 2 * OPEN
    code, out = run_cli(world, tmp_path, "epoch", "close", "4", "--node", node.address, key=OUTSIDER)
    assert code != 0 and "already credited back" in out


def test_a_sponsored_round_returns_its_rest_to_the_node(world: World, tmp_path: Path) -> None:
    node = world.node
    tree = epoch_tree(node.address, 7, [Share(account="0x" + "53" * 20, amount=OPEN),
                                        Share(account="0x" + "54" * 20, amount=OPEN)])  # fmt: skip
    inference.open_epoch_round(node, 7, tree.root, 2 * OPEN, CID)
    _claim_first(world, tree)
    world.advance(CLAIM_WINDOW + 1)
    before = world.admin.balance(node.address)
    code, out = run_cli(world, tmp_path, "epoch", "close", "7", "--json", key=NODE)
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["returned"] == OPEN
    assert world.admin.balance(node.address) == before + OPEN
    code, out = run_cli(world, tmp_path, "epoch", "close", "7", key=NODE)
    assert code != 0 and "already returned" in out
    code, out = run_cli(world, tmp_path, "epoch", "close", "8", key=NODE)
    assert code != 0 and "opened no round for epoch 8" in out
    code, out = run_cli(world, tmp_path, "epoch", "close", "7", "--node", "0x123", key=NODE)
    assert code == 2  # a usage error: typer prints "is not an address" to stderr
