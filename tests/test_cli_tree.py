"""The command tree: `--version`, commands grouped by role in `--help`, and the old spellings
(`datanet datanet ...`, `jobs`, `jobs --retry`, `models`, bare `contributions`) still working as
hidden aliases of the new ones, with the same output."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.chain.accounts import dev_account, save_keystore
from node.chain.deploy import load_deployment, save_deployment
from node.cli import app
from node.config import Settings
from node.daemon.store import JobRecord, JobState, JobStore
from node.errors import NodeError
from tests.conftest import CONTRIBUTORS, World
from tests.contracts.helpers_jobs import create_datanets

runner = CliRunner()


def _out(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_version() -> None:
    assert _out(["--version"]).strip() == f"datanet {version('datanet-node')}"


def test_help_groups_commands_by_role_and_hides_old_spellings() -> None:
    text = _out(["--help"])
    panels = ["Contributors", "Datanet owners and curators", "Job posters", "Training nodes", "Everyone", "Setup"]
    assert all(p in text for p in panels), text
    listed = set(re.findall(r"^\W+([a-z][a-z-]*)  ", text, flags=re.M))  # the first word of each table row
    assert {"contribute", "contributions", "rewards", "claim", "net", "curate", "job", "node", "model"} <= listed
    assert not listed & {"jobs", "models", "datanet"}, listed
    assert "reveal-eval" in _out(["job", "--help"]) and "expire" in _out(["job", "--help"])
    node_help = _out(["node", "--help"])
    assert re.search(r"^\W+jobs  ", node_help, flags=re.M) and re.search(r"^\W+retry  ", node_help, flags=re.M)
    assert "--retry" not in _out(["node", "jobs", "--help"])  # a state change is a command, not a flag
    assert "withdraw" in _out(["contributions", "--help"])


@pytest.fixture
def cli_home(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATANET_KEYSTORE_PASSWORD", "pw")
    save_deployment(world.deployment, tmp_path / "deployments" / "localhost.json")
    save_keystore(dev_account(CONTRIBUTORS[0]), tmp_path / ".datanet" / "keystores" / "alice.json", "pw")
    return ["--rpc-url", world.rpc_url]


def test_old_spellings_are_aliases_of_the_new(world: World, cli_home: list[str], tmp_path: Path) -> None:
    base = cli_home
    create_datanets(world.curator, 2)
    for old, new in (
        (["datanet", "list"], ["net", "list"]),
        (["datanet", "show", "2"], ["net", "show", "2"]),
        (["models"], ["model", "list"]),
        (["jobs"], ["node", "jobs"]),
        (["--wallet", "alice", "contributions"], ["--wallet", "alice", "contributions", "list"]),
    ):
        assert json.loads(_out([*base, *old, "--json"])) == json.loads(_out([*base, *new, "--json"])), old

    # Skipped jobs in this node's store: `node retry` and the old `jobs --retry` both put one back.
    s = Settings(rpc_url=world.rpc_url)
    with JobStore.from_settings(s, load_deployment(s.deployment_file())) as store:
        for job_id in (1, 2):
            store.see(JobRecord(job_id=job_id, state=JobState.SKIPPED, reason="unknown base model"))
    retried = json.loads(_out([*base, "node", "retry", "1", "--json"]))
    assert (retried["job"]["job_id"], retried["job"]["state"]) == (1, "seen")
    old = json.loads(_out([*base, "jobs", "--retry", "2", "--json"]))
    assert [(v["job"]["job_id"], v["job"]["state"]) for v in old] == [(1, "seen"), (2, "seen")]
    again = runner.invoke(app, [*base, "node", "retry", "2"])
    assert again.exit_code != 0 and "only skipped jobs and retryable failed ones" in str(again.exception)


def test_errors_name_the_new_commands(world: World, cli_home: list[str]) -> None:
    result = runner.invoke(app, [*cli_home, "--wallet", "alice", "contributions", "withdraw", "9"])
    assert result.exit_code != 0 and isinstance(result.exception, NodeError)
    assert "`datanet contributions`" in str(result.exception)
