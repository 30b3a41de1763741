"""Sending transactions and reading state over JSON-RPC, robustly.

- every RPC call is retried with exponential backoff on connection errors and time-outs, then
  fails with `RpcUnavailableError` saying which URL did not answer;
- transactions get their nonce from a local counter (resynced from the chain on "nonce too
  low"), gas from an estimate times a safety margin, EIP-1559 fees from the node;
- a revert, at estimation or after mining, becomes a `ContractRevertError` named after the
  contract's custom error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import BlockIdentifier, TxParams, TxReceipt, Wei

from node.chain.artifacts import load_artifact
from node.chain.reverts import decode_revert
from node.config import Settings
from node.errors import ChainError, ContractRevertError, RpcUnavailableError, TransactionError

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


class ChainClient:
    """One account on one chain. Thread-safe for sending (a lock guards the nonce)."""

    def __init__(
        self,
        rpc_url: str,
        account: LocalAccount | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.25,
        gas_multiplier: float = 1.2,
        receipt_timeout: float = 120.0,
    ):
        self.rpc_url = rpc_url
        self.account = account
        self.retries = retries
        self.backoff = backoff
        self.gas_multiplier = gas_multiplier
        self.receipt_timeout = receipt_timeout
        # web3's own retries off: `rpc()` below owns retrying, so an outage is reported in bounded time.
        self.w3 = Web3(
            Web3.HTTPProvider(
                rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
            )
        )
        self._nonce: int | None = None
        self._genesis: str | None = None
        self._lock = threading.Lock()
        self.last_receipt: TxReceipt | None = None  # the latest successful tx, for reporting

    @property
    def last_tx(self) -> str | None:
        """0x-hash of the latest successful transaction (None before the first)."""
        r = self.last_receipt
        return "0x" + bytes(r["transactionHash"]).hex() if r is not None else None

    @classmethod
    def from_settings(cls, settings: Settings, account: LocalAccount | None = None) -> ChainClient:
        return cls(
            settings.rpc_url,
            account,
            timeout=settings.rpc_timeout,
            retries=settings.rpc_retries,
            gas_multiplier=settings.gas_multiplier,
        )

    def with_account(self, account: LocalAccount) -> ChainClient:
        """A client for another account on the same chain (its own nonce counter)."""
        client = ChainClient(
            self.rpc_url,
            account,
            retries=self.retries,
            backoff=self.backoff,
            gas_multiplier=self.gas_multiplier,
            receipt_timeout=self.receipt_timeout,
        )
        client._genesis = self._genesis
        return client

    @property
    def address(self) -> ChecksumAddress:
        if self.account is None:
            raise ChainError("This client has no account; configure a keystore or private key.")
        return self.account.address

    # ------------------------------------------------------------------ reading

    def rpc(self, fn: Callable[[], T], what: str = "RPC call") -> T:
        """Runs `fn` (which talks to the node), retrying transient failures with backoff."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except _TRANSIENT as e:
                if attempt == self.retries:
                    raise RpcUnavailableError(
                        f"{what} failed: the RPC endpoint {self.rpc_url} did not answer after "
                        f"{self.retries + 1} tries ({type(e).__name__}). Is the chain running? "
                        "Start it with `datanet chain up` or fix DATANET_RPC_URL."
                    ) from e
                log.warning("%s: %s unreachable, retrying in %.2fs", what, self.rpc_url, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def check_reachable(self, timeout: float = 3.0) -> None:
        """One quick `eth_chainId`, no retries: a command run by hand fails at once, with the fix,
        when nothing answers (instead of retrying for ~9 s as `rpc` does for a service)."""
        probe = ChainClient(self.rpc_url, timeout=timeout, retries=0)
        try:
            _ = probe.w3.eth.chain_id
        except _TRANSIENT as e:
            raise RpcUnavailableError(
                f"No chain answers at {self.rpc_url} ({type(e).__name__}). Start the dev chain with "
                "`datanet chain up --detach`, or point --rpc-url / DATANET_RPC_URL at a running node."
            ) from e
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else "an error"
            raise RpcUnavailableError(
                f"{self.rpc_url} answered HTTP {status}: it is not an Ethereum JSON-RPC endpoint. Check --rpc-url / "
                "DATANET_RPC_URL (e.g. http://127.0.0.1:8545 for the dev chain)."
            ) from e

    def contract(self, name: str, address: str) -> Contract:
        abi = load_artifact(name).abi
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi, decode_tuples=True)

    def call(self, fn: ContractFunction, block: BlockIdentifier = "latest") -> Any:
        """A read-only call; reverts become `ContractRevertError`."""
        try:
            return self.rpc(
                lambda: fn.call({"from": self.account.address} if self.account else {}, block), fn.fn_name
            )
        except ContractLogicError as e:
            raise decode_revert(e.data if isinstance(e.data, str) else None) from None

    @property
    def chain_id(self) -> int:
        return self.rpc(lambda: self.w3.eth.chain_id, "eth_chainId")

    @property
    def genesis_hash(self) -> str:
        """0x-hash (lower case) of block 0. With the chain id, it tells chains apart: a restarted
        dev chain keeps its id (31337) but not its genesis. Read once per client (it never changes)."""
        if self._genesis is None:
            block = self.rpc(lambda: self.w3.eth.get_block(0), "eth_getBlockByNumber 0")
            self._genesis = "0x" + bytes(block["hash"]).hex()
        return self._genesis

    def block_number(self) -> int:
        return self.rpc(lambda: self.w3.eth.block_number, "eth_blockNumber")

    # ------------------------------------------------------------------ writing

    def transact(
        self, fn: ContractFunction, value: int = 0, *, estimate_at: Literal["latest", "pending"] = "latest"
    ) -> TxReceipt:
        """Estimates, signs, sends and waits for `fn`; returns the successful receipt.
        `estimate_at="pending"` estimates in the block the transaction will be mined in, for calls
        that must not run in the latest block (a challenge reveal after its commit)."""
        tx: TxParams = {"from": self.address, "value": Wei(value)}
        try:
            gas = self.rpc(lambda: fn.estimate_gas(tx, block_identifier=estimate_at), f"estimate {fn.fn_name}")
        except ContractLogicError as e:
            raise decode_revert(e.data if isinstance(e.data, str) else None) from None
        tx["gas"] = int(gas * self.gas_multiplier)
        built = self.rpc(lambda: fn.build_transaction(tx), f"build {fn.fn_name}")
        return self._sign_send_wait(built, fn.fn_name)

    def deploy(self, name: str, *args: Any) -> ChecksumAddress:
        """Deploys contract `name` from the artifacts; returns its address."""
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        ctor = factory.constructor(*args)
        try:
            gas = self.rpc(lambda: ctor.estimate_gas({"from": self.address}), f"estimate deploy {name}")
        except ContractLogicError as e:
            raise decode_revert(e.data if isinstance(e.data, str) else None) from None
        built = self.rpc(
            lambda: ctor.build_transaction({"from": self.address, "gas": int(gas * self.gas_multiplier)}),
            f"build deploy {name}",
        )
        receipt = self._sign_send_wait(built, f"deploy {name}")
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionError(f"Deploying {name} produced no contract address.")
        return address

    def send_value(self, to: str, value: int) -> TxReceipt:
        tx: TxParams = {
            "from": self.address,
            "to": Web3.to_checksum_address(to),
            "value": Wei(value),
            "gas": 21000,
        }
        fees = self._fees()
        return self._sign_send_wait({**tx, **fees, "chainId": self.chain_id}, "transfer")

    def _fees(self) -> dict[str, int]:
        base = self.rpc(lambda: self.w3.eth.get_block("latest")["baseFeePerGas"], "get fees")
        tip = self.rpc(lambda: self.w3.eth.max_priority_fee, "get tip")
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def _sign_send_wait(self, tx: dict[str, Any] | TxParams, what: str) -> TxReceipt:
        with self._lock:
            tx_hash = self._send(tx, what)
        try:
            receipt = self.rpc(
                lambda: self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout, poll_latency=0.05
                ),
                f"wait for {what}",
            )
        except TimeExhausted as e:
            raise TransactionError(
                f"{what}: tx {tx_hash.hex()} not mined within {self.receipt_timeout} s; it may still "
                "be mined. Check it before resending."
            ) from e
        if receipt["status"] != 1:
            raise self._explain_failure(tx, receipt, what)
        self.last_receipt = receipt
        return receipt

    def _send(self, tx: dict[str, Any] | TxParams, what: str) -> HexBytes:
        """Signs with the next nonce and sends; resyncs the nonce once if the node disagrees."""
        assert self.account is not None
        for attempt in range(2):
            signed = self.account.sign_transaction({**tx, "nonce": self._take_nonce()})  # type: ignore[dict-item]
            raw = signed.raw_transaction
            try:
                return self.rpc(lambda raw=raw: self.w3.eth.send_raw_transaction(raw), what)  # type: ignore[misc]
            except Web3RPCError as e:
                message = str(e).lower()
                # A resend after a lost response meets our own tx (pending, or already mined and so
                # "nonce too low"): it went through; sending a new one would do the action twice.
                if "already known" in message or self._is_known(HexBytes(signed.hash)):
                    return HexBytes(signed.hash)
                self._nonce = None  # resync from the chain next time
                if "nonce" in message and attempt == 0:
                    log.info("%s: nonce out of sync, resyncing from the chain", what)
                    continue
                raise TransactionError(f"{what}: the node refused the transaction: {e}") from e
        raise AssertionError("unreachable")

    def _is_known(self, tx_hash: HexBytes) -> bool:
        try:
            self.rpc(lambda: self.w3.eth.get_transaction(tx_hash), "get transaction")
        except TransactionNotFound:
            return False
        return True

    def _take_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = self.rpc(
                lambda: self.w3.eth.get_transaction_count(self.address, "pending"), "get nonce"
            )
        nonce = self._nonce
        self._nonce += 1
        return nonce

    def _explain_failure(self, tx: dict[str, Any] | TxParams, receipt: TxReceipt, what: str) -> ChainError:
        """Replays a mined, failed tx as a call at its block to recover the revert reason."""
        tx_hash = HexStr("0x" + bytes(receipt["transactionHash"]).hex())
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}  # type: ignore[literal-required]
        try:
            self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except ContractLogicError as e:
            err: ContractRevertError = decode_revert(e.data if isinstance(e.data, str) else None, tx_hash)
            return err
        except Exception:  # the replay itself failing must not hide the original failure
            pass
        return TransactionError(f"{what}: tx {tx_hash} was mined but failed (out of gas?).")
