"""Serving what the on-chain registry holds, on a real dev chain: registered adapters appear as
datanet-<id> (and their job config's name) once finalized, pending ones only on request and
marked, and an adapter whose bytes are not what the registry commits is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openai
import pytest
from eth_utils import keccak

from node.chain.models import ResultParams
from node.serve.adapters import sha256_file
from node.serve.app import Services, create_app
from node.serve.catalog import Catalog
from node.serve.config import ServeSettings
from node.serve.keys import ApiKeyStore
from node.serve.peft_engine import PeftEngine
from tests.conftest import World
from tests.contracts.helpers_jobs import finalize_job, stake_node
from tests.daemon_setup import NodeHome, approved_datanet, node_home, post_job, stake
from tests.serve.conftest import live_server, make_adapter


def _register(world: World, home: NodeHome, datanet: int, adapter: Path, name: str | None, *,
              adapter_hash: str | None = None) -> int:  # fmt: skip
    """A job posted, claimed and answered with `adapter` (stored in the node's store): the model id."""
    job_id = post_job(world, home, datanet, config={"name": name} if name else None)
    missing = world.node.bond_for(job_id) - world.node.node_stake().free
    if missing > 0:
        stake_node(world.node, missing)
    world.node.claim_job(job_id)
    sha = adapter_hash or sha256_file(adapter / "adapter_model.safetensors")
    result = ResultParams(
        adapterCID=home.store.add_path(adapter), adapterHash=bytes.fromhex(sha[2:]), dataRoot=keccak(text="data"),
        attributionRoot=keccak(text="attr"), attributionCID="bafyattribution", metricsCID="bafymetrics",
        scoresRoot=keccak(text="scores"), totalWeight=1, exampleCount=1,
    )  # fmt: skip
    return world.node.submit_result(job_id, result)


def test_registry_models_are_served_by_id_and_name(world: World, tmp_path: Path, tiny_base_model: Path) -> None:
    home = node_home(world, tmp_path, tiny_base_model)
    stake(world.node)
    datanet = approved_datanet(world, home)
    a1 = make_adapter(tiny_base_model, tmp_path / "a1", seed=1)
    a2 = make_adapter(tiny_base_model, tmp_path / "a2", seed=2)
    first = _register(world, home, datanet, a1, "quill-facts")
    second = _register(world, home, datanet, a2, "quill-facts")  # same name: the first keeps it
    forged = _register(world, home, datanet, a2, None, adapter_hash="0x" + hashlib.sha256(b"other").hexdigest())

    catalog = Catalog(world.admin, home.store, models_dir=home.settings.models_path, adapters_dir=tmp_path / "cache")
    keys = ApiKeyStore(tmp_path / "keys.sqlite")
    _, key = keys.create("t")
    services = Services(ServeSettings(), catalog, PeftEngine(device="cpu"), keys)
    assert catalog.refresh() == 3
    with live_server(create_app(services, refresh=False)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        listed = {m.id for m in client.models.list()}
        assert "tiny-llama" not in listed and "test/tiny-llama" in listed  # a base is shown by its reference
        assert f"datanet-{first}" not in listed  # pending: in its challenge window
        pending = client.models.retrieve(f"datanet-{first}")
        assert pending.status == "pending"  # type: ignore[attr-defined]
        ask = [{"role": "user", "content": "hi"}]
        served = client.chat.completions.create(model="quill-facts", messages=ask, max_tokens=3, temperature=0)
        assert served.model == f"datanet-{first}"

        for job_model in (first, second):
            finalize_job(world, world.admin.model(job_model).jobId)
        catalog.refresh()
        cards = {m.id: m for m in client.models.list()}
        assert {f"datanet-{first}", f"datanet-{second}"} <= set(cards)
        assert cards[f"datanet-{first}"].aliases == ["quill-facts"]  # type: ignore[attr-defined]
        assert cards[f"datanet-{second}"].aliases == []  # type: ignore[attr-defined]
        assert cards[f"datanet-{second}"].parent == "test/tiny-llama"  # type: ignore[attr-defined]

        with pytest.raises(openai.PermissionDeniedError) as e:
            client.chat.completions.create(model=f"datanet-{forged}", messages=ask, max_tokens=3)
        assert "hash" in str(e.value) and e.value.body["code"] == "adapter_refused"  # type: ignore[index]


def test_export_merges_into_the_full_precision_base_with_the_licences(
    world: World, tmp_path: Path, tiny_base_model: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from node.chain.accounts import dev_account
    from node.cli import app

    home = node_home(world, tmp_path, tiny_base_model)
    stake(world.node)
    datanet = approved_datanet(world, home, license="CC-BY-NC-4.0", commercialUse=False)
    adapter = make_adapter(tiny_base_model, tmp_path / "a", seed=5)
    model_id = _register(world, home, datanet, adapter, "quill")
    out = tmp_path / "export"
    env = home.env(world, dev_account(0).key.hex())
    res = CliRunner().invoke(app, ["export", "quill", "-o", str(out)], env=env)
    assert res.exit_code == 0, res.stdout + str(res.exception)

    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base_model), str(adapter))
    ids = torch.tensor([[1, 5, 9, 33, 70]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-4)
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "Commercial use is not permitted" in card
    assert f"Model #{model_id}" in card
    again = CliRunner().invoke(app, ["export", f"datanet-{model_id}", "-o", str(out)], env=env)
    assert again.exit_code != 0 and "--force" in again.stdout + str(again.exception)  # never overwrites silently
