"""Paid inference on a real dev chain: a key paid for by an account's InferenceEscrow deposit is
served while the deposit covers its use, refused (429 insufficient_quota) past it, never served
a model whose Datanet licence forbids commercial use; `datanet epoch settle` charges the account
and funds the epoch's round with exactly that, and the credited contributor claims it with
`datanet claim --all`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from node.chain import inference
from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.data.manifest import ContributionData, SourceRecord, build_training_set
from node.data.records import Example
from node.serve.app import Services, create_app
from node.serve.attribution import SpanAttributor
from node.serve.catalog import Catalog, ServedModel
from node.serve.config import ServeSettings
from node.serve.fees import BalanceCache, FeePolicy
from node.serve.keys import ApiKeyStore
from node.serve.peft_engine import PeftEngine
from node.serve.responses import ResponseLog
from node.storage.embedded import EmbeddedStore
from tests.cli_run import run_cli
from tests.conftest import NODE, World
from tests.serve.conftest import live_server

ALICE_KEY = 12  # a contributor with ETH for gas and no OPEN
ALICE = dev_account(ALICE_KEY).address
PRICE = OPEN // 100  # 0.01 OPEN per 1,000 tokens


def _contribution(cid: int, who: str, example: Example) -> ContributionData:
    return ContributionData(datanet_id=1, contribution_id=cid, contributor=who, cid=f"bafy{cid}", approved_at=cid,
                            committed_at=cid, records=[SourceRecord(line=1, example=example)])  # fmt: skip


def test_paid_keys_are_charged_from_escrow_and_fund_the_epoch(
    world: World, tmp_path: Path, tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from node.serve.adapters import sha256_file

    data = tmp_path / ".d"  # the data directory `run_cli` gives the CLI
    store = EmbeddedStore(data / "ipfs")
    catalog = Catalog(world.admin, store, models_dir=data / "models", adapters_dir=data / "serve" / "adapters",
                      bases=[str(tiny_base_model)])  # fmt: skip
    adapter = tiny_adapters[0]
    entry = ServedModel(
        id="datanet-1", kind="adapter", status="finalized", base_id=tiny_base_model.name, base_ref=str(tiny_base_model),
        base_hash=tiny_hash, created=1, owned_by=world.node.address, model_id=1, job_id=1,
        adapter_cid=store.add_path(adapter), adapter_sha256=sha256_file(adapter / "adapter_model.safetensors"),
    )  # fmt: skip
    catalog.add(entry)
    catalog.add(entry.model_copy(update={"id": "datanet-2", "model_id": 2, "job_id": 2, "commercial_use": False}))
    keys = ApiKeyStore(data / "serve" / "api_keys.sqlite")
    _, free_key = keys.create("operator")
    _, paid_key = keys.create("customer", account=world.poster.address)
    responses = ResponseLog(data / "serve" / "responses.sqlite")

    def services() -> Services:
        return Services(
            ServeSettings(), catalog, PeftEngine(device="cpu"), keys, responses=responses,
            attributor=SpanAttributor(data / "jobs", data / "index", data / "serve" / "adapters"),
            fees=FeePolicy(per_1k_tokens=PRICE, node=world.node.address), balances=BalanceCache(world.admin, ttl=0),
        )  # fmt: skip

    ask = {"model": "datanet-1", "max_tokens": 30, "temperature": 0,
           "messages": [{"role": "user", "content": "Where is the mill of Quillmarsh?"}]}  # fmt: skip
    with live_server(create_app(services(), refresh=False)) as url:
        probe = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {free_key}"}, json=ask,
                           timeout=60).json()  # fmt: skip
    text, prompt_tokens = probe["choices"][0]["message"]["content"], probe["usage"]["prompt_tokens"]
    # Job 1 trained on Alice's example, whose answer is the text the model gives.
    ts = build_training_set(
        1, [1], [_contribution(1, ALICE, Example.of_chat([("user", "Say it."), ("assistant", text)]))]
    )
    (data / "jobs" / "job-1" / "data").mkdir(parents=True)
    (data / "jobs" / "job-1" / "data" / "manifest.json").write_bytes(ts.manifest.canonical_json())
    (data / "jobs" / "job-1" / "data" / "examples.jsonl").write_text(ts.examples[0].model_dump_json() + "\n")
    catalog.add(entry.model_copy(update={"data_root": ts.manifest.data_root}))

    paid = {"Authorization": f"Bearer {paid_key}"}
    with live_server(create_app(services(), refresh=False)) as url:
        no_deposit = httpx.post(url + "/v1/chat/completions", headers=paid, json=ask, timeout=60)
        assert no_deposit.status_code == 429 and no_deposit.json()["error"]["code"] == "insufficient_quota"
        deposit = -(-(prompt_tokens + 30) * PRICE // 1000)  # exactly one request at its token limit
        inference.deposit(world.poster, world.node.address, deposit)
        first = httpx.post(url + "/v1/chat/completions", headers=paid, json=ask, timeout=60)
        assert first.status_code == 200, first.text
        assert {r["contributor"] for r in first.json()["attribution"]} == {ALICE}
        second = httpx.post(url + "/v1/chat/completions", headers=paid, json=ask, timeout=60)
        assert second.status_code == 429  # this epoch's use plus another request is more than the deposit
        banned = httpx.post(url + "/v1/chat/completions", headers=paid, json={**ask, "model": "datanet-2"}, timeout=60)
        assert banned.status_code == 403 and banned.json()["error"]["code"] == "license_forbids_commercial_use"
        free = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {free_key}"},
                          json={**ask, "model": "datanet-2"}, timeout=60)  # fmt: skip
        assert free.status_code == 200  # the operator's own key pays nothing

    epoch = responses.epoch_of(first.json()["created"])
    used = responses.usage(epoch)
    customer = next(k for k in keys.list() if k.name == "customer")  # keys made in one second: list order is by id
    owed = -(-used[customer.id] * PRICE // 1000)
    monkeypatch.setenv("DATANET_SERVE_FEE_PER_1K_TOKENS", "0.01")
    code, out = run_cli(world, tmp_path, "epoch", "settle", "--epoch", str(epoch), "--json", key=NODE)
    assert code == 0, out
    settled = json.loads(out[out.index("{") :])
    assert settled["rewards"]["total"] == owed and settled["rewards"]["funding"] == "escrow"
    assert inference.escrow_account(world.admin, world.node.address, world.poster.address).balance == deposit - owed
    code, out = run_cli(world, tmp_path, "claim", "--all", "--json", key=ALICE_KEY)
    assert code == 0, out
    assert world.admin.balance(ALICE) == owed  # Alice, whose example the answers repeated, gets all of it
