"""The wallet flow in a real browser: an EIP-1193 provider injected into the page (announced by
EIP-6963) whose `request()` calls Python through `page.expose_function`, which forwards
`eth_sendTransaction` to the anvil dev chain (its dev accounts are unlocked) and signs
`personal_sign` with eth-account. The visitor comes through a proxy (so is not the node's
operator), signs in with Ethereum, claims a reward from a finished job on the Rewards page, and
contributes a file from the Contribute page (a bad file's errors first, as the CLI words them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.messages import encode_defunct

from node.chain.accounts import dev_account
from node.chain.deploy import OPEN
from node.chain.models import ContributionStatus, DatanetParams
from node.data.validate import validate_bytes
from node.demo import world as demo_world
from node.rewards.claims import LEAF_ENCODING
from node.rewards.merkle import StandardMerkleTree
from node.serve.app import create_app
from tests.conftest import CONTRIBUTORS, World
from tests.contracts.helpers_jobs import claimed_job, contributors_share, finalize_job, result_params
from tests.serve.conftest import live_server
from tests.web.test_browser import ARGS, CHROMIUM, playwright
from tests.web.test_wallet import chain_services

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")

PROVIDER = """
(() => {
  const provider = {
    async request({ method, params }) {
      const r = JSON.parse(await window.dnTestWallet(method, JSON.stringify(params || [])));
      if (r.error) throw Object.assign(new Error(r.error), { code: 4001 });
      return r.result;
    },
    on() {}, removeListener() {},
  };
  const info = { uuid: "6f0c2a57-3f0e-4d7e-9d59-0b7b8f1d2c11", name: "Test Wallet", rdns: "org.datanet.test",
                 icon: "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>" };
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider",
    { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


class DevWallet:
    """What the injected provider's `request()` reaches: one dev account on the dev chain."""

    def __init__(self, world: World, index: int) -> None:
        self.world, self.account = world, dev_account(index)
        self.calls: list[str] = []

    def __call__(self, method: str, params_json: str) -> str:
        self.calls.append(method)
        params = json.loads(params_json)
        try:
            return json.dumps({"result": self._answer(method, params)})
        except Exception as e:  # the page sees a rejected request, as from a real wallet
            return json.dumps({"error": str(e)})

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.account.address]
        if method == "personal_sign":
            data, address = params
            assert address.lower() == self.account.address.lower()
            return "0x" + self.account.sign_message(encode_defunct(hexstr=data)).signature.hex().removeprefix("0x")
        if method == "eth_sendTransaction":
            assert params[0]["from"].lower() == self.account.address.lower()
        return self.world.rpc(method, *params)


@pytest.fixture
def site(world: World, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    services = chain_services(world, tmp_path)
    with live_server(create_app(services, refresh=False)) as url:
        yield url, services


@pytest.fixture
def wallet_page(world: World) -> Iterator[tuple[Any, DevWallet]]:
    wallet = DevWallet(world, CONTRIBUTORS[0])
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"})  # not the operator
        context.expose_function("dnTestWallet", wallet)
        context.add_init_script(PROVIDER)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.problems = []
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        yield page, wallet
        browser.close()


def finished_job(world: World, store: Any, account: str) -> tuple[int, int]:
    """A job claimed, submitted with a published reward tree paying `account`, and finalized
    (the chain clock moved past its challenge window); (job id, `account`'s amount)."""
    job = claimed_job(world)
    share = contributors_share(job.params, 1)
    values = [(job.job_id, 0, account, share // 2), (job.job_id, 1, world.admin.address, share - share // 2)]
    tree = StandardMerkleTree.of(values, LEAF_ENCODING)
    weights = {account: 1, world.admin.address: 1}
    doc = {"format": "datanet-attribution-v0", "tree": tree.dump().model_dump(mode="json"), "weights": weights}
    cid = store.add_bytes(json.dumps(doc).encode())
    result = result_params(tree.root, str(job.job_id)).model_copy(update={"attributionCID": cid})
    world.node.submit_result(job.job_id, result)
    finalize_job(world, job.job_id)
    return job.job_id, share // 2


def sign_in(page: Any, url: str, then: str) -> None:
    page.goto(url + then)
    assert "/login" in page.url  # a visitor from elsewhere signs in first
    page.get_by_role("button", name="Connect wallet").first.click()
    page.wait_for_url(url + then, timeout=10_000)
    assert "wallet 0x" in page.locator("#who").inner_text()


def test_sign_in_then_claim_a_reward_and_contribute_with_the_wallet(
    world: World, site: tuple[str, Any], wallet_page: tuple[Any, DevWallet]
) -> None:
    url, services = site
    page, wallet = wallet_page
    me = wallet.account.address
    job_id, amount = finished_job(world, services.store, me)

    sign_in(page, url, "/rewards")
    assert "personal_sign" in wallet.calls
    row = page.locator(f'#job-rewards tr[data-job="{job_id}"]')
    assert row.get_attribute("data-status") == "claimable"
    before = world.admin.balance(me)
    row.get_by_role("button", name="Claim").click()
    page.wait_for_selector(f'#job-rewards tr[data-job="{job_id}"] .action[data-done="true"]')
    assert world.admin.balance(me) == before + amount
    page.wait_for_selector(f'#job-rewards tr[data-job="{job_id}"][data-status="claimed"]')  # after the reload

    d = world.admin.create_datanet(DatanetParams(name="facts", treasury=world.admin.address,
                                                 curators=[world.curator.address], minStake=2 * OPEN))  # fmt: skip
    page.goto(f"{url}/datanets/{d}")
    page.get_by_role("link", name="Contribute data").click()
    bad = b'{"instruction": "Where is the mill?"}\n{"instruction": "", "output": "By the river."}\n'
    page.set_input_files("#file", files=[{"name": "bad.jsonl", "mimeType": "application/json", "buffer": bad}])
    page.click("#check")
    page.wait_for_selector('#contribute[data-checked="errors"]')
    shown = page.locator("#check-report").inner_text()
    assert shown == validate_bytes(bad, "bad.jsonl").render(10)  # the CLI's own words
    assert page.locator("#send-wallet").is_disabled()

    good = demo_world.to_jsonl(demo_world.region_facts(400)[1])
    page.set_input_files("#file", files=[{"name": "facts.jsonl", "mimeType": "application/json", "buffer": good}])
    page.click("#check")
    page.wait_for_selector('#contribute[data-checked="ok"]')
    assert page.locator("#check-preview pre").count() == 5
    page.click("#send-wallet")
    page.wait_for_selector('#contribute[data-done="true"]', timeout=30_000)
    [cid] = [i for i in range(1, world.admin.contribution_count() + 1) if world.admin.contribution(i).datanetId == d]
    c = world.admin.contribution(cid)
    assert (c.contributor, c.status, c.stake) == (me, ContributionStatus.PENDING, 2 * OPEN)
    assert services.store.cat(c.cid) == good  # the node's store holds what the chain records
    page.goto(f"{url}/datanets/{d}")
    assert "pending" in page.locator(f'tr[data-contribution="{cid}"]').inner_text()
    assert page.problems == []


OTHER_PROVIDER = """
(() => {
  const provider = {
    async request({ method }) {
      await window.dnOtherWallet(method);
      throw Object.assign(new Error("rejected"), { code: 4001 });
    },
    on() {}, removeListener() {},
  };
  const info = { uuid: "0b9d7f8e-1c2a-4e3b-8f4d-5a6b7c8d9e0f", name: "Other Wallet", rdns: "org.datanet.other",
                 icon: "https://tracker.example/icon.png" };
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider",
    { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


def test_with_two_wallets_the_visitor_chooses_which_signs_in(world: World, site: tuple[str, Any]) -> None:
    """EIP-6963 lets several wallets announce: the page asks which one, and only that one is asked
    to sign (a remote icon URL is not loaded)."""
    url, _ = site
    wallet, other_calls = DevWallet(world, CONTRIBUTORS[0]), []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
        context.expose_function("dnTestWallet", wallet)
        context.expose_function("dnOtherWallet", lambda method: other_calls.append(method))
        context.add_init_script(OTHER_PROVIDER)
        context.add_init_script(PROVIDER)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(url + "/rewards")
        page.get_by_role("button", name="Connect wallet").first.click()
        choice = page.locator("#wallet-choice")
        assert [t.strip() for t in choice.get_by_role("button").all_inner_texts()] == ["Other Wallet", "Test Wallet"]
        assert choice.locator("img").count() == 1  # only the data-URI icon
        choice.get_by_role("button", name="Test Wallet").click()
        page.wait_for_url(url + "/rewards", timeout=10_000)
        assert f"wallet {wallet.account.address[:6]}" in page.locator("#who").inner_text()
        assert "personal_sign" in wallet.calls and other_calls == []
        browser.close()
