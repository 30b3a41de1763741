"""Shared steps for the OpenToken and DatanetRegistry tests: Datanets with chosen rules, staked
contributions, raw (un-validated) calls, EIP-712 digests and per-example isolation.

Revert matching, event decoding and the frozen clock come from `helpers_jobs`, so that every
contract test in this package reads the same way."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, cached_property
from typing import Any

from eth_abi import encode
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from node.chain import signing
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.models import ContributionInput, DatanetParams, Permit
from node.chain.protocol import Protocol
from node.chain.reverts import decode_revert
from node.errors import ContractRevertError
from tests.conftest import CONTRIBUTORS, CURATOR, DEPLOYER, NODE, OUTSIDER, POSTER, RELAYER, World
from tests.contracts.helpers_jobs import ZERO_ADDRESS, treasury_address

__all__ = ["OPEN", "ZERO_ADDRESS"]

STAKE = 10 * OPEN
LOCK = 7 * 86_400
MAX_UINT64 = 2**64 - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@cache
def account(index: int) -> LocalAccount:
    return dev_account(index)


def signer(proto: Protocol) -> LocalAccount:
    """The key behind `proto` (every test client has one)."""
    assert proto.client.account is not None
    return proto.client.account


def content_hash(tag: str) -> bytes:
    """The sha256 a contributor would register for content `tag`."""
    return hashlib.sha256(tag.encode()).digest()


def new_datanet(
    owner: Protocol,
    *,
    curators: list[str] | None = None,
    min_stake: int = OPEN,
    slash_bps: int = 5_000,
    lock_period: int = LOCK,
    restricted: bool = False,
    name: str = "ds",
) -> tuple[int, ChecksumAddress]:
    """Creates a Datanet owned by `owner` with its own key-less treasury; returns (id, treasury)."""
    treasury = treasury_address(0xDA7A00 + owner.datanet_count() + 1)
    params = DatanetParams(
        name=name,
        treasury=treasury,
        curators=[Web3.to_checksum_address(c) for c in curators or []],
        minStake=min_stake,
        slashBps=slash_bps,
        lockPeriod=lock_period,
        restricted=restricted,
    )
    return owner.create_datanet(params), treasury


def entry(datanet_id: int, tag: str, stake: int = STAKE, **overrides: Any) -> ContributionInput:
    """A contribution of content `tag` to `datanet_id`."""
    fields: dict[str, Any] = {
        "datanetId": datanet_id,
        "cid": f"bafk{tag}",
        "contentHash": content_hash(tag),
        "byteSize": 1_000 + len(tag),
        "recordCount": 10,
        "stake": stake,
    }
    return ContributionInput(**{**fields, **overrides})


def raw_entry(inp: ContributionInput, **overrides: Any) -> dict[str, Any]:
    """`inp` as the struct dict, with overrides the pydantic model would refuse."""
    return {**inp.model_dump(), **overrides}


def contribute(proto: Protocol, inp: ContributionInput) -> int:
    """Approves exactly the stake, then contributes directly; returns the contribution id."""
    proto.approve(proto.datanets.address, inp.stake)
    return proto.contribute(inp)


def send(proto: Protocol, fn: Any) -> TxReceipt:
    return proto.client.transact(fn)


def call_as(proto: Protocol, sender: str, fn: Any) -> Any:
    """An eth_call of `fn` from any address (no key needed); reverts decoded."""
    try:
        return fn.call({"from": Web3.to_checksum_address(sender)})
    except ContractLogicError as e:
        raise decode_revert(e.data if isinstance(e.data, str) else None) from None


def outcome(fn: Any, *args: Any) -> str:
    """Runs `fn(*args)`; "ok", or the name of the custom error it reverted with."""
    try:
        fn(*args)
    except ContractRevertError as e:
        return e.name
    return "ok"


def block_time(proto: Protocol, receipt: TxReceipt) -> int:
    return int(proto.client.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def token_nonce(proto: Protocol, owner: str) -> int:
    return int(proto.client.call(proto.token.functions.nonces(Web3.to_checksum_address(owner))))


def registry_nonce(proto: Protocol, owner: str) -> int:
    return int(proto.client.call(proto.datanets.functions.nonces(Web3.to_checksum_address(owner))))


def allowance(proto: Protocol, owner: str, spender: str) -> int:
    fn = proto.token.functions.allowance(Web3.to_checksum_address(owner), Web3.to_checksum_address(spender))
    return int(proto.client.call(fn))


# ------------------------------------------------------------------------ EIP-712


def contribution_message(inp: ContributionInput, contributor: str, nonce: int, deadline: int) -> dict[str, Any]:
    return {
        "contributor": Web3.to_checksum_address(contributor),
        "datanetId": inp.datanetId,
        "cid": inp.cid,
        "contentHash": inp.contentHash,
        "byteSize": inp.byteSize,
        "recordCount": inp.recordCount,
        "stake": inp.stake,
        "nonce": nonce,
        "deadline": deadline,
    }


def registry_domain(chain_id: int, registry: str) -> dict[str, Any]:
    return {"name": "DatanetRegistry", "version": "1", "chainId": chain_id, "verifyingContract": registry}


def contribution_digest(proto: Protocol, inp: ContributionInput, contributor: str, nonce: int, deadline: int) -> bytes:
    """The EIP-712 digest computed off-chain (eth_account), independent of the contract."""
    domain = registry_domain(proto.chain_id, proto.datanets.address)
    signable = encode_typed_data(
        domain, signing.CONTRIBUTE_TYPES, contribution_message(inp, contributor, nonce, deadline)
    )
    return keccak(b"\x19\x01" + signable.header + signable.body)


def sign_with_nonce(proto: Protocol, signer: LocalAccount, inp: ContributionInput, nonce: int, deadline: int) -> bytes:
    """`signer`'s `Contribute` signature over `inp` for an explicit nonce."""
    return signing.sign_contribution(signer, proto.datanets.address, proto.chain_id, inp, nonce, deadline)


def relay(
    relayer: Protocol,
    inp: ContributionInput | dict[str, Any],
    contributor: str,
    deadline: int,
    signature: bytes,
    permit: Permit | None = None,
) -> TxReceipt:
    """Sends `contributeBySig` with a raw struct (so tampered fields reach the contract), after
    committing that struct's content for `contributor`."""
    struct = inp.model_dump() if isinstance(inp, ContributionInput) else inp
    salt = commit(relayer, struct, contributor)
    fn = relayer.datanets.functions.contributeBySig(
        struct, Web3.to_checksum_address(contributor), deadline, signature, (permit or Permit()).model_dump(), salt
    )
    return relayer.client.transact(fn, estimate_at="pending")  # the reveal is valid from the next block


def commit(sender: Protocol, struct: dict[str, Any], contributor: str) -> bytes:
    """Commits a raw contribution struct's content for `contributor` (sent by `sender`); returns the salt."""
    salt = secrets.token_bytes(32)
    commitment = keccak(
        encode(
            ["uint256", "bytes32", "address", "bytes32"],
            [struct["datanetId"], bytes(struct["contentHash"]), Web3.to_checksum_address(contributor), salt],
        )
    )
    if sender.client.call(sender.datanets.functions.contributionCommitment(
        struct["datanetId"], bytes(struct["contentHash"]), Web3.to_checksum_address(contributor), salt
    )) != commitment:  # fmt: skip
        raise AssertionError("the test's commitment differs from the registry's")
    sender.client.transact(sender.datanets.functions.commitContribution(commitment))
    return salt


def malleate(signature: bytes) -> bytes:
    """The other valid-on-the-curve form of a 65-byte signature: (r, n - s, v ^ 1)."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v if v in (27, 28) else v ^ 1])


# ---------------------------------------------------------------------- isolation


class FreshWorld(World):
    """The deployed protocol seen through new clients, each created on first use (~10 ms apiece,
    which adds up over many examples). New clients count nonces from the chain afresh."""

    def __init__(self, base: World) -> None:  # not the dataclass __init__: the roles are lazy
        self.rpc_url = base.rpc_url
        self.deployment = base.deployment
        self._base = base.admin

    def _fresh(self, index: int) -> Protocol:
        return self._base.as_account(account(index))

    def rpc(self, method: str, *params: object) -> object:
        """Raw RPC through the base client (reads and dev-chain controls need no nonce)."""
        return self._base.client.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    def now(self) -> int:
        return int(self._base.client.w3.eth.get_block("latest")["timestamp"])

    @cached_property
    def admin(self) -> Protocol:  # type: ignore[override]
        return self._fresh(DEPLOYER)

    @cached_property
    def curator(self) -> Protocol:  # type: ignore[override]
        return self._fresh(CURATOR)

    @cached_property
    def node(self) -> Protocol:  # type: ignore[override]
        return self._fresh(NODE)

    @cached_property
    def poster(self) -> Protocol:  # type: ignore[override]
        return self._fresh(POSTER)

    @cached_property
    def relayer(self) -> Protocol:  # type: ignore[override]
        return self._fresh(RELAYER)

    @cached_property
    def outsider(self) -> Protocol:  # type: ignore[override]
        return self._fresh(OUTSIDER)

    @cached_property
    def contributors(self) -> list[Protocol]:  # type: ignore[override]
        return [self._fresh(i) for i in CONTRIBUTORS]


@contextmanager
def isolated(world: World) -> Iterator[World]:
    """One hypothesis example's world: an EVM snapshot, reverted afterwards, seen through fresh
    clients (a revert rewinds account nonces, so earlier clients would send with stale ones)."""
    snapshot = world.rpc("evm_snapshot")
    try:
        yield FreshWorld(world)
    finally:
        world.rpc("evm_revert", snapshot)
