"""Sessions, CSRF and the loopback rule, at the HTTP level (no browser)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from node.web.security import COOKIE, CookieSigner, load_secret
from tests.web.conftest import LOCAL, REMOTE, client, csrf_of

PAGES = ["/models", "/datanets", "/chat", "/train", "/train/jobs", "/rewards"]


def test_the_local_operator_is_signed_in_and_every_page_renders(app: FastAPI) -> None:
    c = client(app)
    first = c.get("/models")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    for path in PAGES:
        page = c.get(path)
        assert page.status_code == 200, path
        assert "node operator" in page.text and 'aria-current="page"' in page.text
        for label in ("Datanets", "Train", "Chat", "Models", "Rewards"):
            assert f">{label}</a>" in page.text
    assert c.get("/static/vendor/htmx.min.js").status_code == 200
    assert c.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_a_state_changing_request_without_the_csrf_token_is_refused(app: FastAPI) -> None:
    c = client(app)
    token = csrf_of(c.get("/train").text)
    refused = c.post("/train/check", data={"learning_rate": "1e-4"})
    assert refused.status_code == 403 and "security token" in refused.text
    wrong = c.post("/train/check", data={"csrf_token": token[:-2] + "xx"})
    assert wrong.status_code == 403
    by_field = c.post("/train/check", data={"csrf_token": token, "learning_rate": "-1"})
    assert by_field.status_code == 200 and "Learning rate must be greater than 0" in by_field.text
    by_header = c.post("/train/check", data={"epochs": "0"}, headers={"X-CSRF-Token": token})
    assert by_header.status_code == 200 and "Epochs must be greater than 0" in by_header.text
    chat = c.post("/chat/answer", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 403  # the chat route spends compute: token needed too


def test_posting_a_job_is_refused_unless_local_even_behind_a_loopback_proxy(app: FastAPI) -> None:
    c = client(app)
    token = csrf_of(c.get("/train").text)
    for header in ({"X-Forwarded-For": "198.51.100.9"}, {"Forwarded": "for=198.51.100.9"}):
        spoofed = c.post("/train", data={"csrf_token": token}, headers=header)
        assert spoofed.status_code == 403, header
        assert "only from the node's machine itself" in spoofed.text.replace("&#39;", "'")
    # A signed-in remote user (a valid key, a valid token) may browse but not spend the node's keys.
    _, key = app.state.services.keys.create("remote")
    remote = client(app, REMOTE)
    login_page = remote.get("/login")
    signed = remote.post("/login", data={"csrf_token": csrf_of(login_page.text), "api_key": key, "next": "/train"})
    assert signed.status_code == 303 and signed.headers["location"] == "/train"
    token = csrf_of(remote.get("/train").text)
    refused = remote.post("/train", data={"csrf_token": token})
    assert refused.status_code == 403 and "Only on the node" in refused.text
    # A local form that fails validation comes back with what to fix (nothing is posted).
    local = c.post("/train", data={"csrf_token": csrf_of(c.get("/train").text), "batch_size": "0"})
    assert local.status_code == 422 and "Batch size must be greater than or equal to 1" in local.text


def test_remote_users_sign_in_with_an_api_key_and_lose_the_session_when_it_is_revoked(app: FastAPI) -> None:
    remote = client(app, REMOTE)
    assert remote.get("/models").headers["location"] == "/login?next=/models"
    token = csrf_of(remote.get("/login").text)
    bad = remote.post("/login", data={"csrf_token": token, "api_key": "sk-dn-nope"})
    assert bad.status_code == 401 and "not an active API key" in bad.text
    record, key = app.state.services.keys.create("alice")
    assert remote.post("/login", data={"api_key": key}).status_code == 403  # the sign-in form has a token too
    ok = remote.post("/login", data={"csrf_token": token, "api_key": key, "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # never an open redirect
    page = remote.get("/models")
    assert page.status_code == 200 and record.shown in page.text
    app.state.services.keys.revoke(record.id)
    assert remote.get("/models").status_code == 303


def test_an_operator_cookie_is_worthless_away_from_loopback(app: FastAPI) -> None:
    local = client(app)
    local.get("/models")
    cookie = local.cookies[COOKIE]
    elsewhere = client(app, REMOTE, cookies={COOKIE: cookie})
    assert elsewhere.get("/models").status_code == 303
    # Loopback peer, but a Host that is not loopback (DNS rebinding): not the operator.
    rebound = client(app, LOCAL, host="attacker.example:8000")
    assert rebound.get("/models").status_code == 303
    # A tampered cookie is no session at all.
    forged = client(app, REMOTE, cookies={COOKIE: cookie[:-3] + "AAA"})
    assert forged.get("/models").status_code == 303


def test_the_session_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    assert load_secret(tmp_path) == secret and len(secret) == 32
    assert (tmp_path / "web" / "session.key").stat().st_mode & 0o077 == 0
    signer = CookieSigner(secret)
    token = signer.dumps({"sub": "operator"})
    assert signer.loads(token) == {"sub": "operator"}
    assert CookieSigner(b"other" * 7).loads(token) is None
