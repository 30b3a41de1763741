"""Turns revert data into `ContractRevertError`s named after the Solidity custom error.

Selectors are collected from every contract ABI (our errors and OpenZeppelin's), so a revert
raised deep in a library call still decodes. Hints say how a user fixes the common ones.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import keccak

from node.chain.artifacts import all_abis
from node.errors import ContractRevertError

HINTS: dict[str, str] = {
    "DatanetStakeTooLow": "Stake at least the Datanet's minStake (see `datanet net show`).",
    "DatanetNotCurator": "Only the Datanet's curators can decide; ask its owner to add you.",
    "DatanetDuplicateContent": "This exact content is already in the Datanet; nothing to do.",
    "DatanetInvalidSignature": "The EIP-712 signature does not match the contributor, data, "
    "nonce or deadline; sign again with the current nonce.",
    "DatanetSignatureExpired": "The signature's deadline passed; sign again.",
    "DatanetStillLocked": "The stake is locked until the given time; try again after it.",
    "DatanetDecisionWindowClosed": "Curators decide within the Datanet's lock period of a submission; after it "
    "the contributor may withdraw the stake, so the contribution can no longer be approved or rejected.",
    "ModelRegistryNodeNotStaked": "Stake at least the minimum node stake first (`datanet node stake`).",
    "ModelRegistryNotPoster": "Only the job's poster can do this.",
    "ModelRegistryWrongStatus": "The job is not in a state that allows this (see `datanet job show`).",
    "ModelRegistryDeadlinePassed": "The job's deadline has passed.",
    "NodeStakingInsufficientActive": "Unbond at most the free stake: active minus the bonds of claimed jobs "
    "(see `datanet node show`).",
    "NodeStakingNothingToWithdraw": "Nothing is unbonding; start with `datanet node unbond AMOUNT`.",
    "NodeStakingStillUnbonding": "The unbonding period has not passed; withdraw after the given time "
    "(see `datanet node show`).",
    "NodeStakingInsufficientFree": "Each claimed job reserves a bond of at least the contributors' part of its "
    "pool; this node's free stake does not cover it. Stake more (`datanet node stake AMOUNT`) or finish a job "
    "first (`datanet node show` lists stake, reserved bonds and free stake).",
    "ModelRegistryTrainingTimeNotOver": "The claiming node still has time to deliver; reopen after the given time.",
    "ModelRegistryDatanetNotTrainable": "The Datanet is restricted; ask its owner to allow you.",
    "ModelRegistryNodeNotTrusted": "The Datanet is private or restricted and does not trust this node with its "
    "data; its owner runs `datanet net trust-node DATANET_ID NODE_ADDRESS`.",
    "ModelRegistryChallengeWindowOpen": "The result is in its challenge window; finalize after the given time "
    "(`datanet job show` says when).",
    "ModelRegistryChallengesOpen": "A reward-leaf challenge against the result waits for the node's answer; after "
    "its deadline, `datanet challenge settle ID` decides it, then finalize.",
    "ModelRegistryParentNotFinal": "Only a finalized model can be built on; wait until its challenge window passes "
    "and it is finalized (`datanet finalize JOB`).",
    "ChallengeCommitsClosed": "The result's commit period is over; challenges are committed early in its window.",
    "ChallengeRevealsClosed": "The reveal period is over; an unrevealed challenge's bond goes to the node.",
    "ChallengeRevealTooEarly": "Reveal in a later block than the commit (so it cannot be copied from the mempool).",
    "ChallengeWrongCommitment": "The kind, evidence and salt do not hash to the commitment; reveal exactly what "
    "was committed.",
    "ChallengeNotPending": "The result is no longer pending (finalized or voided): nothing to challenge or answer.",
    "ChallengeBadAnswer": "The answer does not justify the reward leaf from the committed scores; fix it before "
    "the deadline, or the result is voided.",
    "ERC20InsufficientBalance": "The account does not hold enough OPEN.",
    "ERC20InsufficientAllowance": "Approve the contract first, or use the permit variant.",
    "RewardInvalidProof": "The proof does not match the job's reward root; fetch the "
    "attribution tree again and use the leaf exactly as published.",
    "RewardAlreadyClaimed": "This reward was already paid out.",
    "AccessControlUnauthorizedAccount": "The sender lacks the role for this call.",
    "KeyRegistryNotOwner": "Only the Datanet's owner publishes its key and gives standing grants.",
    "KeyRegistryNotGranter": "Only the Datanet's owner or a curator can grant access for a job.",
    "KeyRegistryNotPrivate": "The Datanet is public: its files are not encrypted, nothing to grant.",
    "KeyRegistryNoDatanetKey": "The owner has not published the Datanet's key yet (create it first).",
    "EscrowInsufficientBalance": "The payer has less prepaid for this node than asked; see `datanet escrow balance "
    "NODE` (a node settles only what was deposited for it).",
    "EscrowNoWithdrawRequest": "Request a withdrawal first: `datanet escrow withdraw NODE AMOUNT`.",
    "EscrowWithdrawNotReady": "A withdrawal waits the escrow's withdraw delay after its request; take it after the "
    "given time.",
    "EscrowEpochSettled": "This node already settled that epoch; credit later usage to the next epoch.",
    "RewardEpochRoundExists": "This funder already opened that epoch; each epoch is settled once.",
    "RewardInvalidEpochProof": "The proof does not match the epoch round's root; fetch the epoch tree again "
    "(`datanet rewards`) and use the leaf exactly as published.",
    "RewardEpochAlreadyClaimed": "This inference reward was already paid out.",
}

PANICS = {
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x32: "array index out of bounds",
}


@cache
def _selectors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for abi in all_abis():
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [_canonical_type(i) for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            names = [i["name"] or f"arg{k}" for k, i in enumerate(item["inputs"])]
            table[keccak(text=sig)[:4]] = (item["name"], types, names)
    return table


def _canonical_type(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t


def decode_revert(data: str | bytes | None, tx_hash: str | None = None) -> ContractRevertError:
    """Decodes revert `data` (hex or bytes) into a `ContractRevertError`."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if not raw:
        return ContractRevertError("Reverted", {}, "The call reverted without a reason.", tx_hash)
    selector, body = raw[:4], raw[4:]
    if selector == keccak(text="Error(string)")[:4]:
        (msg,) = decode(["string"], body)
        return ContractRevertError("Error", {"message": msg}, "", tx_hash)
    if selector == keccak(text="Panic(uint256)")[:4]:
        (code,) = decode(["uint256"], body)
        return ContractRevertError("Panic", {"code": hex(code)}, PANICS.get(code, ""), tx_hash)
    known = _selectors().get(selector)
    if known is None:
        return ContractRevertError(
            "UnknownError", {"data": raw}, "Not one of our contracts' errors.", tx_hash
        )
    name, types, names = known
    values = decode(types, body)
    return ContractRevertError(name, dict(zip(names, values, strict=True)), HINTS.get(name, ""), tx_hash)
