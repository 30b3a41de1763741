"""OpenToken: fixed supply, ERC-20 transfers and allowances with OpenZeppelin's custom errors, and
EIP-2612 permits (valid, replayed, expired, forged, tampered)."""

from __future__ import annotations

from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3 import Web3
from web3.types import TxReceipt

from node.chain import signing
from node.chain.deploy import DeployConfig
from node.chain.models import Permit
from node.chain.protocol import Protocol
from tests.conftest import FUNDED, World
from tests.contracts.helpers_datanets import (
    OPEN,
    ZERO_ADDRESS,
    account,
    allowance,
    send,
    signer,
    token_nonce,
)
from tests.contracts.helpers_jobs import events, reverts

SUPPLY = DeployConfig().initial_supply
MAX_UINT = 2**256 - 1
ROLE_ACCOUNTS = 8  # conftest funds curator, node, poster, relayer and four contributors


def _permit_call(sender: Protocol, owner: str, spender: str, value: int, permit: Permit) -> TxReceipt:
    fn = sender.token.functions.permit(
        Web3.to_checksum_address(owner),
        Web3.to_checksum_address(spender),
        value,
        permit.deadline,
        permit.v,
        permit.r,
        permit.s,
    )
    return send(sender, fn)


def test_metadata_and_fixed_supply(world: World) -> None:
    """Name, symbol and decimals are as deployed; the supply is exactly what was minted, all of it
    held by the deployer and the funded role accounts, and there is no mint or burn entry point."""
    t = world.admin.token.functions
    assert (t.name().call(), t.symbol().call(), t.decimals().call()) == ("Open", "OPEN", 18)
    assert t.totalSupply().call() == SUPPLY == 1_000_000_000 * OPEN
    assert world.admin.balance() == SUPPLY - ROLE_ACCOUNTS * FUNDED
    held = sum(world.admin.balance(account(i).address) for i in range(20))
    assert held == SUPPLY
    names = {str(item.get("name")) for item in world.admin.token.abi if item.get("type") == "function"}
    assert names == {
        "DOMAIN_SEPARATOR",
        "allowance",
        "approve",
        "balanceOf",
        "decimals",
        "eip712Domain",
        "name",
        "nonces",
        "permit",
        "symbol",
        "totalSupply",
        "transfer",
        "transferFrom",
    }


def test_transfer_moves_balance_and_emits(world: World) -> None:
    """A transfer debits the sender and credits the receiver by exactly the amount."""
    a, b = world.contributors[0], world.outsider
    receipt = a.transfer(b.address, 123 * OPEN + 7)
    assert a.balance() == FUNDED - 123 * OPEN - 7
    assert b.balance() == 123 * OPEN + 7
    assert events(a.token, receipt, "Transfer") == [{"from": a.address, "to": b.address, "value": 123 * OPEN + 7}]


def test_transfer_errors(world: World) -> None:
    """Overdrawing reverts with the balance and the amount; burning by sending to 0 is refused."""
    a = world.contributors[0]
    with reverts("ERC20InsufficientBalance", sender=a.address, balance=FUNDED, needed=FUNDED + 1):
        a.transfer(world.outsider.address, FUNDED + 1)
    with reverts("ERC20InvalidReceiver", receiver=ZERO_ADDRESS):
        a.transfer(ZERO_ADDRESS, 1)
    assert a.balance() == FUNDED


def test_approve_and_transfer_from_spend_the_allowance(world: World) -> None:
    """transferFrom spends the allowance exactly and refuses to go past it; an infinite allowance
    is never decremented; approving the zero address is refused."""
    owner, spender = world.contributors[0], world.contributors[1]
    receipt = owner.approve(spender.address, 100)
    assert events(owner.token, receipt, "Approval") == [
        {"owner": owner.address, "spender": spender.address, "value": 100}
    ]
    move = spender.token.functions.transferFrom(owner.address, world.outsider.address, 60)
    send(spender, move)
    assert allowance(owner, owner.address, spender.address) == 40
    assert world.outsider.balance() == 60
    too_much = spender.token.functions.transferFrom(owner.address, world.outsider.address, 41)
    with reverts("ERC20InsufficientAllowance", spender=spender.address, allowance=40, needed=41):
        send(spender, too_much)

    owner.approve(spender.address, MAX_UINT)
    send(spender, spender.token.functions.transferFrom(owner.address, world.outsider.address, 5 * OPEN))
    assert allowance(owner, owner.address, spender.address) == MAX_UINT
    with reverts("ERC20InvalidSpender", spender=ZERO_ADDRESS):
        owner.approve(ZERO_ADDRESS, 1)


def test_domain_separator_matches_eip712(world: World) -> None:
    """The permit domain is ("Open", "1", chain id, token address), as wallets compute it."""
    token = world.admin.token
    domain = token.functions.eip712Domain().call()
    assert domain[1:5] == ("Open", "1", 31337, token.address)
    type_hash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    expected = keccak(
        type_hash
        + keccak(text="Open")
        + keccak(text="1")
        + (31337).to_bytes(32, "big")
        + bytes.fromhex(token.address[2:]).rjust(32, b"\0")
    )
    assert token.functions.DOMAIN_SEPARATOR().call() == expected


def test_permit_sets_allowance_once(world: World) -> None:
    """A permit sent by anyone sets the allowance and bumps the owner's nonce; the same signature
    replayed no longer recovers to the owner (the nonce moved on)."""
    owner, spender = world.contributors[0], world.contributors[1]
    deadline = world.now() + 3_600
    permit = owner.permit(spender.address, 77 * OPEN, deadline)
    receipt = _permit_call(world.relayer, owner.address, spender.address, 77 * OPEN, permit)
    assert allowance(owner, owner.address, spender.address) == 77 * OPEN
    assert token_nonce(owner, owner.address) == 1
    assert events(owner.token, receipt, "Approval") == [
        {"owner": owner.address, "spender": spender.address, "value": 77 * OPEN}
    ]
    with reverts("ERC2612InvalidSigner", owner=owner.address) as exc:
        _permit_call(world.relayer, owner.address, spender.address, 77 * OPEN, permit)
    assert exc.value.args_by_name["signer"] != owner.address
    assert token_nonce(owner, owner.address) == 1


def test_permit_refuses_expired_forged_and_tampered(world: World) -> None:
    """An expired deadline, a signature by someone else, and any changed field are all refused,
    and none of them sets an allowance or consumes the owner's nonce."""
    owner, spender, forger = world.contributors[0], world.contributors[1], world.contributors[2]
    now = world.now()
    expired = owner.permit(spender.address, OPEN, now - 1)
    with reverts("ERC2612ExpiredSignature", deadline=now - 1):
        _permit_call(world.relayer, owner.address, spender.address, OPEN, expired)

    # The forger signs the owner's exact permit message: it recovers to the forger, not the owner.
    forged = _sign_permit(forger, owner.address, spender.address, OPEN, 0, now + 600)
    with reverts("ERC2612InvalidSigner", signer=forger.address, owner=owner.address):
        _permit_call(world.relayer, owner.address, spender.address, OPEN, forged)

    good = owner.permit(spender.address, OPEN, now + 600)
    tampered = [
        (OPEN + 1, spender.address, good),  # value
        (OPEN, forger.address, good),  # spender
        (OPEN, spender.address, good.model_copy(update={"deadline": now + 601})),  # deadline
    ]
    for value, to, permit in tampered:
        with reverts("ERC2612InvalidSigner", owner=owner.address):
            _permit_call(world.relayer, owner.address, to, value, permit)
    assert allowance(owner, owner.address, spender.address) == 0
    assert allowance(owner, owner.address, forger.address) == 0
    assert token_nonce(owner, owner.address) == 0
    _permit_call(world.relayer, owner.address, spender.address, OPEN, good)  # the untampered one works
    assert allowance(owner, owner.address, spender.address) == OPEN


def test_permit_digest_is_the_eip2612_one(world: World) -> None:
    """A permit encoded from the EIP-2612 spec (independently of `node.chain.signing`) verifies
    on-chain for the max deadline, and matches what the node's helper signs."""
    owner = world.contributors[3]
    permit = _sign_permit(owner, owner.address, world.outsider.address, 5, 0, MAX_UINT)
    helper = signing.sign_permit(signer(owner), owner.token.address, 31337, world.outsider.address, 5, 0, MAX_UINT)
    assert helper == permit
    _permit_call(world.outsider, owner.address, world.outsider.address, 5, permit)
    assert allowance(owner, owner.address, world.outsider.address) == 5


def _sign_permit(by: Protocol, owner: str, spender: str, value: int, nonce: int, deadline: int) -> Permit:
    """`by`'s signature over a Permit message naming `owner` (who need not be `by`)."""
    domain = {"name": "Open", "version": "1", "chainId": 31337, "verifyingContract": by.token.address}
    types = {
        "Permit": [
            {"name": "owner", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    }
    msg = {"owner": owner, "spender": spender, "value": value, "nonce": nonce, "deadline": deadline}
    signed = signer(by).sign_message(encode_typed_data(domain, types, msg))
    r, s = signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")
    return Permit(deadline=deadline, v=signed.v, r=r, s=s)
