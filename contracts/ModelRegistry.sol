// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {NodeStaking} from "./NodeStaking.sol";
import {RewardDistributor} from "./RewardDistributor.sol";

/// @notice What the registry asks of its challenge contract.
interface IResultChallenges {
    /// @notice The challenge window's length for `modelId` and how many of its challenges are open.
    function windowOf(uint256 modelId) external view returns (uint256 period, uint256 open);
    /// @notice The VerifierCourt that is paid every finalized job's verifier fee.
    function court() external view returns (address);
}

/// @notice Where verifier fees go (the VerifierCourt).
interface IVerifierFees {
    function depositFee(uint256 jobId, uint256 amount) external;
}

/// @title ModelRegistry
/// @notice Fine-tuning jobs and the models they produce. A poster escrows an OPEN pool for a job
/// (base model, Datanets, method, hyperparameters in a config on IPFS). A staked node claims it
/// and submits the result: adapter CID and sha256, metrics CID, the data root (what exactly was
/// trained on) and the attribution root (who gets paid). Submission registers the model as
/// *pending* and holds everything else: the node's bond stays reserved and the pool in escrow.
/// Once the challenge window ({ResultChallenges}) has passed with no challenge open, anyone may
/// {finalize} the job: the model becomes final, the bond is released and the pool goes to the
/// RewardDistributor (fees paid, contributors' claims open). An upheld challenge voids the model,
/// slashes the whole bond (to the challenger, burned, and to the job's pool) and reopens the job
/// for another node. A claim reserves a bond from the node's
/// stake, at least the contributors' part of the pool (so stealing the pool never pays more than
/// the bond costs). A claimed job not delivered within `maxTrainingTime` can be reopened by anyone
/// for another node, and one left past its deadline expired: either way the pool is safe and the
/// node loses part of its bond to the poster.
contract ModelRegistry {
    using SafeERC20 for IERC20;

    enum Method {
        LoRA,
        QLoRA
    }

    enum JobStatus {
        None,
        Open,
        Claimed,
        Completed,
        Cancelled,
        Expired,
        Submitted // a result is registered and in its challenge window ({finalize} completes it)
    }

    /// @notice A registered model's standing: pending in its challenge window, finalized (its
    /// rewards are claimable and it may be a parent), or voided by an upheld challenge.
    enum ModelStatus {
        None,
        Pending,
        Finalized,
        Voided
    }

    /// @notice What a poster chooses for a job.
    struct JobParams {
        string baseModel; // a hub id or name, for people
        bytes32 baseModelHash; // sha256 over the weight files: the identity nodes check
        uint256[] datanetIds; // strictly ascending, 1..MAX_DATANETS entries
        string configCID; // training config JSON on IPFS (hyperparameters)
        bytes32 configHash; // sha256 of that JSON, so a node can verify what it fetched
        Method method;
        uint256 pool; // OPEN escrowed for fees and contributors
        uint64 deadline; // the result must be submitted before this
        uint16 nodeFeeBps;
        uint16 datanetFeeBps;
        uint256 parentModelId; // 0, or a registered model to continue from (lineage)
    }

    struct Job {
        address poster;
        JobStatus status;
        Method method;
        uint16 nodeFeeBps;
        uint16 datanetFeeBps;
        uint64 deadline;
        uint64 postedAt;
        uint64 claimBlock; // the block the job was claimed in: fixes the training set (0 if unclaimed)
        uint64 claimTime; // that block's timestamp: a contribution decided later was not in the training set
        address node;
        uint64 claimedAt;
        uint256 bond; // reserved from the claiming node's stake while it holds the job
        bytes32 baseModelHash;
        bytes32 configHash;
        uint256 pool;
        uint256 parentModelId;
        uint256 modelId;
        string baseModel;
        string configCID;
        uint256[] datanetIds;
        uint256 verifierFee; // paid by the poster on top of the pool, to the verifiers at finalize
    }

    /// @notice What a node submits for a claimed job.
    struct ResultParams {
        string adapterCID; // the PEFT adapter directory on IPFS
        bytes32 adapterHash; // sha256 over the adapter files
        string metricsCID; // metrics JSON on IPFS
        bytes32 dataRoot; // Merkle root of the training-set manifest
        bytes32 attributionRoot; // Merkle root of (jobId, index, account, amount) reward leaves
        string attributionCID; // the attribution document JSON on IPFS (scores, weights, reward tree)
        bytes32 scoresRoot; // Merkle root of the per-example score leaves, in manifest index order
        uint256 totalWeight; // W: every reward amount is floor(contributors' total * w / W); < 2**128
        uint256 exampleCount; // leaves in the scores tree (= examples in the manifest); < 2**64
    }

    struct Model {
        uint256 jobId;
        uint256 parentModelId;
        address node;
        Method method;
        ModelStatus status;
        uint64 registeredAt;
        bytes32 baseModelHash;
        bytes32 adapterHash;
        bytes32 dataRoot;
        bytes32 attributionRoot;
        bytes32 configHash;
        bytes32 scoresRoot;
        uint256 totalWeight;
        uint256 exampleCount;
        string baseModel;
        string adapterCID;
        string metricsCID;
        string attributionCID;
        string configCID;
        uint256[] datanetIds;
    }

    /// @notice What a challenge checks a result against: its commitments, with the job's
    /// contributors' total and dust recipient (so {ResultChallenges} needs no second call).
    struct ResultCommitment {
        uint256 jobId;
        address node;
        ModelStatus status;
        uint64 registeredAt;
        uint64 exampleCount;
        uint128 totalWeight;
        bytes32 scoresRoot;
        bytes32 dataRoot;
        bytes32 attributionRoot;
        uint256 contributorsTotal;
        address dustRecipient;
    }

    /// @notice A poster's revealed query (evaluation) set: its CID, committed by sha256 in the job
    /// config before the claim, and when it was revealed (0: not yet).
    struct EvalReveal {
        string evalCID;
        uint64 revealedAt;
        uint64 revealedBlock;
    }

    uint256 public constant MAX_DATANETS = 16;
    uint16 public constant MAX_FEE_BPS = 5_000;
    /// @notice The verifiers' fee, as a share of the pool, that a poster pays on top of it: every
    /// finalized job pays it to the VerifierCourt, so verifiers are paid for checking every result,
    /// not only disputed ones. Refunded with the pool when a job is cancelled or expires.
    uint16 public constant VERIFIER_FEE_BPS = 100;
    /// @notice Share of a job's bond slashed to the poster when its node lets it expire or overrun
    /// `maxTrainingTime`.
    uint16 public constant EXPIRY_SLASH_BPS = 5_000;
    /// @notice The latest deadline a job may have, from posting: no pool is escrowed for longer.
    uint64 public constant MAX_JOB_DURATION = 180 days;
    /// @notice Bounds of `maxTrainingTime`.
    uint64 public constant MIN_TRAINING_TIME = 1 hours;
    uint64 public constant MAX_TRAINING_TIME = 60 days;
    /// @notice How a voided result's bond is divided: this share to the challenger who proved the
    /// fault, `BURN_BPS` burned (so a node challenging itself through another identity still loses
    /// it), and the rest added to the job's pool, for its contributors and the next node.
    uint16 public constant CHALLENGER_BPS = 4_000;
    uint16 public constant BURN_BPS = 2_000;
    /// @notice Where burned OPEN goes: the token has no burn, and OpenZeppelin's ERC-20 refuses
    /// transfers to address(0); no one holds this address's key.
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    IERC20 public immutable token;
    DatanetRegistry public immutable datanets;
    NodeStaking public immutable staking;
    RewardDistributor public immutable rewards;
    /// @notice Seconds a node may hold a claimed job; after that anyone may reopen it.
    uint64 public immutable maxTrainingTime;
    /// @notice The account that wires {challenges}, once, at deployment; it has no other power.
    address public immutable deployer;
    /// @notice The contract that decides challenges and may void pending results, wired once
    /// ({setChallenges}) and never changed; no result can be finalized before it is set.
    address public challenges;

    /// @dev What a result adds to its job; everything else of a `Model` is read from the job, so
    /// a submission writes no copies (about 170k gas less per result).
    struct StoredModel {
        uint256 jobId;
        // One slot: the bounds checked in submitResult keep both counts in range (and keep
        // `total * w` of an amount check far below 2**256 for any OPEN supply).
        uint64 registeredAt;
        uint64 exampleCount;
        uint128 totalWeight;
        // One slot: who produced it (kept when a voided job reopens for another node) and its standing.
        address node;
        ModelStatus status;
        bytes32 scoresRoot;
        bytes32 adapterHash;
        bytes32 dataRoot;
        bytes32 attributionRoot;
        string adapterCID;
        string metricsCID;
        string attributionCID;
    }

    uint256 private _jobCount;
    uint256 private _modelCount;
    mapping(uint256 jobId => Job) private _jobs;
    mapping(uint256 modelId => StoredModel) private _models;
    mapping(uint256 datanetId => uint256[] modelIds) private _modelsByDatanet;
    mapping(bytes32 baseModelHash => uint256[] modelIds) private _modelsByBase;
    mapping(address node => uint256[] modelIds) private _modelsByNode;
    mapping(uint256 jobId => EvalReveal) private _evals;

    error ModelRegistryInvalidParams(string field);
    error ModelRegistryDatanetNotTrainable(uint256 datanetId, address poster);
    error ModelRegistryUnknownJob(uint256 jobId);
    error ModelRegistryUnknownModel(uint256 modelId);
    error ModelRegistryWrongStatus(uint256 jobId, JobStatus status);
    error ModelRegistryNotPoster(uint256 jobId, address account);
    error ModelRegistryNotJobNode(uint256 jobId, address account);
    error ModelRegistryNodeNotStaked(address node);
    error ModelRegistryNodeNotTrusted(uint256 datanetId, address node);
    error ModelRegistryTrainingTimeNotOver(uint256 jobId, uint256 reopensAt);
    error ModelRegistryDeadlinePassed(uint256 jobId, uint64 deadline);
    error ModelRegistryDeadlineNotPassed(uint256 jobId, uint64 deadline);
    error ModelRegistryEvalAlreadyRevealed(uint256 jobId);
    error ModelRegistryEvalTooEarly(uint256 jobId, uint64 claimBlock);
    error ModelRegistryEmptyEvalCID(uint256 jobId);
    error ModelRegistryScoresOutOfRange(uint256 exampleCount, uint256 totalWeight);
    error ModelRegistryNotDeployer(address caller);
    error ModelRegistryChallengesSet(address challenges);
    error ModelRegistryNotChallenges(address caller);
    error ModelRegistryModelNotPending(uint256 modelId, ModelStatus status);
    error ModelRegistryParentNotFinal(uint256 modelId, ModelStatus status);
    error ModelRegistryChallengeWindowOpen(uint256 jobId, uint256 finalizableAt);
    error ModelRegistryChallengesOpen(uint256 jobId, uint256 openChallenges);

    /// @notice Emitted when a job's poster reveals the query set committed in its config.
    event EvalRevealed(uint256 indexed jobId, string evalCID);
    /// @notice Emitted when a job is posted and its pool escrowed. Carries every term of the job, so
    /// an indexer needs no call: the config hash a node checks, the fees and the parent model.
    event JobPosted(
        uint256 indexed jobId,
        address indexed poster,
        bytes32 indexed baseModelHash,
        string baseModel,
        uint256[] datanetIds,
        Method method,
        string configCID,
        bytes32 configHash,
        uint256 pool,
        uint64 deadline,
        uint16 nodeFeeBps,
        uint16 datanetFeeBps,
        uint256 parentModelId
    );
    /// @notice Emitted when a staked node claims a job, reserving `bond` of its stake.
    event JobClaimed(uint256 indexed jobId, address indexed node, uint256 bond);
    /// @notice Emitted when a claim's training time ran out and the job is open again; `slashed` of
    /// the node's bond went to the poster.
    event JobReopened(uint256 indexed jobId, address indexed node, uint256 slashed);
    /// @notice Emitted when a pending result passes its challenge window: the model is final, the
    /// bond released, the pool funded to the RewardDistributor.
    event ModelFinalized(uint256 indexed modelId, uint256 indexed jobId, address indexed node);
    /// @notice Emitted when an upheld challenge voids a pending result: the node's whole `bond` is
    /// slashed, `toChallenger` paid, `burned` burned and `toPool` added to the job's pool, and the
    /// job is open again until `newDeadline`.
    event ModelVoided(
        uint256 indexed modelId,
        uint256 indexed jobId,
        address indexed node,
        address challenger,
        uint256 bond,
        uint256 toChallenger,
        uint256 burned,
        uint256 toPool,
        uint64 newDeadline
    );
    /// @notice Emitted once, when the deployment wires the challenge contract.
    event ChallengesSet(address indexed challenges);
    /// @notice Emitted when the poster cancels an unclaimed job and gets the pool back.
    event JobCancelled(uint256 indexed jobId);
    /// @notice Emitted when a job passes its deadline without a result; `slashed` went to the poster.
    event JobExpired(uint256 indexed jobId, address indexed node, uint256 slashed);
    /// @notice Emitted when a node's result registers a model: every committed artifact (adapter,
    /// metrics, attribution document and roots) and the lineage, so dApps can index the registry
    /// from events alone.
    event ModelRegistered(
        uint256 indexed modelId,
        uint256 indexed jobId,
        address indexed node,
        bytes32 baseModelHash,
        uint256 parentModelId,
        string adapterCID,
        bytes32 adapterHash,
        string metricsCID,
        bytes32 dataRoot,
        bytes32 attributionRoot,
        string attributionCID,
        bytes32 scoresRoot,
        uint256 totalWeight,
        uint256 exampleCount
    );

    constructor(
        IERC20 token_,
        DatanetRegistry datanets_,
        NodeStaking staking_,
        RewardDistributor rewards_,
        uint64 maxTrainingTime_
    ) {
        if (maxTrainingTime_ < MIN_TRAINING_TIME || maxTrainingTime_ > MAX_TRAINING_TIME) {
            revert ModelRegistryInvalidParams("maxTrainingTime");
        }
        token = token_;
        datanets = datanets_;
        staking = staking_;
        rewards = rewards_;
        maxTrainingTime = maxTrainingTime_;
        deployer = msg.sender;
    }

    /// @notice Wires the challenge contract: the deployer only, once (it references this registry,
    /// so it is deployed after it). Emits {ChallengesSet}.
    function setChallenges(address challenges_) external {
        if (msg.sender != deployer) revert ModelRegistryNotDeployer(msg.sender);
        if (challenges != address(0)) revert ModelRegistryChallengesSet(challenges);
        if (challenges_ == address(0)) revert ModelRegistryInvalidParams("challenges");
        challenges = challenges_;
        emit ChallengesSet(challenges_);
    }

    // ---------------------------------------------------------------------- Jobs

    /// @notice Posts a job and escrows `p.pool` plus the verifier fee ({verifierFeeOf}) from the
    /// caller's allowance. Emits {JobPosted}.
    function postJob(JobParams calldata p) external returns (uint256) {
        return _postJob(p);
    }

    /// @notice Like {postJob}, with an EIP-2612 permit over `p.pool` plus the verifier fee instead of an allowance.
    function postJobWithPermit(JobParams calldata p, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (uint256)
    {
        // Failing permit (front-run, already used) falls through to the allowance check.
        try IERC20Permit(address(token)).permit(msg.sender, address(this), p.pool + verifierFeeOf(p.pool), deadline, v, r, s) {} catch {}
        return _postJob(p);
    }

    /// @notice Claims an open job for the caller, a node with an eligible stake, reserving the
    /// job's bond ({bondFor}) out of its free stake until the job ends. Emits {JobClaimed}.
    function claimJob(uint256 jobId) external {
        Job storage j = _job(jobId);
        // Checks
        if (j.status != JobStatus.Open) revert ModelRegistryWrongStatus(jobId, j.status);
        if (block.timestamp >= j.deadline) revert ModelRegistryDeadlinePassed(jobId, j.deadline);
        if (!staking.isEligible(msg.sender)) revert ModelRegistryNodeNotStaked(msg.sender);
        // A private or restricted Datanet names the nodes it trusts with its data (key grants go to
        // whoever claims the job), so no other staked node can take the job and read it.
        uint256 n = j.datanetIds.length;
        for (uint256 i = 0; i < n; ++i) {
            if (!datanets.canClaim(j.datanetIds[i], msg.sender)) {
                revert ModelRegistryNodeNotTrusted(j.datanetIds[i], msg.sender);
            }
        }
        uint256 bond = bondFor(jobId);
        // Effects
        j.status = JobStatus.Claimed;
        j.node = msg.sender;
        j.claimedAt = uint64(block.timestamp);
        j.bond = bond;
        // The training set is fixed at the first claim; a reopened job keeps it, so the revealed
        // eval set cannot be answered by data added after the reveal. (0 means never claimed: only
        // this line writes it, with a block number, which is never 0 after genesis.)
        // slither-disable-next-line incorrect-equality
        if (j.claimBlock == 0) {
            j.claimBlock = uint64(block.number);
            j.claimTime = uint64(block.timestamp);
        }
        emit JobClaimed(jobId, msg.sender, bond);
        // Interactions (trusted protocol contract): reverts unless the free stake covers the bond.
        staking.reserve(msg.sender, bond);
    }

    /// @notice The bond a claim of `jobId` reserves: the contributors' part of its pool (what a node
    /// could divert with a forged result), and at least the staking minimum.
    function bondFor(uint256 jobId) public view returns (uint256) {
        Job storage j = _job(jobId);
        uint256 contributors = rewards.splitPool(j.pool, j.nodeFeeBps, j.datanetFeeBps, j.datanetIds.length).contributors;
        uint256 floor = staking.minStake();
        return contributors > floor ? contributors : floor;
    }

    /// @notice Returns a claimed job whose node overran `maxTrainingTime` to open, for another
    /// node to claim; half of the bond goes to the poster for the delay. Anyone may call (before
    /// the deadline; after it, {expireJob}). Emits {JobReopened}.
    function reopenJob(uint256 jobId) external {
        Job storage j = _job(jobId);
        // Checks
        if (j.status != JobStatus.Claimed) revert ModelRegistryWrongStatus(jobId, j.status);
        if (block.timestamp >= j.deadline) revert ModelRegistryDeadlinePassed(jobId, j.deadline);
        uint256 reopensAt = uint256(j.claimedAt) + maxTrainingTime;
        if (block.timestamp < reopensAt) revert ModelRegistryTrainingTimeNotOver(jobId, reopensAt);
        // Effects
        address node = j.node;
        uint256 bond = j.bond;
        uint256 penalty = (bond * EXPIRY_SLASH_BPS) / 10_000;
        j.status = JobStatus.Open;
        j.node = address(0);
        j.claimedAt = 0;
        j.bond = 0;
        emit JobReopened(jobId, node, penalty);
        // Interactions (trusted protocol contract)
        staking.slashBond(node, bond, penalty, j.poster, bytes32("job-overran"));
    }

    /// @notice Reveals the job's query set (the evaluation file whose sha256 its config commits):
    /// only the poster, only once, only while the job is claimed and only after the claim block,
    /// so the training set was fixed before anyone could see the questions. Emits {EvalRevealed}.
    /// @param jobId The claimed job.
    /// @param evalCID The CID of the evaluation file on IPFS.
    function revealEval(uint256 jobId, string calldata evalCID) external {
        Job storage j = _job(jobId);
        // Checks
        if (j.poster != msg.sender) revert ModelRegistryNotPoster(jobId, msg.sender);
        if (j.status != JobStatus.Claimed) revert ModelRegistryWrongStatus(jobId, j.status);
        if (block.number <= j.claimBlock) revert ModelRegistryEvalTooEarly(jobId, j.claimBlock);
        if (bytes(evalCID).length == 0) revert ModelRegistryEmptyEvalCID(jobId);
        EvalReveal storage e = _evals[jobId];
        if (e.revealedAt != 0) revert ModelRegistryEvalAlreadyRevealed(jobId);
        // Effects
        e.evalCID = evalCID;
        e.revealedAt = uint64(block.timestamp);
        e.revealedBlock = uint64(block.number);
        emit EvalRevealed(jobId, evalCID);
    }

    /// @notice Cancels an unclaimed job and refunds the pool to its poster. Emits {JobCancelled}.
    function cancelJob(uint256 jobId) external {
        Job storage j = _job(jobId);
        if (j.poster != msg.sender) revert ModelRegistryNotPoster(jobId, msg.sender);
        if (j.status != JobStatus.Open) revert ModelRegistryWrongStatus(jobId, j.status);
        uint256 refund = j.pool + j.verifierFee;
        j.status = JobStatus.Cancelled;
        emit JobCancelled(jobId);
        token.safeTransfer(msg.sender, refund);
    }

    /// @notice Ends a job that passed its deadline without a result: refunds the pool and, if a
    /// node had claimed it, slashes that node to the poster. Anyone may call. Emits {JobExpired}.
    function expireJob(uint256 jobId) external {
        Job storage j = _job(jobId);
        // Checks
        if (j.status != JobStatus.Open && j.status != JobStatus.Claimed) revert ModelRegistryWrongStatus(jobId, j.status);
        if (block.timestamp < j.deadline) revert ModelRegistryDeadlineNotPassed(jobId, j.deadline);
        // Effects
        bool claimed = j.status == JobStatus.Claimed;
        j.status = JobStatus.Expired;
        address node = j.node;
        address poster = j.poster;
        uint256 refund = j.pool + j.verifierFee;
        uint256 bond = j.bond;
        uint256 slashed = claimed ? (bond * EXPIRY_SLASH_BPS) / 10_000 : 0;
        emit JobExpired(jobId, node, slashed);
        // Interactions
        if (claimed) staking.slashBond(node, bond, slashed, poster, bytes32("job-expired"));
        token.safeTransfer(poster, refund);
    }

    /// @notice Submits the result of a job the caller claimed: registers the model as pending and
    /// starts its challenge window. The bond stays reserved and the pool in escrow until
    /// {finalize}. Emits {ModelRegistered}.
    function submitResult(uint256 jobId, ResultParams calldata r) external returns (uint256 modelId) {
        Job storage j = _job(jobId);
        // Checks
        if (j.status != JobStatus.Claimed) revert ModelRegistryWrongStatus(jobId, j.status);
        if (j.node != msg.sender) revert ModelRegistryNotJobNode(jobId, msg.sender);
        if (block.timestamp >= j.deadline) revert ModelRegistryDeadlinePassed(jobId, j.deadline);
        if (bytes(r.adapterCID).length == 0) revert ModelRegistryInvalidParams("adapterCID");
        if (r.adapterHash == bytes32(0)) revert ModelRegistryInvalidParams("adapterHash");
        if (r.dataRoot == bytes32(0)) revert ModelRegistryInvalidParams("dataRoot");
        if (r.attributionRoot == bytes32(0)) revert ModelRegistryInvalidParams("attributionRoot");
        // Without the document no contributor can find their leaf and proof, and no one can verify.
        if (bytes(r.attributionCID).length == 0) revert ModelRegistryInvalidParams("attributionCID");
        if (r.scoresRoot == bytes32(0)) revert ModelRegistryInvalidParams("scoresRoot");
        if (r.exampleCount == 0) revert ModelRegistryInvalidParams("exampleCount");
        if (r.totalWeight == 0) revert ModelRegistryInvalidParams("totalWeight");
        if (r.exampleCount > type(uint64).max || r.totalWeight > type(uint128).max) {
            revert ModelRegistryScoresOutOfRange(r.exampleCount, r.totalWeight);
        }
        // Effects
        modelId = ++_modelCount;
        j.status = JobStatus.Submitted;
        j.modelId = modelId;
        _storeModel(modelId, jobId, j, r);
        emit ModelRegistered(
            modelId,
            jobId,
            msg.sender,
            j.baseModelHash,
            j.parentModelId,
            r.adapterCID,
            r.adapterHash,
            r.metricsCID,
            r.dataRoot,
            r.attributionRoot,
            r.attributionCID,
            r.scoresRoot,
            r.totalWeight,
            r.exampleCount
        );
    }

    /// @notice Completes a submitted job whose challenge window has passed with no challenge left
    /// open: the model becomes final, the node's bond is released, and the pool opens the reward
    /// round (fees paid, contributors' claims valid from this block). Anyone may call.
    /// Emits {ModelFinalized} (and the distributor's events).
    function finalize(uint256 jobId) external {
        Job storage j = _job(jobId);
        // Checks
        if (j.status != JobStatus.Submitted) revert ModelRegistryWrongStatus(jobId, j.status);
        uint256 modelId = j.modelId;
        StoredModel storage m = _models[modelId];
        (uint256 at, uint256 open) = _window(modelId, m.registeredAt);
        if (block.timestamp < at) revert ModelRegistryChallengeWindowOpen(jobId, at);
        if (open != 0) revert ModelRegistryChallengesOpen(jobId, open);
        // Effects
        j.status = JobStatus.Completed;
        m.status = ModelStatus.Finalized;
        emit ModelFinalized(modelId, jobId, j.node);
        // Interactions (trusted protocol contracts)
        staking.release(j.node, j.bond);
        _fundRewards(jobId, j, m.attributionRoot);
        _payVerifiers(jobId, j.verifierFee);
    }

    /// @notice Voids a pending result after an upheld challenge (the challenge contract only): the
    /// node's whole bond is slashed, `CHALLENGER_BPS` of it to `challenger`, `BURN_BPS` burned,
    /// the rest to the job's pool; the job reopens for any node until a fresh deadline.
    /// Emits {ModelVoided}.
    function voidResult(uint256 modelId, address challenger) external {
        if (msg.sender != challenges) revert ModelRegistryNotChallenges(msg.sender); // unset: no caller matches
        StoredModel storage m = _models[modelId];
        if (m.status != ModelStatus.Pending) revert ModelRegistryModelNotPending(modelId, m.status);
        uint256 jobId = m.jobId;
        Job storage j = _jobs[jobId];
        // Effects
        address node = j.node;
        uint256 bond = j.bond;
        uint256 toChallenger = (bond * CHALLENGER_BPS) / 10_000;
        uint256 burned = (bond * BURN_BPS) / 10_000;
        uint256 toPool = bond - toChallenger - burned;
        // The distributor holds a round in a uint96: what would lift the pool above it is burned.
        uint256 room = type(uint96).max - j.pool; // pool <= uint96 max: checked at posting, kept here
        if (toPool > room) {
            burned += toPool - room;
            toPool = room;
        }
        m.status = ModelStatus.Voided;
        j.status = JobStatus.Open;
        j.node = address(0);
        j.claimedAt = 0;
        j.bond = 0;
        j.modelId = 0;
        j.pool += toPool;
        // The next node gets at least a full training time (the claim block, and so the training
        // set, stays as it was).
        uint64 fresh = uint64(block.timestamp) + maxTrainingTime;
        if (fresh > j.deadline) j.deadline = fresh;
        emit ModelVoided(modelId, jobId, node, challenger, bond, toChallenger, burned, toPool, j.deadline);
        // Interactions: the whole bond comes here (trusted protocol contract), then is divided.
        staking.slashBond(node, bond, bond, address(this), bytes32("result-voided"));
        if (toChallenger != 0) token.safeTransfer(challenger, toChallenger);
        if (burned != 0) token.safeTransfer(BURN_ADDRESS, burned);
    }

    // --------------------------------------------------------------------- Views

    /// @notice The verifier fee a job with `pool` pays on top of it (see VERIFIER_FEE_BPS).
    function verifierFeeOf(uint256 pool) public pure returns (uint256) {
        return (pool * VERIFIER_FEE_BPS) / 10_000;
    }

    /// @notice Number of jobs posted; ids run from 1 to this.
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }

    /// @notice Number of models registered; ids run from 1 to this.
    function modelCount() external view returns (uint256) {
        return _modelCount;
    }

    /// @notice A job. Reverts for an unknown id.
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _job(jobId);
    }

    /// @notice The query set a job's poster revealed; an empty CID and zeros if none yet.
    /// @param jobId The job.
    /// @return reveal The eval file's CID and the time and block of the reveal.
    function getEval(uint256 jobId) external view returns (EvalReveal memory reveal) {
        _job(jobId);
        return _evals[jobId];
    }

    /// @notice A model with its provenance. Reverts for an unknown id.
    function getModel(uint256 modelId) public view returns (Model memory) {
        StoredModel storage m = _models[modelId];
        if (m.jobId == 0) revert ModelRegistryUnknownModel(modelId);
        Job storage j = _jobs[m.jobId];
        return Model({
            jobId: m.jobId,
            parentModelId: j.parentModelId,
            node: m.node,
            method: j.method,
            status: m.status,
            registeredAt: m.registeredAt,
            baseModelHash: j.baseModelHash,
            adapterHash: m.adapterHash,
            dataRoot: m.dataRoot,
            attributionRoot: m.attributionRoot,
            configHash: j.configHash,
            scoresRoot: m.scoresRoot,
            totalWeight: m.totalWeight,
            exampleCount: m.exampleCount,
            baseModel: j.baseModel,
            adapterCID: m.adapterCID,
            metricsCID: m.metricsCID,
            attributionCID: m.attributionCID,
            configCID: j.configCID,
            datanetIds: j.datanetIds
        });
    }

    /// @notice What challenges check the result `modelId` against. Reverts for an unknown id.
    function resultCommitment(uint256 modelId) external view returns (ResultCommitment memory c) {
        StoredModel storage m = _models[modelId];
        if (m.jobId == 0) revert ModelRegistryUnknownModel(modelId);
        Job storage j = _jobs[m.jobId];
        // The dust goes to the first Datanet's treasury; its owner is deliberately not read.
        // slither-disable-next-line unused-return
        (, address dust) = datanets.ownerAndTreasury(j.datanetIds[0]);
        c = ResultCommitment({
            jobId: m.jobId,
            node: m.node,
            status: m.status,
            registeredAt: m.registeredAt,
            exampleCount: m.exampleCount,
            totalWeight: m.totalWeight,
            scoresRoot: m.scoresRoot,
            dataRoot: m.dataRoot,
            attributionRoot: m.attributionRoot,
            contributorsTotal: rewards.splitPool(j.pool, j.nodeFeeBps, j.datanetFeeBps, j.datanetIds.length).contributors,
            dustRecipient: dust
        });
    }

    /// @notice When the result `modelId` may be finalized (its challenge window's end; the maximum
    /// uint256 while no challenge contract is wired), and how many of its challenges are open.
    function finalizableAt(uint256 modelId) external view returns (uint256 at, uint256 openChallenges) {
        StoredModel storage m = _models[modelId];
        if (m.jobId == 0) revert ModelRegistryUnknownModel(modelId);
        return _window(modelId, m.registeredAt);
    }

    /// @notice Model ids trained on `datanetId`, oldest first, paginated.
    function modelsByDatanet(uint256 datanetId, uint256 offset, uint256 limit) external view returns (uint256[] memory) {
        return _page(_modelsByDatanet[datanetId], offset, limit);
    }

    /// @notice Model ids fine-tuned from the base model with weights hash `baseModelHash`, paginated.
    function modelsByBaseModel(bytes32 baseModelHash, uint256 offset, uint256 limit)
        external
        view
        returns (uint256[] memory)
    {
        return _page(_modelsByBase[baseModelHash], offset, limit);
    }

    /// @notice Model ids produced by `node`, paginated.
    function modelsByNode(address node, uint256 offset, uint256 limit) external view returns (uint256[] memory) {
        return _page(_modelsByNode[node], offset, limit);
    }

    /// @notice The model of `jobId`'s current result (0 if none yet, or its result was voided).
    function modelOfJob(uint256 jobId) external view returns (uint256) {
        return _job(jobId).modelId;
    }

    /// @notice The chain of models from `modelId` back to the one fine-tuned from a base model:
    /// `[modelId, parent, grandparent, ...]`.
    function lineage(uint256 modelId) external view returns (uint256[] memory chain) {
        uint256 depth = 0;
        for (uint256 id = modelId; id != 0; id = _parentOf(id)) {
            // Existence: a registered model's jobId is never 0 (job ids start at 1), and only this
            // contract writes it, so no one can make the equality fail or hold.
            // slither-disable-next-line incorrect-equality
            if (_models[id].jobId == 0) revert ModelRegistryUnknownModel(id);
            ++depth;
        }
        chain = new uint256[](depth);
        uint256 cur = modelId;
        for (uint256 i = 0; i < depth; ++i) {
            chain[i] = cur;
            cur = _parentOf(cur);
        }
    }

    // ------------------------------------------------------------------ Internal

    function _postJob(JobParams calldata p) private returns (uint256 jobId) {
        // Checks
        _validateJob(p);
        // Effects
        jobId = ++_jobCount;
        Job storage j = _jobs[jobId];
        j.poster = msg.sender;
        j.status = JobStatus.Open;
        j.method = p.method;
        j.nodeFeeBps = p.nodeFeeBps;
        j.datanetFeeBps = p.datanetFeeBps;
        j.deadline = p.deadline;
        j.postedAt = uint64(block.timestamp);
        j.baseModelHash = p.baseModelHash;
        j.configHash = p.configHash;
        j.pool = p.pool;
        j.parentModelId = p.parentModelId;
        j.baseModel = p.baseModel;
        j.configCID = p.configCID;
        j.datanetIds = p.datanetIds;
        uint256 fee = verifierFeeOf(p.pool);
        j.verifierFee = fee;
        emit JobPosted(
            jobId,
            msg.sender,
            p.baseModelHash,
            p.baseModel,
            p.datanetIds,
            p.method,
            p.configCID,
            p.configHash,
            p.pool,
            p.deadline,
            p.nodeFeeBps,
            p.datanetFeeBps,
            p.parentModelId
        );
        // Interactions
        token.safeTransferFrom(msg.sender, address(this), p.pool + fee);
    }

    function _validateJob(JobParams calldata p) private view {
        // The distributor holds a round's total in a uint96: a larger pool could never be paid out.
        if (p.pool == 0 || p.pool > type(uint96).max) revert ModelRegistryInvalidParams("pool");
        if (p.deadline <= block.timestamp || p.deadline > block.timestamp + MAX_JOB_DURATION) {
            revert ModelRegistryInvalidParams("deadline");
        }
        if (p.baseModelHash == bytes32(0)) revert ModelRegistryInvalidParams("baseModelHash");
        if (bytes(p.configCID).length == 0) revert ModelRegistryInvalidParams("configCID");
        if (uint256(p.nodeFeeBps) + p.datanetFeeBps > MAX_FEE_BPS) revert ModelRegistryInvalidParams("fees");
        uint256 n = p.datanetIds.length;
        if (n == 0 || n > MAX_DATANETS) revert ModelRegistryInvalidParams("datanetIds");
        for (uint256 i = 0; i < n; ++i) {
            uint256 id = p.datanetIds[i];
            // Strictly ascending: no duplicates, one cheap comparison each.
            if (i != 0 && id <= p.datanetIds[i - 1]) revert ModelRegistryInvalidParams("datanetIds");
            if (!datanets.canTrain(id, msg.sender)) revert ModelRegistryDatanetNotTrainable(id, msg.sender);
        }
        if (p.parentModelId != 0) {
            StoredModel storage parent = _models[p.parentModelId];
            // Existence, as in `lineage`: jobId 0 means no such model.
            // slither-disable-next-line incorrect-equality
            if (parent.jobId == 0) revert ModelRegistryUnknownModel(p.parentModelId);
            // Only a final model can be built on: a pending one may yet be voided.
            if (parent.status != ModelStatus.Finalized) {
                revert ModelRegistryParentNotFinal(p.parentModelId, parent.status);
            }
        }
    }

    function _storeModel(uint256 modelId, uint256 jobId, Job storage j, ResultParams calldata r) private {
        StoredModel storage m = _models[modelId];
        m.jobId = jobId;
        m.registeredAt = uint64(block.timestamp);
        m.node = j.node;
        m.status = ModelStatus.Pending;
        m.adapterHash = r.adapterHash;
        m.dataRoot = r.dataRoot;
        m.attributionRoot = r.attributionRoot;
        // Both below their bounds (checked in submitResult), so the casts are exact.
        m.exampleCount = uint64(r.exampleCount);
        m.totalWeight = uint128(r.totalWeight);
        m.scoresRoot = r.scoresRoot;
        m.adapterCID = r.adapterCID;
        m.metricsCID = r.metricsCID;
        m.attributionCID = r.attributionCID;
        for (uint256 i = 0; i < j.datanetIds.length; ++i) {
            _modelsByDatanet[j.datanetIds[i]].push(modelId);
        }
        _modelsByBase[j.baseModelHash].push(modelId);
        _modelsByNode[j.node].push(modelId);
    }

    function _window(uint256 modelId, uint64 registeredAt) private view returns (uint256 at, uint256 open) {
        // Without a challenge contract no window is known, so no result can be finalized.
        if (challenges == address(0)) return (type(uint256).max, 0);
        (uint256 period, uint256 openNow) = IResultChallenges(challenges).windowOf(modelId);
        return (uint256(registeredAt) + period, openNow);
    }

    function _parentOf(uint256 modelId) private view returns (uint256) {
        return _jobs[_models[modelId].jobId].parentModelId;
    }

    function _fundRewards(uint256 jobId, Job storage j, bytes32 root) private {
        uint256 n = j.datanetIds.length;
        address[] memory treasuries = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            // Only the treasury is paid; the owner is deliberately not read.
            // slither-disable-next-line unused-return
            (, treasuries[i]) = datanets.ownerAndTreasury(j.datanetIds[i]);
        }
        // The distributor pulls exactly the pool in openRound: funded by construction.
        token.forceApprove(address(rewards), j.pool);
        rewards.openRound(jobId, root, j.pool, j.node, j.nodeFeeBps, treasuries, j.datanetFeeBps, j.poster);
    }

    function _payVerifiers(uint256 jobId, uint256 fee) private {
        if (fee == 0) return;
        address court = IResultChallenges(challenges).court();
        if (court == address(0)) {
            // No court wired (a partial deployment): the fee goes back to the poster, never stuck.
            token.safeTransfer(_jobs[jobId].poster, fee);
            return;
        }
        token.forceApprove(court, fee);
        IVerifierFees(court).depositFee(jobId, fee);
    }

    function _job(uint256 jobId) private view returns (Job storage j) {
        j = _jobs[jobId];
        if (j.status == JobStatus.None) revert ModelRegistryUnknownJob(jobId);
    }

    function _page(uint256[] storage ids, uint256 offset, uint256 limit) private view returns (uint256[] memory out) {
        uint256 len = ids.length;
        if (offset >= len) return new uint256[](0);
        // Clip without computing `offset + limit` first: it overflows for a huge `limit`.
        uint256 end = limit > len - offset ? len : offset + limit; // offset < len here
        out = new uint256[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            out[i - offset] = ids[i];
        }
    }
}
