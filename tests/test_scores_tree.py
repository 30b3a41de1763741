"""node/rewards/scores_tree.py against real components: Solidity's leaf hashing and OpenZeppelin's
`MerkleProof.verify` on the session's anvil chain (contracts/test/ScoreLeafVerifier.sol), and
OpenZeppelin's JS `StandardMerkleTree` with `sortLeaves: false` for the layout."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from node.chain.accounts import dev_account
from node.chain.client import ChainClient
from node.chain.devchain import DevChain
from node.config import REPO_ROOT
from node.rewards.merkle import MerkleTreeError
from node.rewards.scores_tree import (
    SCORE_LEAF_ENCODING,
    ScoreLeaf,
    ScoresTree,
    contribution_sum,
    example_count_tree,
    score_leaves,
    verify_score,
)

ARTIFACT = REPO_ROOT / "artifacts/contracts/test/ScoreLeafVerifier.sol/ScoreLeafVerifier.json"
ALICE, BOB = to_checksum_address("0x" + "a1" * 20), to_checksum_address("0x" + "b2" * 20)


def _leaves(n: int, seed: int = 1) -> list[ScoreLeaf]:
    rng = random.Random(seed)
    refs = [(10 + k // 3, ALICE if (k // 3) % 2 == 0 else BOB) for k in range(n)]
    # Negative, zero, positive and int256-sized scores: the signed encoding is exercised both ways.
    scores = [rng.choice([-(2**200), -7, 0, 1, 12345, 2**199]) for _ in range(n)]
    grads = ["0x" + keccak(text=f"g{k}").hex() for k in range(n)]
    return score_leaves(refs, scores, grads)


@pytest.fixture(scope="module")
def verifier(devchain: DevChain) -> Contract:
    if not ARTIFACT.exists():
        pytest.skip("contracts not compiled: run `node_modules/.bin/hardhat compile --quiet`")
    art = json.loads(ARTIFACT.read_text())
    client = ChainClient(devchain.rpc_url, dev_account(0))
    w3 = client.w3
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor().build_transaction(
        {"from": client.address, "nonce": w3.eth.get_transaction_count(client.address)}
    )
    signed = dev_account(0).sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1 and receipt["contractAddress"]
    return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def test_running_totals_and_sums_from_two_leaves() -> None:
    leaves = _leaves(9)
    scores = [x.score for x in leaves]
    assert [x.running_total for x in leaves] == [sum(scores[: k + 1]) for k in range(9)]
    # Contribution 11 holds examples 3..5: its sum from leaves 2 and 5 alone.
    assert contribution_sum(leaves[3], leaves[5], leaves[2]) == sum(scores[3:6])
    assert contribution_sum(leaves[0], leaves[2], None) == sum(scores[0:3])
    with pytest.raises(MerkleTreeError, match="give the leaf at 2"):
        contribution_sum(leaves[3], leaves[5], None)


def test_leaf_hash_and_every_proof_match_solidity_and_openzeppelin(verifier: Contract) -> None:
    for n in (1, 2, 3, 7, 16):
        leaves = _leaves(n, seed=n)
        tree = ScoresTree(leaves)
        for k, leaf in enumerate(leaves):
            v = leaf.value()
            assert bytes(verifier.functions.leafHash(*v).call()) == leaf.hash()
            proof = tree.proof(k)
            assert verify_score(tree.root, leaf, proof)
            assert verifier.functions.verify(proof, tree.root, *v).call() is True


def test_a_changed_score_or_a_moved_leaf_does_not_verify(verifier: Contract) -> None:
    leaves = _leaves(8)
    tree = ScoresTree(leaves)
    leaf, proof = leaves[4], tree.proof(4)
    forged = leaf.model_copy(update={"score": leaf.score + 1})
    assert not verify_score(tree.root, forged, proof)
    assert verifier.functions.verify(proof, tree.root, *forged.value()).call() is False
    other = leaves[5].value()
    assert verifier.functions.verify(proof, tree.root, *other).call() is False


def test_leaves_stay_in_index_order_not_hash_order() -> None:
    """Leaf k at slot len-1-k, as OpenZeppelin's `sortLeaves: false`; checked by its JS library."""
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "@openzeppelin" / "merkle-tree").exists():
        pytest.skip("needs Node.js and `npm ci` (@openzeppelin/merkle-tree)")
    leaves = _leaves(11)
    tree = ScoresTree(leaves)
    dump = tree.dump()
    assert [e["treeIndex"] for e in dump["values"]] == [len(dump["tree"]) - 1 - k for k in range(11)]
    script = (
        "const {StandardMerkleTree}=require('@openzeppelin/merkle-tree');"
        "const r=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "const t=StandardMerkleTree.of(r.values,r.encoding,{sortLeaves:false});"
        "const l=StandardMerkleTree.load(r.dump);"
        "process.stdout.write(JSON.stringify({dump:t.dump(),loaded:l.root}));"
    )
    values = [
        [str(x) if isinstance(x, int) else ("0x" + x.hex() if isinstance(x, bytes) else x) for x in leaf.value()]
        for leaf in leaves
    ]
    request = json.dumps({"values": values, "encoding": SCORE_LEAF_ENCODING, "dump": dump})
    proc = subprocess.run(
        [node, "-e", script], input=request, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)
    assert js["dump"] == dump
    assert js["loaded"] == tree.root_hex


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(MerkleTreeError, match="at least one"):
        ScoresTree([])
    leaves = _leaves(3)
    with pytest.raises(MerkleTreeError, match="index order"):
        ScoresTree([leaves[1], leaves[0], leaves[2]])
    with pytest.raises(MerkleTreeError, match="one of each"):
        score_leaves([(1, ALICE)], [1, 2], ["0x" + "00" * 32])


def test_the_example_count_tree_scores_every_example_one() -> None:
    tree = example_count_tree([(1, ALICE), (1, ALICE), (2, BOB)])
    assert [x.running_total for x in tree.leaves] == [1, 2, 3]
    assert len(tree) == 3 and Web3.is_checksum_address(tree.leaves[2].contributor)
