"""Deploys the protocol and records where it lives (deployments/<network>.json)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from eth_typing import ChecksumAddress
from pydantic import BaseModel, Field, ValidationError, model_validator

from node.chain.accounts import dev_account
from node.chain.artifacts import ensure_compiled
from node.chain.client import ChainClient
from node.chain.devchain import DEV_CHAIN_ID
from node.chain.models import Deployment
from node.errors import DeploymentError

OPEN = 10**18
DAY = 86_400
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MIN_CHALLENGE_PERIOD = 2  # ResultChallenges.MIN_PERIOD
MAX_CHALLENGE_PERIOD = 30 * DAY  # ResultChallenges.MAX_PERIOD
DEV_CHALLENGE_PERIODS = {
    "commit_period": 10, "reveal_period": 5, "answer_period": 5,
    "vote_period": 10, "reveal_vote_period": 5, "appeal_period": 5, "verifier_leave_delay": 60,
}  # fmt: skip
"""The dev chain's challenge window (20 s): long enough for a verifier on the same machine to
commit and reveal, short enough that the demo's contributors claim a minute after training; a
court case's phases are as short."""


def fmt_open(amount: int) -> str:
    """Base units as OPEN for people: 1234500000000000000000 -> '1,234.50 OPEN'."""
    return f"{amount / OPEN:,.2f} OPEN"
DEV_FUNDED_ACCOUNTS = tuple(range(1, 10))  # dev accounts 1..9 (0 deploys and keeps the rest)


class DeployConfig(BaseModel):
    """Protocol parameters chosen at deployment."""

    initial_supply: int = Field(1_000_000_000 * OPEN, description="OPEN minted to the deployer.")
    min_node_stake: int = Field(1_000 * OPEN, description="Active stake a node needs to claim jobs.")
    unbonding_period: int = Field(
        7 * 24 * 3600, ge=0, le=365 * 24 * 3600, description="Seconds before a node's unbonded stake can leave."
    )
    claim_window: int = Field(90 * 24 * 3600, description="Seconds contributors have to claim rewards.")
    max_training_time: int = Field(
        3 * 24 * 3600, ge=3600, le=60 * 24 * 3600,
        description="Seconds a node may hold a claimed job before anyone may reopen it (its bond pays the delay).",
    )  # fmt: skip
    challenge_bond: int = Field(
        100 * OPEN, gt=0, description="OPEN a challenger escrows per challenge (pays the node if the challenge fails)."
    )
    commit_period: int = Field(
        2 * DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD,
        description="Seconds after a result's registration in which challenges may be committed.",
    )  # fmt: skip
    reveal_period: int = Field(
        DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD,
        description="Seconds after the commits close in which committed challenges may be revealed.",
    )  # fmt: skip
    answer_period: int = Field(
        DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD,
        description="Seconds a node has to answer a revealed reward-leaf challenge.",
    )  # fmt: skip
    min_verifier_stake: int = Field(
        1_000 * OPEN, gt=0, description="OPEN a verifier stakes in the VerifierCourt to be drawn onto committees."
    )
    committee_size: int = Field(
        3, ge=1, le=7, description="Members of a recomputation committee (odd; an appeal draws twice as many plus one)."
    )
    appeal_bond: int = Field(
        200 * OPEN, gt=0, description="OPEN the losing side of a recomputation case escrows to appeal once."
    )
    vote_period: int = Field(
        DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD,
        description="Seconds a committee has, from a round's start, to be drawn and commit its votes.",
    )  # fmt: skip
    reveal_vote_period: int = Field(
        DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD, description="Seconds after that to reveal the votes."
    )
    appeal_period: int = Field(
        DAY, ge=MIN_CHALLENGE_PERIOD, le=MAX_CHALLENGE_PERIOD,
        description="Seconds the losing side of a committee's verdict has to appeal.",
    )  # fmt: skip
    verifier_leave_delay: int = Field(
        7 * DAY, ge=0, le=365 * DAY, description="Seconds a verifier's stake takes to leave the court."
    )
    timelock_delay: int | None = Field(
        None, ge=0,
        description="Seconds a staking-parameter change waits in the ProtocolTimelock (default and minimum: the "
        "unbonding period plus the challenge window, so nodes can leave before a change they dislike).",
    )  # fmt: skip
    parameter_proposer: ChecksumAddress | None = Field(
        None, description="The account that may propose parameter changes (default: the deployer)."
    )
    fund_dev_accounts: bool = Field(
        False, description="Transfer `dev_account_funding` OPEN to dev accounts 1..9 (dev chain 31337 only)."
    )
    dev_account_funding: int = Field(100_000 * OPEN, ge=0, description="OPEN each funded dev account gets.")
    escrow_withdraw_delay: int = Field(
        2 * DAY, ge=0, le=365 * DAY,
        description="Seconds a payer's InferenceEscrow withdrawal waits after its request, so a serving node can "
        "still settle (charge) the usage it served before the request.",
    )  # fmt: skip

    @property
    def challenge_window(self) -> int:
        """Seconds from a result's registration until it may be finalized."""
        return self.commit_period + self.reveal_period + self.answer_period

    @property
    def min_timelock_delay(self) -> int:
        return self.unbonding_period + self.challenge_window

    @property
    def effective_timelock_delay(self) -> int:
        return self.min_timelock_delay if self.timelock_delay is None else self.timelock_delay

    @classmethod
    def for_chain(cls, chain_id: int, **overrides: object) -> DeployConfig:
        """The defaults for `chain_id`: on the local dev chain a challenge window of seconds
        (`DEV_CHALLENGE_PERIODS`), so a demo's rewards open within a minute; days elsewhere."""
        dev = DEV_CHALLENGE_PERIODS if chain_id == DEV_CHAIN_ID else {}
        return cls.model_validate({**dev, **overrides})

    @model_validator(mode="after")
    def _odd_committee(self) -> DeployConfig:
        if self.committee_size % 2 == 0:
            raise ValueError(f"committee_size {self.committee_size} must be odd, so a full committee cannot tie")
        return self

    @model_validator(mode="after")
    def _timelock_outlasts_exits(self) -> DeployConfig:
        if self.timelock_delay is not None and self.timelock_delay < self.min_timelock_delay:
            raise ValueError(
                f"timelock_delay {self.timelock_delay} s is shorter than the unbonding period plus the challenge "
                f"window ({self.min_timelock_delay} s): a node could not leave before a parameter change took effect"
            )
        return self

    @model_validator(mode="after")
    def _funding_fits(self) -> DeployConfig:
        total = len(DEV_FUNDED_ACCOUNTS) * self.dev_account_funding
        if self.fund_dev_accounts and total > self.initial_supply:
            raise ValueError(
                f"dev_account_funding {self.dev_account_funding} x {len(DEV_FUNDED_ACCOUNTS)} accounts exceeds "
                f"initial_supply {self.initial_supply}; lower the funding or raise the supply"
            )
        return self


def dev_funding(config: DeployConfig) -> dict[ChecksumAddress, int]:
    """What `deploy` transfers to dev accounts under `config`: address -> OPEN base units."""
    if not config.fund_dev_accounts or config.dev_account_funding == 0:
        return {}
    return {dev_account(i).address: config.dev_account_funding for i in DEV_FUNDED_ACCOUNTS}


def deploy(client: ChainClient, network: str, config: DeployConfig | None = None) -> Deployment:
    """Deploys all ten contracts from `client`'s account and wires their roles; on the dev chain
    with `fund_dev_accounts`, then gives dev accounts 1..9 OPEN (`dev_funding`)."""
    chain_id = client.chain_id
    cfg = config or DeployConfig.for_chain(chain_id)
    if cfg.fund_dev_accounts and chain_id != DEV_CHAIN_ID:
        raise DeploymentError(
            f"fund_dev_accounts is for the local dev chain (id {DEV_CHAIN_ID}) only, but {client.rpc_url} is "
            f"chain id {chain_id}: its dev-mnemonic accounts are public keys anyone can spend from. Deploy without it."
        )
    ensure_compiled()
    admin = client.address
    start_block = client.block_number()
    token = client.deploy("OpenToken", admin, cfg.initial_supply)
    datanets = client.deploy("DatanetRegistry", token)
    # The staking parameters change only through the timelock: proposed by one account, executable
    # by anyone after the delay (address(0) as executor), administered by no one but itself.
    proposer = cfg.parameter_proposer or admin
    timelock = client.deploy("ProtocolTimelock", cfg.effective_timelock_delay, [proposer], [ZERO_ADDRESS])
    staking = client.deploy("NodeStaking", token, timelock, cfg.min_node_stake, cfg.unbonding_period)
    rewards = client.deploy("RewardDistributor", token, admin, cfg.claim_window)
    models = client.deploy("ModelRegistry", token, datanets, staking, rewards, cfg.max_training_time)
    challenges = client.deploy(
        "ResultChallenges", token, models, cfg.challenge_bond, cfg.commit_period, cfg.reveal_period, cfg.answer_period
    )
    # Recomputation disputes: a committee of staked verifiers; it references the challenge
    # contract, which is wired to it once below.
    court = client.deploy(
        "VerifierCourt", token, models, datanets, challenges, cfg.min_verifier_stake, cfg.committee_size,
        cfg.appeal_bond, [cfg.vote_period, cfg.reveal_vote_period, cfg.appeal_period, cfg.verifier_leave_delay],
    )  # fmt: skip
    keys = client.deploy("KeyRegistry", datanets)  # private Datanets' public keys and grants
    # Prepaid inference fees: settlements fund permissionless epoch rounds, no role to wire.
    escrow = client.deploy("InferenceEscrow", token, rewards, cfg.escrow_withdraw_delay)
    # The ModelRegistry reserves/slashes node bonds and funds reward rounds; nothing else may.
    staking_c = client.contract("NodeStaking", staking)
    rewards_c = client.contract("RewardDistributor", rewards)
    client.transact(staking_c.functions.setJobManager(models))  # once: no role anyone could grant later
    client.transact(rewards_c.functions.setFunder(models))  # once: no role an admin could revoke later
    # Once: results are finalized only after this contract's window; it alone may void them.
    client.transact(client.contract("ModelRegistry", models).functions.setChallenges(challenges))
    client.transact(client.contract("ResultChallenges", challenges).functions.setCourt(court))
    token_c = client.contract("OpenToken", token)
    for address, amount in dev_funding(cfg).items():
        client.transact(token_c.functions.transfer(address, amount))
    return Deployment(
        network=network,
        chain_id=chain_id,
        genesis_hash=client.genesis_hash,
        rpc_url=client.rpc_url,
        deployer=admin,
        deploy_block=start_block + 1,
        deployed_at=int(time.time()),
        contracts={
            "OpenToken": token,
            "DatanetRegistry": datanets,
            "NodeStaking": staking,
            "ProtocolTimelock": timelock,
            "RewardDistributor": rewards,
            "ModelRegistry": models,
            "ResultChallenges": challenges,
            "VerifierCourt": court,
            "KeyRegistry": keys,
            "InferenceEscrow": escrow,
        },
    )


def save_deployment(deployment: Deployment, path: Path) -> Path:
    """Writes the deployment file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(deployment.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_deployment(path: Path) -> Deployment:
    if not path.exists():
        raise DeploymentError(
            f"No deployment file at {path}. Deploy first with `datanet deploy` (or pass "
            "--network / set DATANET_NETWORK to the name of an existing file)."
        )
    try:
        return Deployment.model_validate(json.loads(path.read_text()))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'the file'}: {err['msg']}" for err in e.errors())
        raise DeploymentError(f"Deployment file {path} is malformed ({problems}). Redeploy with `datanet deploy`, "
                              "or restore the file.") from e  # fmt: skip
    except ValueError as e:
        raise DeploymentError(f"Deployment file {path} is malformed: {e}") from e
