"""`datanet verifier ...` and `datanet case ...` against the deployed VerifierCourt: joining, what
a case shows at each step, and the refusals a person gets (with what to do instead)."""

from __future__ import annotations

import json
from pathlib import Path

from node.chain.accounts import dev_account
from tests.cli_run import run_cli
from tests.conftest import TEST_DEPLOY, World
from tests.contracts.helpers_jobs import frozen_clock
from tests.contracts.test_verifier_court import refer, submitted

VERIFIER = 10  # a dev account with ETH; the test gives it OPEN


def _run(world: World, tmp_path: Path, *args: str, key: int = VERIFIER) -> tuple[int, str]:
    return run_cli(world, tmp_path, *args, key=key)


def test_a_verifier_joins_sits_on_a_case_and_cannot_leave_it(world: World, tmp_path: Path) -> None:
    me = dev_account(VERIFIER).address
    code, out = _run(world, tmp_path, "verifier", "join")
    assert code != 0 and "joining needs" in out  # no OPEN yet: says how much it needs
    world.admin.transfer(me, 2 * TEST_DEPLOY.min_verifier_stake)
    code, out = _run(world, tmp_path, "verifier", "join", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert (shown["active"], shown["drawable"], shown["duties"]) == (TEST_DEPLOY.min_verifier_stake, True, 0)
    code, out = _run(world, tmp_path, "verifier", "join", "--json")  # idempotent at the minimum
    assert code == 0 and json.loads(out)["active"] == TEST_DEPLOY.min_verifier_stake

    with frozen_clock(world, world.now() + 1):
        job, model_id = submitted(world)
        case_id = refer(world.contributors[0], model_id)
        code, out = _run(world, tmp_path, "case", "show", str(case_id), "--json")
        assert code == 0, out
        case = json.loads(out)
        shown = (case["model_id"], case["job_id"], case["phase"], case["members"])
        assert shown == (model_id, job.job_id, "voting", [])
        assert case["due"] == "anyone may draw the committee"
        world.rpc("evm_mine")
        world.outsider.draw_committee(case_id)
        case = json.loads(_run(world, tmp_path, "case", "show", str(case_id), "--json")[1])
        assert case["members"] == [me] and case["due"].startswith("members commit their votes until")
        code, out = _run(world, tmp_path, "verifier", "leave")
        assert code != 0 and "sits on 1 committee(s)" in out
        code, out = _run(world, tmp_path, "case", "appeal", str(case_id))
        assert code != 0 and "only a decided, unappealed verdict" in out
        code, out = _run(world, tmp_path, "finalize", str(job.job_id))
        assert code != 0 and "challenge window" in out  # the window (and the case) come first
    code, out = _run(world, tmp_path, "case", "show", "999")
    assert code != 0 and "No recomputation case #999" in out
