"""`datanet params show|propose|execute` against the deployed protocol: the parameters as deployed,
and a staking-parameter change that only the proposer can schedule and nobody can apply before
the timelock's delay (M-4)."""

from __future__ import annotations

import json
from pathlib import Path

from node.chain.deploy import OPEN
from tests.cli_run import run_cli
from tests.conftest import DEPLOYER, OUTSIDER, TEST_DEPLOY, World
from tests.contracts.helpers_jobs import frozen_clock, set_time


def _run(world: World, tmp_path: Path, *args: str, key: int = DEPLOYER) -> tuple[int, str]:
    return run_cli(world, tmp_path, *args, key=key)


def test_params_show_the_deployed_values(world: World, tmp_path: Path) -> None:
    code, out = _run(world, tmp_path, "params", "show", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["min_node_stake"] == TEST_DEPLOY.min_node_stake
    assert shown["timelock_delay"] == TEST_DEPLOY.unbonding_period + TEST_DEPLOY.challenge_window
    assert shown["challenge_periods"] == {"commit": 2, "reveal": 2, "answer": 2}
    assert shown["challenge_bond"] == TEST_DEPLOY.challenge_bond
    assert shown["verifier_fee_bps"] == 100
    assert shown["court"] | {"committee_bps": 0, "no_vote_slash_bps": 0} == {
        "min_verifier_stake": TEST_DEPLOY.min_verifier_stake, "committee_size": TEST_DEPLOY.committee_size,
        "appeal_bond": TEST_DEPLOY.appeal_bond, "vote_period": 2, "reveal_vote_period": 2, "appeal_period": 2,
        "leave_delay": 2, "committee_bps": 0, "no_vote_slash_bps": 0,
    }  # fmt: skip


def test_a_staking_change_waits_out_the_timelock(world: World, tmp_path: Path) -> None:
    change = ["--min-stake", "5", "--unbonding-days", "2"]
    code, out = _run(world, tmp_path, "params", "propose", *change, key=OUTSIDER)
    assert code != 0 and "AccessControlUnauthorizedAccount" in out  # only the proposer schedules
    with frozen_clock(world, world.now() + 1):
        code, out = _run(world, tmp_path, "params", "propose", *change, "--json")
        assert code == 0, out
        ready = json.loads(out)["ready_at"]
        assert ready == world.now() + TEST_DEPLOY.unbonding_period + TEST_DEPLOY.challenge_window
        code, out = _run(world, tmp_path, "params", "execute", *change, key=OUTSIDER)
        assert code != 0 and "timelocked until" in out
        assert world.admin.min_node_stake() == TEST_DEPLOY.min_node_stake
        set_time(world, ready)
        code, out = _run(world, tmp_path, "params", "execute", *change, "--json", key=OUTSIDER)  # anyone
        assert code == 0, out
    assert world.admin.min_node_stake() == 5 * OPEN and world.admin.unbonding_period() == 2 * 86_400
    code, out = _run(world, tmp_path, "params", "execute", *change, key=OUTSIDER)
    assert code != 0 and "already executed" in out
