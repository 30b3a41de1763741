"""schemathesis against the server's own OpenAPI schema: whatever a client sends, no 5xx, and
every answer matches the schema the server publishes (errors included, in OpenAI's shape).

Generation runs for real on the tiny model, so bodies the schema allows are answered by the
engine; the token cap is small to keep each answer short. Not checked: that every body the
schema allows is accepted, since some limits depend on the server and the model, not on the
schema (the per-request token cap, the model's context length, stream_options only with
stream). The routes change nothing on a chain (the API has no chain-writing routes; the pages'
keystore actions are tested in tests/web)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from node.serve.app import create_app
from tests.serve.conftest import local_services


@pytest.fixture(scope="module")
def app_and_key(tmp_path_factory: pytest.TempPathFactory, tiny_base_model: Path, tiny_hash: str,
                tiny_adapters: list[Path]) -> Iterator[tuple[object, str]]:  # fmt: skip
    services, key = local_services(
        tmp_path_factory.mktemp("schema"), tiny_base_model, tiny_hash, tiny_adapters[:1], max_tokens=4,
        default_max_tokens=2, requests_per_minute=100_000,
    )  # fmt: skip
    app = create_app(services, refresh=False)
    with TestClient(app):  # runs the lifespan (and closes the engine at the end)
        yield app, key


def test_no_server_errors_and_answers_match_the_schema(app_and_key: tuple[object, str]) -> None:
    """Every API operation (the pages have their own tests), a few dozen generated requests each."""
    app, key = app_and_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    api = [op for op in operations if op.path.startswith(("/v1", "/health"))]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= {op.path for op in api}
    for op in api:

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {key}"}, excluded_checks=[positive_data_acceptance]
            )

        check()
