"""Signing accounts: an encrypted JSON keystore, a key from the environment, or dev accounts.

Private keys are never printed or logged; only addresses are.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3

from node.chain.devchain import DEV_MNEMONIC
from node.errors import InputError, KeystoreError

Account.enable_unaudited_hdwallet_features()


@cache
def checksum_address(value: str, what: str) -> ChecksumAddress:
    """`value` as a checksummed address; InputError naming `what` (an option, a field) otherwise."""
    if not Web3.is_address(value.strip()):
        if Web3.is_address(value.strip().lower()):  # 40 hex digits in a mixed case that is not the checksum
            raise InputError(f"{what} '{value}' has a wrong checksum (its upper/lower case); check it for typos.")
        raise InputError(f"{what} '{value}' is not an address (0x followed by 40 hex digits).")
    return Web3.to_checksum_address(value.strip())


def dev_account(index: int) -> LocalAccount:
    """The `index`-th account of the public dev mnemonic (funded on the dev chain only).
    Cached: HD derivation is slow and the tests ask for the same few accounts constantly."""
    acct: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return acct


def from_private_key(key: str) -> LocalAccount:
    try:
        acct: LocalAccount = Account.from_key(key)
    except (ValueError, TypeError):
        # `from None`: the original exception's message could echo key material.
        raise KeystoreError(
            "The private key is not a valid 32-byte hex key (check DATANET_PRIVATE_KEY)."
        ) from None
    return acct


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypts a JSON keystore (Web3 Secret Storage, as geth and eth-account write)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(
            f"Keystore {path} does not exist; create one with `datanet wallet new`."
        ) from None
    except ValueError:
        raise KeystoreError(f"Keystore {path} is not JSON; is it really a keystore file?") from None
    try:
        key = Account.decrypt(data, password)
    except ValueError:
        raise KeystoreError(f"Wrong password for keystore {path}.") from None
    return from_private_key(key.hex())


def save_keystore(account: LocalAccount, path: Path, password: str) -> Path:
    """Writes `account` encrypted (scrypt) to `path`, atomically, readable by the owner only."""
    if not password:
        raise KeystoreError("Refusing to write a keystore with an empty password.")
    encrypted = Account.encrypt(account.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(encrypted, f)
    os.replace(tmp, path)
    return path


def resolve_account(
    keystore: Path | None,
    password: str | None,
    private_key: str | None,
    chain_id: int,
    prompt: bool = True,
) -> tuple[LocalAccount, str]:
    """The account to sign with, and where it came from (for a log line without secrets).

    Order: an encrypted keystore (password from the setting/env, else a prompt), then a private
    key from the environment, then, on the dev chain only, dev account 0.
    """
    from node.chain.devchain import DEV_CHAIN_ID

    if keystore is not None:
        if password is None and prompt:
            import getpass

            password = getpass.getpass(f"Password for {keystore}: ")
        if password is None:
            raise KeystoreError(f"No password for keystore {keystore}; set DATANET_KEYSTORE_PASSWORD.")
        return load_keystore(keystore, password), f"keystore {keystore}"
    if private_key:
        return from_private_key(private_key), "DATANET_PRIVATE_KEY"
    if chain_id == DEV_CHAIN_ID:
        return dev_account(0), "dev account 0 (public dev mnemonic: dev chains only)"
    raise KeystoreError(
        f"No signing key configured for chain id {chain_id}. Set DATANET_KEYSTORE (an encrypted "
        "JSON keystore) and DATANET_KEYSTORE_PASSWORD, or DATANET_PRIVATE_KEY."
    )
