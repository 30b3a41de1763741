"""The pages' incremental event log: the same logs as a full scan from the deployment block,
reading only the blocks since the last call (less the reorg margin) as the chain grows."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.chain.contributions import submitted_ids
from node.web.registry import EventLog
from tests.conftest import World
from tests.daemon_setup import approved_datanet, node_home


def test_an_event_log_reads_only_new_blocks_and_misses_nothing(
    world: World, tmp_path: Path, tiny_base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = node_home(world, tmp_path, tiny_base_model)
    log = EventLog(world.admin, "datanets", "ContributionSubmitted")
    asked: list[int] = []
    real = world.admin.datanets.events.ContributionSubmitted.get_logs

    def counting(*, from_block: int, to_block: object = "latest", **filters: object) -> object:
        if not filters:  # EventLog's reads (other code filters by indexed arguments)
            asked.append(int(to_block) - from_block + 1)  # type: ignore[call-overload]
        return real(from_block=from_block, to_block=to_block, **filters)

    monkeypatch.setattr(world.admin.datanets.events.ContributionSubmitted, "get_logs", counting)
    first = approved_datanet(world, home, contributors=1)
    assert [int(x["args"]["contributionId"]) for x in log.all()] == submitted_ids(world.admin, datanetId=first)
    for _ in range(EventLog.REORG_DEPTH + 5):
        world.rpc("evm_mine")
    log.all()  # settles everything but the last REORG_DEPTH blocks
    second = approved_datanet(world, home, contributors=1, first=1)
    got = [int(x["args"]["contributionId"]) for x in log.all()]
    assert got == submitted_ids(world.admin) and submitted_ids(world.admin, datanetId=second)[0] in got
    # The last read asked for the blocks since the settled ones only, not the whole chain again.
    head = world.admin.client.block_number()
    assert asked[-1] < head - world.deployment.deploy_block
