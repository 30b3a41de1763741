"""Who is asking and what they may do: the session cookie, CSRF tokens, the loopback rule.

Sessions are stateless: the cookie holds a small JSON payload (who, a CSRF token, when issued)
and an HMAC-SHA256 of it under a per-node secret (`<data_dir>/web/session.key`, made on first
use). It is HttpOnly (scripts cannot read it) and SameSite=Strict (other sites' pages never send
it). Every state-changing request also carries the session's CSRF token, as a form field or an
``X-CSRF-Token`` header, compared in constant time.

Two kinds of user:
- the node operator: whoever reaches the node from this machine. The TCP peer must be loopback,
  no proxy header may be present (a reverse proxy on loopback would make every remote user look
  local), and the Host header must name loopback too (a DNS-rebinding page on another site reaches
  127.0.0.1 under its own host name, so it must not be signed in by where it connects from).
- anyone else signs in with one of this node's API keys (the session remembers the key's id and
  ends when the key is revoked), or with their own wallet (Sign-In with Ethereum, `node.web.siwe`):
  the session remembers the address, and the pages build transactions for that wallet to sign.
  The operator may connect a wallet too; the session then carries both.

Only the operator may act with the node's keystore (post a job, approve, claim): `require_local`
checks the loopback rule again on each such request, whatever the session says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import Request, Response

from node.serve.keys import ApiKey, ApiKeyStore

log = logging.getLogger(__name__)

COOKIE = "dn_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
OPERATOR = "operator"
SESSION_TTL_S = 12 * 3600  # a signed-in key's session; the operator's is renewed on every visit
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class WebError(Exception):
    """A page-level refusal, rendered as an HTML error page with `status`."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class LoginRequired(Exception):
    """No valid session and not the local operator: the page redirects to the sign-in form."""


@dataclass(frozen=True)
class Session:
    subject: str  # "operator", "key:<id>", "wallet:<address>", or "" (not signed in: the sign-in form's CSRF token)
    csrf: str
    issued_at: int
    key: ApiKey | None = None
    wallet: str | None = None  # the checksummed address signed in with Ethereum (operator or wallet sessions)

    @property
    def signed_in(self) -> bool:
        return bool(self.subject)

    @property
    def is_operator(self) -> bool:
        return self.subject == OPERATOR

    @property
    def who(self) -> str:
        wallet = f"wallet {self.wallet[:6]}…{self.wallet[-4:]}" if self.wallet else ""
        if self.is_operator:
            return "node operator" + (f" ({wallet})" if wallet else "")
        if self.key:
            return f"API key {self.key.shown} ({self.key.name})"
        return wallet or "not signed in"


class CookieSigner:
    """`payload.mac`, both base64url: the payload is JSON, the MAC is HMAC-SHA256 of it."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, b"dn-session-v1." + body, hashlib.sha256).digest()

    def dumps(self, payload: dict[str, object]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(body.encode()))}"

    def loads(self, token: str) -> dict[str, object] | None:
        body, _, mac = token.partition(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(body.encode())):
                return None
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: Path | None) -> bytes:
    """The node's session secret, created (0600, atomically) on first use. Without a data dir
    (tests, a node serving base models only) a per-process secret: sessions end on restart."""
    if data_dir is None:
        log.warning("no node data directory: web sessions use a per-process secret and end on restart")
        return secrets.token_bytes(32)
    path = data_dir / "web" / "session.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".session.key.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


# -- where a request comes from ----------------------------------------------------------


def is_loopback_peer(request: Request) -> bool:
    """The TCP peer is this machine and nothing says the request was forwarded for another."""
    client = request.client
    if client is None:
        return False
    try:
        loopback = ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False
    return loopback and not any(h in request.headers for h in PROXY_HEADERS)


def is_local_host(request: Request) -> bool:
    """The Host header names loopback (not a DNS name that happens to resolve to it)."""
    host = request.headers.get("host", "")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    return name.lower() in LOCAL_HOSTS


def is_local_operator(request: Request) -> bool:
    return is_loopback_peer(request) and is_local_host(request)


def require_local(request: Request, action: str) -> None:
    """Refuses (403) an action that spends from the node's keystore unless it comes from this machine."""
    if not is_local_operator(request):
        raise WebError(
            403, "Only on the node's own machine",
            f"{action} signs with this node's keystore, so it is allowed only from the node's machine itself: open "
            "this page at http://127.0.0.1 on the node, not through a proxy or another address. Anyone else can "
            "do it from their own wallet: connect it on these pages (Sign in with Ethereum), or use the `datanet` "
            "command.",
        )  # fmt: skip


# -- sessions ------------------------------------------------------------------------------


class Sessions:
    """Reads, issues and checks sessions for the pages."""

    def __init__(self, secret: bytes, keys: ApiKeyStore) -> None:
        self.signer, self.keys = CookieSigner(secret), keys

    def read(self, request: Request) -> Session | None:
        """The request's valid session, or None."""
        if "web_session" in request.scope:
            return request.scope["web_session"]  # type: ignore[no-any-return]
        payload = self.signer.loads(request.cookies.get(COOKIE, ""))
        session = self._session(payload) if payload else None
        request.scope["web_session"] = session
        return session

    def _session(self, p: dict[str, object]) -> Session | None:
        sub, csrf, iat, wallet = p.get("sub"), p.get("csrf"), p.get("iat"), p.get("wallet")
        if not isinstance(sub, str) or not isinstance(csrf, str) or not isinstance(iat, int):
            return None
        if wallet is not None and not isinstance(wallet, str):
            return None
        if sub.startswith("wallet:") and wallet != sub[7:]:
            return None
        if time.time() - iat > SESSION_TTL_S:
            return None
        key = None
        if sub.startswith("key:"):
            key = next((k for k in self.keys.list() if k.id == sub[4:] and k.active), None)
            if key is None:
                return None  # revoked (or unknown): signed out
        return Session(subject=sub, csrf=csrf, issued_at=iat, key=key, wallet=wallet)

    def issue(self, request: Request, subject: str, key: ApiKey | None = None, wallet: str | None = None) -> Session:
        """A new session (and CSRF token), set as the cookie on the response `finish` builds."""
        session = Session(subject=subject, csrf=secrets.token_urlsafe(24), issued_at=int(time.time()), key=key,
                          wallet=wallet)  # fmt: skip
        request.scope["web_session"] = session
        payload: dict[str, object] = {"sub": subject, "csrf": session.csrf, "iat": session.issued_at}
        if wallet is not None:
            payload["wallet"] = wallet
        request.scope["web_cookie"] = self.signer.dumps(payload)
        return session

    def current(self, request: Request, *, anonymous: bool = False) -> Session:
        """The caller's session: signs the local operator in (again) as needed; otherwise a
        signed-in key's session, or with `anonymous` a token-only one (the sign-in form)."""
        session = self.read(request)
        if is_local_operator(request):
            if session is None or not session.is_operator or time.time() - session.issued_at > SESSION_TTL_S / 2:
                kept = session.wallet if session is not None and session.is_operator else None
                session = self.issue(request, OPERATOR, wallet=kept)
            return session
        if session is not None and session.is_operator:
            session = None  # an operator cookie carried to a non-local request is worth nothing
        if session is not None and session.signed_in:
            return session
        if anonymous:
            return session or self.issue(request, "")
        raise LoginRequired

    @staticmethod
    def finish(request: Request, response: Response) -> Response:
        """Sets the cookie a new session needs on `response`."""
        cookie = request.scope.get("web_cookie")
        if cookie is not None:
            response.set_cookie(
                COOKIE, cookie, max_age=SESSION_TTL_S, path="/", httponly=True, samesite="strict",
                secure=request.url.scheme == "https",
            )  # fmt: skip
        return response

    @staticmethod
    def sign_out(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


async def form_of(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (without python-multipart); the last value of a
    repeated field wins, `form_lists` keeps them all."""
    return dict(await form_lists(request))


async def form_lists(request: Request) -> list[tuple[str, str]]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return []
    return parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


async def check_csrf(request: Request, session: Session) -> None:
    """403 unless the request carries the session's CSRF token (header or form field)."""
    sent = request.headers.get(CSRF_HEADER) or (await form_of(request)).get(CSRF_FIELD, "")
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise WebError(
            403, "Form expired",
            "This request did not carry this session's security token (CSRF). Reload the page and submit again; "
            "if it keeps happening, allow cookies for this site.",
        )  # fmt: skip
