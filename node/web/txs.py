"""Transactions the pages build on the server and someone signs: the visitor's wallet, or, for
the node's operator on its own machine, the node's keystore.

An action (contribute, approve, reject, claim) is planned as a list of `Step`s: each a bound
contract function of `node.chain.protocol`'s contracts, in the order they must be mined. For a
wallet, each step becomes `{to, data, value, chainId}` (calldata from web3.py's own ABI encoder,
against the deployment's addresses), which the page sends with `eth_sendTransaction` one at a
time: it asks `POST /tx/estimate` first (gas estimated in the pending block, so a step that must
follow the previous one's block estimates right, and a revert is decoded into our error message
with its hint before the wallet asks anyone to sign), then polls `GET /tx/<hash>` for the receipt.
For the keystore, the same steps go through `ChainClient.transact` (the CLI's path).

No JS web3 library: the browser only relays what the server built.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound

from node.chain.accounts import resolve_account
from node.chain.protocol import Protocol
from node.chain.reverts import decode_revert
from node.errors import ChainError, NodeError
from node.web.security import Session, require_local
from node.web.site import FormSession, PageSession, web_of

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Step:
    """One transaction of an action: what the page shows while it waits, and the call."""

    label: str
    fn: ContractFunction
    estimate_at: Literal["latest", "pending"] = "pending"  # a reveal is valid only after its commit's block


class ActionError(NodeError, ValueError):
    """An action refused before anything is signed (the message says why and what to do)."""


def wallet_tx(p: Protocol, step: Step, sender: str) -> dict[str, Any]:
    """`step` as the EIP-1193 `eth_sendTransaction` parameter (hex quantities), plus its label."""
    return {
        "from": sender, "to": step.fn.address, "data": step.fn._encode_transaction_data(), "value": "0x0",
        "chainId": hex(p.chain_id), "label": step.label,
    }  # fmt: skip


def abi_tuple(contract: Any, fn_name: str, index: int, value: dict[str, Any]) -> tuple[Any, ...]:
    """A struct argument as the tuple the ABI encoder takes (`_encode_transaction_data` does not
    map dicts by field name as `transact` does), in the order of the function's ABI components."""
    [entry] = [e for e in contract.abi if e.get("type") == "function" and e.get("name") == fn_name
               and len(e.get("inputs", [])) > index and e["inputs"][index]["type"] == "tuple"]  # fmt: skip
    return tuple(value[c["name"]] for c in entry["inputs"][index]["components"])


def wallet_plan(p: Protocol, steps: list[Step], sender: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"txs": [wallet_tx(p, s, sender) for s in steps], **extra})


def run_steps(p: Protocol, steps: list[Step]) -> list[str]:
    """Sends `steps` in order from `p`'s account (the node's keystore); their tx hashes."""
    hashes = []
    for step in steps:
        receipt = p.client.transact(step.fn, estimate_at=step.estimate_at)
        hashes.append("0x" + bytes(receipt["transactionHash"]).hex())
    return hashes


_account_lock = threading.Lock()


def node_signer(request: Request, action: str) -> Protocol:
    """The protocol bound to the node's own account, for the local operator only (the keystore is
    decrypted once per server and kept on the web state)."""
    require_local(request, action)
    web = web_of(request)
    s = web.services
    if s.protocol is None or s.node is None:
        raise ActionError("This node has no deployment or settings configured: it cannot sign transactions.")
    with _account_lock:
        account: LocalAccount | None = getattr(web, "node_account", None)
        if account is None:
            n = s.node
            account, _ = resolve_account(
                n.keystore, n.keystore_password.get_secret_value() if n.keystore_password else None,
                n.private_key.get_secret_value() if n.private_key else None, s.protocol.chain_id, prompt=False,
            )  # fmt: skip
            web.node_account = account  # type: ignore[attr-defined]
    return s.protocol.as_account(account)


def node_address(request: Request) -> str | None:
    """The node's own address when it is already known (after a first keystore action, or from the
    keystore file's plain `address` field); None otherwise."""
    web = web_of(request)
    account = getattr(web, "node_account", None)
    if account is not None:
        return str(account.address)
    n = web.services.node
    if n is None:
        return None
    if n.private_key is not None:
        from node.chain.accounts import from_private_key

        return str(from_private_key(n.private_key.get_secret_value()).address)
    try:
        import json

        raw = json.loads(n.keystore.read_text()) if n.keystore and n.keystore.exists() else None
    except (OSError, ValueError):
        return None
    addr = raw.get("address") if isinstance(raw, dict) else None
    from web3 import Web3

    return Web3.to_checksum_address("0x" + addr.removeprefix("0x")) if isinstance(addr, str) else None


def sender_of(session: Session) -> str:
    """The signed-in wallet's address, which signs what the server plans."""
    if not session.wallet:
        raise ActionError("Connect a wallet first (Connect wallet, at the top of the page): it signs this.")
    return session.wallet


def error(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def protocol_of(request: Request) -> Protocol:
    p = web_of(request).services.protocol
    if p is None:
        raise ActionError("This node has no chain configured: there is nothing to send transactions to.")
    return p


def store_of(request: Request, what: str) -> Any:
    """The node's content store, which must hold `what` before it goes on-chain."""
    store = web_of(request).services.store
    if store is None:
        raise ActionError(f"This node has no content store configured, so it cannot hold {what}.")
    return store


# -- the routes the page's wallet script uses ------------------------------------------------------


@router.post("/tx/estimate")
async def estimate(request: Request, session: FormSession) -> JSONResponse:
    """Gas for `{from, to, data, value}` in the pending block, or the decoded revert (422)."""
    p = protocol_of(request)
    body = await request.json()
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("from", "to", "data")):
        return error("Send {from, to, data, value} as JSON strings.", 400)
    tx = {"from": body["from"], "to": body["to"], "data": body["data"], "value": int(str(body.get("value", "0x0")), 16)}
    try:
        gas = p.client.w3.eth.estimate_gas(tx, "pending")  # type: ignore[arg-type]
    except ContractLogicError as e:
        return error(str(decode_revert(e.data if isinstance(e.data, str) else None)))
    except (ValueError, ChainError) as e:
        return error(f"The chain refused to estimate this transaction: {str(e)[:300]}")
    return JSONResponse({"gas": hex(int(gas * p.client.gas_multiplier))})


@router.get("/tx/{tx_hash}")
def receipt(request: Request, session: PageSession, tx_hash: str) -> JSONResponse:
    """`pending` until mined; then `success`, or `failed` with the decoded revert reason."""
    p = protocol_of(request)
    try:
        h = HexBytes(tx_hash)
    except ValueError:
        return error(f"'{tx_hash}' is not a transaction hash.", 400)
    w3 = p.client.w3
    try:
        r = w3.eth.get_transaction_receipt(h)
    except TransactionNotFound:
        return JSONResponse({"status": "pending"})
    if r["status"] == 1:
        return JSONResponse({"status": "success", "block": r["blockNumber"]})
    why = "it was mined but failed (out of gas?)"
    try:
        tx = w3.eth.get_transaction(h)
        w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"]},  # type: ignore[typeddict-item]
                    r["blockNumber"] - 1)  # fmt: skip
    except ContractLogicError as e:
        why = str(decode_revert(e.data if isinstance(e.data, str) else None))
    except Exception as e:  # the replay failing must not hide that the transaction failed
        log.info("replaying failed tx %s: %s", tx_hash, e)
    return JSONResponse({"status": "failed", "block": r["blockNumber"], "error": why})


def install_errors(app: Any) -> None:
    @app.exception_handler(ActionError)
    async def _action_error(request: Request, e: ActionError) -> JSONResponse:
        return error(str(e))


__all__ = [
    "ActionError",
    "Step",
    "abi_tuple",
    "node_address",
    "node_signer",
    "run_steps",
    "sender_of",
    "wallet_plan",
    "wallet_tx",
]
