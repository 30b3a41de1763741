"""What an account can claim from epoch rounds (inference-time rewards), from public artifacts only.

Each `EpochRoundOpened` event names a round's funder, epoch key, root and the CID of its reward
document (`node.rewards.epochs.EpochRewards`). The document's tree must have the root the
RewardDistributor holds and leaves of that (funder, epoch) only; proofs come from it and are
checked against the on-chain root before they are returned.

Epoch rounds are permissionless, so anyone can open one with a junk or missing document: a round
whose document cannot be fetched or does not match is skipped (listed in `skipped` with the
reason), never an error that would stop a contributor from seeing and claiming the others.
The CLI (`datanet rewards`, `datanet claim`) is a thin shell over `epoch_rewards`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from web3 import Web3

from node import safe_json
from node.chain import inference
from node.chain.inference import EpochRound, EpochRoundOpened
from node.chain.protocol import Protocol
from node.errors import NodeError, StorageError
from node.rewards.claims import ClaimStatus
from node.rewards.epochs import EPOCH_FORMAT, EPOCH_LEAF_ENCODING
from node.rewards.merkle import MerkleTreeError, StandardMerkleTree


class EpochTreeError(NodeError, ValueError):
    """A published epoch document that cannot be claimed from (unreadable, or not the round's tree)."""


class EpochLeaf(BaseModel):
    """One leaf of an epoch tree: what `RewardDistributor.claimEpoch` takes."""

    funder: str
    epoch: int = Field(description="The round's epoch key.")
    index: int
    account: str
    amount: int = Field(description="OPEN base units.")
    proof: list[str] = Field(description="Sibling hashes, 0x-hex, checked against the on-chain root.")
    claimed: bool


class EpochReward(BaseModel):
    """One account's reward from one epoch round."""

    kind: Literal["epoch"] = Field("epoch", description="Tells these apart from job rewards in one list.")
    node: str = Field(description="The serving node whose document it is (it attests the credits).")
    node_epoch: int = Field(description="The node's epoch number.")
    funding: str = Field(description="escrow (payers' fees) or sponsored (the node paid).")
    funder: str
    epoch: int = Field(description="The round's epoch key in the RewardDistributor.")
    tree_cid: str
    root: str
    credit: int
    total_credit: int
    amount: int
    claimed: bool
    status: ClaimStatus
    claim_deadline: int
    swept: bool
    leaves: list[EpochLeaf]


class SkippedRound(BaseModel):
    funder: str
    epoch: int
    tree_cid: str
    reason: str


class EpochRewardsView(BaseModel):
    rewards: list[EpochReward]
    skipped: list[SkippedRound]


def epoch_rewards(p: Protocol, store: Any, account: str, now: int) -> EpochRewardsView:
    """`account`'s rewards in every epoch round with a leaf for it; unusable rounds skipped."""
    who = Web3.to_checksum_address(account)
    out, skipped = [], []
    for opened in inference.epoch_rounds(p):
        try:
            reward = _round_reward(p, store, opened, who, now)
        except (EpochTreeError, StorageError, ValueError, TypeError, KeyError) as e:  # the document's fault
            skipped.append(
                SkippedRound(funder=opened.funder, epoch=opened.epoch, tree_cid=opened.treeCID, reason=str(e))
            )
            continue
        if reward is not None:
            out.append(reward)
    return EpochRewardsView(rewards=out, skipped=skipped)


def _round_reward(p: Protocol, store: Any, opened: EpochRoundOpened, who: str, now: int) -> EpochReward | None:
    doc = _document(store, opened.treeCID)
    try:
        tree = StandardMerkleTree.load(doc.get("tree") or {})
    except (MerkleTreeError, ValueError) as e:
        raise EpochTreeError(f"the tree in {opened.treeCID} is unusable: {e}") from e
    rnd = inference.epoch_round(p, opened.funder, opened.epoch)
    if tree.root != bytes(rnd.root):
        raise EpochTreeError(f"{opened.treeCID} has root 0x{tree.root.hex()}, the round 0x{bytes(rnd.root).hex()}")
    funder = Web3.to_checksum_address(opened.funder)
    if tree.leaf_encoding != EPOCH_LEAF_ENCODING or any(
        not _same(v[0], funder) or int(v[1]) != opened.epoch for v in tree.values()
    ):
        raise EpochTreeError(f"{opened.treeCID}'s leaves are not (funder, epoch, index, account, amount) of this round")
    leaves = [_leaf(p, tree, k, v) for k, v in enumerate(tree.values()) if _same(v[3], who)]
    if not leaves:
        return None
    credits: dict[str, int] = {Web3.to_checksum_address(a): int(c) for a, c in (doc.get("credits") or {}).items()}
    return EpochReward(
        node=str(doc.get("node", "")),
        node_epoch=int(doc.get("epoch", opened.epoch)),
        funding=str(doc.get("funding", "")),
        funder=funder,
        epoch=opened.epoch,
        tree_cid=opened.treeCID,
        root="0x" + tree.root.hex(),
        credit=credits.get(who, 0),
        total_credit=sum(credits.values()),
        amount=sum(x.amount for x in leaves),
        claimed=all(x.claimed for x in leaves),
        status=_status(leaves, rnd, now),
        claim_deadline=rnd.claimDeadline,
        swept=rnd.swept,
        leaves=leaves,
    )


def _document(store: Any, cid: str) -> dict[str, Any]:
    if not cid:
        raise EpochTreeError("the round names no document (empty treeCID)")
    try:
        doc = safe_json.loads(store.cat(cid), f"epoch reward document {cid}")
    except safe_json.UntrustedJsonError as e:
        raise EpochTreeError(str(e)) from None
    if not isinstance(doc, dict) or doc.get("format") != EPOCH_FORMAT:
        raise EpochTreeError(f"{cid} is not a {EPOCH_FORMAT} document")
    return doc


def _leaf(p: Protocol, tree: StandardMerkleTree, k: int, value: list[Any]) -> EpochLeaf:
    funder, epoch, index, account, amount = str(value[0]), int(value[1]), int(value[2]), str(value[3]), int(value[4])
    proof = tree.proof(k)  # checked against the tree's root, which equals the on-chain root
    return EpochLeaf(
        funder=Web3.to_checksum_address(funder),
        epoch=epoch,
        index=index,
        account=Web3.to_checksum_address(account),
        amount=amount,
        proof=["0x" + h.hex() for h in proof],
        claimed=inference.is_epoch_claimed(p, funder, epoch, index),
    )


def _same(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.lower() == b.lower()


def _status(leaves: list[EpochLeaf], rnd: EpochRound, now: int) -> ClaimStatus:
    if not sum(x.amount for x in leaves):
        return "none"
    if all(x.claimed for x in leaves):
        return "claimed"
    if rnd.swept:
        return "swept"
    return "window-closed" if now > rnd.claimDeadline else "claimable"


__all__ = ["EpochLeaf", "EpochReward", "EpochRewardsView", "EpochTreeError", "SkippedRound", "epoch_rewards"]
