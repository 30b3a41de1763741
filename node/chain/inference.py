"""Typed bindings of inference-time rewards: the InferenceEscrow and the RewardDistributor's epoch rounds.

Why a module of its own: epoch rounds are a second kind of reward round (permissionless, keyed by
(funder, epoch), funded in the opening call), used by the serving side, not by the training job
flow that `node.chain.protocol` binds. Every function takes a `Protocol` (the signing account is
its client's) and returns what a caller needs next; reverts surface as `ContractRevertError`.

Two ways a node funds an epoch round:
* through the escrow (`settle`): payers' prepaid OPEN is charged and funds the round; the round's
  funder is the escrow and its epoch key `escrow_round_id(node, epoch)`;
* from its own wallet (`open_epoch_round`): the node sponsors the round; funder = the node, epoch
  key = its own epoch number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import encode
from eth_typing import ChecksumAddress
from eth_utils import keccak
from pydantic import BaseModel, Field
from web3 import Web3
from web3.types import TxReceipt

from node.chain.models import HexBytes
from node.chain.protocol import Protocol


class EpochRound(BaseModel):
    """One epoch round (RewardDistributor.getEpochRound); `root` zero means none."""

    root: HexBytes
    total: int = Field(description="OPEN base units the funder paid in: the most the round ever pays.")
    claimed: int
    claimDeadline: int
    swept: bool


class EpochRoundOpened(BaseModel):
    """An `EpochRoundOpened` event: where a round's tree is published."""

    funder: ChecksumAddress
    epoch: int = Field(description="The round's epoch key (for escrow rounds: escrow_round_id(node, epoch)).")
    root: HexBytes
    amount: int
    claimDeadline: int
    treeCID: str
    blockNumber: int


class EscrowAccount(BaseModel):
    """A payer's funds for one node (InferenceEscrow.accountOf)."""

    balance: int = Field(description="OPEN base units the node may charge and the payer may withdraw.")
    requested: int = Field(description="The pending withdrawal (0: none); still chargeable until taken.")
    readyAt: int = Field(description="Chain time from which the pending withdrawal may be taken.")


class Charge(BaseModel):
    """What one payer is charged in a settlement (InferenceEscrow.Charge)."""

    payer: ChecksumAddress
    amount: int = Field(ge=0, description="OPEN base units.")


class Settlement(BaseModel):
    """What `settle` did: the epoch round it funded."""

    node: ChecksumAddress
    epoch: int
    round_id: int = Field(description="The distributor's epoch key of the round (funder: the escrow).")
    total: int
    tx: str | None


def _as_dict(value: Any) -> dict[str, Any]:
    return value._asdict() if hasattr(value, "_asdict") else dict(value)


def escrow_round_id(node: str, epoch: int) -> int:
    """InferenceEscrow.roundIdOf: `uint256(keccak256(abi.encode(node, epoch)))`."""
    return int.from_bytes(keccak(encode(["address", "uint256"], [Web3.to_checksum_address(node), epoch])), "big")


# ------------------------------------------------------------------ epoch rounds


def open_epoch_round(p: Protocol, epoch: int, root: bytes, amount: int, tree_cid: str) -> TxReceipt:
    """Opens and funds this account's epoch round `epoch` from its own wallet (approves first)."""
    p.approve(p.rewards.address, amount)
    return p.client.transact(p.rewards.functions.openEpochRound(epoch, root, amount, tree_cid))


def epoch_round(p: Protocol, funder: str, epoch: int) -> EpochRound:
    raw = p.client.call(p.rewards.functions.getEpochRound(Web3.to_checksum_address(funder), epoch))
    return EpochRound(**_as_dict(raw))


def is_epoch_claimed(p: Protocol, funder: str, epoch: int, index: int) -> bool:
    fn = p.rewards.functions.isEpochClaimed(Web3.to_checksum_address(funder), epoch, index)
    return bool(p.client.call(fn))


def claim_epoch(
    p: Protocol, funder: str, epoch: int, index: int, account: str, amount: int, proof: Sequence[bytes]
) -> TxReceipt:
    """Claims one leaf (anyone may send it; the OPEN goes to `account`)."""
    fn = p.rewards.functions.claimEpoch(
        Web3.to_checksum_address(funder), epoch, index, Web3.to_checksum_address(account), amount, list(proof)
    )
    return p.client.transact(fn)


def sweep_epoch(p: Protocol, funder: str, epoch: int) -> TxReceipt:
    """After the claim window, returns the round's unclaimed rest to its funder (anyone may)."""
    return p.client.transact(p.rewards.functions.sweepEpoch(Web3.to_checksum_address(funder), epoch))


def epoch_rounds(p: Protocol, funder: str | None = None, from_block: int | None = None) -> list[EpochRoundOpened]:
    """Every opened epoch round (of `funder` if given), oldest first, from `EpochRoundOpened` logs."""
    filters = {"funder": Web3.to_checksum_address(funder)} if funder else {}
    start = p.deployment.deploy_block if from_block is None else from_block
    event = p.rewards.events.EpochRoundOpened
    logs = p.client.rpc(lambda: event.get_logs(from_block=start, argument_filters=filters), "get EpochRoundOpened logs")
    return [EpochRoundOpened(**dict(log["args"]), blockNumber=log["blockNumber"]) for log in logs]


# ------------------------------------------------------------------------ escrow


def deposit(p: Protocol, node: str, amount: int) -> TxReceipt:
    """Deposits `amount` OPEN for `node` to charge (approves the escrow first)."""
    p.approve(p.escrow.address, amount)
    return p.client.transact(p.escrow.functions.deposit(Web3.to_checksum_address(node), amount))


def escrow_account(p: Protocol, node: str, payer: str | None = None) -> EscrowAccount:
    """`payer`'s (default: this account's) funds for `node`."""
    who = Web3.to_checksum_address(payer) if payer else p.address
    raw = p.client.call(p.escrow.functions.accountOf(who, Web3.to_checksum_address(node)))
    return EscrowAccount(**_as_dict(raw))


def request_withdraw(p: Protocol, node: str, amount: int) -> TxReceipt:
    return p.client.transact(p.escrow.functions.requestWithdraw(Web3.to_checksum_address(node), amount))


def withdraw(p: Protocol, node: str) -> TxReceipt:
    """Takes the pending withdrawal (after `withdrawDelay`): the requested amount or, if charges since
    left less, the whole balance."""
    return p.client.transact(p.escrow.functions.withdraw(Web3.to_checksum_address(node)))


def withdraw_delay(p: Protocol) -> int:
    return int(p.client.call(p.escrow.functions.withdrawDelay()))


def _charges_arg(charges: Sequence[Charge]) -> list[tuple[ChecksumAddress, int]]:
    return [(c.payer, c.amount) for c in charges]


def settle(p: Protocol, epoch: int, root: bytes, charges: Sequence[Charge], tree_cid: str) -> Settlement:
    """This account (a node) charges `charges` for `epoch` and funds its round with their sum.
    The tree under `root` must name the escrow as funder and `escrow_round_id(node, epoch)` as epoch."""
    receipt = p.client.transact(p.escrow.functions.settle(epoch, root, _charges_arg(charges), tree_cid))
    return Settlement(
        node=p.address,
        epoch=epoch,
        round_id=escrow_round_id(p.address, epoch),
        total=sum(c.amount for c in charges),
        tx="0x" + bytes(receipt["transactionHash"]).hex(),
    )


def settled_charges(p: Protocol, node: str, epoch: int) -> list[Charge]:
    """The charges of `node`'s settlement of `epoch`, in order, from its `Charged` logs (what
    `refund_unclaimed` needs; empty if it did not settle)."""
    event = p.escrow.events.Charged
    logs = p.client.rpc(
        lambda: event.get_logs(
            from_block=p.deployment.deploy_block,
            argument_filters={"node": Web3.to_checksum_address(node), "epoch": epoch},
        ),
        "get Charged logs",
    )
    return [Charge(payer=log["args"]["payer"], amount=int(log["args"]["amount"])) for log in logs]


def is_refunded(p: Protocol, node: str, epoch: int) -> bool:
    """Whether `node`'s settlement of `epoch` already credited its unclaimed rest back."""
    raw = p.client.call(p.escrow.functions.settlementOf(Web3.to_checksum_address(node), epoch))
    return bool(_as_dict(raw)["refunded"])


def refund_unclaimed(p: Protocol, node: str, epoch: int, charges: Sequence[Charge] | None = None) -> TxReceipt:
    """After the round's claim window, credits what contributors left unclaimed back to the charged
    payers' escrow balances (anyone may send it)."""
    rows = settled_charges(p, node, epoch) if charges is None else charges
    fn = p.escrow.functions.refundUnclaimed(Web3.to_checksum_address(node), epoch, _charges_arg(rows))
    return p.client.transact(fn)


__all__ = [
    "Charge",
    "EpochRound",
    "EpochRoundOpened",
    "EscrowAccount",
    "Settlement",
    "claim_epoch",
    "deposit",
    "epoch_round",
    "epoch_rounds",
    "escrow_account",
    "escrow_round_id",
    "is_epoch_claimed",
    "is_refunded",
    "open_epoch_round",
    "refund_unclaimed",
    "request_withdraw",
    "settle",
    "settled_charges",
    "sweep_epoch",
    "withdraw",
    "withdraw_delay",
]
