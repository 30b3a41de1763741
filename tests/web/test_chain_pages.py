"""The pages over a real dev chain: Datanets (search, contributions), the data preview, and a job
posted from the Train page with the node's key, then shown as a run."""

from __future__ import annotations

import re
from pathlib import Path

from node.chain.models import JobStatus
from node.serve.app import Services, create_app
from node.serve.catalog import Catalog
from node.serve.config import ServeSettings
from node.serve.keys import ApiKeyStore
from node.train.config import JobConfig
from tests.conftest import World
from tests.daemon_setup import BASE_REF, NodeHome, approved_datanet, node_home
from tests.web.conftest import FakeEngine, client, csrf_of


def chain_site(world: World, home: NodeHome, tmp_path: Path, bases: list[str] | None = None) -> Services:
    """The app's services over the dev chain and `home` (the node's settings, keystore, store);
    no engine (these pages never generate)."""
    catalog = Catalog(world.admin, home.store, models_dir=home.settings.models_path, adapters_dir=tmp_path / "cache",
                      bases=bases or [])  # fmt: skip
    catalog.refresh()
    return Services(ServeSettings(), catalog, FakeEngine(), ApiKeyStore(tmp_path / "keys.sqlite"),  # type: ignore[arg-type]
                    node=home.settings, protocol=world.admin, store=home.store)  # fmt: skip


def test_datanets_preview_and_posting_a_job(world: World, tmp_path: Path, tiny_base_model: Path) -> None:
    home = node_home(world, tmp_path, tiny_base_model)
    datanet = approved_datanet(world, home)
    c = client(create_app(chain_site(world, home, tmp_path, [BASE_REF]), refresh=False))

    listing = c.get("/datanets")
    assert listing.status_code == 200 and f'href="/datanets/{datanet}">facts</a>' in listing.text
    curator = world.curator.address
    found = c.get("/datanets", params={"q": curator.lower()[:12]}, headers={"HX-Request": "true"})
    assert "<html" not in found.text and ">facts</a>" in found.text  # an htmx search gets the rows only
    assert "No Datanet matches" in c.get("/datanets", params={"q": "no-such-licence"}).text
    detail = c.get(f"/datanets/{datanet}")
    assert detail.text.count('class="badge approved"') == 2 and curator in detail.text

    preview = c.get("/train/preview", params={"datanet": datanet}, headers={"HX-Request": "true"})
    assert preview.status_code == 200 and "approved records" in preview.text
    assert len(re.findall(r'<pre class="record">', preview.text)) == 5
    assert 'page=2"' in preview.text

    form = {"base_model": BASE_REF, "datanet": str(datanet), "method": "lora", "name": "web-facts", "pool": "25",
            "hours": "24", "learning_rate": "0.001", "epochs": "1", "batch_size": "4", "lora_r": "4",
            "lora_alpha": "8", "lora_dropout": "0", "max_seq_len": "128", "eval_fraction": "0.1"}  # fmt: skip
    form["csrf_token"] = csrf_of(c.get("/train").text)
    posted = c.post("/train", data=form)
    assert posted.status_code == 303, posted.text
    job_id = int(posted.headers["location"].rsplit("/", 1)[1])
    job = world.admin.job(job_id)
    assert job.status == JobStatus.OPEN and job.datanetIds == [datanet] and job.baseModel == BASE_REF
    config = JobConfig.parse(home.store.cat(job.configCID))
    assert (config.name, config.lora_r, config.learning_rate, config.epochs) == ("web-facts", 4, 0.001, 1)
    run = c.get(f"/train/jobs/{job_id}")
    assert run.status_code == 200 and "web-facts" in run.text and "open" in run.text


def test_models_page_reads_the_registry(world: World, tmp_path: Path, tiny_base_model: Path) -> None:
    from tests.daemon_setup import stake
    from tests.serve.conftest import make_adapter
    from tests.serve.test_registry_serving import _register

    home = node_home(world, tmp_path, tiny_base_model)
    stake(world.node)
    datanet = approved_datanet(world, home)
    model_id = _register(world, home, datanet, make_adapter(tiny_base_model, tmp_path / "a", seed=1), "web-model")
    c = client(create_app(chain_site(world, home, tmp_path), refresh=False))
    listing = c.get("/models")
    row = re.search(rf'<tr data-model="datanet-{model_id}">(.*?)</tr>', listing.text, re.S)
    assert row and "web-model" in row.group(1) and "pending" in row.group(1) and "served" in row.group(1)
    assert f'href="/datanets/{datanet}"' in row.group(1)
    m = world.admin.model(model_id)
    detail = c.get("/models/web-model")
    assert detail.status_code == 200 and m.adapterCID in detail.text
    assert "0x" + bytes(m.adapterHash).hex() in detail.text
    assert "bafymetrics could not be read" in detail.text  # the test's result names a metrics CID that is not stored
    assert c.get("/models/datanet-999").status_code == 404
