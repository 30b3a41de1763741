"""Shared steps for the job, staking and reward tests: Datanets, posted/claimed/completed jobs,
reward trees, role grants, event decoding, revert matching and a frozen chain clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from node.chain.deploy import OPEN
from node.chain.models import DatanetParams, JobParams, Method, ResultParams
from node.chain.protocol import Protocol
from node.errors import ContractRevertError
from node.rewards.merkle import StandardMerkleTree
from tests.conftest import TEST_DEPLOY, World

DAY = 86_400
DEPLOYED = TEST_DEPLOY  # the parameters tests/conftest.py deploys with
CHALLENGE_WINDOW = DEPLOYED.challenge_window
MIN_STAKE = DEPLOYED.min_node_stake
UNBONDING = DEPLOYED.unbonding_period
CLAIM_WINDOW = DEPLOYED.claim_window
POOL = 10_000 * OPEN
JOB_STAKE = POOL
"""What `stake_node` bonds by default: covers the bond of one job with the default pool (its
contributors' part, at least MIN_STAKE)."""
MAX_TRAINING_TIME = DEPLOYED.max_training_time
BASE_HASH = b"\x11" * 32
CONFIG_HASH = b"\x22" * 32
REWARD_TYPES = ["uint256", "uint256", "address", "uint256"]
DEFAULT_ADMIN_ROLE = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
EXPIRY_SLASH_BPS = 5_000


def treasury_address(i: int) -> ChecksumAddress:
    """A key-less address that only ever receives OPEN (a Datanet treasury)."""
    return Web3.to_checksum_address(f"0x{0x7E5A << 144 | i:040x}")


# ----------------------------------------------------------------- reverts & events


def _normalise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return Web3.to_checksum_address(value)
    return value


@contextmanager
def reverts(name: str, **expected: Any) -> Iterator[pytest.ExceptionInfo[ContractRevertError]]:
    """Expects a `ContractRevertError` named `name` whose decoded args include `expected`."""
    with pytest.raises(ContractRevertError) as exc:
        yield exc
    assert exc.value.name == name, f"expected {name}, got {exc.value}"
    got = {k: _normalise(v) for k, v in exc.value.args_by_name.items()}
    for key, want in expected.items():
        assert got[key] == _normalise(want), f"{name}.{key}: expected {want!r}, got {got[key]!r}"


def events(contract: Contract, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
    """The decoded `name` events that `contract` emitted in `receipt`, in log order."""
    logs = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
    return [dict(log["args"]) for log in logs]


def view(proto: Protocol, fn: Any) -> Any:
    """A read-only call from `proto`'s account (reverts decoded)."""
    return proto.client.call(fn)


def send(proto: Protocol, fn: Any) -> TxReceipt:
    """Sends a raw contract call from `proto`'s account (for functions without a binding)."""
    return proto.client.transact(fn)


def total_owed(proto: Protocol) -> int:
    """What the distributor owes: the sum of `total - claimed` over every unswept round, read
    from the chain (rounds found through their RoundOpened logs)."""
    logs = proto.rewards.events.RoundOpened.get_logs(from_block=0)
    owed = 0
    for funder, job_id in {(log["args"]["funder"], int(log["args"]["jobId"])) for log in logs}:
        r = proto.reward_round(job_id, funder=funder)
        if not r.swept:
            owed += r.total - r.claimed
    return owed


# ------------------------------------------------------------------------- clock


@contextmanager
def frozen_clock(world: World, timestamp: int) -> Iterator[None]:
    """Mines a block at `timestamp` and keeps every later block (and every gas estimate) at
    that time until `set_time` moves it, so deadline boundaries can be hit to the second."""
    world.rpc("anvil_setBlockTimestampInterval", 0)
    try:
        set_time(world, timestamp)
        yield
    finally:
        world.rpc("anvil_removeBlockTimestampInterval")


def set_time(world: World, timestamp: int) -> None:
    world.rpc("evm_mine", timestamp)


# ---------------------------------------------------------------------- Datanets


def create_datanets(owner: Protocol, n: int, *, restricted: bool = False) -> tuple[list[int], list[str]]:
    """`n` Datanets owned by `owner`, each with its own treasury; returns (ids, treasuries)."""
    ids: list[int] = []
    treasuries: list[str] = []
    for _ in range(n):
        treasury = treasury_address(owner.datanet_count() + 1)
        params = DatanetParams(name="ds", treasury=treasury, restricted=restricted)
        ids.append(owner.create_datanet(params))
        treasuries.append(treasury)
    return ids, treasuries


# -------------------------------------------------------------------------- jobs


def job_params(
    now: int,
    datanet_ids: Sequence[int],
    *,
    pool: int = POOL,
    deadline_in: int = 7 * DAY,
    node_fee_bps: int = 1_000,
    datanet_fee_bps: int = 1_000,
    parent_model_id: int = 0,
    base_hash: bytes = BASE_HASH,
) -> JobParams:
    return JobParams(
        baseModel="Qwen/Qwen2.5-0.5B",
        baseModelHash=base_hash,
        datanetIds=list(datanet_ids),
        configCID="bafyconfig",
        configHash=CONFIG_HASH,
        method=Method.QLORA,
        pool=pool,
        deadline=now + deadline_in,
        nodeFeeBps=node_fee_bps,
        datanetFeeBps=datanet_fee_bps,
        parentModelId=parent_model_id,
    )


def raw_job(params: JobParams, **overrides: Any) -> dict[str, Any]:
    """`params` as the struct dict, with overrides the pydantic model would refuse or fix."""
    return {**params.model_dump(), **overrides}


def post_job(poster: Protocol, params: JobParams) -> int:
    poster.approve(poster.models.address, poster.job_cost(params.pool))
    return poster.post_job(params)


def stake_node(node: Protocol, amount: int = JOB_STAKE) -> TxReceipt:
    node.approve(node.staking.address, amount)
    return node.stake(amount)


@dataclass(frozen=True)
class JobSetup:
    job_id: int
    datanet_ids: list[int]
    treasuries: list[str]
    params: JobParams


def posted_job(world: World, *, datanets: int = 1, **kw: Any) -> JobSetup:
    """A job posted by `world.poster` on fresh Datanets owned by `world.curator`."""
    ids, treasuries = create_datanets(world.curator, datanets)
    params = job_params(world.now(), ids, **kw)
    return JobSetup(post_job(world.poster, params), ids, treasuries, params)


def claimed_job(world: World, *, node: Protocol | None = None, **kw: Any) -> JobSetup:
    """A posted job claimed by `node` (default `world.node`), staked first for its bond if needed."""
    job = posted_job(world, **kw)
    node = node or world.node
    missing = node.bond_for(job.job_id) - node.node_stake().free
    if missing > 0:
        stake_node(node, missing)
    node.claim_job(job.job_id)
    return job


def result_params(root: bytes, tag: str = "a") -> ResultParams:
    return ResultParams(
        adapterCID=f"bafyadapter{tag}",
        adapterHash=keccak(text=f"adapter{tag}"),
        metricsCID=f"bafymetrics{tag}",
        dataRoot=keccak(text=f"data{tag}"),
        attributionRoot=root,
        attributionCID=f"bafyattribution{tag}",
        scoresRoot=keccak(text=f"scores{tag}"),
        totalWeight=1_000,
        exampleCount=10,
    )


def reward_tree(job_id: int, shares: Sequence[tuple[str, int]]) -> StandardMerkleTree:
    """Reward leaves `(jobId, index, account, amount)`, index = position in `shares`."""
    values = [(job_id, i, Web3.to_checksum_address(a), amount) for i, (a, amount) in enumerate(shares)]
    return StandardMerkleTree.of(values, REWARD_TYPES)


def contributors_share(params: JobParams, datanets: int) -> int:
    """What a job's pool leaves for contributors (mirrors RewardDistributor.splitPool)."""
    pool = params.pool
    each = pool * params.datanetFeeBps // 10_000 // datanets
    return pool - pool * params.nodeFeeBps // 10_000 - each * datanets


def complete_job(
    world: World,
    job: JobSetup,
    shares: Sequence[tuple[str, int]],
    *,
    node: Protocol | None = None,
    finalize: bool = True,
) -> tuple[int, StandardMerkleTree]:
    """Submits the result of a claimed job with a reward tree over `shares` and (by default)
    finalizes it after its challenge window, which opens the reward round; returns (model id, tree)."""
    tree = reward_tree(job.job_id, shares)
    model_id = (node or world.node).submit_result(job.job_id, result_params(tree.root, str(job.job_id)))
    if finalize:
        finalize_job(world, job.job_id)
    return model_id, tree


def finalize_job(world: World, job_id: int) -> TxReceipt:
    """Moves chain time past the job's challenge window and finalizes it (as an outsider: anyone may)."""
    at, _ = world.admin.finalizable_at(world.admin.job(job_id).modelId)
    if world.now() < at:
        set_time(world, at)  # evm_mine at a timestamp: works with the clock frozen too
    return world.outsider.finalize(job_id)


def claim_leaf(proto: Protocol, tree: StandardMerkleTree, k: int) -> TxReceipt:
    """Claims the `k`-th leaf of `tree` (input order) with its real proof, sent by `proto`."""
    job_id, index, account, amount = tree.values()[k]
    return proto.claim_reward(job_id, index, account, amount, tree.proof(k))


def set_staking_parameters(world: World, min_stake: int, unbonding_period: int) -> TxReceipt:
    """Changes NodeStaking's parameters the only way there is: the deployer (the proposer) schedules
    it in the ProtocolTimelock, the chain clock moves past the delay, anyone executes it."""
    salt = keccak(text=f"{min_stake}/{unbonding_period}/{world.now()}")
    op = world.admin.propose_staking_parameters(min_stake, unbonding_period, salt)
    set_time(world, world.admin.operation_ready_at(op))
    return world.outsider.execute_staking_parameters(min_stake, unbonding_period, salt)


def own_staking(admin: Protocol, *others: Protocol) -> Protocol:
    """Points `admin` and `others` at a NodeStaking of their own (the deployed parameters), whose
    job manager is `admin`: the deployed one's is the ModelRegistry, wired once at deployment and
    never changeable, so unit tests that drive bonds directly need their own instance."""
    address = admin.client.deploy("NodeStaking", admin.token.address, admin.address, MIN_STAKE, UNBONDING)
    for p in (admin, *others):
        p.staking = p.client.contract("NodeStaking", address)
    send(admin, admin.staking.functions.setJobManager(admin.address))
    return admin


def own_distributor(admin: Protocol, *others: Protocol) -> Protocol:
    """Points `admin` and `others` at a RewardDistributor of their own (the deployed claim window)
    whose funder is `admin`: the deployed one's is the ModelRegistry, wired once at deployment."""
    address = admin.client.deploy("RewardDistributor", admin.token.address, admin.address, CLAIM_WINDOW)
    for p in (admin, *others):
        p.rewards = p.client.contract("RewardDistributor", address)
    send(admin, admin.rewards.functions.setFunder(admin.address))
    return admin
