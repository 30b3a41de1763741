"""Fixtures for the web app's tests: an app over a catalog without models (no chain), a test
client that connects from loopback like the node's operator or from elsewhere, and the session's
CSRF token read from a page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from node.config import Settings
from node.serve.app import Services, create_app
from node.serve.catalog import Catalog
from node.serve.config import ServeSettings
from node.serve.keys import ApiKeyStore
from tests.serve.conftest import tiny_adapters, tiny_hash  # noqa: F401 (fixtures of the browser tests)

LOCAL = ("127.0.0.1", 50_000)
REMOTE = ("203.0.113.7", 50_000)


class FakeEngine:
    """The pages here never generate; the app only closes its engine at shutdown."""

    name = "none"

    async def close(self) -> None:
        return None


def bare_services(tmp: Path) -> Services:
    catalog = Catalog(None, None, models_dir=tmp / "models", adapters_dir=tmp / "adapters")
    node = Settings(data_dir=tmp / ".datanet", deployments_dir=tmp / "deployments")
    return Services(ServeSettings(), catalog, FakeEngine(), ApiKeyStore(tmp / "keys.sqlite"), node=node)  # type: ignore[arg-type]


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(bare_services(tmp_path), refresh=False)


def client(app: FastAPI, peer: tuple[str, int] = LOCAL, host: str = "127.0.0.1:8000", **kw: Any) -> TestClient:
    return TestClient(app, base_url=f"http://{host}", client=peer, follow_redirects=False, **kw)


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)
