"""EIP-712 signatures the contracts accept: contribution relays and EIP-2612 permits."""

from __future__ import annotations

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from node.chain.models import ContributionInput, Permit

CONTRIBUTE_TYPES = {
    "Contribute": [
        {"name": "contributor", "type": "address"},
        {"name": "datanetId", "type": "uint256"},
        {"name": "cid", "type": "string"},
        {"name": "contentHash", "type": "bytes32"},
        {"name": "byteSize", "type": "uint64"},
        {"name": "recordCount", "type": "uint32"},
        {"name": "stake", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}

PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def sign_contribution(
    account: LocalAccount,
    registry: ChecksumAddress,
    chain_id: int,
    contribution: ContributionInput,
    nonce: int,
    deadline: int,
) -> bytes:
    """The contributor's signature for `DatanetRegistry.contributeBySig` (65 bytes)."""
    message = {
        "contributor": account.address,
        "datanetId": contribution.datanetId,
        "cid": contribution.cid,
        "contentHash": contribution.contentHash,
        "byteSize": contribution.byteSize,
        "recordCount": contribution.recordCount,
        "stake": contribution.stake,
        "nonce": nonce,
        "deadline": deadline,
    }
    domain = {"name": "DatanetRegistry", "version": "1", "chainId": chain_id, "verifyingContract": registry}
    signable = encode_typed_data(domain, CONTRIBUTE_TYPES, message)
    return bytes(account.sign_message(signable).signature)


def sign_permit(
    account: LocalAccount,
    token: ChecksumAddress,
    chain_id: int,
    spender: ChecksumAddress,
    value: int,
    nonce: int,
    deadline: int,
    token_name: str = "Open",
) -> Permit:
    """An EIP-2612 permit letting `spender` pull `value` OPEN from `account`."""
    domain = {"name": token_name, "version": "1", "chainId": chain_id, "verifyingContract": token}
    message = {
        "owner": account.address,
        "spender": spender,
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    signed = account.sign_message(encode_typed_data(domain, PERMIT_TYPES, message))
    return Permit(
        deadline=deadline, v=signed.v, r=signed.r.to_bytes(32, "big"), s=signed.s.to_bytes(32, "big")
    )
