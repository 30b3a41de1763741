"""New Datanet: the creator's terms, checked as `datanet net create` checks them
(`node.data.datanet_terms`), then created by the visitor's wallet (server-built calldata) or, for
the local operator, the node's keystore. Private Datanets are created with the CLI: their keys are
made and wrapped on the creator's own machine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from node.chain.protocol import Protocol
from node.data.datanet_terms import DatanetTerms, check_terms, datanet_params
from node.errors import InputError
from node.web.site import FormSession, PageSession, render
from node.web.txs import (
    ActionError,
    Step,
    abi_tuple,
    node_signer,
    protocol_of,
    run_steps,
    sender_of,
    store_of,
    wallet_plan,
)

router = APIRouter(include_in_schema=False)

# The form's field for each setting, so an error names what the visitor sees.
FIELDS = {
    "name": "Name", "min_stake": "Minimum stake", "slash_percent": "Slash percent", "lock_days": "Lock (days)",
    "curators": "Curators", "treasury": "Treasury", "license": "Licence",
}  # fmt: skip


@router.get("/datanets/new")
def new_page(request: Request, session: PageSession) -> Response:
    return render(request, "datanet_new.html", active="datanets", operator=session.is_operator,
                  wallet=session.wallet)  # fmt: skip


async def _terms(request: Request) -> DatanetTerms:
    body = await request.json()
    if not isinstance(body, dict):
        raise ActionError("Send the Datanet's terms as a JSON object.")
    if _yes(body.get("private")):
        raise ActionError("Private Datanets are created with the CLI (`datanet net create --private`): their "
                          "encryption keys are made and wrapped to the curators on your own machine.")  # fmt: skip
    try:
        terms = DatanetTerms(
            name=str(body.get("name", "")).strip(), description=str(body.get("description", "")),
            license=str(body.get("license", "CC-BY-4.0")).strip(), commercial=_yes(body.get("commercial", True)),
            restricted=_yes(body.get("restricted")), min_stake=str(body.get("min_stake", "10")),
            slash_percent=float(body.get("slash_percent", 50)), lock_days=float(body.get("lock_days", 7)),
            curators=[c.strip() for c in str(body.get("curators", "")).replace("\n", ",").split(",") if c.strip()],
            treasury=str(body.get("treasury", "")).strip() or None,
        )  # fmt: skip
    except (TypeError, ValueError) as e:
        raise ActionError(f"Slash percent and lock (days) must be numbers ({e}).") from None
    try:
        check_terms(terms, FIELDS)  # in the form's words, before anything is stored
    except InputError as e:
        raise ActionError(str(e)) from None
    return terms


def _yes(v: Any) -> bool:
    return v is True or str(v).lower() in ("true", "on", "yes", "1")


def create_steps(p: Protocol, terms: DatanetTerms, owner: str, store: Any) -> list[Step]:
    params = datanet_params(terms, owner, store, FIELDS)
    args = abi_tuple(p.datanets, "createDatanet", 0, params.model_dump())
    return [Step(f"create Datanet '{params.name}'", p.datanets.functions.createDatanet(args))]


@router.post("/datanets/new/check")
async def new_check(request: Request, session: FormSession) -> JSONResponse:
    """The terms' problems in the form's words, or ok (nothing is stored or sent)."""
    terms = await _terms(request)
    return JSONResponse({"ok": True, "name": terms.name})


@router.post("/datanets/new/plan")
async def new_plan(request: Request, session: FormSession) -> JSONResponse:
    sender = sender_of(session)
    p = protocol_of(request)
    return wallet_plan(
        p, create_steps(p, await _terms(request), sender, store_of(request, "the Datanet's metadata")), sender
    )


@router.post("/datanets/new/keystore")
async def new_keystore(request: Request, session: FormSession) -> JSONResponse:
    p = node_signer(request, "Creating a Datanet with the node's wallet")
    txs = run_steps(p, create_steps(p, await _terms(request), p.address, store_of(request, "the Datanet's metadata")))
    return JSONResponse({"txs": txs, "datanet_id": p.datanet_count()})
