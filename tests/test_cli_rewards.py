"""Contributors' rewards through the CLI on the real dev chain: after the daemon registers a job's
model, `datanet rewards` shows each contributor's weight, share, amount and claim deadline with
proofs checked against the on-chain root; `datanet claim` pays them (directly or relayed), a second
claim is a clear error, `job sweep` waits for the claim window. A published tree that is not the
one the distributor pays is refused, and a v1 document's per-contribution reasons are shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.deploy import DeployConfig
from node.chain.models import ResultParams
from node.cli import app
from node.errors import NodeError
from node.rewards.merkle import leaf_hash, process_proof
from node.rewards.shares import REWARD_LEAF_ENCODING, Share, reward_tree, split_pool
from tests.conftest import CONTRIBUTORS, RELAYER, World
from tests.contracts.helpers_jobs import finalize_job
from tests.daemon_setup import NodeHome, approved_datanet, node_home, post_job, run_to_settled, stake

runner = CliRunner()
WINDOW = DeployConfig().claim_window


@pytest.fixture
def home(world: World, tmp_path: Path, tiny_base_model: Path, monkeypatch: pytest.MonkeyPatch) -> NodeHome:
    h = node_home(world, tmp_path, tiny_base_model)
    for key, value in {"DATANET_DATA_DIR": str(h.settings.data_dir), "DATANET_NETWORK": "test",
                       "DATANET_DEPLOYMENTS_DIR": str(h.settings.deployments_dir),
                       "DATANET_KEYSTORE_PASSWORD": "pw"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    for name, index in (("alice", CONTRIBUTORS[0]), ("bob", CONTRIBUTORS[1]), ("ops", RELAYER)):
        save_keystore(dev_account(index), h.settings.keystore_dir / f"{name}.json", "pw")
    return h


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _fails(args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, NodeError), result.output
    assert says in str(result.exception), str(result.exception)


def test_contributors_see_and_claim_their_rewards(world: World, home: NodeHome) -> None:
    datanet_id = approved_datanet(world, home)  # contributors 0 (alice) and 1 (bob), one file each
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    daemon = home.daemon(world.node)
    run_to_settled(world, daemon)
    daemon.close()
    base = ["--rpc-url", world.rpc_url]
    rnd = world.admin.reward_round(job_id)
    alice, bob = world.contributors[0], world.contributors[1]

    [r] = _json([*base, "rewards", "--address", alice.address])  # no wallet needed
    assert (r["job_id"], r["status"], r["claimed"], r["claim_deadline"]) == (job_id, "claimable", False,
                                                                             rnd.claimDeadline)  # fmt: skip
    assert r["root"] == "0x" + bytes(rnd.root).hex() and 0 < r["share"] < 1 and 0 < r["weight"] < r["total_weight"]
    [leaf] = r["leaves"]
    value = [job_id, leaf["index"], alice.address, leaf["amount"]]
    proof = [bytes.fromhex(h[2:]) for h in leaf["proof"]]
    assert process_proof(leaf_hash(REWARD_LEAF_ENCODING, value), proof) == bytes(rnd.root)
    assert leaf["amount"] == r["amount"] > 0
    [rb] = _json([*base, "--wallet", "bob", "rewards"])
    [dust] = _json([*base, "rewards", "--address", world.admin.address])  # the treasury
    assert r["amount"] + rb["amount"] + dust["amount"] == rnd.total  # exactly the contributors' share
    assert r["weight"] + rb["weight"] == r["total_weight"]
    table = runner.invoke(app, [*base, "--wallet", "alice", "rewards"], catch_exceptions=False).stdout
    assert "claimable" in table and "datanet claim --all" in table

    before = alice.balance()
    claimed = _json([*base, "--wallet", "alice", "claim", "--job", str(job_id)])
    assert isinstance(claimed, dict) and claimed["claimed"] == r["amount"]
    [c] = claimed["claims"]
    assert c["tx"].startswith("0x") and c["account"] == alice.address
    assert alice.balance() == before + r["amount"] == claimed["balance_after"]
    _fails([*base, "--wallet", "alice", "claim", "--job", str(job_id)], "already claimed")
    assert alice.balance() == before + r["amount"]
    nothing = _json([*base, "--wallet", "alice", "claim", "--all"])
    assert isinstance(nothing, dict) and nothing["claims"] == []
    [after] = _json([*base, "--wallet", "alice", "rewards"])
    assert (after["status"], after["claimed"]) == ("claimed", True)

    # Relayed: bob's OPEN arrives while `ops` sends the transaction and pays its gas.
    bob_eth = world.admin.client.w3.eth.get_balance(bob.address)
    relayed = _json([*base, "--wallet", "bob", "claim", "--all", "--relayer", "ops"])
    assert isinstance(relayed, dict) and relayed["sender"] == world.relayer.address
    assert relayed["claimed"] == rb["amount"] and relayed["balance_after"] == relayed["balance_before"] + rb["amount"]
    assert world.admin.client.w3.eth.get_balance(bob.address) == bob_eth
    assert world.admin.reward_round(job_id).claimed == rnd.total - dust["amount"]

    _fails([*base, "--wallet", "alice", "job", "sweep", str(job_id)], "can claim until")
    world.advance(WINDOW + 1)
    swept = _json([*base, "--wallet", "alice", "job", "sweep", str(job_id)])
    assert isinstance(swept, dict) and swept["refunded"] == dust["amount"] and swept["tx"].startswith("0x")
    _fails([*base, "--wallet", "bob", "claim", "--job", str(job_id)], "already claimed")
    _fails([*base, "--wallet", "alice", "claim"], "--job N")


Document = dict[str, Any]


def _registered(world: World, home: NodeHome, build: Callable[[int, int], tuple[Document, bytes]]) -> int:
    """A job whose node registered the attribution document and reward root that `build(job_id,
    contributors' total)` returns (a node that publishes what it likes, not what the daemon would)."""
    datanet_id = approved_datanet(world, home, contributors=1)
    stake(world.node)
    job_id = post_job(world, home, datanet_id)
    job = world.admin.job(job_id)
    doc, root = build(job_id, split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds)).contributors)
    world.node.claim_job(job_id)
    fields = {"adapterCID": home.store.add_bytes(b"adapter"), "adapterHash": b"\x01" * 32, "dataRoot": b"\x02" * 32,
              "attributionRoot": root, "attributionCID": home.store.add_bytes(json.dumps(doc).encode())}  # fmt: skip
    extra = {"scoresRoot": b"\x03" * 32, "totalWeight": 1, "exampleCount": 1}  # the v1 ResultParams fields
    world.node.submit_result(job_id, ResultParams(**fields, **{k: v for k, v in extra.items()
                                                               if k in ResultParams.model_fields}))  # fmt: skip
    finalize_job(world, job_id)  # unchallenged through its window: the round opens
    return job_id


def test_a_tree_that_is_not_the_paid_one_is_refused(world: World, home: NodeHome) -> None:
    alice = world.contributors[0].address

    def build(job_id: int, total: int) -> tuple[Document, bytes]:
        paid = reward_tree(job_id, [Share(account=alice, amount=1)])
        published = reward_tree(job_id, [Share(account=alice, amount=total)])  # pays alice more than the root
        doc = {"format": "datanet-attribution-v0", "method": "example-count-v0", "job_id": job_id,
               "weights": {alice: 1}, "tree": published.dump().model_dump(mode="json")}  # fmt: skip
        return doc, paid.root

    _registered(world, home, build)
    _fails(["--rpc-url", world.rpc_url, "rewards", "--address", alice], "but the RewardDistributor pays out root")
    _fails(["--rpc-url", world.rpc_url, "--wallet", "alice", "claim", "--all"], "no claim from it would pass")


def test_v1_document_says_why_each_contribution_earned_what_it_did(world: World, home: NodeHome) -> None:
    alice, treasury = world.contributors[0].address, world.admin.address

    def build(job_id: int, total: int) -> tuple[Document, bytes]:
        amount = total * 30 // 31
        shares = [Share(account=alice, amount=amount), Share(account=treasury, amount=total - amount)]
        tree = reward_tree(job_id, shares)
        leaves = [{"index": i, "contribution_id": 1, "contributor": alice, "score": s, "running_total": 0,
                   "gradients_hash": "0x" + "00" * 32} for i, s in enumerate([12, -3, 20, 1])]  # fmt: skip
        doc = {"format": "datanet-attribution-v1", "method": {"id": "tracin-adam-kernel-v1"}, "job_id": job_id,
               "scores": {"root": "0x" + "00" * 32, "leaves": leaves},
               "contributions": [{"contribution_id": 1, "contributor": alice, "examples": 4, "score_sum": 30,
                                  "weight": 30, "best": [2, 0], "worst": [1]}],
               "weights": {alice: 30}, "total_weight": 31,
               "reward_tree": tree.dump().model_dump(mode="json")}  # fmt: skip
        return doc, tree.root

    job_id = _registered(world, home, build)
    base = ["--rpc-url", world.rpc_url, "--wallet", "alice"]
    [r] = _json([*base, "rewards"])
    total = world.admin.reward_round(job_id).total
    assert (r["method"], r["weight"], r["total_weight"]) == ("tracin-adam-kernel-v1", 30, 31)
    assert r["amount"] == total * 30 // 31 and r["status"] == "claimable"
    [why] = r["contributions"]
    assert [(e["index"], e["score"]) for e in why["best"]] == [(2, 20), (0, 12)]
    assert [(e["index"], e["score"]) for e in why["worst"]] == [(1, -3)] and why["score_sum"] == 30
    text = runner.invoke(app, [*base, "rewards"], catch_exceptions=False).stdout
    assert "contribution #1: 4 examples, score +30 -> weight 30" in text and "#2 (+20)" in text
    claimed = _json([*base, "claim", "--job", str(job_id)])
    assert isinstance(claimed, dict) and claimed["claimed"] == r["amount"]
