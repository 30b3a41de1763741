"""The read-only pages (Models with their sample answers, Datanets) and signing in and out (with an API
key; wallets: `node.web.wallet`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from node.serve.errors import ApiError
from node.web import samples
from node.web.registry import Registry
from node.web.security import OPERATOR, WebError, check_csrf, form_of
from node.web.site import FormSession, PageSession, is_htmx, not_found, render, web_of

router = APIRouter(include_in_schema=False)


def registry(request: Request) -> Registry:
    return web_of(request).registry


@router.get("/")
def home(request: Request, session: PageSession) -> Response:
    return web_of(request).sessions.finish(request, RedirectResponse("/models", status_code=303))


# -- signing in ------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    session = web_of(request).sessions.current(request, anonymous=True)
    if session.signed_in:
        return web_of(request).sessions.finish(request, RedirectResponse(_safe_next(next), status_code=303))
    return render(request, "login.html", active="", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    web = web_of(request)
    session = web.sessions.current(request, anonymous=True)
    await check_csrf(request, session)
    form = await form_of(request)
    target = _safe_next(form.get("next", "/"))
    if session.is_operator:
        return web.sessions.finish(request, RedirectResponse(target, status_code=303))
    key = web.services.keys.verify(form.get("api_key", "").strip())
    if key is None:
        return render(request, "login.html", status=401, active="", next=target,
                      error="That is not an active API key of this node. Keys start with sk-dn-; the node's "
                      "operator makes one with `datanet api-key new`.")  # fmt: skip
    web.sessions.issue(request, f"key:{key.id}", key)  # a new CSRF token with the new identity
    return web.sessions.finish(request, RedirectResponse(target, status_code=303))


@router.post("/logout")
async def logout(request: Request) -> Response:
    web = web_of(request)
    session = web.sessions.read(request)
    if session is not None:
        await check_csrf(request, session)
    response = RedirectResponse("/login", status_code=303)
    web.sessions.sign_out(response)
    return response


def _safe_next(target: str) -> str:
    """Only a path on this site (never //host or a scheme): an open redirect otherwise."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


# -- models ------------------------------------------------------------------------------------


@router.get("/models")
def models(request: Request, session: PageSession, page: int = 1) -> Response:
    rows, pages = registry(request).models(max(1, page))
    chain = web_of(request).services.protocol is not None
    return render(request, "models.html", active="models", rows=rows, page=page, pages=pages, chain=chain)


@router.post("/models/{name:path}/samples")
async def model_samples(request: Request, session: FormSession, name: str) -> Response:
    """Sample answers of the model and its base (made once, then cached): the page's fragment
    (htmx), or back to the page."""
    s = web_of(request).services
    served = s.catalog.get(name)
    if served is None or served.kind != "adapter":
        raise not_found(f"No fine-tuned model '{name}' served by this node.")
    found, error = None, None
    try:
        found = await samples.samples(s, served)
    except (ApiError, LookupError) as e:
        error = f"The sample answers could not be made: {e}"
    if not is_htmx(request):
        return web_of(request).sessions.finish(request, RedirectResponse(f"/models/{served.id}", status_code=303))
    return render(request, "samples.html", m=served, samples=found, error=error)  # 200: htmx swaps it in


@router.get("/models/{name:path}")
def model_detail(request: Request, session: PageSession, name: str) -> Response:
    reg = registry(request)
    row = reg.model(name)
    if row is None:
        raise not_found(f"No model '{name}' in this node's catalog or the registry.")
    metrics, metrics_note = reg.metrics(row.metrics_cid) if row.kind == "adapter" else (None, None)
    config, config_note = reg.job_config(row.config_cid) if row.config_cid else (None, None)
    lineage = reg.lineage(row.model_id) if row.model_id else []
    curve = _curve(metrics.stream) if metrics else None
    served = web_of(request).services.catalog.get(row.id) if row.served and row.kind == "adapter" else None
    sampled = samples.cached(web_of(request).services, served) if served is not None else None
    return render(request, "model.html", active="models", m=row, metrics=metrics, metrics_note=metrics_note,
                  config=config, config_note=config_note, lineage=lineage, curve=curve, can_sample=served is not None,
                  samples=sampled, error=None)  # fmt: skip


def _curve(stream: list[Any]) -> dict[str, list[Any]]:
    """Train and eval loss by step, as the chart script reads it."""
    return {
        "train": [[p.step, p.loss] for p in stream if p.kind == "train" and p.loss is not None],
        "eval": [[p.step, p.eval_loss] for p in stream if p.kind == "eval" and p.eval_loss is not None],
    }


# -- Datanets ---------------------------------------------------------------------------------


@router.get("/datanets")
def datanets(request: Request, session: PageSession, q: str = "") -> Response:
    rows = registry(request).datanets(q)
    chain = web_of(request).services.protocol is not None
    template = "datanet_rows.html" if is_htmx(request) else "datanets.html"
    return render(request, template, active="datanets", rows=rows, q=q, chain=chain)


@router.get("/datanets/{datanet_id}")
def datanet_detail(request: Request, session: PageSession, datanet_id: str) -> Response:
    reg = registry(request)
    found = reg.datanet(int(datanet_id)) if datanet_id.isdigit() else None
    if found is None:
        raise not_found(f"No Datanet #{datanet_id} on this chain.")
    d, curators = found
    contributions = reg.contributions(d.id)
    return render(request, "datanet.html", active="datanets", d=d, curators=curators, contributions=contributions)


__all__ = ["OPERATOR", "WebError", "router"]
