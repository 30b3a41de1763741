"""Wallet sessions and server-built transactions over a real dev chain, with the test client:
Sign-In with Ethereum and each check that refuses a message (domain, URI, chain id, nonce
reuse, a signature by someone else); what a wallet session may and may not do; a curator's
decision planned by the server and sent by the wallet's account; the operator's keystore path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient

from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.models import ContributionStatus, DatanetParams
from node.serve.app import Services, create_app
from node.serve.catalog import Catalog
from node.serve.config import ServeSettings
from node.serve.keys import ApiKeyStore
from node.storage.embedded import EmbeddedStore
from tests.conftest import CONTRIBUTORS, CURATOR, World
from tests.web.conftest import REMOTE, FakeEngine, client, csrf_of


def chain_services(world: World, tmp: Path, **node: Any) -> Services:
    from node.config import Settings

    settings = Settings(data_dir=tmp / ".datanet", deployments_dir=tmp / "deployments", **node)
    catalog = Catalog(world.admin, None, models_dir=tmp / "models", adapters_dir=tmp / "adapters")
    return Services(ServeSettings(), catalog, FakeEngine(), ApiKeyStore(tmp / "keys.sqlite"), node=settings,  # type: ignore[arg-type]
                    protocol=world.admin, store=EmbeddedStore(tmp / "ipfs"))  # fmt: skip


def sign_in(c: TestClient, account: Any, tamper: Any = None) -> Any:
    """The page's SIWE flow: the message for `account`, signed (after `tamper`), posted."""
    csrf = csrf_of(c.get("/login", follow_redirects=True).text)  # the operator is sent on to a page
    message = c.get("/login/siwe/message", params={"address": account.address}).json()["message"]
    if tamper is not None:
        message = tamper(message)
    signature = account.sign_message(encode_defunct(text=message)).signature.hex()
    return c.post("/login/siwe", json={"message": message, "signature": signature}, headers={"X-CSRF-Token": csrf})


def test_sign_in_with_ethereum_checks_every_field(world: World, tmp_path: Path) -> None:
    app = create_app(chain_services(world, tmp_path), refresh=False)
    alice = dev_account(CONTRIBUTORS[0])
    c = client(app, REMOTE, host="node.example:8000")
    assert c.get("/rewards").status_code == 303  # not signed in: to the sign-in page

    message = c.get("/login/siwe/message", params={"address": alice.address.lower()}).json()["message"]
    assert message.startswith(f"node.example:8000 wants you to sign in with your Ethereum account:\n{alice.address}\n")
    assert "\nURI: http://node.example:8000\nVersion: 1\nChain ID: 31337\nNonce: " in message
    assert re.search(r"\nIssued At: \S+Z\nExpiration Time: \S+Z$", message)

    def refused(tamper: Any, says: str, account: Any = alice) -> None:
        r = sign_in(c, account, tamper)
        assert r.status_code == 401 and says in r.json()["error"], r.text

    refused(lambda m: m.replace("node.example:8000 wants", "evil.example wants"), "is for 'evil.example'")
    refused(lambda m: m.replace("URI: http://node.example:8000", "URI: http://evil.example"), "URI is")
    refused(lambda m: m.replace("Chain ID: 31337", "Chain ID: 1"), "chain id 1")
    refused(lambda m: re.sub(r"Nonce: \w+", "Nonce: 0123456789abcdef", m), "not issued by this node")
    refused(lambda m: re.sub(r"Expiration Time: .*", "Expiration Time: 2020-01-01T00:00:00Z", m), "expired")
    refused(lambda m: m.replace("Version: 1", "Version: 2"), "version")
    mallory = Account.create()
    refused(lambda m: m.replace(mallory.address, alice.address), f"not by {alice.address}", mallory)

    csrf = csrf_of(c.get("/login").text)
    message = c.get("/login/siwe/message", params={"address": alice.address}).json()["message"]
    signature = alice.sign_message(encode_defunct(text=message)).signature.hex()
    ok = c.post("/login/siwe", json={"message": message, "signature": signature}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["address"] == alice.address
    page = c.get("/rewards")
    assert page.status_code == 200 and f'value="{alice.address}"' in page.text  # the wallet's own rewards
    again = c.post("/login/siwe", json={"message": message, "signature": signature},
                   headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
    assert again.status_code == 401 and "was used" in again.json()["error"]  # a nonce works once

    # A wallet session never acts with the node's keystore, nor chats as the operator.
    csrf = csrf_of(c.get("/rewards").text)
    claim = {"kind": "job", "job": 1, "index": 0, "account": alice.address}
    assert c.post("/rewards/claim/keystore", json=claim, headers={"X-CSRF-Token": csrf}).status_code == 403
    chat = c.post("/chat/answer", json={"model": "x", "messages": []}, headers={"X-CSRF-Token": csrf})
    assert chat.status_code == 403 and "API key" in chat.text


def test_a_curator_decides_with_the_wallet_and_the_operator_with_the_keystore(world: World, tmp_path: Path) -> None:
    from node.data.contribute import Journal, contribute_files
    from node.demo import world as demo_world

    services = chain_services(world, tmp_path, private_key=dev_account(CURATOR).key.hex())
    assert services.store is not None
    d = world.admin.create_datanet(DatanetParams(name="facts", treasury=world.admin.address,
                                                 curators=[world.curator.address], minStake=OPEN))  # fmt: skip
    ids = []
    for k in range(2):
        path = tmp_path / f"facts-{k}.jsonl"
        path.write_bytes(demo_world.to_jsonl(demo_world.region_facts(300 + k)[1]))
        [r] = contribute_files(world.contributors[k], services.store, d, [path], OPEN, Journal(tmp_path / "j.json"))
        ids.append(r.contribution_id)
    app = create_app(services, refresh=False)

    curator = dev_account(CURATOR)
    c = client(app, REMOTE)
    assert sign_in(c, curator).status_code == 200
    review = c.get(f"/datanets/{d}/contributions/{ids[0]}")
    assert "Approve with wallet" in review.text and "node keystore" not in review.text
    assert review.text.count('<pre class="record">') == 5  # the `curate show` preview
    csrf = csrf_of(review.text)
    plan = c.post("/curate/plan", json={"contribution": ids[0], "decision": "reject", "reason": ""},
                  headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert plan.status_code == 422 and "Say why" in plan.json()["error"]
    plan = c.post("/curate/plan", json={"contribution": ids[0], "decision": "approve"}, headers={"X-CSRF-Token": csrf})
    [tx] = plan.json()["txs"]
    assert (tx["from"], tx["to"], tx["chainId"]) == (curator.address, world.admin.datanets.address, "0x7a69")
    gas = c.post("/tx/estimate", json=tx, headers={"X-CSRF-Token": csrf}).json()["gas"]
    tx_hash = world.rpc("eth_sendTransaction", {k: tx[k] for k in ("from", "to", "data", "value")} | {"gas": gas})
    assert c.get(f"/tx/{tx_hash}").json()["status"] == "success"
    assert world.admin.contribution(ids[0]).status == ContributionStatus.APPROVED
    again = c.post("/tx/estimate", json=tx, headers={"X-CSRF-Token": csrf})  # decided already: the revert, decoded
    assert again.status_code == 422 and "Datanet" in again.json()["error"]
    outsider = client(app, REMOTE)
    assert sign_in(outsider, dev_account(CONTRIBUTORS[2])).status_code == 200
    refused = outsider.post("/curate/plan", json={"contribution": ids[1], "decision": "approve"},
                            headers={"X-CSRF-Token": csrf_of(outsider.get(f"/datanets/{d}").text)})  # fmt: skip
    assert refused.status_code == 422 and "is not a curator" in refused.json()["error"]

    local = client(app)  # the operator, whose node key is the curator's here
    review = local.get(f"/datanets/{d}/contributions/{ids[1]}")
    assert "Reject with node keystore" in review.text
    done = local.post("/curate/keystore", json={"contribution": ids[1], "decision": "reject", "reason": "off-topic"},
                      headers={"X-CSRF-Token": csrf_of(review.text)})  # fmt: skip
    assert done.status_code == 200 and len(done.json()["txs"]) == 1
    assert world.admin.contribution(ids[1]).status == ContributionStatus.REJECTED


def test_the_operator_contributes_with_the_keystore_and_a_bad_file_stakes_nothing(world: World, tmp_path: Path) -> None:
    from node.demo import world as demo_world

    me = dev_account(CONTRIBUTORS[1])
    services = chain_services(world, tmp_path, private_key=me.key.hex())
    d = world.admin.create_datanet(DatanetParams(name="facts", treasury=world.admin.address, minStake=OPEN))
    c = client(create_app(services, refresh=False))
    csrf = csrf_of(c.get(f"/datanets/{d}/contribute").text)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream"}
    bad = b'{"instruction": ""}\n'
    count = world.admin.contribution_count()
    for route in ("check", "keystore"):  # (plan: this session has no wallet to sign)
        r = c.post(f"/datanets/{d}/contribute/{route}", params={"name": "bad.jsonl"}, content=bad, headers=headers)
        assert r.status_code == 422, (route, r.text)
    assert "nothing to stake" in r.json()["error"] and world.admin.contribution_count() == count
    good = demo_world.to_jsonl(demo_world.region_facts(500)[1])
    checked = c.post(f"/datanets/{d}/contribute/check", params={"name": "f.jsonl"}, content=good, headers=headers)
    assert checked.json()["ok"] and len(checked.json()["preview"]) == 5
    r = c.post(f"/datanets/{d}/contribute/keystore", params={"name": "f.jsonl", "stake": "1.5"}, content=good,
               headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    got = world.admin.contribution(r.json()["contribution_id"])
    assert (got.contributor, got.stake, got.status) == (me.address, 3 * OPEN // 2, ContributionStatus.PENDING)
    assert services.store is not None and services.store.cat(got.cid) == good
    again = c.post(f"/datanets/{d}/contribute/keystore", params={"name": "f.jsonl"}, content=good, headers=headers)
    assert again.json()["already"] is True  # the CLI's journal: the same file is not staked twice


def test_the_operator_may_connect_a_wallet_too_and_keeps_the_keystore(world: World, tmp_path: Path) -> None:
    services = chain_services(world, tmp_path, private_key=dev_account(CURATOR).key.hex())
    c = client(create_app(services, refresh=False))  # loopback: the operator
    alice = dev_account(CONTRIBUTORS[0])
    assert sign_in(c, alice).status_code == 200
    page = c.get("/rewards")
    assert f"node operator (wallet {alice.address[:6]}" in page.text and f'value="{alice.address}"' in page.text
    assert "Connect wallet" not in page.text
    forwarded = c.get("/rewards", headers={"X-Forwarded-For": "203.0.113.7"})  # the same cookie, relayed
    assert forwarded.status_code == 303  # an operator cookie is worth nothing away from loopback, wallet or not
