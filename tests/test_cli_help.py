"""`--help` a new user can read: every positional argument says what it is, value types in plain
words (PATH, INTEGER, never `<list[Path]>`), --method its choices; `job show` and `model show`
print fields, amounts in OPEN and hashes in 0x-hex, never a pydantic repr with b'...' bytes."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from node.chain.accounts import dev_account
from node.chain.deploy import fmt_open
from node.cli import app
from tests.cli_run import run_cli
from tests.conftest import CONTRIBUTORS, World
from tests.contracts.helpers_jobs import claimed_job, complete_job

runner = CliRunner()


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _arguments(cmd: object, path: list[str]) -> list[tuple[str, str, str | None]]:
    """(command, argument, help) of every positional argument of the (visible) command tree."""
    found = []
    for name, sub in getattr(cmd, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            found += _arguments(sub, [*path, name])
    found += [(" ".join(path), p.name or "", getattr(p, "help", None)) for p in getattr(cmd, "params", [])
              if type(p).__name__ == "TyperArgument"]  # fmt: skip
    return found


def test_every_positional_argument_has_help() -> None:
    missing = [(c, a) for c, a, h in _arguments(typer.main.get_command(app), []) if not h]
    assert missing == []


def test_types_in_plain_words_and_method_choices() -> None:
    text = _help("contribute") + _help("job", "post") + _help("store", "get") + _help("job", "show")
    assert not re.search(r"<(list\[|int>|str>|bool>|float>|path>)", text), text
    assert "PATH" in text and "INTEGER" in text and "lora|qlora" in text


def test_job_and_model_show_print_fields(world: World, tmp_path: Path) -> None:
    job = claimed_job(world)
    model_id, _ = complete_job(world, job, [(dev_account(CONTRIBUTORS[0]).address, 1)], finalize=False)
    code, shown = run_cli(world, tmp_path, "job", "show", str(job.job_id))
    assert code == 0 and "b'" not in shown and "Job(" not in shown, shown
    assert "0x" + job.params.baseModelHash.hex() in shown and fmt_open(job.params.pool) in shown, shown
    assert re.search(r"status\s+│\s+submitted", shown), shown
    code, shown = run_cli(world, tmp_path, "model", "show", str(model_id))
    assert code == 0 and "b'" not in shown and "Model(" not in shown and "lineage:" in shown, shown
    assert "0x" + world.admin.model(model_id).adapterHash.hex() in shown, shown
