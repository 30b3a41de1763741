"""Inference fees: what an API key's account pays, and what funds each epoch's inference rewards.

A key made with an account (`datanet api-key new --account 0x...`) is paid for from that
account's deposit in the InferenceEscrow for this node; the node charges it when it settles an
epoch, and the whole charge funds the contributors' epoch round (never the node's wallet). A key
without an account is the operator's own: free. The price is ``fee_per_1k_tokens`` OPEN per 1,000
tokens, prompt and answer together; 0 (the default, and the dev chain's) makes inference free.

Before a paid request runs, the node checks that the account's deposit covers what the key has
used this epoch plus this request at its token limit, so a settlement never charges more than
was deposited. A model trained on a Datanet whose licence forbids commercial use is never served
for a fee.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import BaseModel, Field

from node.chain.inference import Charge, escrow_account
from node.chain.protocol import Protocol
from node.serve.errors import ApiError
from node.serve.keys import ApiKey, ApiKeyStore


class FeePolicy(BaseModel):
    per_1k_tokens: int = Field(0, ge=0, description="OPEN base units per 1,000 tokens (prompt + answer).")
    node: str | None = Field(None, description="The serving node's address (the escrow accounts are per node).")

    def cost(self, tokens: int) -> int:
        """Rounded up: a request never costs nothing when the price is not nothing."""
        return -(-tokens * self.per_1k_tokens // 1000)

    def paid(self, key: ApiKey) -> bool:
        return self.per_1k_tokens > 0 and key.account is not None


class BalanceCache:
    """Escrow balances read from the chain, reused for a few seconds (one RPC call per key per
    `ttl`, not per request)."""

    def __init__(self, protocol: Protocol | None, ttl: float = 5.0):
        self.protocol, self.ttl = protocol, ttl
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def balance(self, node: str, payer: str) -> int:
        now = time.monotonic()
        hit = self._seen.get((node, payer))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if self.protocol is None or self.protocol.escrow is None:
            raise ApiError(503, "this node has no InferenceEscrow deployed, so paid keys cannot be served",
                           type="server_error", code="no_escrow")  # fmt: skip
        value = escrow_account(self.protocol, node, payer).balance
        self._seen[(node, payer)] = (now, value)
        return value


def admit(policy: FeePolicy, balances: BalanceCache, key: ApiKey, used_tokens: int, request_tokens: int,
          commercial_use: bool, model: str) -> None:  # fmt: skip
    """Raises the API error that stops a paid request the deposit or the licence does not allow."""
    if not policy.paid(key):
        return
    if not commercial_use:
        raise ApiError(
            403, f"{model} was trained on a Datanet whose licence forbids commercial use, so this node does not serve "
            "it for a fee; use a key without a paying account, or another model.", type="permission_error",
            param="model", code="license_forbids_commercial_use",
        )  # fmt: skip
    if policy.node is None:
        raise ApiError(503, "this node has no account to settle fees with (set its keystore)", type="server_error")
    assert key.account is not None
    owed = policy.cost(used_tokens + request_tokens)
    have = balances.balance(policy.node, key.account)
    if have < owed:
        raise ApiError(
            429, f"The escrow deposit of {key.account} for this node ({have} base units of OPEN) does not cover this "
            f"epoch's use plus this request ({owed}). Deposit more: `datanet escrow deposit {policy.node} AMOUNT`.",
            type="insufficient_quota", code="insufficient_quota",
        )  # fmt: skip


def charges(policy: FeePolicy, usage: Mapping[str, int], keys: ApiKeyStore) -> list[Charge]:
    """What each paying account owes for an epoch's `usage` (tokens per key id), merged per
    account, in address order."""
    accounts = {k.id: k.account for k in keys.list()}
    owed: dict[str, int] = {}
    for key_id, tokens in usage.items():
        account = accounts.get(key_id)
        if account is not None and policy.per_1k_tokens > 0:
            owed[account] = owed.get(account, 0) + policy.cost(tokens)
    return [Charge(payer=a, amount=n) for a, n in sorted(owed.items(), key=lambda kv: kv[0].lower()) if n > 0]
