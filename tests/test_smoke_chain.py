"""The dev chain starts, the protocol deploys, and roles are wired."""

from __future__ import annotations

from node.chain.deploy import OPEN
from tests.conftest import FUNDED, World


def test_deployment_is_wired(world: World) -> None:
    d = world.deployment
    assert set(d.contracts) == {
        "OpenToken",
        "DatanetRegistry",
        "NodeStaking",
        "RewardDistributor",
        "ModelRegistry",
        "ResultChallenges",
        "VerifierCourt",
        "ProtocolTimelock",
        "KeyRegistry",
    }
    assert world.admin.chain_id == d.chain_id == 31337
    assert world.curator.balance() == FUNDED
    assert world.admin.min_node_stake() == 1_000 * OPEN
    staking = world.admin.staking
    assert staking.functions.jobManager().call() == world.admin.models.address
    rewards = world.admin.rewards
    assert rewards.functions.funder().call() == world.admin.models.address
    assert world.admin.models.functions.challenges().call() == world.admin.challenges.address
    assert world.admin.challenges.functions.registry().call() == world.admin.models.address
    assert world.admin.challenges.functions.court().call() == world.admin.court.address
    assert world.admin.court.functions.challenges().call() == world.admin.challenges.address
    timelock = world.admin.timelock.address
    assert staking.functions.hasRole(b"\0" * 32, timelock).call()  # the only admin of the staking parameters
    assert not staking.functions.hasRole(b"\0" * 32, world.admin.address).call()


def test_snapshot_isolation_first(world: World) -> None:
    world.curator.transfer(world.outsider.address, 1)
    assert world.outsider.balance() == 1


def test_snapshot_isolation_second(world: World) -> None:
    assert world.outsider.balance() == 0
