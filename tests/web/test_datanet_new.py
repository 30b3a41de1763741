"""New Datanet from the web app on a real dev chain (and the chat page's retention note): the
terms checked as the CLI checks them (errors in the form's words, nothing stored or sent),
created by a wallet (server-built calldata the wallet sends) or by the local operator's keystore;
private Datanets go to the CLI."""

from __future__ import annotations

from pathlib import Path

from node.chain.accounts import dev_account
from node.serve.app import create_app
from tests.conftest import CURATOR, OUTSIDER, World
from tests.web.conftest import LOCAL, REMOTE, client, csrf_of
from tests.web.test_wallet import chain_services, sign_in

TERMS = {"name": "Tide tables", "license": "CC-BY-NC-4.0", "commercial": "false", "min_stake": "2.5",
         "slash_percent": "20", "lock_days": "3"}  # fmt: skip


def test_a_wallet_and_the_operator_create_datanets(world: World, tmp_path: Path) -> None:
    services = chain_services(world, tmp_path, private_key=dev_account(CURATOR).key.hex())
    app = create_app(services, refresh=False)
    before = world.admin.datanet_count()

    visitor = client(app, REMOTE)
    creator = dev_account(OUTSIDER)
    assert sign_in(visitor, creator).status_code == 200
    page = visitor.get("/datanets/new")
    assert page.status_code == 200 and "Create with wallet" in page.text and "node keystore" not in page.text
    csrf = {"X-CSRF-Token": csrf_of(page.text)}
    bad = visitor.post("/datanets/new/plan", json={**TERMS, "slash_percent": "150"}, headers=csrf)
    assert bad.status_code == 422 and "Slash percent 150 is out of range" in bad.json()["error"]
    private = visitor.post("/datanets/new/plan", json={**TERMS, "private": "true"}, headers=csrf)
    assert private.status_code == 422 and "datanet net create --private" in private.json()["error"]
    assert world.admin.datanet_count() == before  # nothing sent for refused terms
    [tx] = visitor.post("/datanets/new/plan", json=TERMS, headers=csrf).json()["txs"]
    assert (tx["from"], tx["to"]) == (creator.address, world.admin.datanets.address)
    gas = visitor.post("/tx/estimate", json=tx, headers=csrf).json()["gas"]
    tx_hash = world.rpc("eth_sendTransaction", {k: tx[k] for k in ("from", "to", "data", "value")} | {"gas": gas})
    assert visitor.get(f"/tx/{tx_hash}").json()["status"] == "success"
    made = world.admin.datanet(before + 1)
    assert (made.name, made.owner, made.license, made.commercialUse) == ("Tide tables", creator.address,
                                                                         "CC-BY-NC-4.0", False)  # fmt: skip
    assert (made.minStake, made.slashBps, made.lockPeriod) == (25 * 10**17, 2000, 3 * 86400)
    assert services.store is not None and services.store.has(made.metadataCID)  # stored before it went on-chain
    refused = visitor.post("/datanets/new/keystore", json=TERMS, headers=csrf)
    assert refused.status_code == 403  # a remote visitor never spends the node's keystore

    operator = client(app, LOCAL)
    page = operator.get("/datanets/new")
    made_by_node = operator.post("/datanets/new/keystore", json={**TERMS, "name": "Node's own"},
                                 headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
    assert made_by_node.status_code == 200, made_by_node.text
    assert world.admin.datanet(made_by_node.json()["datanet_id"]).owner == dev_account(CURATOR).address


def test_the_chat_page_states_the_retention_rule(world: World, tmp_path: Path) -> None:
    page = client(create_app(chain_services(world, tmp_path), refresh=False), LOCAL).get("/chat")
    assert page.status_code == 200 and "What this node keeps" in page.text and "for 30 days" in page.text
