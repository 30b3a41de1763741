"""DatanetRegistry signatures: EIP-2612 permits for the stake (contributeWithPermit, front-run
permits) and EIP-712 relayed contributions (contributeBySig): the digest, valid relays, replays,
wrong signers, tampered fields, deadlines, nonces, malleability and ERC-1271 wallets."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak
from web3 import Web3

from node.chain import signing
from node.chain.models import ContributionStatus, Permit
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_datanets import (
    OPEN,
    STAKE,
    ZERO_ADDRESS,
    allowance,
    contribution_digest,
    entry,
    malleate,
    new_datanet,
    raw_entry,
    registry_nonce,
    relay,
    send,
    sign_with_nonce,
    signer,
    token_nonce,
)
from tests.contracts.helpers_jobs import events, frozen_clock, reverts, set_time

HOUR = 3_600


def _setup(world: World) -> int:
    datanet_id, _ = new_datanet(world.admin, curators=[world.curator.address])
    return datanet_id


def _front_run_permit(attacker: Protocol, owner: str, spender: str, value: int, p: Permit) -> None:
    """Submits someone's permit straight to the token, as a mempool watcher could."""
    fn = attacker.token.functions.permit(
        Web3.to_checksum_address(owner), Web3.to_checksum_address(spender), value, p.deadline, p.v, p.r, p.s
    )
    send(attacker, fn)


# ----------------------------------------------------------------- permit path


def test_contribute_with_permit_needs_no_approve(world: World) -> None:
    """A permit for exactly the stake replaces approve: the stake is pulled, the allowance is
    spent to zero and the token nonce used."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    registry = c.datanets.address
    inp = entry(datanet_id, "a")
    cid = c.contribute(inp, c.permit(registry, inp.stake, world.now() + HOUR))
    assert (c.balance(), c.balance(registry)) == (FUNDED - STAKE, STAKE)
    assert allowance(c, c.address, registry) == 0
    assert token_nonce(c, c.address) == 1
    assert c.contribution(cid).contributor == c.address


def test_front_run_permit_still_contributes(world: World) -> None:
    """If someone submits the permit first, the registry's own permit call fails quietly and the
    allowance it left is used: the contribution goes through exactly once."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    registry = c.datanets.address
    inp = entry(datanet_id, "a")
    permit = c.permit(registry, inp.stake, world.now() + HOUR)
    _front_run_permit(world.outsider, c.address, registry, inp.stake, permit)
    assert allowance(c, c.address, registry) == STAKE
    cid = c.contribute(inp, permit)
    assert c.contribution(cid).status == ContributionStatus.PENDING
    assert (c.balance(), allowance(c, c.address, registry)) == (FUNDED - STAKE, 0)


def test_bad_permit_without_allowance_reverts_with_the_token_error(world: World) -> None:
    """A permit for too little, or signed by someone else, sets no allowance; the pull then
    fails with ERC20InsufficientAllowance and nothing is recorded or consumed."""
    datanet_id = _setup(world)
    c, other = world.contributors[0], world.contributors[1]
    registry = c.datanets.address
    inp = entry(datanet_id, "a")
    deadline = world.now() + HOUR
    for permit in (c.permit(registry, inp.stake - 1, deadline), other.permit(registry, inp.stake, deadline)):
        with reverts("ERC20InsufficientAllowance", spender=registry, allowance=0, needed=STAKE):
            c.contribute(inp, permit)
    assert token_nonce(c, c.address) == 0
    assert c.datanet(datanet_id).contributionCount == 0


def test_zero_deadline_permit_uses_the_allowance(world: World) -> None:
    """A Permit with deadline 0 means 'no permit': an existing approve is used instead."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    c.approve(c.datanets.address, STAKE)
    cid = c.contribute(entry(datanet_id, "a"), Permit())
    assert c.contribution(cid).stake == STAKE
    assert token_nonce(c, c.address) == 0


# ------------------------------------------------------------------- EIP-712


def test_digest_domain_and_typehash_match_eip712(world: World) -> None:
    """The contract's typehash, domain and digest equal the ones computed off-chain, so wallets
    sign exactly what the contract verifies."""
    datanet_id = _setup(world)
    reg = world.admin.datanets
    c = world.contributors[0]
    type_string = (
        "Contribute(address contributor,uint256 datanetId,string cid,bytes32 contentHash,uint64 byteSize,"
        "uint32 recordCount,uint256 stake,uint256 nonce,uint256 deadline)"
    )
    assert reg.functions.CONTRIBUTE_TYPEHASH().call() == keccak(text=type_string)
    assert reg.functions.eip712Domain().call()[1:5] == ("DatanetRegistry", "1", 31337, reg.address)
    domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    separator = keccak(
        domain_type
        + keccak(text="DatanetRegistry")
        + keccak(text="1")
        + (31337).to_bytes(32, "big")
        + bytes.fromhex(reg.address[2:]).rjust(32, b"\0")
    )
    assert reg.functions.DOMAIN_SEPARATOR().call() == separator
    assert (reg.functions.token().call(), reg.functions.MAX_BPS().call()) == (c.token.address, 10_000)
    inp = entry(datanet_id, "a", byteSize=2**64 - 1, recordCount=2**32 - 1)
    onchain = reg.functions.contributeDigest(inp.model_dump(), c.address, 7, 12345).call()
    assert onchain == contribution_digest(c, inp, c.address, 7, 12345)
    assert onchain != reg.functions.contributeDigest(inp.model_dump(), c.address, 8, 12345).call()


def test_relayed_contribution_is_the_signers(world: World) -> None:
    """A relayer submits a signed contribution: the signer is the contributor and pays the stake
    (by permit here), the relayer pays only gas, and the signer's nonce advances by one."""
    datanet_id = _setup(world)
    c, relayer = world.contributors[0], world.relayer
    registry = c.datanets.address
    inp = entry(datanet_id, "relayed")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    permit = c.permit(registry, inp.stake, deadline)
    receipt = relay(relayer, inp, c.address, deadline, signature, permit)
    (event,) = events(c.datanets, receipt, "ContributionSubmitted")
    assert (event["contributor"], event["stake"]) == (c.address, STAKE)
    got = c.contribution(event["contributionId"])
    assert (got.contributor, got.cid, got.contentHash) == (c.address, inp.cid, inp.contentHash)
    assert (c.balance(), relayer.balance(), c.balance(registry)) == (FUNDED - STAKE, FUNDED, STAKE)
    assert registry_nonce(c, c.address) == 1
    assert registry_nonce(c, relayer.address) == 0


def test_relay_with_allowance_and_the_protocol_binding(world: World) -> None:
    """Protocol.relay_contribution with no permit falls back to the contributor's allowance."""
    datanet_id = _setup(world)
    c = world.contributors[1]
    c.approve(c.datanets.address, STAKE)
    inp = entry(datanet_id, "b")
    deadline = world.now() + HOUR
    cid = world.relayer.relay_contribution(inp, c.address, deadline, c.sign_contribution(inp, deadline))
    assert c.contribution(cid).contributor == c.address
    assert allowance(c, c.address, c.datanets.address) == 0


def test_signature_cannot_be_replayed(world: World) -> None:
    """Once used, a signature is dead: resent by the same or another relayer, with or without a
    fresh permit, it reverts DatanetInvalidSignature and moves nothing."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    registry = c.datanets.address
    c.approve(registry, 3 * STAKE)
    inp = entry(datanet_id, "once")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    relay(world.relayer, inp, c.address, deadline, signature)
    balance = c.balance()
    for relayer in (world.relayer, world.outsider, c):
        with reverts("DatanetInvalidSignature", contributor=c.address):
            relay(relayer, inp, c.address, deadline, signature)
    fresh = entry(datanet_id, "once-more")  # the old signature for new content: also dead
    with reverts("DatanetInvalidSignature", contributor=c.address):
        relay(world.relayer, fresh, c.address, deadline, signature)
    assert (c.balance(), registry_nonce(c, c.address)) == (balance, 1)
    assert c.datanet(datanet_id).contributionCount == 1


def test_an_unsent_signature_can_be_cancelled(world: World) -> None:
    """A contributor who handed a signature to a relayer and changed their mind (the relayer sat on
    it, or it names the wrong Datanet) burns the nonce: the signature is dead, nothing is staked,
    and the next signature (for the next nonce) works. Only the caller's own nonce moves."""
    datanet_id = _setup(world)
    c, other = world.contributors[0], world.contributors[1]
    registry = c.datanets.address
    c.approve(registry, 3 * STAKE)
    inp = entry(datanet_id, "regret")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    receipt = c.invalidate_nonce()
    assert events(c.datanets, receipt, "NonceInvalidated") == [{"account": c.address, "nonce": 0}]
    assert (registry_nonce(c, c.address), registry_nonce(c, other.address)) == (1, 0)
    balance = c.balance()
    with reverts("DatanetInvalidSignature", contributor=c.address):
        relay(world.relayer, inp, c.address, deadline, signature)
    assert c.balance() == balance and c.datanet(datanet_id).contributionCount == 0
    relay(world.relayer, inp, c.address, deadline, c.sign_contribution(inp, deadline))  # a fresh one works
    assert c.datanet(datanet_id).contributionCount == 1


def test_signature_of_someone_else_is_refused(world: World) -> None:
    """A signature by B presented as A's (A's nonce, A in the message) does not verify, and a
    signature by A cannot be redirected to charge B."""
    datanet_id = _setup(world)
    a, b = world.contributors[0], world.contributors[1]
    for p in (a, b):
        p.approve(p.datanets.address, STAKE)
    inp = entry(datanet_id, "x")
    deadline = world.now() + HOUR
    by_b = signing.sign_contribution(signer(b), a.datanets.address, 31337, inp, 0, deadline)
    with reverts("DatanetInvalidSignature", contributor=a.address):
        relay(world.relayer, inp, a.address, deadline, by_b)
    by_a = a.sign_contribution(inp, deadline)
    with reverts("DatanetInvalidSignature", contributor=b.address):
        relay(world.relayer, inp, b.address, deadline, by_a)
    assert (a.balance(), b.balance()) == (FUNDED, FUNDED)
    assert (registry_nonce(a, a.address), registry_nonce(a, b.address)) == (0, 0)


@pytest.mark.parametrize(
    "tamper",
    ["datanetId", "cid", "contentHash", "byteSize", "recordCount", "stake", "deadline"],
)
def test_tampered_field_breaks_the_signature(world: World, tamper: str) -> None:
    """Changing any signed field after signing (a relayer inflating the stake, swapping content,
    moving it to another Datanet, stretching the deadline) makes the signature invalid."""
    datanet_id = _setup(world)
    other_datanet = _setup(world)
    c = world.contributors[0]
    c.approve(c.datanets.address, 10 * STAKE)
    inp = entry(datanet_id, "x")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    changes: dict[str, Any] = {
        "datanetId": other_datanet,
        "cid": inp.cid + "0",
        "contentHash": bytes([inp.contentHash[0] ^ 1]) + inp.contentHash[1:],
        "byteSize": inp.byteSize + 1,
        "recordCount": inp.recordCount + 1,
        "stake": 10 * STAKE,
    }
    struct = raw_entry(inp, **{k: v for k, v in changes.items() if k == tamper})
    sent_deadline = deadline + 1 if tamper == "deadline" else deadline
    with reverts("DatanetInvalidSignature", contributor=c.address):
        relay(world.relayer, struct, c.address, sent_deadline, signature)
    relay(world.relayer, inp, c.address, deadline, signature)  # untampered: accepted
    assert c.balance() == FUNDED - STAKE


def test_deadline_is_inclusive_then_expired(world: World) -> None:
    """A signature is good up to and including its deadline second and expired one second after,
    with DatanetSignatureExpired(deadline), checked before the signature itself."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    c.approve(c.datanets.address, 2 * STAKE)
    t0 = world.now() + 100
    on_time, late = entry(datanet_id, "on-time"), entry(datanet_id, "late")
    sig_on_time = sign_with_nonce(c, signer(c), on_time, 0, t0)
    sig_late = sign_with_nonce(c, signer(c), late, 1, t0)
    with frozen_clock(world, t0):
        relay(world.relayer, on_time, c.address, t0, sig_on_time)
        set_time(world, t0 + 1)
        with reverts("DatanetSignatureExpired", deadline=t0):
            relay(world.relayer, late, c.address, t0, sig_late)
        with reverts("DatanetSignatureExpired", deadline=t0):
            relay(world.relayer, late, c.address, t0, b"garbage")
    assert registry_nonce(c, c.address) == 1
    assert c.datanet(datanet_id).contributionCount == 1


def test_nonces_are_sequential_and_only_consumed_by_success(world: World) -> None:
    """Signatures are ordered by nonce: the one for nonce 1 fails until nonce 0's is used;
    failed attempts do not consume a nonce; each success adds exactly one."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    c.approve(c.datanets.address, 3 * STAKE)
    deadline = world.now() + HOUR
    items = [entry(datanet_id, f"n{i}") for i in range(3)]
    sigs = [sign_with_nonce(c, signer(c), inp, i, deadline) for i, inp in enumerate(items)]
    with reverts("DatanetInvalidSignature", contributor=c.address):
        relay(world.relayer, items[1], c.address, deadline, sigs[1])
    assert registry_nonce(c, c.address) == 0
    for i in range(3):
        relay(world.relayer, items[i], c.address, deadline, sigs[i])
        assert registry_nonce(c, c.address) == i + 1
    assert c.datanet(datanet_id).contributionCount == 3


def test_failed_transfer_does_not_burn_the_nonce(world: World) -> None:
    """A valid signature whose stake cannot be pulled reverts as a whole: the nonce stays, so the
    same signature works once the contributor approves."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    inp = entry(datanet_id, "x")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    with reverts("ERC20InsufficientAllowance", spender=c.datanets.address, allowance=0, needed=STAKE):
        relay(world.relayer, inp, c.address, deadline, signature)
    assert registry_nonce(c, c.address) == 0
    c.approve(c.datanets.address, STAKE)
    relay(world.relayer, inp, c.address, deadline, signature)
    assert registry_nonce(c, c.address) == 1


def test_valid_signature_still_meets_every_contribute_rule(world: World) -> None:
    """A correctly signed relay is still checked like a direct contribution (unknown Datanet,
    stake below the minimum, duplicate content), and a refused one does not use the nonce."""
    datanet_id = _setup(world)  # minStake 1 OPEN
    c = world.contributors[0]
    c.approve(c.datanets.address, 10 * STAKE)
    deadline = world.now() + HOUR
    taken = entry(datanet_id, "taken")
    existing = world.contributors[1]
    existing.approve(existing.datanets.address, STAKE)
    first = existing.contribute(taken)
    cases = [
        (entry(datanet_id + 1, "x"), "DatanetUnknown", {"datanetId": datanet_id + 1}),
        (entry(datanet_id, "x", stake=OPEN - 1), "DatanetStakeTooLow", {"stake": OPEN - 1, "minStake": OPEN}),
        (taken, "DatanetDuplicateContent", {"existingId": first}),
    ]
    for inp, error, args in cases:
        with reverts(error, **args):
            relay(world.relayer, inp, c.address, deadline, c.sign_contribution(inp, deadline))
    assert registry_nonce(c, c.address) == 0
    assert c.balance() == FUNDED


@pytest.mark.parametrize("kind", ["other-chain", "other-contract", "malleated", "short", "empty", "zero"])
def test_malformed_or_foreign_signatures_are_refused(world: World, kind: str) -> None:
    """Signatures for another chain or verifying contract, the high-s twin of a valid one,
    truncated or empty bytes, and a zero contributor all revert DatanetInvalidSignature."""
    datanet_id = _setup(world)
    c = world.contributors[0]
    c.approve(c.datanets.address, STAKE)
    inp = entry(datanet_id, "x")
    deadline = world.now() + HOUR
    good = c.sign_contribution(inp, deadline)
    contributor: str = c.address
    signature = {
        "other-chain": signing.sign_contribution(signer(c), c.datanets.address, 1, inp, 0, deadline),
        "other-contract": signing.sign_contribution(signer(c), c.token.address, 31337, inp, 0, deadline),
        "malleated": malleate(good),
        "short": good[:64],
        "empty": b"",
        "zero": good,
    }[kind]
    if kind == "zero":
        contributor = ZERO_ADDRESS
    with reverts("DatanetInvalidSignature", contributor=contributor):
        relay(world.relayer, inp, contributor, deadline, signature)
    assert registry_nonce(c, c.address) == 0


def test_relay_with_front_run_permit(world: World) -> None:
    """A relayed contribution whose permit was submitted first by someone else still goes
    through on the allowance that permit left."""
    datanet_id = _setup(world)
    c = world.contributors[2]
    registry = c.datanets.address
    inp = entry(datanet_id, "x")
    deadline = world.now() + HOUR
    signature = c.sign_contribution(inp, deadline)
    permit = c.permit(registry, inp.stake, deadline)
    _front_run_permit(world.outsider, c.address, registry, inp.stake, permit)
    relay(world.relayer, inp, c.address, deadline, signature, permit)
    assert (c.balance(), allowance(c, c.address, registry)) == (FUNDED - STAKE, 0)


# -------------------------------------------------------------------- ERC-1271

# Runtime code of a minimal ERC-1271 wallet: isValidSignature(hash, sig) returns the magic value
# 0x1626ba7e iff `hash` equals storage slot 0 (the one digest it "signed"), else it reverts.
#   PUSH1 4 CALLDATALOAD PUSH1 0 SLOAD EQ PUSH1 0x0f JUMPI PUSH1 0 PUSH1 0 REVERT
#   JUMPDEST PUSH4 0x1626ba7e PUSH1 0xe0 SHL PUSH1 0 MSTORE PUSH1 0x20 PUSH1 0 RETURN
WALLET_CODE = (
    "0x6004356000541460"
    + "0f57"
    + "60006000fd"  # compare; revert unless hash == slot 0
    + "5b631626ba7e60e01b600052"
    + "60206000f3"  # store the magic value, return 32 bytes
)
WALLET = Web3.to_checksum_address("0x" + "c0de" * 10)


def _install_wallet(world: World, approved_digest: bytes) -> None:
    """Puts the wallet at WALLET, gives it OPEN, and approves the registry from it."""
    world.rpc("anvil_setCode", WALLET, WALLET_CODE)
    world.rpc("anvil_setStorageAt", WALLET, "0x0", "0x" + approved_digest.hex())
    world.rpc("anvil_setBalance", WALLET, hex(10**18))
    world.contributors[0].transfer(WALLET, 5 * STAKE)
    world.rpc("anvil_impersonateAccount", WALLET)
    try:
        w3 = world.admin.client.w3
        approve = world.admin.token.functions.approve(world.admin.datanets.address, 5 * STAKE)
        tx = approve.transact({"from": WALLET})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    finally:
        world.rpc("anvil_stopImpersonatingAccount", WALLET)


def test_erc1271_wallet_contributes_once(world: World) -> None:
    """A smart-contract wallet contributes through SignatureChecker's ERC-1271 path: accepted for
    the digest it approves, refused for any other, and never twice (the nonce moves the digest)."""
    datanet_id = _setup(world)
    inp = entry(datanet_id, "wallet")
    deadline = world.now() + HOUR
    _install_wallet(world, contribution_digest(world.admin, inp, WALLET, 0, deadline))
    other = entry(datanet_id, "not-approved")
    with reverts("DatanetInvalidSignature", contributor=WALLET):
        relay(world.relayer, other, WALLET, deadline, b"wallet-sig")
    receipt = relay(world.relayer, inp, WALLET, deadline, b"wallet-sig")
    (event,) = events(world.admin.datanets, receipt, "ContributionSubmitted")
    assert event["contributor"] == WALLET
    assert world.admin.balance(WALLET) == 4 * STAKE
    with reverts("DatanetInvalidSignature", contributor=WALLET):
        relay(world.relayer, inp, WALLET, deadline, b"wallet-sig")
    assert registry_nonce(world.admin, WALLET) == 1
