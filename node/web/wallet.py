"""Connecting a browser wallet: the Sign-In with Ethereum routes (`node.web.siwe` checks them).

`GET /login/siwe/message?address=` writes the message for that address (this site's host as the
domain, its origin as the URI, the chain's id, a fresh nonce); the page's script has the wallet
`personal_sign` it and posts both to `POST /login/siwe`. A wallet session may read every page
and have the server build transactions for that address to sign; it never acts with the node's
keystore (that stays the local operator's, `require_local`). The local operator who connects a
wallet keeps the operator session, with the address added.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from web3 import Web3

from node.web import siwe
from node.web.security import OPERATOR, SESSION_TTL_S, check_csrf
from node.web.site import web_of
from node.web.txs import error

router = APIRouter(include_in_schema=False)


def _site(request: Request) -> tuple[str, str]:
    """(domain, uri) as the browser reached this node: the Host header and the origin."""
    host = request.headers.get("host", "")
    return host, f"{request.url.scheme}://{host}"


def _chain_id(request: Request) -> int | None:
    p = web_of(request).services.protocol
    return p.chain_id if p is not None else None


@router.get("/login/siwe/message")
def siwe_message(request: Request, address: str) -> JSONResponse:
    web = web_of(request)
    web.sessions.current(request, anonymous=True)  # the sign-in's CSRF token, if there is no session yet
    chain_id = _chain_id(request)
    if chain_id is None:
        return error("This node has no chain configured, so there is nothing to sign in to with a wallet.", 409)
    if not Web3.is_address(address):
        return error(f"'{address}' is not an Ethereum address.", 400)
    domain, uri = _site(request)
    msg = siwe.message_for(address, domain, uri, chain_id, web.siwe_nonces.issue(), SESSION_TTL_S)
    response = JSONResponse({"message": msg.text(), "chainId": hex(chain_id)})
    web.sessions.finish(request, response)
    return response


@router.post("/login/siwe")
async def siwe_login(request: Request) -> JSONResponse:
    web = web_of(request)
    session = web.sessions.current(request, anonymous=True)
    await check_csrf(request, session)
    body = await request.json()
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("message", "signature")):
        return error("Send {message, signature} as JSON strings.", 400)
    chain_id = _chain_id(request)
    if chain_id is None:
        return error("This node has no chain configured, so there is nothing to sign in to with a wallet.", 409)
    domain, uri = _site(request)
    try:
        msg = siwe.verify(body["message"], body["signature"], domain=domain, uri=uri, chain_id=chain_id,
                          nonces=web.siwe_nonces)  # fmt: skip
    except siwe.SiweError as e:
        return error(str(e), 401)
    subject = OPERATOR if session.is_operator else f"wallet:{msg.address}"
    web.sessions.issue(request, subject, wallet=msg.address)  # a new CSRF token with the new identity
    return web.sessions.finish(request, JSONResponse({"address": msg.address}))  # type: ignore[return-value]


__all__ = ["router"]
