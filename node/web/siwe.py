"""Sign-In with Ethereum (EIP-4361): a wallet proves it holds an address by signing a message.

Why each check: the signature alone proves only that *some* message was signed. The domain and
URI must be this site as the browser reached it (a message signed for another site cannot be
replayed here), the chain id this node's chain, the nonce one this server issued, unused and
unexpired (a captured message and signature cannot be replayed, even here), the issued-at not in
the future and the expiration time not passed. The address is the one `personal_sign`
(EIP-191) recovers: `Account.recover_message(encode_defunct(text=message))`.

The server writes the whole message (the page only asks the wallet to sign it) and parses it
back strictly on the way in; nonces live in memory, so a restart voids the unsigned ones (the
wallet simply asks for a new one). No `siwe` package: it pins older web3 and eth-account.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address, to_checksum_address

NONCE_TTL_S = 10 * 60  # a nonce must come back signed within this
STATEMENT = "Sign in to this Datanet node. Signing costs nothing and sends no transaction."
MAX_NONCES = 10_000  # unsigned nonces kept at most (the oldest are dropped first)

_MESSAGE = re.compile(
    r"(?P<domain>[^\s/]+) wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n\n"
    r"(?:(?P<statement>[^\n]+)\n\n)?"
    r"URI: (?P<uri>[^\s]+)\n"
    r"Version: (?P<version>[^\n]+)\n"
    r"Chain ID: (?P<chain_id>[0-9]+)\n"
    r"Nonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    r"Issued At: (?P<issued_at>[^\n]+)"
    r"(?:\nExpiration Time: (?P<expiration>[^\n]+))?"
    r"(?:\nNot Before: (?P<not_before>[^\n]+))?"
    r"(?:\nRequest ID: (?P<request_id>[^\n]*))?"
    r"(?:\nResources:(?P<resources>(?:\n- [^\n]+)+))?\Z"
)


class SiweError(ValueError):
    """A sign-in message or signature that is refused (the message says which check failed)."""


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration: datetime | None = None
    not_before: datetime | None = None

    def text(self) -> str:
        """The EIP-4361 message, exactly as the wallet shows and signs it."""
        lines = [f"{self.domain} wants you to sign in with your Ethereum account:", self.address, ""]
        if self.statement:
            lines += [self.statement, ""]
        lines += [f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {_iso(self.issued_at)}"]  # fmt: skip
        if self.expiration is not None:
            lines.append(f"Expiration Time: {_iso(self.expiration)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_iso(self.not_before)}")
        return "\n".join(lines)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(text: str, field: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SiweError(f"The sign-in message's {field} '{text}' is not an RFC 3339 date-time.") from None
    if t.tzinfo is None:
        raise SiweError(f"The sign-in message's {field} '{text}' has no time zone.")
    return t


def parse(text: str) -> SiweMessage:
    """The fields of an EIP-4361 message; `SiweError` if it is not one."""
    m = _MESSAGE.match(text.replace("\r\n", "\n"))
    if m is None:
        raise SiweError("That is not a Sign-In with Ethereum (EIP-4361) message. Reload the page and sign in again.")
    g = m.groupdict()
    if not is_checksum_address(g["address"]):
        raise SiweError(f"The address {g['address']} in the sign-in message is not EIP-55 checksummed.")
    return SiweMessage(
        domain=g["domain"], address=g["address"], statement=g["statement"], uri=g["uri"], version=g["version"],
        chain_id=int(g["chain_id"]), nonce=g["nonce"], issued_at=_when(g["issued_at"], "Issued At"),
        expiration=_when(g["expiration"], "Expiration Time") if g["expiration"] else None,
        not_before=_when(g["not_before"], "Not Before") if g["not_before"] else None,
    )  # fmt: skip


class Nonces:
    """Single-use nonces with an expiry, in memory (thread-safe)."""

    def __init__(self, ttl_s: float = NONCE_TTL_S) -> None:
        self._ttl, self._lock = ttl_s, threading.Lock()
        self._items: dict[str, float] = {}  # nonce -> expires at (monotonic order of issue kept by dict)

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        now = time.time()
        with self._lock:
            for n in [n for n, at in self._items.items() if at < now]:
                del self._items[n]
            while len(self._items) >= MAX_NONCES:
                del self._items[next(iter(self._items))]
            self._items[nonce] = now + self._ttl
        return nonce

    def use(self, nonce: str) -> None:
        """Spends `nonce`; `SiweError` if this server never issued it, it was used, or it expired."""
        with self._lock:
            expires = self._items.pop(nonce, None)
        if expires is None:
            raise SiweError("The sign-in message's nonce was not issued by this node, or was used; sign in again.")
        if time.time() > expires:
            raise SiweError(f"The sign-in message's nonce expired ({NONCE_TTL_S // 60} minutes to sign); sign again.")


def message_for(address: str, domain: str, uri: str, chain_id: int, nonce: str, lifetime_s: int) -> SiweMessage:
    """The message this node asks `address` to sign (valid for `lifetime_s` from now)."""
    now = datetime.fromtimestamp(int(time.time()), UTC)
    return SiweMessage(
        domain=domain, address=to_checksum_address(address), statement=STATEMENT, uri=uri, version="1",
        chain_id=chain_id, nonce=nonce, issued_at=now,
        expiration=datetime.fromtimestamp(int(now.timestamp()) + lifetime_s, UTC),
    )  # fmt: skip


def verify(text: str, signature: str, *, domain: str, uri: str, chain_id: int, nonces: Nonces) -> SiweMessage:
    """Checks every field of a signed sign-in message and spends its nonce; the message, whose
    `address` is then proven. Raises `SiweError` naming the first check that failed."""
    msg = parse(text)
    if msg.domain != domain:
        raise SiweError(f"The sign-in message is for '{msg.domain}', but this page is '{domain}'; sign in here again.")
    if msg.uri != uri:
        raise SiweError(f"The sign-in message's URI is '{msg.uri}', expected '{uri}'.")
    if msg.version != "1":
        raise SiweError(f"The sign-in message's version is '{msg.version}'; only version 1 is accepted.")
    if msg.chain_id != chain_id:
        raise SiweError(f"The sign-in message is for chain id {msg.chain_id}, but this node's chain is {chain_id}; "
                        "switch the wallet's network and sign in again.")  # fmt: skip
    now = datetime.now(UTC)
    if msg.issued_at.timestamp() > now.timestamp() + 60:
        raise SiweError(f"The sign-in message was issued in the future ({_iso(msg.issued_at)}).")
    if msg.expiration is not None and msg.expiration <= now:
        raise SiweError(f"The sign-in message expired at {_iso(msg.expiration)}; sign in again.")
    if msg.not_before is not None and msg.not_before > now:
        raise SiweError(f"The sign-in message is not valid before {_iso(msg.not_before)}.")
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as e:  # malformed signature bytes: eth-keys raises several types
        raise SiweError(f"The signature could not be read ({type(e).__name__}); sign in again.") from None
    if signer != msg.address:
        raise SiweError(f"The signature is by {signer}, not by {msg.address} named in the message.")
    nonces.use(msg.nonce)  # last: a refused message leaves its nonce for a correct retry
    return msg


__all__ = ["Nonces", "SiweError", "SiweMessage", "message_for", "parse", "verify"]
