"""Screenshots of the web app's pages for the docs, taken from a real server over real state.

Run from the repository root (needs Debian's /usr/bin/chromium and anvil, as the tests do):

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

It starts an anvil dev chain and deploys the protocol, builds the tiny test Llama and two LoRA
adapters (no download), puts some state on the chain (two Datanets with approved and pending
contributions, a finished job whose reward round pays a contributor), serves it all with the
app `datanet serve` runs, and saves a PNG of each page as the node's operator sees it:
Datanets, a Datanet, Contribute, Train (a run's live loss chart), Chat (an attributed answer
beside the base model's), Models and Rewards. Each PNG is one 1200x760 viewport, to stay small.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' helpers build the tiny model and the chain state

VIEWPORT: Any = {"width": 1200, "height": 760}  # playwright's ViewportSize
CHROMIUM = "/usr/bin/chromium"


def chain_world(rpc_url: str) -> Any:
    """The deployed protocol seen from each role (as tests/conftest.py's `world` fixture)."""
    from node.chain.accounts import dev_account
    from node.chain.client import ChainClient
    from node.chain.deploy import deploy
    from node.chain.protocol import Protocol
    from tests import conftest as t

    admin = Protocol(ChainClient(rpc_url, dev_account(t.DEPLOYER)), deploy(ChainClient(rpc_url, dev_account(0)),
                                                                          "test", t.TEST_DEPLOY))  # fmt: skip
    for i in (t.CURATOR, t.NODE, t.POSTER, t.RELAYER, *t.CONTRIBUTORS):
        admin.transfer(dev_account(i).address, t.FUNDED)
    return t.World(
        rpc_url=rpc_url, deployment=admin.deployment, admin=admin, curator=admin.as_account(dev_account(t.CURATOR)),
        node=admin.as_account(dev_account(t.NODE)), poster=admin.as_account(dev_account(t.POSTER)),
        relayer=admin.as_account(dev_account(t.RELAYER)),
        contributors=[admin.as_account(dev_account(i)) for i in t.CONTRIBUTORS],
        outsider=admin.as_account(dev_account(t.OUTSIDER)),
    )  # fmt: skip


def finished_job(world: Any, store: Any, datanet: int) -> int:
    """A job on `datanet`, claimed, submitted with a published reward tree and finalized; its id."""
    from node.rewards.claims import LEAF_ENCODING
    from node.rewards.merkle import StandardMerkleTree
    from tests.contracts.helpers_jobs import contributors_share, finalize_job, job_params, post_job, result_params
    from tests.daemon_setup import stake

    params = job_params(world.now(), [datanet], pool=1_000 * 10**18)
    job_id = post_job(world.poster, params)
    stake(world.node)
    world.node.claim_job(job_id)
    share = contributors_share(params, 1)
    a, b = world.contributors[0].address, world.contributors[1].address
    values = [(job_id, 0, a, share * 3 // 5), (job_id, 1, b, share - share * 3 // 5)]
    tree = StandardMerkleTree.of(values, LEAF_ENCODING)
    doc = {"format": "datanet-attribution-v0", "tree": tree.dump().model_dump(mode="json"), "weights": {a: 3, b: 2}}
    cid = store.add_bytes(json.dumps(doc).encode())
    world.node.submit_result(job_id, result_params(tree.root, "x").model_copy(update={"attributionCID": cid}))
    finalize_job(world, job_id)
    return job_id


def write_metrics(path: Path, steps: int = 40) -> None:
    """A run's metrics.jsonl: a falling train loss, an eval every 10 steps, then done."""
    from node.train.config import Progress

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in range(1, steps + 1):
        loss = 3.2 * 0.955**s + 0.45 + 0.04 * ((s * 7) % 5 - 2) / 2
        lines.append(Progress(kind="train", step=s, total_steps=steps, epoch=s / 20, loss=loss))
        if s % 10 == 0:
            lines.append(Progress(kind="eval", step=s, total_steps=steps, epoch=s / 20, eval_loss=loss + 0.12))
    lines.append(Progress(kind="done", step=steps, total_steps=steps, epoch=2.0))
    path.write_text("".join(p.model_dump_json() + "\n" for p in lines))


def build(tmp: Path, world: Any) -> tuple[Any, dict[str, Any]]:
    """The served app's Services and what the pages should show (ids, addresses)."""
    from node.chain.deploy import OPEN
    from node.data.contribute import Journal, contribute_files
    from node.demo import world as demo_world
    from node.serve.openai_types import SpanCredit
    from node.train.base_model import build_tiny_llama, weights_hash
    from tests.conftest import world_corpus
    from tests.daemon_setup import approved_datanet, node_home
    from tests.serve.conftest import local_services, make_adapter

    base = build_tiny_llama(tmp / "base" / "tiny-llama", world_corpus(n_regions=40))
    home = node_home(world, tmp / "home", base)
    facts = approved_datanet(world, home, contributors=2, license="CC-BY-4.0")
    rivers = approved_datanet(world, home, contributors=1, first=2, name="rivers", license="CC0-1.0")
    pending = tmp / "home" / "more-facts.jsonl"
    pending.write_bytes(demo_world.to_jsonl(demo_world.region_facts(150)[1]))
    contribute_files(world.contributors[3], home.store, facts, [pending], 10 * OPEN, Journal(tmp / "j.json"))
    job_id = finished_job(world, home.store, facts)
    adapters = [make_adapter(base, tmp / "adapters" / f"a{i}", seed=i) for i in range(2)]
    services, _ = local_services(tmp / "serve", base, "0x" + weights_hash(base).hex(), adapters)
    services.node, services.protocol, services.store = home.settings, world.admin, home.store
    from node.daemon.steps import jobs_root

    write_metrics(jobs_root(home.settings, world.deployment) / f"job-{job_id}" / "train" / "metrics.jsonl")
    contributor = world.contributors[0].address

    def attribute(model: Any, prompt_ids: list[int], ids: list[int], text: str, tok: Any) -> Any:
        """Credits two spans of the answer (the real attributor needs a trained index)."""
        from node.serve.app import Attribution

        words = [m.span() for m in re.finditer(r"[A-Za-z]{4,}", text)][:6:3]  # two whole words
        spans = [SpanCredit(span=text[a:b], start=a, end=b, contributor=contributor, contribution_id=1 + k,
                            example_index=3 * k) for k, (a, b) in enumerate(words)]  # fmt: skip
        return Attribution(spans=spans)

    services.attributor = attribute
    return services, {"facts": facts, "rivers": rivers, "job": job_id, "contributor": contributor}


def shoot(url: str, facts: dict[str, Any], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]  # fmt: skip
    saved = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)

        def save(name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path))
            saved.append(path)

        page.goto(url + "/datanets")
        save("datanets")
        page.goto(f"{url}/datanets/{facts['facts']}")
        save("datanet")
        page.goto(f"{url}/datanets/{facts['facts']}/contribute")
        bad = b'{"instruction": "Where is the mill of Quillmarsh?"}\n{"instruction": "", "output": "By the river."}\n'
        upload: Any = {"name": "notes.jsonl", "mimeType": "application/json", "buffer": bad}
        page.set_input_files("#file", files=[upload])
        page.click("#check")
        page.wait_for_selector('#contribute[data-checked="errors"]')
        save("contribute")
        page.goto(f"{url}/train/jobs/{facts['job']}")
        page.wait_for_function("document.getElementById('loss-chart').dataset.ended === 'done'")
        save("train")
        page.goto(url + "/chat?model=datanet-1")
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "24")
        page.check("#compare")
        page.fill("#prompt", "Where is the mill of Quillmarsh?")
        page.click("#send")
        page.wait_for_selector('.answer[data-model="datanet-1"][data-done="true"]')
        page.wait_for_selector('.answer[data-model="tiny-llama"][data-done="true"]')
        save("chat")
        page.goto(url + "/models")
        save("models")
        page.goto(f"{url}/rewards?address={facts['contributor']}")
        save("rewards")
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="Where the PNGs go.")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    from node.chain.devchain import DevChain, DevChainConfig
    from node.serve.app import create_app
    from tests.serve.conftest import live_server

    with tempfile.TemporaryDirectory() as tmp, DevChain(DevChainConfig(port=0, accounts=20)) as chain:
        services, facts = build(Path(tmp), chain_world(chain.rpc_url))
        with live_server(create_app(services, refresh=False)) as url:
            for path in shoot(url, facts, out):
                print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
