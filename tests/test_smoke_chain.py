"""The dev chain starts, the protocol deploys, and roles are wired."""

from __future__ import annotations

import pytest

from node.chain.deploy import OPEN
from node.chain.protocol import Protocol
from node.errors import DeploymentError
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
        "InferenceEscrow",
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


def test_a_deployment_file_without_a_newer_contract_loads_and_says_to_redeploy(world: World) -> None:
    """A file written before the court (or challenges, timelock, keys) existed still loads; using
    the missing contract names it and says what to do."""
    old = world.deployment.model_copy(
        update={"contracts": {k: v for k, v in world.deployment.contracts.items() if k != "VerifierCourt"}}
    )
    p = Protocol(world.admin.client, old)
    assert p.challenges.address == world.admin.challenges.address  # the others are there
    with pytest.raises(DeploymentError, match=r"no VerifierCourt contract .*recomputation committees.*datanet deploy"):
        _ = p.court
