"""The chain client's robustness: decoded reverts (at estimation and after mining), nonce
resync, RPC outages, keystores and key handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from node.chain.accounts import dev_account, load_keystore, resolve_account, save_keystore
from node.chain.client import ChainClient
from node.chain.devchain import free_port
from node.errors import ContractRevertError, KeystoreError, RpcUnavailableError
from tests.conftest import FUNDED, OUTSIDER, World


def test_estimation_revert_is_decoded_with_hint(world: World) -> None:
    """An ERC-20 custom error from OpenZeppelin surfaces by name, with its arguments and a hint."""
    with pytest.raises(ContractRevertError) as exc:
        world.outsider.transfer(world.admin.address, 5)
    assert exc.value.name == "ERC20InsufficientBalance"
    assert exc.value.args_by_name["needed"] == 5
    assert exc.value.args_by_name["balance"] == 0
    assert "enough OPEN" in str(exc.value)


def test_mined_failure_is_replayed_for_its_reason(world: World) -> None:
    """A tx that fails after mining (gas fixed, no estimate) still reports the custom error."""
    client = world.outsider.client
    fn = world.outsider.token.functions.transfer(world.admin.address, 7)
    tx = fn.build_transaction({"from": client.address, "gas": 100_000})
    with pytest.raises(ContractRevertError) as exc:
        client._sign_send_wait(tx, "transfer")
    assert exc.value.name == "ERC20InsufficientBalance"
    assert exc.value.tx_hash and exc.value.tx_hash.startswith("0x")


def test_stale_nonce_is_resynced(world: World) -> None:
    """Two clients of one account: the one with a stale nonce counter recovers by itself."""
    a = world.curator
    b = world.curator.as_account(dev_account(1))  # same key, separate nonce counter
    b.transfer(world.outsider.address, 1)  # b caches the next nonce
    a.transfer(world.outsider.address, 2)  # a uses it behind b's back
    b.transfer(world.outsider.address, 3)  # b's cached nonce is now too low
    assert world.outsider.balance() == 6
    assert world.curator.balance() == FUNDED - 6


def test_rpc_outage_gives_up_with_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ChainClient(url, retries=2, backoff=0.01, timeout=0.5)
    with pytest.raises(RpcUnavailableError) as exc:
        client.block_number()
    assert url in str(exc.value)
    assert "3 tries" in str(exc.value)
    assert "datanet chain up" in str(exc.value)


def test_keystore_roundtrip_and_wrong_password(tmp_path: Path) -> None:
    acct = Account.create()
    path = save_keystore(acct, tmp_path / "k.json", "correct horse")
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    assert acct.key.hex() not in path.read_text()
    assert load_keystore(path, "correct horse").address == acct.address
    with pytest.raises(KeystoreError, match="Wrong password"):
        load_keystore(path, "wrong")
    with pytest.raises(KeystoreError, match="empty password"):
        save_keystore(acct, tmp_path / "k2.json", "")
    with pytest.raises(KeystoreError, match="does not exist"):
        load_keystore(tmp_path / "missing.json", "x")


def test_resolve_account_order_and_no_key_leak(tmp_path: Path) -> None:
    ks_acct, env_acct = Account.create(), Account.create()
    ks = save_keystore(ks_acct, tmp_path / "k.json", "pw")
    key_hex = env_acct.key.hex()
    assert resolve_account(ks, "pw", key_hex, 1, prompt=False)[0].address == ks_acct.address
    assert resolve_account(None, None, key_hex, 1)[0].address == env_acct.address
    assert resolve_account(None, None, None, 31337)[0].address == dev_account(0).address
    with pytest.raises(KeystoreError, match="No signing key"):
        resolve_account(None, None, None, 1)
    with pytest.raises(KeystoreError) as exc:
        resolve_account(None, None, "0x" + "zz" * 32, 1)
    assert "zz" not in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_read_only_client_reads_without_a_key(world: World) -> None:
    reader = ChainClient(world.rpc_url)
    token = reader.contract("OpenToken", world.deployment.contracts["OpenToken"])
    assert reader.call(token.functions.symbol()) == "OPEN"
    outsider = Web3.to_checksum_address(dev_account(OUTSIDER).address)
    assert reader.call(token.functions.balanceOf(outsider)) == 0
