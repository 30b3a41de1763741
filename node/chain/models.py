"""Typed values that cross the chain boundary (mirrors of the contracts' structs)."""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

from eth_typing import ChecksumAddress
from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, field_validator


def _from_hex(v: object) -> object:
    if isinstance(v, str):
        return bytes.fromhex(v.removeprefix("0x"))
    return v


HexBytes = Annotated[
    bytes,
    BeforeValidator(_from_hex),
    PlainSerializer(lambda b: "0x" + b.hex(), return_type=str, when_used="json"),
]
"""Bytes that read and write as 0x-hex in JSON (hashes, roots, signatures)."""


class ContributionStatus(IntEnum):
    NONE = 0
    PENDING = 1
    APPROVED = 2
    REJECTED = 3
    WITHDRAWN = 4


class JobStatus(IntEnum):
    NONE = 0
    OPEN = 1
    CLAIMED = 2
    COMPLETED = 3
    CANCELLED = 4
    EXPIRED = 5
    SUBMITTED = 6  # a result is registered and in its challenge window (finalize completes it)


class ModelStatus(IntEnum):
    """A registered model's standing (ModelRegistry.ModelStatus)."""

    NONE = 0
    PENDING = 1  # in its challenge window: no rewards yet, not a valid parent
    FINALIZED = 2  # the window passed: rewards claimable, may be built on
    VOIDED = 3  # an upheld challenge voided it: the job reopened


class ChallengeKind(IntEnum):
    """What an on-chain arithmetic challenge proves (ResultChallenges.Kind)."""

    RUNNING_TOTAL = 0
    INDEX_OUT_OF_RANGE = 1
    DUPLICATE_INDEX = 2
    BROKEN_CONTRIBUTION = 3
    DATA_MISMATCH = 4
    REWARD_LEAF = 5
    RECOMPUTE = 6  # the scores do not reproduce: referred to the VerifierCourt's committee
    DATA_NOT_PERMITTED = 7  # a data leaf whose contribution was not approved in the job's Datanets at the claim


class ChallengeStatus(IntEnum):
    NONE = 0
    COMMITTED = 1
    ANSWERABLE = 2
    UPHELD = 3
    REJECTED = 4
    FORFEITED = 5
    MOOT = 6
    REFERRED = 7  # a Recompute challenge before the VerifierCourt
    LAPSED = 8  # the court found no quorum twice: bond returned


class Method(IntEnum):
    LORA = 0
    QLORA = 1


MIN_LOCK_PERIOD = 3600
"""DatanetRegistry.MIN_LOCK_PERIOD: curators need some time to decide."""
MAX_LOCK_PERIOD = 730 * 86400
"""DatanetRegistry.MAX_LOCK_PERIOD: a stake is never bonded forever."""


class DatanetParams(BaseModel):
    """What a creator chooses for a new Datanet (DatanetRegistry.DatanetParams)."""

    name: str = Field(min_length=1, max_length=128)
    metadataCID: str = ""
    license: str = "CC-BY-4.0"
    commercialUse: bool = True
    isPrivate: bool = False
    restricted: bool = False
    minStake: int = Field(10**18, ge=0, description="OPEN base units per contribution.")
    slashBps: int = Field(5000, ge=0, le=10_000)
    lockPeriod: int = Field(
        7 * 24 * 3600, ge=MIN_LOCK_PERIOD, le=MAX_LOCK_PERIOD,
        description="Seconds a stake stays bonded after approval; also the curators' decision window from "
        "submission (after it the contributor may withdraw an undecided stake).",
    )  # fmt: skip
    treasury: ChecksumAddress
    curators: list[ChecksumAddress] = []


class Datanet(BaseModel):
    id: int
    owner: ChecksumAddress
    treasury: ChecksumAddress
    name: str
    metadataCID: str
    license: str
    commercialUse: bool
    isPrivate: bool
    restricted: bool
    slashBps: int
    lockPeriod: int
    createdAt: int
    minStake: int
    contributionCount: int
    approvedCount: int


class ContributionInput(BaseModel):
    datanetId: int
    cid: str = Field(min_length=1)
    contentHash: HexBytes = Field(description="sha256 of the uploaded bytes (32 bytes).")
    byteSize: int = Field(ge=0)
    recordCount: int = Field(ge=1)
    stake: int = Field(ge=1)

    @field_validator("contentHash")
    @classmethod
    def _is_32_bytes(cls, v: bytes) -> bytes:
        if len(v) != 32:
            raise ValueError(f"contentHash must be 32 bytes (a sha256), got {len(v)}")
        return v


class Permit(BaseModel):
    """An EIP-2612 permit signature; deadline 0 means none (use the allowance)."""

    deadline: int = 0
    v: int = 0
    r: HexBytes = b"\0" * 32
    s: HexBytes = b"\0" * 32


class Contribution(BaseModel):
    id: int
    datanetId: int
    contributor: ChecksumAddress
    status: ContributionStatus
    byteSize: int
    recordCount: int
    submittedAt: int
    decidedAt: int
    committedAt: int = Field(0, description="When its commitment was mined: the credit order among equal contents.")
    contentHash: HexBytes
    stake: int
    cid: str


class JobParams(BaseModel):
    baseModel: str = Field(min_length=1)
    baseModelHash: HexBytes
    datanetIds: list[int] = Field(min_length=1, max_length=16)
    configCID: str = Field(min_length=1)
    configHash: HexBytes
    method: Method = Method.QLORA
    pool: int = Field(ge=1)
    deadline: int
    nodeFeeBps: int = Field(1000, ge=0, le=5000)
    datanetFeeBps: int = Field(1000, ge=0, le=5000)
    parentModelId: int = 0

    @field_validator("datanetIds")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        return sorted(set(v))


class Job(BaseModel):
    id: int
    poster: ChecksumAddress
    status: JobStatus
    method: Method
    nodeFeeBps: int
    datanetFeeBps: int
    deadline: int
    postedAt: int
    claimBlock: int = Field(0, description="Block of the claim (fixes the training set); 0 if unclaimed.")
    claimTime: int = Field(0, description="Timestamp of the claim block (kept when a voided job is claimed again).")
    node: ChecksumAddress
    claimedAt: int
    bond: int = Field(0, description="OPEN reserved from the claiming node's stake while it holds the job.")
    baseModelHash: HexBytes
    configHash: HexBytes
    pool: int
    parentModelId: int
    modelId: int
    baseModel: str
    configCID: str
    datanetIds: list[int]
    verifierFee: int = Field(0, description="OPEN the poster paid on top of the pool, for the verifiers at finalize.")


class ResultParams(BaseModel):
    """What a node submits for a claimed job (ModelRegistry.ResultParams). The last three fields
    commit the attribution arithmetic a challenge checks on-chain (see docs/protocol.md)."""

    adapterCID: str = Field(min_length=1)
    adapterHash: HexBytes
    metricsCID: str = ""
    dataRoot: HexBytes
    attributionRoot: HexBytes
    attributionCID: str = ""
    scoresRoot: HexBytes = Field(description="Root of the per-example score leaves (node.rewards.scores_tree).")
    totalWeight: int = Field(ge=1, lt=2**128, description="W in amount = floor(total * w / W).")
    exampleCount: int = Field(ge=1, lt=2**64, description="Leaves of the scores tree (manifest examples).")


class Model(BaseModel):
    id: int
    jobId: int
    parentModelId: int
    node: ChecksumAddress
    method: Method
    status: ModelStatus = ModelStatus.NONE
    registeredAt: int
    baseModelHash: HexBytes
    adapterHash: HexBytes
    dataRoot: HexBytes
    attributionRoot: HexBytes
    configHash: HexBytes
    scoresRoot: HexBytes
    totalWeight: int
    exampleCount: int
    baseModel: str
    adapterCID: str
    metricsCID: str
    attributionCID: str
    configCID: str
    datanetIds: list[int]


class ResultCommitment(BaseModel):
    """What a challenge checks a result against (ModelRegistry.resultCommitment)."""

    jobId: int
    node: ChecksumAddress
    status: ModelStatus
    registeredAt: int
    exampleCount: int
    totalWeight: int
    scoresRoot: HexBytes
    dataRoot: HexBytes
    attributionRoot: HexBytes
    contributorsTotal: int
    dustRecipient: ChecksumAddress


class Challenge(BaseModel):
    """One challenge (ResultChallenges.getChallenge); `kind` is meaningful once revealed."""

    id: int
    modelId: int
    challenger: ChecksumAddress
    status: ChallengeStatus
    kind: ChallengeKind
    committedBlock: int
    answerDeadline: int
    commitment: HexBytes
    account: ChecksumAddress
    amount: int


class EvalReveal(BaseModel):
    """A job's revealed query set (ModelRegistry.getEval); `revealedAt` 0 means not revealed."""

    jobId: int
    evalCID: str
    revealedAt: int
    revealedBlock: int

    @property
    def revealed(self) -> bool:
        return self.revealedAt != 0


class NodeStake(BaseModel):
    active: int
    reserved: int = Field(description="Part of `active` backing claimed jobs' bonds (not unbondable).")
    unbonding: int
    unbondingEndsAt: int
    jobs: int = Field(description="Claimed jobs whose bonds are reserved.")

    @property
    def free(self) -> int:
        """Active stake new bonds (and unbonding) can come from."""
        return self.active - self.reserved


VERIFIER_FEE_BPS = 100
"""ModelRegistry.VERIFIER_FEE_BPS: the verifiers' fee a poster pays on top of a job's pool."""


def verifier_fee(pool: int) -> int:
    """ModelRegistry.verifierFeeOf: what a job with `pool` pays its verifiers at finalize."""
    return pool * VERIFIER_FEE_BPS // 10_000


def job_cost(pool: int) -> int:
    """What posting a job with `pool` takes from the poster (pool plus verifier fee): the allowance it needs."""
    return pool + verifier_fee(pool)


class Vote(IntEnum):
    """A committee member's vote (VerifierCourt.Vote)."""

    NONE = 0
    REPRODUCES = 1  # the committed values reproduce within the documented tolerance
    FAULT = 2  # they do not, or an artifact could not be fetched


class Verdict(IntEnum):
    NONE = 0
    UPHELD = 1
    REJECTED = 2
    LAPSED = 3


class CasePhase(IntEnum):
    NONE = 0
    VOTING = 1
    APPEALABLE = 2
    CLOSED = 3


class CourtCase(BaseModel):
    """A recomputation case (VerifierCourt.getCase); its id is the challenge id."""

    id: int
    modelId: int
    jobId: int
    node: ChecksumAddress
    challenger: ChecksumAddress
    phase: CasePhase
    round: int = Field(description="0: first committee, 1: its redraw, 2: appeal, 3: the appeal's redraw.")
    verdict: Verdict
    appellant: ChecksumAddress
    appealDeadline: int
    bond: int
    appealBond: int


class CourtRound(BaseModel):
    seedBlock: int
    commitDeadline: int
    revealDeadline: int
    drawn: bool
    reproduces: int
    faults: int
    members: list[ChecksumAddress]


class Ballot(BaseModel):
    drawn: bool
    commitment: HexBytes
    vote: Vote


class VerifierStake(BaseModel):
    active: int
    leaving: int
    leaveAt: int
    duties: int = Field(description="Committees it sits on that are not yet tallied (it cannot leave meanwhile).")


class Round(BaseModel):
    root: HexBytes
    total: int
    claimed: int
    claimDeadline: int
    swept: bool
    refundTo: ChecksumAddress


class Deployment(BaseModel):
    """What `datanet deploy` writes to deployments/<network>.json."""

    network: str
    chain_id: int
    rpc_url: str
    deployer: ChecksumAddress
    deploy_block: int
    deployed_at: int
    contracts: dict[str, ChecksumAddress] = Field(
        description="Contract name -> address, for OpenToken, DatanetRegistry, NodeStaking, "
        "RewardDistributor, ModelRegistry, ResultChallenges, VerifierCourt, KeyRegistry and InferenceEscrow "
        "(files written before a contract existed lack it and still load; see protocol.OPTIONAL_CONTRACTS)."
    )
    genesis_hash: str | None = Field(
        None,
        description="0x-hash of the chain's block 0: tells this chain from another with the same chain id "
        "(a restarted dev chain). None in files written before it was recorded (still loaded, not checked).",
    )

    @property
    def chain_key(self) -> str:
        """The chain as a short, path-safe name for what a node keeps per chain: `31337-ad236fb6847c`
        (chain id, then the genesis hash's first 12 hex digits), or the chain id alone for a file
        without a genesis hash (where older nodes kept their state)."""
        if self.genesis_hash is None:
            return str(self.chain_id)
        return f"{self.chain_id}-{self.genesis_hash.removeprefix('0x')[:12].lower()}"


class DatanetKey(BaseModel):
    """A private Datanet's published key (KeyRegistry); `keyVersion` 0 means none published yet."""

    datanetId: int
    publicKey: HexBytes = Field(description="X25519 public key contributors encrypt to (32 bytes).")
    keyVersion: int
    keyGrantsCID: str = Field(description="JSON: the private key wrapped to the owner and curators.")


class AccessGrant(BaseModel):
    """A key grant (KeyRegistry `AccessGranted` / `grantOf`): where `grantee`'s wrapped keys are.
    `jobId` 0 is a standing grant of the Datanet key."""

    datanetId: int
    grantee: ChecksumAddress
    jobId: int
    grantCID: str
    keyVersion: int
    blockNumber: int | None = Field(None, description="Block of the event; None when read by view.")
