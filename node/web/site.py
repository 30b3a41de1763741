"""What every page shares: the web state on the app, rendering with the session, the page and
form dependencies, and the HTML error pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from node.serve.app import Services, services_of
from node.serve.catalog import base_id_of
from node.web.security import LoginRequired, Session, Sessions, WebError, check_csrf, load_secret
from node.web.siwe import Nonces

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

NAV = [("datanets", "Datanets", "/datanets"), ("train", "Train", "/train"), ("chat", "Chat", "/chat"),
       ("models", "Models", "/models"), ("rewards", "Rewards", "/rewards")]  # fmt: skip


class WebState:
    """The pages' own state on `app.state.web`: templates and sessions."""

    def __init__(self, services: Services) -> None:
        from node.web.registry import Registry

        self.services = services
        self.registry = Registry(services)
        data_dir = services.node.data_dir if services.node is not None else None
        self.sessions = Sessions(load_secret(data_dir), services.keys)
        self.siwe_nonces = Nonces()
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.filters.update(when=fmt_time, short=short_hex, open=fmt_open_units, base=base_id_of)
        self.templates.env.globals["nav"] = NAV
        self.templates.env.globals["has_chain"] = services.protocol is not None


def web_of(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


def page_session(request: Request) -> Session:
    """A signed-in session (the local operator is signed in by being here); else the sign-in form."""
    return web_of(request).sessions.current(request)


async def form_session(request: Request) -> Session:
    """A signed-in session whose request carries its CSRF token: for every state-changing request."""
    session = web_of(request).sessions.current(request)
    await check_csrf(request, session)
    return session


PageSession = Annotated[Session, Depends(page_session)]
FormSession = Annotated[Session, Depends(form_session)]


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    web = web_of(request)
    session = web.sessions.read(request)
    response = web.templates.TemplateResponse(
        request, template, {"session": session, "csrf": session.csrf if session else "", **context},
        status_code=status,
    )  # fmt: skip
    return web.sessions.finish(request, response)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def install_errors(app: Any) -> None:
    @app.exception_handler(WebError)
    async def _web_error(request: Request, e: WebError) -> Response:
        if is_htmx(request) or request.headers.get("accept", "").startswith("application/json"):
            return HTMLResponse(f'<p class="error" role="alert">{_escape(e.message)}</p>', status_code=e.status)
        return render(request, "error.html", status=e.status, title=e.title, message=e.message)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET" or is_htmx(request):
            return HTMLResponse('<p class="error" role="alert">Your session ended: <a href="/login">sign in</a> '
                                "again.</p>", status_code=401)  # fmt: skip
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def not_found(what: str) -> WebError:
    return WebError(404, "Not found", what)


def services(request: Request) -> Services:
    return services_of(request)


# -- template filters ---------------------------------------------------------------------------


def fmt_time(ts: int | float | None) -> str:
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_hex(value: str | None, keep: int = 10) -> str:
    if not value:
        return "—"
    return value if len(value) <= keep + 4 else f"{value[:keep]}…{value[-4:]}"


def fmt_open_units(units: int | None) -> str:
    if units is None:
        return "—"
    whole, frac = divmod(int(units), 10**18)
    return f"{whole:,}" + (f".{frac:018d}".rstrip("0") if frac else "") + " OPEN"


def now() -> float:
    return time.time()
