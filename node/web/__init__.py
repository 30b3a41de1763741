"""The ModelFactory pages: Datanets, Train, Chat, Models, Rewards, served by `datanet serve`.

Server-rendered (Jinja2) with two vendored libraries (`static/vendor/`: htmx for small partial
updates, uPlot for the loss curves) and a few lines of hand-written JS; no CDN, no build step.
`node.serve.app.create_app` calls `install`; who may see and do what is `node.web.security`.
Visitors' wallets sign in with Ethereum (`node.web.siwe`, `node.web.wallet`) and sign the
transactions the server builds (`node.web.txs`): contributing, curating, claiming rewards.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    """Mounts /static and the page routes on the API's app (`app.state.services` must be set)."""
    from node.web import chat, contribute, datanet_new, pages, rewards, train, txs, wallet
    from node.web.site import STATIC, WebState, install_errors

    app.state.web = WebState(app.state.services)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_errors(app)
    txs.install_errors(app)
    routers = (datanet_new.router, pages.router, chat.router, train.router, wallet.router, txs.router,
               contribute.router, rewards.router)  # /datanets/new before pages' /datanets/{id}
    for router in routers:
        app.include_router(router)
    duties = app.state.services.duties
    if not any(isinstance(d, train.EvalReveals) for d in duties):  # one per Services, however many apps
        duties.append(train.EvalReveals(app.state.services))


__all__ = ["install"]
