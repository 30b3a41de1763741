"""The contributor and curator commands through the CLI, on the real dev chain (some through the
old spelling `datanet datanet ...`, a hidden alias of `datanet net ...`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.deploy import save_deployment
from node.cli import app
from node.demo import world as demo_world
from tests.conftest import CONTRIBUTORS, CURATOR, World

runner = CliRunner()


def _run(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def cli_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A working directory with the session's deployment and wallets for a curator and a contributor."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw")
    save_deployment(world.deployment, tmp_path / "deployments" / "localhost.json")
    for name, index in (("curator", CURATOR), ("alice", CONTRIBUTORS[0])):
        save_keystore(dev_account(index), tmp_path / ".datanet" / "keystores" / f"{name}.json", "pw")
    return world


def test_create_contribute_curate_via_cli(cli_env: World, tmp_path: Path) -> None:
    world = cli_env
    base = ["--rpc-url", world.rpc_url]
    created = json.loads(
        _run(
            [
                *base,
                "--wallet",
                "curator",
                "net",
                "create",
                "--name",
                "Tides",
                "--min-stake",
                "5",
                "--slash-percent",
                "40",
                "--json",
            ]
        )
    )
    d = created["datanet_id"]
    shown = json.loads(_run([*base, "net", "show", str(d), "--json"]))["datanet"]
    assert shown["name"] == "Tides" and shown["slashBps"] == 4000 and shown["owner"] == world.curator.address
    good, spam = tmp_path / "good.jsonl", tmp_path / "spam.txt"
    good.write_bytes(demo_world.to_jsonl(demo_world.region_facts(5)[1]))
    spam.write_text("buy now\n\nclick here\n")
    out = json.loads(
        _run([*base, "--wallet", "alice", "contribute", "--datanet", str(d), str(good), str(spam), "--json"])
    )
    ids = [r["contribution_id"] for r in out]
    assert [r["stake"] for r in out] == [5 * 10**18] * 2
    assert [r["status"] for r in out] == ["pending"] * 2
    pending = json.loads(_run([*base, "--wallet", "curator", "curate", "list", "--datanet", str(d), "--json"]))
    assert [c["id"] for c in pending] == ids
    approved = json.loads(_run([*base, "--wallet", "curator", "curate", "approve", str(ids[0]), "--json"]))
    assert approved["contribution_id"] == ids[0] and approved["status"] == "approved"
    assert approved["tx"].startswith("0x") and approved["datanet_id"] == d
    treasury_before = world.admin.balance(world.curator.address)
    rejected = json.loads(
        _run([*base, "--wallet", "curator", "curate", "reject", str(ids[1]), "--reason", "spam", "--json"])
    )
    assert (rejected["status"], rejected["reason"], rejected["slashed"], rejected["refunded"]) == (
        "rejected", "spam", 2 * 10**18, 3 * 10**18
    )  # fmt: skip
    assert rejected["treasury"] == world.curator.address and rejected["tx"].startswith("0x")
    assert world.admin.balance(world.curator.address) == treasury_before + 2 * 10**18
    mine = json.loads(_run([*base, "--wallet", "alice", "contributions", "--json"]))
    assert [(c["id"], c["status"]) for c in mine] == [(ids[0], "approved"), (ids[1], "rejected")]


def test_withdraw_a_stake_after_its_lock(cli_env: World, tmp_path: Path) -> None:
    world = cli_env
    base = ["--rpc-url", world.rpc_url]
    d = json.loads(_run([*base, "--wallet", "curator", "net", "create", "--name", "L", "--min-stake", "3",
                         "--lock-days", "1", "--json"]))["datanet_id"]  # fmt: skip
    (tmp_path / "a.txt").write_text("The tide turns at dusk.\n")
    [r] = json.loads(_run([*base, "--wallet", "alice", "contribute", "--datanet", str(d), "a.txt", "--json"]))
    cid = r["contribution_id"]
    _run([*base, "--wallet", "curator", "curate", "approve", str(cid)])
    alice = world.contributors[0]
    [listed] = json.loads(_run([*base, "--wallet", "alice", "contributions", "list", "--json"]))
    assert listed["unlocks_at"] == world.admin.contribution(cid).decidedAt + 86_400
    early = runner.invoke(app, [*base, "--wallet", "alice", "contributions", "withdraw", str(cid)])
    assert early.exit_code != 0 and "is locked until" in str(early.exception), early.output
    assert f"datanet contributions withdraw {cid}" in str(early.exception)
    other = runner.invoke(app, [*base, "--wallet", "curator", "contributions", "withdraw", str(cid)])
    assert other.exit_code != 0 and "only it can withdraw" in str(other.exception)
    world.advance(86_401)
    before = alice.balance()
    out = json.loads(_run([*base, "--wallet", "alice", "contributions", "withdraw", str(cid), "--json"]))
    assert (out["withdrawn"], out["was"], out["status"]) == (3 * 10**18, "approved", "withdrawn")
    assert out["tx"].startswith("0x") and alice.balance() == before + 3 * 10**18 == out["balance_after"]
    assert world.admin.datanet(d).approvedCount == 0  # it left the Datanet: later jobs do not train on it
    again = runner.invoke(app, [*base, "--wallet", "alice", "contributions", "withdraw", str(cid)])
    assert again.exit_code != 0 and "no stake left" in str(again.exception)


def test_contribute_and_curate_text_output(cli_env: World, tmp_path: Path) -> None:
    """The human-readable lines: each contribution with id, status, CID and tx; curate decisions with tx."""
    world = cli_env
    base = ["--rpc-url", world.rpc_url]
    d = json.loads(_run([*base, "--wallet", "curator", "datanet", "create", "--name", "T", "--min-stake", "1",
                         "--json"]))["datanet_id"]  # fmt: skip
    (tmp_path / "a.txt").write_text("The tide turns at dusk.\n")
    (tmp_path / "b.txt").write_text("Herons nest on the east shore.\n")
    text = " ".join(_run([*base, "--wallet", "alice", "contribute", "--datanet", str(d), "a.txt", "b.txt"]).split())
    found = re.findall(r"(\w\.txt): contribution #(\d+) \(pending\), (bafk\w+) .*? tx (0x[0-9a-f]{64})", text)
    assert [f[0] for f in found] == ["a.txt", "b.txt"], text
    first, second = (int(f[1]) for f in found)
    assert {f[2] for f in found} == {world.admin.contribution(i).cid for i in (first, second)}
    approved = _run([*base, "--wallet", "curator", "curate", "approve", str(first)])
    assert re.search(rf"approved #{first} in tx 0x[0-9a-f]{{64}}", approved)
    rejected = _run([*base, "--wallet", "curator", "curate", "reject", str(second), "--reason", "dup"])
    assert "slashed 0.50 OPEN to the treasury, refunded 0.50 OPEN" in rejected
    assert re.search(r"tx 0x[0-9a-f]{64}", rejected)


def test_contribute_cli_reports_a_bad_file_and_stakes_nothing(cli_env: World, tmp_path: Path) -> None:
    world = cli_env
    d = json.loads(
        _run(["--rpc-url", world.rpc_url, "--wallet", "curator", "datanet", "create", "--name", "X", "--json"])
    )["datanet_id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    result = runner.invoke(
        app, ["--rpc-url", world.rpc_url, "--wallet", "alice", "contribute", "--datanet", str(d), str(bad)]
    )
    assert result.exit_code != 0
    assert "bad.jsonl:1" in str(result.exception) and "Nothing was uploaded or staked" in str(result.exception)
    assert world.admin.contribution_count() == 0


def test_private_datanet_via_cli(cli_env: World, tmp_path: Path) -> None:
    """create --private publishes the key; contribute seals; curate show decrypts locally; the node
    publishes its key; `grant --job` gives it exactly that job's files."""
    from node.chain.accounts import dev_account as acct
    from node.data.assemble import assemble
    from node.data.grants import JobKeys
    from node.storage.embedded import EmbeddedStore
    from tests.conftest import NODE
    from tests.contracts.helpers_jobs import stake_node
    from tests.test_private_datanet import _job

    world = cli_env
    base = ["--rpc-url", world.rpc_url]
    save_keystore(acct(NODE), tmp_path / ".datanet" / "keystores" / "node.json", "pw")
    created = json.loads(_run([*base, "--wallet", "curator", "datanet", "create", "--name", "Clinic", "--private",
                               "--min-stake", "1", "--lock-days", "1", "--json"]))  # fmt: skip
    d = created["datanet_id"]
    assert created["key_version"] == 1 and created["public_key"].startswith("0x")
    path = tmp_path / "notes.jsonl"
    path.write_bytes(demo_world.to_jsonl(demo_world.region_facts(8)[1][:5]))
    [r] = json.loads(_run([*base, "--wallet", "alice", "contribute", "--datanet", str(d), str(path), "--json"]))
    store = EmbeddedStore(tmp_path / ".datanet" / "ipfs")
    assert b"capital" not in store.cat(r["cid"])  # sealed before upload
    shown = json.loads(_run([*base, "--wallet", "curator", "curate", "show", str(r["contribution_id"]), "--json"]))
    assert "capital" in json.dumps(shown["preview"])  # decrypted locally for the curator
    _run([*base, "--wallet", "curator", "curate", "approve", str(r["contribution_id"])])

    job = _job(world, d)
    stake_node(world.node)
    trust = [*base, "--wallet", "curator", "net", "trust-node", str(d), world.node.address, "--json"]
    trusted = json.loads(_run(trust))
    assert (trusted["trusted"], trusted["checked"]) == (True, True) and world.node.can_claim(d)
    assert json.loads(_run([*base, "net", "show", str(d), "--json"]))["trusted_nodes"] == [world.node.address]
    world.node.claim_job(job)
    keys = json.loads(_run([*base, "--wallet", "node", "keys", "publish", "--json"]))
    assert keys["account"] == world.node.address
    granted = json.loads(_run([*base, "--wallet", "curator", "grant", "--job", str(job), "--json"]))
    assert granted[0]["files"] == [r["contribution_id"]] and granted[0]["grantee"] == world.node.address
    got = assemble(world.node, store, job, decrypt=JobKeys(world.node, store, job))
    assert len(got.examples) == 5 and not got.excluded
    refused = runner.invoke(app, [*base, "--wallet", "alice", "grant", "--job", str(job)])
    assert refused.exit_code != 0
    _run([*base, "--wallet", "curator", "net", "trust-node", str(d), world.node.address, "--revoke"])
    assert json.loads(_run([*base, "net", "show", str(d), "--json"]))["trusted_nodes"] == []
    assert not world.node.can_claim(d)


def test_a_lock_period_out_of_bounds_is_refused_before_sending(cli_env: World) -> None:
    """`--lock-days 0` would leave curators no window to decide: refused with the range, nothing created."""
    world = cli_env
    before = world.admin.datanet_count()
    for days in ("0", "731"):
        result = runner.invoke(app, ["--rpc-url", world.rpc_url, "--wallet", "curator", "net", "create", "--name",
                                     "Z", "--lock-days", days])  # fmt: skip
        assert result.exit_code != 0 and "is out of range" in str(result.exception), result.output
        assert "nothing was created" in str(result.exception)
    assert world.admin.datanet_count() == before


def test_cancel_signatures_uses_up_the_nonce(cli_env: World) -> None:
    """`contributions cancel-signatures`: every unsent `--relayer` signature of this wallet is void."""
    world = cli_env
    alice = world.contributors[0]
    before = alice.contribution_nonce()
    out = json.loads(_run(["--rpc-url", world.rpc_url, "--wallet", "alice", "contributions", "cancel-signatures",
                           "--json"]))  # fmt: skip
    assert (out["nonce_before"], out["nonce_after"]) == (before, before + 1) == (before, alice.contribution_nonce())
    assert out["account"] == alice.address and out["tx"].startswith("0x")
