"""Reading a job's permitted contributions from the chain: only approved ones, of exactly the
requested Datanet, in approval order, as of one block."""

from __future__ import annotations

import hashlib

from node.chain.contributions import approved_contributions
from node.chain.deploy import OPEN
from node.chain.models import MIN_LOCK_PERIOD, ContributionInput, DatanetParams
from tests.conftest import World


def _contribute(world: World, who: int, datanet_id: int, payload: bytes) -> int:
    proto = world.contributors[who]
    entry = ContributionInput(
        datanetId=datanet_id,
        cid=f"bafk-test-{payload.hex()}",
        contentHash=hashlib.sha256(payload).digest(),
        byteSize=len(payload),
        recordCount=1,
        stake=10 * OPEN,
    )
    proto.approve(world.admin.datanets.address, entry.stake)
    return proto.contribute(entry)


def test_only_approved_of_that_datanet_in_approval_order(world: World) -> None:
    params = DatanetParams(
        name="a", treasury=world.admin.address, curators=[world.curator.address], lockPeriod=MIN_LOCK_PERIOD
    )
    d1 = world.admin.create_datanet(params)
    d2 = world.admin.create_datanet(params.model_copy(update={"name": "b"}))
    c_pending = _contribute(world, 0, d1, b"pending")
    c_late = _contribute(world, 1, d1, b"approved second")
    c_early = _contribute(world, 2, d1, b"approved first")
    c_rejected = _contribute(world, 3, d1, b"rejected")
    c_withdrawn = _contribute(world, 0, d1, b"withdrawn")
    c_other = _contribute(world, 1, d2, b"other datanet")
    world.curator.approve_contribution(c_early)
    world.curator.approve_contribution(c_withdrawn)
    world.advance(10)
    world.curator.approve_contribution(c_late)
    world.curator.approve_contribution(c_other)
    world.curator.reject_contribution(c_rejected, "bad")
    world.advance(MIN_LOCK_PERIOD)  # the approved stake's lock
    world.contributors[0].withdraw_contribution(c_withdrawn)
    block = world.admin.client.block_number()

    got = approved_contributions(world.admin, d1, block)
    assert [c.id for c in got] == [c_early, c_late]
    assert c_pending not in {c.id for c in got}
    assert [c.id for c in approved_contributions(world.admin, d2, block)] == [c_other]


def test_snapshot_is_taken_at_the_given_block(world: World) -> None:
    params = DatanetParams(name="a", treasury=world.admin.address, curators=[world.curator.address])
    d = world.admin.create_datanet(params)
    c = _contribute(world, 0, d, b"x")
    world.curator.approve_contribution(c)
    before = world.admin.client.block_number()
    c2 = _contribute(world, 1, d, b"y")
    world.curator.approve_contribution(c2)
    assert [x.id for x in approved_contributions(world.admin, d, before)] == [c]
    assert [x.id for x in approved_contributions(world.admin, d, world.admin.client.block_number())] == [
        c,
        c2,
    ]
