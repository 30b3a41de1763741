"""Job posters through the CLI on the real dev chain: `job post` makes a job the training daemon
accepts (config hash, base model hash, method and base model agree), bad posts post nothing,
`job cancel` refunds the pool, `job expire` ends a job past its deadline, and the eval set is
committed by `job post --eval-file` and revealed by `job reveal-eval` only after the claim."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.deploy import OPEN, save_deployment
from node.chain.models import JobStatus, job_cost
from node.cli import app
from node.config import Settings
from node.daemon.eligibility import load_config, local_base_model
from node.demo import world as demo_world
from node.errors import NodeError
from node.storage.embedded import EmbeddedStore
from node.train.base_model import weights_hash
from node.train.config import JobConfig
from tests.conftest import NODE, POSTER, World
from tests.contracts.helpers_jobs import create_datanets

runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _fails(args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, NodeError), result.output
    assert says in str(result.exception), str(result.exception)


@pytest.fixture
def poster_cli(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A working directory with the session's deployment and wallets for the poster and a node."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw")
    save_deployment(world.deployment, tmp_path / "deployments" / "localhost.json")
    for name, index in (("poster", POSTER), ("node", NODE)):
        save_keystore(dev_account(index), tmp_path / ".datanet" / "keystores" / f"{name}.json", "pw")
    return ["--rpc-url", world.rpc_url, "--wallet", "poster"]


def test_posted_job_is_one_the_daemon_accepts(
    world: World, poster_cli: list[str], tmp_path: Path, tiny_base_model: Path
) -> None:
    [d1, d2], _ = create_datanets(world.curator, 2)
    before = world.poster.balance()
    posted = _json([*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d2),
                    "--datanet", str(d1), "--method", "lora", "--pool", "500", "--hours", "24",
                    "--learning-rate", "0.001", "--epochs", "2", "--batch-size", "4", "--lora-r", "8"])  # fmt: skip
    assert posted["tx"].startswith("0x") and posted["datanets"] == [d1, d2]
    job = _json(["--rpc-url", world.rpc_url, "job", "show", str(posted["job_id"])])
    assert job["baseModelHash"] == "0x" + weights_hash(tiny_base_model).hex() == posted["base_model_hash"]
    store = EmbeddedStore(tmp_path / ".datanet" / "ipfs")
    document = store.cat(job["configCID"])
    assert job["configHash"] == "0x" + hashlib.sha256(document).hexdigest() == posted["config_hash"]
    config = JobConfig.parse(document)
    assert (config.method, config.learning_rate, config.epochs, config.batch_size, config.lora_r) == (
        "lora", 0.001, 2, 4, 8
    )  # fmt: skip
    assert config.base_model == job["baseModel"] == str(tiny_base_model.resolve())
    assert (job["status"], job["method"], int(job["pool"])) == ("open", "lora", 500 * OPEN)  # names, not numbers
    assert 0 <= job["postedAt"] + 24 * 3600 - job["deadline"] <= 60  # 24 h from the latest block at posting
    assert world.poster.balance() == before - 505 * OPEN  # the pool and the 1 % verifier fee, by permit, no approve
    # What the daemon checks before claiming: the document and the base model both match.
    on_chain = world.poster.job(posted["job_id"])
    assert load_config(store, on_chain) == config
    assert local_base_model(on_chain, Settings(models_dir=tmp_path / "models")) == tiny_base_model


def test_post_a_cached_model_with_a_config_file(
    world: World, poster_cli: list[str], tmp_path: Path, tiny_base_model: Path
) -> None:
    [d], _ = create_datanets(world.curator, 1)
    models = tmp_path / ".datanet" / "models"
    shutil.copytree(tiny_base_model, models / "test--tiny")  # the models cache, as a node has it
    (tmp_path / "train.json").write_text(json.dumps({"max_seq_len": 64, "epochs": 5, "seed": 7}))
    posted = _json([*poster_cli, "job", "post", "--base-model", "test/tiny", "--datanet", str(d), "--pool", "10",
                    "--config", "train.json", "--epochs", "1", "--commercial-use"])  # fmt: skip
    job = world.poster.job(posted["job_id"])
    config = load_config(EmbeddedStore(tmp_path / ".datanet" / "ipfs"), job)
    assert (config.base_model, config.method, config.max_seq_len, config.epochs, config.seed) == (
        "test/tiny", "qlora", 64, 1, 7
    )  # fmt: skip
    assert config.commercial_use
    assert job.baseModel == "test/tiny" and local_base_model(job, Settings(models_dir=models)) == models / "test--tiny"


def test_bad_posts_post_nothing(world: World, poster_cli: list[str], tmp_path: Path, tiny_base_model: Path) -> None:
    [d], _ = create_datanets(world.curator, 1)
    before = world.poster.balance()
    post = [*poster_cli, "job", "post", "--datanet", str(d), "--pool", "10"]
    _fails([*post, "--base-model", "no-such/model"], "Base model 'no-such/model' is not available on this node")
    _fails([*post, "--base-model", str(tiny_base_model), "--method", "full"], "method")
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rat": 0.1}))
    _fails([*post, "--base-model", str(tiny_base_model), "--config", "bad.json"], "learning_rat")
    _fails([*post[:-4], "--datanet", "99", "--pool", "10", "--base-model", str(tiny_base_model)], "no such Datanet")
    _fails([*post[:-2], "--pool", "5000000", "--base-model", str(tiny_base_model)], "the pool needs")
    assert world.admin.job_count() == 0 and world.poster.balance() == before
    blocks = tmp_path / ".datanet" / "ipfs" / "blocks"
    assert not blocks.exists() or not any(blocks.iterdir())  # nothing uploaded either


def test_cancel_refunds_the_pool(world: World, poster_cli: list[str], tiny_base_model: Path) -> None:
    [d], _ = create_datanets(world.curator, 1)
    before = world.poster.balance()
    job_id = _json([*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d),
                    "--pool", "42"])["job_id"]  # fmt: skip
    node = ["--rpc-url", world.rpc_url, "--wallet", "node"]
    _fails([*node, "job", "cancel", str(job_id)], "only its poster can cancel it")
    cancelled = _json([*poster_cli, "job", "cancel", str(job_id)])
    assert cancelled["refunded"] == job_cost(42 * OPEN) and cancelled["status"] == "cancelled"
    assert world.poster.job(job_id).status == JobStatus.CANCELLED and world.poster.balance() == before
    _fails([*poster_cli, "job", "cancel", str(job_id)], "is cancelled; only an open")


def _claimed_by_node(world: World, job_id: int) -> None:
    amount = world.node.bond_for(job_id)  # each claim reserves its own bond
    world.node.approve(world.node.staking.address, amount)
    world.node.stake(amount)
    world.node.claim_job(job_id)


def test_eval_set_is_committed_then_revealed_after_the_claim(
    world: World, poster_cli: list[str], tmp_path: Path, tiny_base_model: Path
) -> None:
    [d], _ = create_datanets(world.curator, 1)
    _, records = demo_world.region_facts(7)
    evals = tmp_path / "eval.jsonl"
    evals.write_bytes(demo_world.to_jsonl(records[:5]))
    post = [*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d), "--pool", "10"]
    (tmp_path / "broken.jsonl").write_text('{"instruction": "no answer"}\n')
    _fails([*post, "--eval-file", "broken.jsonl"], "output")  # validated like a contribution: nothing posted
    assert world.admin.job_count() == 0
    posted = _json([*post, "--eval-file", str(evals)])
    job_id, digest = posted["job_id"], "0x" + hashlib.sha256(evals.read_bytes()).hexdigest()
    assert posted["eval_sha256"] == digest and posted["eval_records"] == 5
    store = EmbeddedStore(tmp_path / ".datanet" / "ipfs")
    assert load_config(store, world.poster.job(job_id)).eval_sha256 == digest  # in the hashed config document
    reveal = [*poster_cli, "job", "reveal-eval", str(job_id)]
    _fails(reveal, "is not claimed yet")
    _claimed_by_node(world, job_id)
    _fails(reveal, "the reveal must come in a later block")  # the training set is fixed at the claim block
    world.rpc("evm_mine")
    _fails(["--rpc-url", world.rpc_url, "--wallet", "node", "job", "reveal-eval", str(job_id)], "only its poster")
    (tmp_path / "other.jsonl").write_bytes(demo_world.to_jsonl(records[:4]))
    _fails([*reveal, "--eval-file", "other.jsonl"], "is not the committed file")
    assert not world.admin.eval_reveal(job_id).revealed
    revealed = _json(reveal)  # finds the committed file from this machine's record
    assert revealed["eval_sha256"] == digest and revealed["tx"].startswith("0x")
    on_chain = world.admin.eval_reveal(job_id)
    assert on_chain.revealed and on_chain.evalCID == revealed["eval_cid"]
    assert store.cat(on_chain.evalCID) == evals.read_bytes()
    _fails(reveal, "already revealed")


def test_reveal_from_another_machine_and_without_a_commitment(
    world: World, poster_cli: list[str], tmp_path: Path, tiny_base_model: Path
) -> None:
    [d], _ = create_datanets(world.curator, 1)
    post = [*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d), "--pool", "10"]
    plain = _json(post)["job_id"]
    evals = tmp_path / "eval.txt"
    evals.write_text("Question one?\n\nAnswer two.\n")
    committed = _json([*post, "--eval-file", str(evals)])["job_id"]
    _claimed_by_node(world, plain)
    _claimed_by_node(world, committed)
    world.rpc("evm_mine")
    _fails([*poster_cli, "job", "reveal-eval", str(plain)], "committed no eval set")
    (tmp_path / ".datanet" / "eval-commits.json").unlink()  # as on another machine
    _fails([*poster_cli, "job", "reveal-eval", str(committed)], "pass it with --eval-file FILE")
    moved = tmp_path / "copy.txt"
    moved.write_bytes(evals.read_bytes())
    assert _json([*poster_cli, "job", "reveal-eval", str(committed), "--eval-file", str(moved)])["eval_cid"]


def test_expire_refunds_the_poster_and_slashes_the_node(
    world: World, poster_cli: list[str], tiny_base_model: Path
) -> None:
    [d], _ = create_datanets(world.curator, 1)
    job_id = _json([*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d),
                    "--pool", "42", "--hours", "1"])["job_id"]  # fmt: skip
    _claimed_by_node(world, job_id)
    before, stake = world.poster.balance(), world.node.node_stake().active
    anyone = ["--rpc-url", world.rpc_url, "--wallet", "node"]
    _fails([*anyone, "job", "expire", str(job_id)], "it can be expired after that")
    world.advance(3601)
    expired = _json([*anyone, "job", "expire", str(job_id)])
    refund = job_cost(42 * OPEN)  # the pool and the verifier fee paid on top of it
    assert (expired["status"], expired["refunded"], expired["node"]) == ("expired", refund, world.node.address)
    assert expired["slashed"] > 0 and expired["tx"].startswith("0x")
    assert world.poster.balance() == before + refund + expired["slashed"]  # the slash goes to the poster
    assert world.node.node_stake().active == stake - expired["slashed"]
    assert world.admin.job(job_id).status == JobStatus.EXPIRED
    _fails([*anyone, "job", "expire", str(job_id)], "is expired; only an open or claimed job can expire")


def test_reopen_returns_an_overrun_job_to_open_and_pays_the_poster(
    world: World, poster_cli: list[str], tiny_base_model: Path
) -> None:
    """`datanet job reopen`: refused while the node may still train, then anyone reopens it."""
    [d], _ = create_datanets(world.curator, 1)
    job_id = _json([*poster_cli, "job", "post", "--base-model", str(tiny_base_model), "--datanet", str(d),
                    "--pool", "42", "--hours", "200"])["job_id"]  # fmt: skip
    _claimed_by_node(world, job_id)
    bond, before = world.admin.job(job_id).bond, world.poster.balance()
    anyone = ["--rpc-url", world.rpc_url, "--wallet", "node"]
    _fails([*anyone, "job", "reopen", str(job_id)], "may train until")
    world.advance(world.admin.max_training_time())
    reopened = _json([*anyone, "job", "reopen", str(job_id)])
    assert (reopened["status"], reopened["node"], reopened["slashed"]) == ("open", world.node.address, bond // 2)
    assert world.poster.balance() == before + bond // 2
    assert world.admin.job(job_id).status == JobStatus.OPEN and world.node.node_stake().reserved == 0
    _fails([*anyone, "job", "reopen", str(job_id)], "only a claimed job can be reopened")
