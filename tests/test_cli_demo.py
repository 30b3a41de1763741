"""The `datanet` command end to end: the demo on a fresh dev chain, `--keep`, read views,
and clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from node.chain.accounts import save_keystore
from node.chain.deploy import OPEN
from node.cli import app
from tests.conftest import World

runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# The tiny random Llama learns slowly through LoRA alone (its output head is random and frozen):
# more epochs at a higher rate than the demo's SmolLM2 default, still a few seconds of training.
TINY_TRAINING = {"method": "lora", "learning_rate": 5e-3, "epochs": 40, "lora_r": 16, "lora_alpha": 32}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_keep_then_explore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_base_model: Path) -> None:
    """The README's first command, as a user runs it (on the tests' tiny model, `--base-model`):
    the node's daemon trains and registers a model, the fine-tuned model expects the contributed
    answers far more than the base model does, and the read views show the state it leaves."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny-training.json"
    config.write_text(json.dumps(TINY_TRAINING))
    args = ["demo", "--json", "--keep", "--port", "0", "--base-model", str(tiny_base_model), "--config", str(config)]
    summary = _json(args)
    try:
        assert summary["chain_kept"] and summary["chain_pid"]
        statuses = [c["status"] for c in summary["contributions"]]
        assert statuses == ["approved", "approved", "rejected"]
        assert [c["relayed"] for c in summary["contributions"]] == [False, False, True]
        assert summary["treasury_slashed"] == "10.00 OPEN"  # 50% of a 20 OPEN stake
        assert len({c["contributor"] for c in summary["contributions"]}) == 3
        off_chain = {"train", "training set", "chat", "attribution", "verify"}
        assert "reveal eval set" in {s["step"] for s in summary["steps"]}
        assert {s["step"] for s in summary["steps"]} >= off_chain | {"claim job", "register model"}
        assert all(s["tx"] and s["tx"].startswith("0x") for s in summary["steps"] if s["step"] not in off_chain)
        assert (tmp_path / summary["deployment_file"]).exists()
        # The node's permitted training set: both approved contributors, nothing from the rejected one.
        ts = summary["training_set"]
        approved = {c["contributor"]: c["records"] for c in summary["contributions"][:2]}
        assert ts["per_contributor"] == approved and ts["examples"] == sum(approved.values())
        manifest = json.loads((tmp_path / ts["manifest"]).read_text())
        assert manifest["data_root"] == ts["data_root"]
        assert {e["contribution_id"] for e in manifest["entries"]} == {1, 2}
        for c in summary["contributions"]:  # the files on disk are what was registered
            data = (tmp_path / c["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == c["sha256"]

        # The registered model is the adapter on disk, trained on exactly that set.
        m = summary["model"]
        adapter = tmp_path / m["adapter_dir"]
        weights = (adapter / "adapter_model.safetensors").read_bytes()
        assert "0x" + hashlib.sha256(weights).hexdigest() == m["adapter_sha256"]
        assert m["data_root"] == ts["data_root"] and m["steps"] > 0
        [listed] = _json(["models", "--json"])
        assert (listed["model_id"], listed["adapter_cid"], listed["adapter_sha256"]) == (
            m["model_id"], m["adapter_cid"], m["adapter_sha256"],
        )  # fmt: skip
        assert listed["metrics"]["train"]["steps"] == m["steps"]  # the metrics document, fetched by its CID
        fetched = tmp_path / "fetched"
        _json(["store", "get", m["adapter_cid"], "-o", str(fetched), "--json"])
        assert (fetched / "adapter_model.safetensors").read_bytes() == weights

        # The chat: the base model never saw the contributors' invented places; the fine-tuned one has
        # learned their answers.
        chat = summary["chat"]
        assert chat["asked"] >= 30 and chat["base_exact"] == 0
        # Mean log-likelihood per answer token, in nats (measured here: -6.3 base, -5.1 fine-tuned):
        # a margin, not a count of exact answers that one machine's floats reach and another's miss.
        assert chat["fine_tuned_loglik"] > chat["base_loglik"] + 0.5, chat
        assert {a["contributor"] for a in chat["shown"]} == set(approved)
        # Proof of Attribution: each approved contributor with a positive weight claims its amount,
        # the rejected one is not paid, and a verifier recomputing everything agrees.
        at = summary["attribution"]
        assert at["verify"] == "MATCH", at
        assert "eval-file" in at["query"]  # the poster's committed, then revealed, eval set
        paid = {p["contributor"]: p for p in at["payouts"] if p["claim_tx"]}
        assert paid and set(paid) <= set(approved)
        assert summary["contributions"][2]["contributor"] not in {p["contributor"] for p in at["payouts"]}
        assert abs(sum(p["share"] for p in at["payouts"]) - 1.0) < 1e-9
        assert all(p["balance_after"] != p["balance_before"] for p in paid.values() if p["amount"] != "0.00 OPEN")

        # The demo ends by serving: the new model answered through the OpenAI-compatible API, and the kept
        # server goes on answering with the key the demo printed.
        srv = summary["server"]
        assert srv["kept"] and srv["model"] == f"datanet-{m['model_id']}" and srv["api_key"].startswith("sk-dn-")
        listed_models = httpx.get(srv["url"] + "/v1/models").json()["data"]
        assert srv["model"] in {c["id"] for c in listed_models}
        asked = httpx.post(srv["url"] + "/v1/chat/completions", headers={"Authorization": f"Bearer {srv['api_key']}"},
                           json={"model": srv["model"], "max_tokens": 4,
                                 "messages": [{"role": "user", "content": srv["question"]}]}, timeout=120)  # fmt: skip
        assert asked.status_code == 200 and asked.json()["model"] == srv["model"]

        status = _json(["status", "--json"])
        assert status["rpc_url"] == summary["rpc_url"]
        assert (status["datanets"], status["contributions"], status["jobs"], status["models"]) == (1, 3, 1, 1)
        # A curator's preview fetches the content from the store and verifies it.
        preview = _json(["curate", "show", "1", "--json", "--records", "2"])
        assert preview["validation"]["error_count"] == 0 and len(preview["preview"]) == 2

        job = _json(["job", "show", "1", "--json"])
        assert job["status"] == "completed"  # the daemon registered its result
        assert job["node"] == summary["node"]
        assert int(job["pool"]) == 1_000 * OPEN

        shown = _json(["datanet", "show", "1", "--json"])
        assert shown["datanet"]["approvedCount"] == 2
        assert [c["status"] for c in shown["contributions"]] == ["approved", "approved", "rejected"]
    finally:
        result = runner.invoke(app, ["chain", "down"], catch_exceptions=False)
        if summary.get("server"):
            with pytest.raises(httpx.HTTPError):  # `chain down` stopped the demo's server too
                httpx.get(summary["server"]["url"] + "/health", timeout=2)
        assert "stopped the dev chain" in result.stdout
    assert not (tmp_path / ".datanet" / "devchain.json").exists()


def test_missing_deployment_is_a_clear_error(tmp_path: Path) -> None:
    """Without a deployment file the command says what to do, exits 1, and shows no traceback."""
    env = {**os.environ, "DATANET_RPC_RETRIES": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "node.cli", "--network", "nowhere", "status"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "No deployment file" in proc.stderr and "datanet deploy" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_deploy_with_an_encrypted_keystore(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datanet deploy` signs with a keystore account (not a dev key) and records the deployment."""
    deployer = Account.create()
    world.admin.client.send_value(deployer.address, 10**18)
    keystore = save_keystore(deployer, tmp_path / "deployer.json", "s3cret-pw")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_KEYSTORE", str(keystore))
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "s3cret-pw")
    result = runner.invoke(
        app, ["--rpc-url", world.rpc_url, "--network", "mynet", "deploy", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output and deployer.key.hex()[2:] not in result.output
    dep = json.loads((tmp_path / "deployments" / "mynet.json").read_text())
    assert dep["deployer"] == deployer.address
    assert dep["chain_id"] == 31337 and dep["network"] == "mynet"
    code = world.admin.client.w3.eth.get_code(dep["contracts"]["ModelRegistry"])
    assert len(code) > 1000  # really deployed
    status = _json(["--rpc-url", world.rpc_url, "--network", "mynet", "status", "--json"])
    assert status["jobs"] == 0 and status["contracts"] == dep["contracts"]
