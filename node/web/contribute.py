"""Contributing to a Datanet and curating it, from the pages.

Contribute: the page posts the chosen file's bytes (the raw body: no multipart parser needed) to
`/contribute/check`, which runs the CLI's own `validate_bytes` and answers its report and a
preview; nothing goes further while there are errors. Then `/contribute/plan` validates again
(the server trusts no page), puts the bytes into the node's content store (so the CID and sha256
the contract records are the store's), and plans the wallet's transactions: an ERC-20 `approve`
of the stake when the allowance is short (a wallet-agnostic stand-in for the CLI's EIP-2612
permit), the registry's `commitContribution`, then `contribute` with the commitment's salt in a
later block (the registry's commit-reveal). The local operator can instead have the node's
keystore do it through `contribute_files`, the CLI's own function (permit, journal and all).

Curate: a contribution's review page shows what `datanet curate show` shows (content checked
against its CID and on-chain sha256, the validation report, the first records); curators
approve or reject (with a reason) with their wallet, or the operator with the node's keystore.
"""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from web3 import Web3

from node.chain.models import Contribution, ContributionInput, ContributionStatus
from node.chain.protocol import Protocol
from node.chain.units import parse_open
from node.data.records import Example
from node.data.validate import ValidationReport, load_bytes, validate_bytes
from node.errors import NodeError
from node.web.site import FormSession, PageSession, not_found, render, web_of
from node.web.txs import (
    ActionError,
    Step,
    abi_tuple,
    node_address,
    node_signer,
    protocol_of,
    run_steps,
    sender_of,
    store_of,
    wallet_plan,
)

router = APIRouter(include_in_schema=False)
PREVIEW = 5  # records shown by the check and the review page


def example_text(e: Example) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in e.messages) if e.kind == "chat" else e.text


def check_bytes(data: bytes, name: str) -> tuple[ValidationReport, list[str]]:
    """The CLI's validation of `data` (named `name`: its suffix picks the format), and a preview."""
    report = validate_bytes(data, name)
    preview = [example_text(r.example) for r in load_bytes(data, name)[:PREVIEW]] if report.ok else []
    return report, preview


def _report_json(report: ValidationReport, preview: list[str]) -> dict[str, Any]:
    return {
        "ok": report.ok, "report": "" if report.ok else report.render(10), "format": report.format,
        "records": report.record_count, "bytes": report.byte_size, "sha256": report.sha256,
        "errors": [e.render() for e in report.errors[:10]], "warnings": [w.render() for w in report.warnings[:10]],
        "preview": preview,
    }  # fmt: skip


def _datanet(request: Request, datanet_id: int) -> Any:
    found = web_of(request).registry.datanet(datanet_id)
    if found is None:
        raise not_found(f"No Datanet #{datanet_id} on this chain.")
    return found


def _file_name(name: str) -> str:
    """Only the base name, for messages and format detection."""
    return name.replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload.jsonl"


@router.get("/datanets/{datanet_id}/contribute")
def contribute_page(request: Request, session: PageSession, datanet_id: int) -> Response:
    d, _ = _datanet(request, datanet_id)
    limit = web_of(request).services.settings.max_body_bytes
    stake = f"{Decimal(d.minStake) / 10**18:f}"
    stake = stake.rstrip("0").rstrip(".") if "." in stake else stake
    return render(request, "contribute.html", active="datanets", d=d, limit=limit, default_stake=stake,
                  operator=session.is_operator, wallet=session.wallet)  # fmt: skip


@router.post("/datanets/{datanet_id}/contribute/check")
async def contribute_check(request: Request, session: FormSession, datanet_id: int, name: str) -> JSONResponse:
    """The file's validation report and preview (nothing is stored or staked)."""
    _datanet(request, datanet_id)
    report, preview = check_bytes(await request.body(), _file_name(name))
    return JSONResponse(_report_json(report, preview), status_code=200 if report.ok else 422)


async def _prepared(request: Request, datanet_id: int, name: str, stake: str) -> tuple[Any, bytes, int, str]:
    """(Datanet, bytes, stake in base units, file name) of a valid file for a public Datanet."""
    d, _ = _datanet(request, datanet_id)
    if d.isPrivate:
        raise ActionError(f"Datanet #{d.id} is private: files are encrypted to its key on your machine first. "
                          f"Use `datanet contribute FILE --datanet {d.id}`.")  # fmt: skip
    amount = parse_open(stake, "The stake") if stake.strip() else int(d.minStake)
    if amount < d.minStake:
        raise ActionError(f"Stake {amount / 1e18:g} OPEN is below Datanet #{d.id}'s minimum of "
                          f"{d.minStake / 1e18:g} OPEN.")  # fmt: skip
    data, file = await request.body(), _file_name(name)
    report = validate_bytes(data, file)
    if not report.ok:
        raise ActionError(report.render(10) + "\nNothing was uploaded or staked. Fix the file and try again.")
    return d, data, amount, file


@router.post("/datanets/{datanet_id}/contribute/plan")
async def contribute_plan(request: Request, session: FormSession, datanet_id: int, name: str,
                          stake: str = "") -> JSONResponse:  # fmt: skip
    """Stores the file and plans the wallet's approve (if needed), commit and contribute."""
    sender = sender_of(session)
    p = protocol_of(request)
    d, data, amount, _ = await _prepared(request, datanet_id, name, stake)
    store = store_of(request, "your file")
    content_hash = hashlib.sha256(data).digest()
    existing = int(p.client.call(p.datanets.functions.contributionByContent(d.id, content_hash)))
    if existing:
        raise ActionError(f"This exact file is already contribution #{existing} to Datanet #{d.id}; nothing to do.")
    balance = p.balance(sender)
    if balance < amount:
        raise ActionError(f"{sender} holds {balance / 1e18:g} OPEN; the stake needs {amount / 1e18:g} OPEN.")
    cid = store.add_bytes(data)
    records = validate_bytes(data, _file_name(name)).record_count
    entry = ContributionInput(
        datanetId=d.id, cid=cid, contentHash=content_hash, byteSize=len(data), recordCount=records, stake=amount
    )
    return wallet_plan(p, contribution_steps(p, entry, sender), sender, cid=cid, sha256="0x" + content_hash.hex())


def contribution_steps(p: Protocol, entry: ContributionInput, sender: str) -> list[Step]:
    registry = p.datanets.address
    steps = []
    allowance = int(p.client.call(p.token.functions.allowance(Web3.to_checksum_address(sender), registry)))
    if allowance < entry.stake:
        steps.append(Step(f"Approve the stake of {entry.stake / 1e18:g} OPEN", p.token.functions.approve(
            registry, entry.stake), "latest"))  # fmt: skip
    salt = secrets.token_bytes(32)  # revealed only in the contribute transaction, after the commit is mined
    commitment = p.contribution_commitment(entry, sender, salt)
    steps.append(Step("Commit the contribution", p.datanets.functions.commitContribution(commitment), "latest"))
    struct = abi_tuple(p.datanets, "contribute", 0, entry.model_dump())
    steps.append(Step("Submit the contribution", p.datanets.functions.contribute(struct, salt)))
    return steps


@router.post("/datanets/{datanet_id}/contribute/keystore")
async def contribute_keystore(request: Request, session: FormSession, datanet_id: int, name: str,
                              stake: str = "") -> JSONResponse:  # fmt: skip
    """The local operator's contribution, signed by the node's keystore (the CLI's path)."""
    from node.data.contribute import Journal, contribute_files

    p = node_signer(request, "Contributing with the node's wallet")
    d, data, amount, file = await _prepared(request, datanet_id, name, stake)
    s = web_of(request).services
    assert s.node is not None
    store = store_of(request, "your file")
    folder = s.node.data_dir / "web" / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_bytes(data)
    journal = Journal(s.node.data_dir / "contributions-journal.json")
    [r] = contribute_files(p, store, d.id, [path], amount, journal)
    return JSONResponse({"contribution_id": r.contribution_id, "cid": r.cid, "sha256": "0x" + r.sha256,
                         "tx": r.tx, "already": r.already_submitted})  # fmt: skip


# -- curating ------------------------------------------------------------------------------------


def review(p: Protocol, store: Any, c: Contribution) -> dict[str, Any]:
    """What `datanet curate show` checks and shows: content verified against its CID (the store
    does) and the on-chain sha256, the validation report, the first records."""
    if p.datanet(c.datanetId).isPrivate:
        return {"note": "This Datanet is private: its records are encrypted. Review them with "
                f"`datanet curate show {c.id}` on a curator's machine (it decrypts there).", "preview": []}  # fmt: skip
    if store is None:
        return {"note": "This node has no content store configured.", "preview": []}
    try:
        data = store.cat(c.cid)
    except (NodeError, OSError) as e:
        return {"note": f"{c.cid} could not be fetched: {str(e)[:200]}", "preview": []}
    if hashlib.sha256(data).digest() != bytes(c.contentHash):
        return {"note": f"The content of {c.cid} does not match the sha256 recorded on-chain "
                f"(0x{bytes(c.contentHash).hex()}); reject it.", "preview": [], "mismatch": True}  # fmt: skip
    report, preview = check_bytes(data, f"contribution-{c.id}")
    return {"note": None, "report": report, "preview": preview}


@router.get("/datanets/{datanet_id}/contributions/{contribution_id}")
def review_page(request: Request, session: PageSession, datanet_id: int, contribution_id: int) -> Response:
    s = web_of(request).services
    p = s.protocol
    if p is None or not 1 <= contribution_id <= p.contribution_count():
        raise not_found(f"No contribution #{contribution_id} on this chain.")
    c = p.contribution(contribution_id)
    if c.datanetId != datanet_id:
        raise not_found(f"Contribution #{contribution_id} is not in Datanet #{datanet_id}.")
    d, curators = _datanet(request, datanet_id)
    lower = {a.lower() for a in curators}
    node = node_address(request) if session.is_operator else None
    return render(request, "review.html", active="datanets", d=d, c=c, r=review(p, s.store, c),
                  pending=c.status == ContributionStatus.PENDING,
                  wallet_curates=bool(session.wallet and session.wallet.lower() in lower),
                  node_curates=bool(node and node.lower() in lower), wallet=session.wallet, node=node)  # fmt: skip


async def _decision(request: Request) -> tuple[int, str, str]:
    body = await request.json()
    if not isinstance(body, dict):
        raise ActionError("Send {contribution, decision, reason} as JSON.")
    decision, reason = str(body.get("decision", "")), str(body.get("reason", "")).strip()
    if decision not in ("approve", "reject"):
        raise ActionError(f"The decision must be approve or reject, got '{decision}'.")
    if decision == "reject" and not reason:
        raise ActionError("Say why you reject it: the reason is recorded on-chain for the contributor.")
    try:
        return int(body.get("contribution", 0)), decision, reason[:500]
    except (TypeError, ValueError):
        raise ActionError("The contribution must be a number.") from None


def curate_steps(p: Protocol, curator: str, contribution_id: int, decision: str, reason: str) -> list[Step]:
    if not 1 <= contribution_id <= p.contribution_count():
        raise ActionError(f"No contribution #{contribution_id}.")
    c = p.contribution(contribution_id)
    if c.status != ContributionStatus.PENDING:
        raise ActionError(f"Contribution #{c.id} is {c.status.name.lower()}: only a pending one can be decided.")
    if not p.is_curator(c.datanetId, curator):
        raise ActionError(f"{curator} is not a curator of Datanet #{c.datanetId}; its owner adds curators.")
    fns = p.datanets.functions
    if decision == "approve":
        return [Step(f"Approve contribution #{c.id}", fns.approve(c.id), "latest")]
    return [Step(f"Reject contribution #{c.id}", fns.reject(c.id, reason), "latest")]


@router.post("/curate/plan")
async def curate_plan(request: Request, session: FormSession) -> JSONResponse:
    sender = sender_of(session)
    p = protocol_of(request)
    cid, decision, reason = await _decision(request)
    return wallet_plan(p, curate_steps(p, sender, cid, decision, reason), sender)


@router.post("/curate/keystore")
async def curate_keystore(request: Request, session: FormSession) -> JSONResponse:
    p = node_signer(request, "Deciding with the node's wallet")
    cid, decision, reason = await _decision(request)
    return JSONResponse({"txs": run_steps(p, curate_steps(p, p.address, cid, decision, reason))})


__all__ = ["check_bytes", "contribution_steps", "curate_steps", "review", "router"]
