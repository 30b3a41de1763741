"""Inference-time rewards of one settlement epoch: credits -> exact amounts -> Merkle tree -> round.

The serving node credits, per response, the contributors whose training examples its spans came
from (integer credit units). At the end of an epoch it turns the credits into OPEN amounts that
add up to the funded total *exactly* (largest remainder: each account first gets
`floor(total * c / C)`, then the `total - Σ floors` leftover units go one each to the largest
remainders, ties to the lower address), so the tree never promises more than the round holds and
nothing is left over. Unlike a job's payout rule (`node.rewards.payout`, floor plus a dust leaf so
each leaf can be checked on-chain alone), nothing on-chain checks an epoch tree: the root is
attested by the node alone, bounded by what it funded.

Leaves (what `RewardDistributor.claimEpoch` hashes): `(funder, epoch, index, account, amount)` as
`["address", "uint256", "uint256", "address", "uint256"]`, five words where a job leaf has four,
so no proof of one kind passes as the other. `funder` and `epoch` are the round's key:
* settled through the InferenceEscrow: the escrow, and `escrow_round_id(node, epoch)`;
* sponsored by the node from its own wallet: the node, and the node's epoch number.

The document put in the content store (its CID is emitted in `EpochRoundOpened`, where
`datanet claim` finds it) is `EpochRewards` as canonical JSON, the tree an OpenZeppelin
standard-v1 dump.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import BaseModel, Field

from node.chain import inference
from node.chain.inference import Charge
from node.chain.protocol import Protocol
from node.errors import NodeError
from node.rewards.merkle import StandardMerkleTree
from node.rewards.shares import Share

EPOCH_LEAF_ENCODING = ["address", "uint256", "uint256", "address", "uint256"]
"""(funder, epoch, index, account, amount): what RewardDistributor.claimEpoch hashes."""
EPOCH_FORMAT = "datanet-epoch-rewards-v1"
Funding = Literal["escrow", "sponsored"]


class EpochError(NodeError, ValueError):
    """Credits or a settlement that cannot make an epoch round (the message says which value)."""


class EpochRewards(BaseModel):
    """One epoch's reward document: who gets what, and the tree claims are proven against."""

    format: str = EPOCH_FORMAT
    node: ChecksumAddress = Field(description="The serving node that attests the credits.")
    epoch: int = Field(ge=0, description="The node's epoch number.")
    funding: Funding = Field(description="escrow: payers' fees via the InferenceEscrow; sponsored: the node paid.")
    funder: ChecksumAddress = Field(description="The round's funder in the RewardDistributor (leaf field 0).")
    round_epoch: int = Field(ge=0, description="The round's epoch key in the RewardDistributor (leaf field 1).")
    total: int = Field(ge=1, description="OPEN base units funded; exactly the sum of `amounts`.")
    credits: dict[str, int] = Field(description="Credit units per contributor (checksum address), as given.")
    amounts: list[Share] = Field(description="Per contributor with a non-zero amount, by address; index = position.")
    root: str = Field(description="0x-hex root of `tree`.")
    tree: dict[str, Any] = Field(description="OpenZeppelin standard-v1 dump over EPOCH_LEAF_ENCODING.")

    def canonical_json(self) -> bytes:
        """Sorted keys, no spaces: the same document always has the same CID."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


class EpochSettlement(BaseModel):
    """What `settle_epoch` did (or found already done)."""

    rewards: EpochRewards
    tree_cid: str
    tx: str | None = Field(description="The funding transaction; None when the round was already open.")


def epoch_amounts(credits: Mapping[str, int], total: int) -> list[Share]:
    """`total` split over `credits` by largest remainder: the amounts add up to `total` exactly,
    every account gets `floor(total * c / C)` or one unit more, and the result depends only on the
    (account, credit) pairs, not their order. Zero-amount accounts are left out; sorted by address.

    Raises `EpochError` for a negative total, a negative or non-integer credit, or no positive credit."""
    if type(total) is not int or total < 0:
        raise EpochError(f"total {total!r} must be a non-negative integer number of OPEN base units.")
    merged: dict[ChecksumAddress, int] = {}
    for account, credit in credits.items():
        if type(credit) is not int or credit < 0:
            raise EpochError(f"credit {credit!r} of {account} must be a non-negative integer.")
        a = to_checksum_address(account)
        merged[a] = merged.get(a, 0) + credit  # the same address spelt twice counts once
    big_c = sum(merged.values())
    if big_c == 0:
        raise EpochError(f"no contributor has a positive credit ({len(merged)} given); there is nobody to pay.")
    base = {a: total * c // big_c for a, c in merged.items()}
    left = total - sum(base.values())  # < number of accounts
    by_remainder = sorted(merged, key=lambda a: (-(total * merged[a] % big_c), a.lower()))
    for a in by_remainder[:left]:
        base[a] += 1
    return [Share(account=a, amount=base[a]) for a in sorted(base, key=str.lower) if base[a] > 0]


def epoch_tree(funder: str, round_epoch: int, amounts: Sequence[Share]) -> StandardMerkleTree:
    """The epoch round's tree: one leaf per share, index = position in `amounts`."""
    f = to_checksum_address(funder)
    values = [(f, round_epoch, i, to_checksum_address(s.account), s.amount) for i, s in enumerate(amounts)]
    return StandardMerkleTree.of(values, EPOCH_LEAF_ENCODING)


def build_epoch_rewards(
    node: str, epoch: int, credits: Mapping[str, int], total: int, *, funding: Funding, escrow: str | None = None
) -> EpochRewards:
    """The reward document of `node`'s `epoch`: amounts, tree and root. With `funding="escrow"`,
    `escrow` is the InferenceEscrow's address (the round's funder)."""
    if total <= 0:
        raise EpochError(f"total {total} must be positive: an epoch round funds at least one unit.")
    if funding == "escrow":
        if escrow is None:
            raise EpochError("funding='escrow' needs the InferenceEscrow's address (escrow=...).")
        funder, round_epoch = to_checksum_address(escrow), inference.escrow_round_id(node, epoch)
    else:
        funder, round_epoch = to_checksum_address(node), epoch
    amounts = epoch_amounts(credits, total)
    tree = epoch_tree(funder, round_epoch, amounts)
    return EpochRewards(
        node=to_checksum_address(node),
        epoch=epoch,
        funding=funding,
        funder=funder,
        round_epoch=round_epoch,
        total=total,
        credits={to_checksum_address(a): c for a, c in sorted(credits.items(), key=lambda ac: ac[0].lower())},
        amounts=amounts,
        root="0x" + tree.root.hex(),
        tree=tree.dump().model_dump(mode="json"),
    )


def settle_epoch(
    p: Protocol,
    store: Any,
    epoch: int,
    credits: Mapping[str, int],
    *,
    charges: Sequence[Charge] = (),
    total: int | None = None,
) -> EpochSettlement:
    """Settles this account's (the node's) `epoch` on-chain and publishes its tree.

    With `charges`, through the InferenceEscrow: the payers are charged and the round is funded
    with exactly their sum (`total`, if given, must equal it). Without, the node sponsors the
    round from its own wallet with `total` (e.g. free inference on the dev chain). The document is
    put in `store` first (its CID goes on-chain). Safe to re-run: a round already open with the same
    root is reported, not sent again; one with another root raises `EpochError`."""
    charged = sum(c.amount for c in charges)
    if charges and total is not None and total != charged:
        raise EpochError(f"total {total} differs from the sum of the charges ({charged}); pass one or make them equal.")
    if not charges and total is None:
        raise EpochError("say what funds the epoch: charges (payers' escrowed fees) or total (the node sponsors it).")
    funding: Funding = "escrow" if charges else "sponsored"
    escrow = p.escrow.address if charges else None
    amount = charged if charges else int(total or 0)
    doc = build_epoch_rewards(p.address, epoch, credits, amount, funding=funding, escrow=escrow)
    cid = store.add_bytes(doc.canonical_json())
    existing = inference.epoch_round(p, doc.funder, doc.round_epoch)
    if existing.root != bytes(32):
        if "0x" + bytes(existing.root).hex() != doc.root:
            raise EpochError(
                f"epoch {epoch} of {p.address} is already settled under root 0x{bytes(existing.root).hex()}, not "
                f"{doc.root}: an epoch settles once; credit later usage to the next epoch."
            )
        return EpochSettlement(rewards=doc, tree_cid=cid, tx=None)
    root = bytes.fromhex(doc.root[2:])
    if charges:
        tx = inference.settle(p, epoch, root, charges, cid).tx
    else:
        inference.open_epoch_round(p, epoch, root, doc.total, cid)
        tx = p.client.last_tx
    return EpochSettlement(rewards=doc, tree_cid=cid, tx=tx)


__all__ = [
    "EPOCH_FORMAT",
    "EPOCH_LEAF_ENCODING",
    "EpochError",
    "EpochRewards",
    "EpochSettlement",
    "build_epoch_rewards",
    "epoch_amounts",
    "epoch_tree",
    "settle_epoch",
]
