"""The Train page's eval file on a real dev chain: checked as a contribution is, only its sha256
posted with the job (the commitment `datanet job post --eval-file` makes), then revealed from the
run's page once a node has claimed the job, and not before."""

from __future__ import annotations

import hashlib
from pathlib import Path

from node.demo import world as demo_world
from node.serve.app import create_app
from node.train.config import JobConfig
from tests.conftest import World
from tests.daemon_setup import BASE_REF, approved_datanet, node_home, stake
from tests.web.conftest import REMOTE, client, csrf_of
from tests.web.test_chain_pages import chain_site

FORM = {"base_model": BASE_REF, "method": "lora", "pool": "25", "hours": "24", "learning_rate": "0.001",
        "epochs": "1", "batch_size": "4", "lora_r": "4", "lora_alpha": "8", "lora_dropout": "0",
        "max_seq_len": "128", "eval_fraction": "0.1"}  # fmt: skip


def test_an_eval_file_is_committed_with_the_job_and_revealed_after_the_claim(
    world: World, tmp_path: Path, tiny_base_model: Path
) -> None:
    home = node_home(world, tmp_path, tiny_base_model)
    datanet = approved_datanet(world, home)
    app = create_app(chain_site(world, home, tmp_path, [BASE_REF]), refresh=False)
    c = client(app)
    csrf = csrf_of(c.get("/train").text)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream", "Accept": "application/json"}
    kept = home.settings.data_dir / "eval-sets"

    # A broken file: the CLI's report, nothing kept.
    bad = c.post("/train/eval-set", params={"name": "questions.jsonl"}, content=b'{"prompt": "no answer"}\n',
                 headers=headers)  # fmt: skip
    assert bad.status_code == 422 and not bad.json()["ok"] and bad.json()["report"]
    assert not kept.exists() or not any(kept.iterdir())

    # From another machine: refused, as posting is.
    far = client(app, peer=REMOTE).post("/train/eval-set", params={"name": "q.jsonl"}, content=b"x", headers=headers)
    assert far.status_code == 403

    _, records = demo_world.region_facts(300)
    data = demo_world.to_jsonl(records[:6])
    sha = "0x" + hashlib.sha256(data).hexdigest()
    ok = c.post("/train/eval-set", params={"name": "C:\\Users\\me\\questions.jsonl"}, content=data, headers=headers)
    assert ok.status_code == 200 and ok.json()["sha256"] == sha and ok.json()["records"] == 6
    assert [p.name for p in kept.iterdir()] == [f"{sha[2:]}.jsonl"]

    # A hash the node has no file for is a form error, and nothing is posted.
    jobs = world.admin.job_count()
    missing = c.post("/train", data={**FORM, "datanet": str(datanet), "eval_sha256": "0x" + "ab" * 32,
                                     "csrf_token": csrf})  # fmt: skip
    assert missing.status_code == 422 and "The eval file is not on this node" in missing.text
    assert world.admin.job_count() == jobs

    posted = c.post("/train", data={**FORM, "datanet": str(datanet), "eval_sha256": sha, "csrf_token": csrf})
    assert posted.status_code == 303, posted.text
    job_id = int(posted.headers["location"].rsplit("/", 1)[1])
    config = JobConfig.parse(home.store.cat(world.admin.job(job_id).configCID))
    assert config.eval_sha256 == sha  # committed: the hash only, in the config the chain hashes

    page = c.get(f"/train/jobs/{job_id}").text
    assert "not revealed yet" in page and 'id="reveal-eval"' not in page  # open: nothing to reveal yet
    early = c.post(f"/train/jobs/{job_id}/reveal-eval", data={"csrf_token": csrf})
    assert early.status_code == 409 and "not claimed yet" in early.text
    assert not world.admin.eval_reveal(job_id).revealed

    stake(world.node)
    world.node.claim_job(job_id)
    world.admin.client.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # the reveal comes a block later
    page = c.get(f"/train/jobs/{job_id}").text
    assert 'id="reveal-eval"' in page
    done = c.post(f"/train/jobs/{job_id}/reveal-eval", data={"csrf_token": csrf})
    assert done.status_code == 303, done.text
    reveal = world.admin.eval_reveal(job_id)
    assert reveal.revealed and home.store.cat(reveal.evalCID) == data  # the committed bytes, now public
    page = c.get(f"/train/jobs/{job_id}").text
    assert f"revealed as <code>{reveal.evalCID}</code>" in page and 'id="reveal-eval"' not in page


def test_the_server_reveals_a_committed_eval_set_once_the_job_is_claimed(
    world: World, tmp_path: Path, tiny_base_model: Path
) -> None:
    """The operator need not watch: the server's duty (run with each registry refresh) reveals the
    eval set of a job this node posted once a node has claimed it, and not before."""
    from node.web.train import EvalReveals

    home = node_home(world, tmp_path, tiny_base_model)
    datanet = approved_datanet(world, home)
    services = chain_site(world, home, tmp_path, [BASE_REF])
    c = client(create_app(services, refresh=False))
    csrf = csrf_of(c.get("/train").text)
    data = demo_world.to_jsonl(demo_world.region_facts(301)[1][:5])
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream", "Accept": "application/json"}
    sha = c.post("/train/eval-set", params={"name": "q.jsonl"}, content=data, headers=headers).json()["sha256"]
    posted = c.post("/train", data={**FORM, "datanet": str(datanet), "eval_sha256": sha, "csrf_token": csrf})
    job_id = int(posted.headers["location"].rsplit("/", 1)[1])
    [duty] = [d for d in services.duties if isinstance(d, EvalReveals)]

    duty()
    assert not world.admin.eval_reveal(job_id).revealed  # open: nothing to reveal yet
    stake(world.node)
    world.node.claim_job(job_id)
    world.admin.client.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    duty()
    reveal = world.admin.eval_reveal(job_id)
    assert reveal.revealed and home.store.cat(reveal.evalCID) == data
    assert job_id in duty.done
    duty()  # nothing left to do: no second transaction
    assert world.admin.eval_reveal(job_id).evalCID == reveal.evalCID
