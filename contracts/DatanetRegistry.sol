// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title DatanetRegistry
/// @notice Curated data networks. A Datanet owner sets the rules (minimum stake, slash share,
/// lock period, license, who may train on it) and the curators. Contributors bond OPEN with each
/// contribution (content on IPFS, its CID and sha256 here), directly or through a relayer with an
/// EIP-712 signature, committing first and revealing in a later block (so nobody can copy a
/// contribution from the mempool and take its credit). Curators approve or reject; a rejection
/// slashes `slashBps` of the stake to the Datanet treasury. Only approved, not withdrawn
/// contributions may be trained on.
contract DatanetRegistry is EIP712, Nonces {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Pending,
        Approved,
        Rejected,
        Withdrawn
    }

    /// @notice What a creator chooses for a new Datanet.
    struct DatanetParams {
        string name;
        string metadataCID; // JSON on IPFS: description, schema, tags
        string license; // SPDX id or a CID of the license text
        bool commercialUse; // may models trained on it be used commercially
        bool isPrivate; // contributions are encrypted; readers need a key grant
        bool restricted; // only approved trainers may post jobs on it
        uint256 minStake; // minimum OPEN bonded per contribution
        uint16 slashBps; // share of the stake slashed on rejection (basis points)
        uint64 lockPeriod; // seconds a stake stays bonded after approval (or submission); also the
        // curators' decision window from submission. MIN_LOCK_PERIOD..MAX_LOCK_PERIOD.
        address treasury; // receives slashed stakes and the Datanet's reward fee
        address[] curators;
    }

    struct Datanet {
        address owner;
        address treasury;
        string name;
        string metadataCID;
        string license;
        bool commercialUse;
        bool isPrivate;
        bool restricted;
        uint16 slashBps;
        uint64 lockPeriod;
        uint64 createdAt;
        uint256 minStake;
        uint256 contributionCount;
        uint256 approvedCount;
    }

    /// @notice What a contributor submits.
    struct ContributionInput {
        uint256 datanetId;
        string cid; // IPFS CID of the content (CIDv1, raw leaves)
        bytes32 contentHash; // sha256 of the plain bytes as uploaded
        uint64 byteSize;
        uint32 recordCount;
        uint256 stake;
    }

    /// @notice An EIP-2612 permit over `stake`; `deadline == 0` means "use the existing allowance".
    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    struct Contribution {
        uint256 datanetId;
        address contributor;
        Status status;
        uint64 byteSize;
        uint32 recordCount;
        uint64 submittedAt;
        uint64 decidedAt;
        uint64 committedAt; // when its commitment was mined: the credit order between equal contents
        bytes32 contentHash;
        uint256 stake;
        string cid;
    }

    bytes32 public constant CONTRIBUTE_TYPEHASH = keccak256(
        "Contribute(address contributor,uint256 datanetId,string cid,bytes32 contentHash,uint64 byteSize,uint32 recordCount,uint256 stake,uint256 nonce,uint256 deadline)"
    );
    uint16 public constant MAX_BPS = 10_000;
    /// @notice Bounds of `lockPeriod`, which is also the curators' decision window: a contribution
    /// must be decidable for a while (at least an hour), and a stake must not be bonded forever.
    uint64 public constant MIN_LOCK_PERIOD = 1 hours;
    uint64 public constant MAX_LOCK_PERIOD = 730 days;

    IERC20 public immutable token;

    uint256 private _datanetCount;
    uint256 private _contributionCount;
    mapping(uint256 datanetId => Datanet) private _datanets;
    mapping(uint256 datanetId => mapping(address account => bool)) private _curators;
    mapping(uint256 datanetId => mapping(address account => bool)) private _trainers;
    mapping(uint256 datanetId => mapping(address node => bool)) private _trustedNodes;
    mapping(uint256 datanetId => mapping(bytes32 contentHash => uint256 contributionId)) private _byContent;
    /// @dev A contribution's commitment: the block and time it was mined (zero: none).
    struct Commit {
        uint64 blockNumber;
        uint64 timestamp;
    }

    mapping(bytes32 commitment => Commit) private _commits;
    mapping(uint256 contributionId => Contribution) private _contributions;

    error DatanetUnknown(uint256 datanetId);
    error DatanetNotOwner(uint256 datanetId, address account);
    error DatanetNotCurator(uint256 datanetId, address account);
    error DatanetInvalidParams(string field);
    error DatanetStakeTooLow(uint256 datanetId, uint256 stake, uint256 minStake);
    error DatanetDuplicateContent(uint256 datanetId, bytes32 contentHash, uint256 existingId);
    error DatanetNoCommitment(bytes32 commitment);
    error DatanetCommitmentTooRecent(bytes32 commitment, uint64 blockNumber);
    error DatanetCommitmentExists(bytes32 commitment);
    error DatanetEmptyContribution();
    error DatanetUnknownContribution(uint256 contributionId);
    error DatanetWrongStatus(uint256 contributionId, Status status);
    error DatanetNotContributor(uint256 contributionId, address account);
    error DatanetStillLocked(uint256 contributionId, uint256 unlocksAt);
    error DatanetDecisionWindowClosed(uint256 contributionId, uint256 closedAt);
    error DatanetSignatureExpired(uint256 deadline);
    error DatanetInvalidSignature(address contributor);

    /// @notice Emitted when a Datanet is created, with every term a contributor stakes under.
    event DatanetCreated(
        uint256 indexed datanetId,
        address indexed owner,
        string name,
        string metadataCID,
        string license,
        bool commercialUse,
        bool isPrivate,
        bool restricted,
        address treasury,
        uint256 minStake,
        uint16 slashBps,
        uint64 lockPeriod
    );
    /// @notice Emitted when an account burns its current signature nonce ({invalidateNonce}).
    event NonceInvalidated(address indexed account, uint256 nonce);
    /// @notice Emitted when a Datanet's metadata CID changes.
    event DatanetMetadataUpdated(uint256 indexed datanetId, string metadataCID);
    /// @notice Emitted when a contribution is committed (its content and contributor stay hidden).
    event ContributionCommitted(bytes32 indexed commitment, address indexed sender);
    /// @notice Emitted when `account` is added or removed as a curator.
    event CuratorSet(uint256 indexed datanetId, address indexed account, bool allowed);
    /// @notice Emitted when `account` is allowed or disallowed to post jobs on a restricted Datanet.
    event TrainerSet(uint256 indexed datanetId, address indexed account, bool allowed);
    /// @notice Emitted when a private or restricted Datanet trusts (or stops trusting) `node` to
    /// claim jobs that train on it.
    event TrustedNodeSet(uint256 indexed datanetId, address indexed node, bool trusted);
    /// @notice Emitted when a contribution is submitted (directly or relayed).
    event ContributionSubmitted(
        uint256 indexed contributionId,
        uint256 indexed datanetId,
        address indexed contributor,
        string cid,
        bytes32 contentHash,
        uint64 byteSize,
        uint32 recordCount,
        uint256 stake
    );
    /// @notice Emitted when a curator approves a contribution.
    event ContributionApproved(uint256 indexed contributionId, uint256 indexed datanetId, address indexed curator);
    /// @notice Emitted when a curator rejects a contribution; `slashed` went to the treasury.
    event ContributionRejected(
        uint256 indexed contributionId,
        uint256 indexed datanetId,
        address indexed curator,
        uint256 slashed,
        string reason
    );
    /// @notice Emitted when a contributor withdraws the stake (and with it the contribution).
    event ContributionWithdrawn(
        uint256 indexed contributionId, uint256 indexed datanetId, address indexed contributor, uint256 amount
    );

    constructor(IERC20 token_) EIP712("DatanetRegistry", "1") {
        token = token_;
    }

    modifier onlyOwnerOf(uint256 datanetId) {
        if (_datanets[datanetId].owner != msg.sender) {
            _requireDatanet(datanetId);
            revert DatanetNotOwner(datanetId, msg.sender);
        }
        _;
    }

    // ------------------------------------------------------------------ Datanets

    /// @notice Creates a Datanet owned by the caller. Emits {DatanetCreated} and {CuratorSet}.
    function createDatanet(DatanetParams calldata p) external returns (uint256 datanetId) {
        if (bytes(p.name).length == 0 || bytes(p.name).length > 128) revert DatanetInvalidParams("name");
        if (p.slashBps > MAX_BPS) revert DatanetInvalidParams("slashBps");
        if (p.treasury == address(0)) revert DatanetInvalidParams("treasury");
        if (p.lockPeriod < MIN_LOCK_PERIOD || p.lockPeriod > MAX_LOCK_PERIOD) revert DatanetInvalidParams("lockPeriod");
        datanetId = ++_datanetCount;
        Datanet storage d = _datanets[datanetId];
        d.owner = msg.sender;
        d.treasury = p.treasury;
        d.name = p.name;
        d.metadataCID = p.metadataCID;
        d.license = p.license;
        d.commercialUse = p.commercialUse;
        d.isPrivate = p.isPrivate;
        d.restricted = p.restricted;
        d.slashBps = p.slashBps;
        d.lockPeriod = p.lockPeriod;
        d.minStake = p.minStake;
        d.createdAt = uint64(block.timestamp);
        emit DatanetCreated(
            datanetId,
            msg.sender,
            p.name,
            p.metadataCID,
            p.license,
            p.commercialUse,
            p.isPrivate,
            p.restricted,
            p.treasury,
            p.minStake,
            p.slashBps,
            p.lockPeriod
        );
        for (uint256 i = 0; i < p.curators.length; ++i) {
            _setCurator(datanetId, p.curators[i], true);
        }
    }

    /// @notice Adds or removes a curator. Owner only. Emits {CuratorSet}.
    function setCurator(uint256 datanetId, address account, bool allowed) external onlyOwnerOf(datanetId) {
        _setCurator(datanetId, account, allowed);
    }

    /// @notice Allows or disallows `account` to post jobs on a restricted Datanet. Owner only.
    /// Emits {TrainerSet}.
    function setTrainer(uint256 datanetId, address account, bool allowed) external onlyOwnerOf(datanetId) {
        _trainers[datanetId][account] = allowed;
        emit TrainerSet(datanetId, account, allowed);
    }

    /// @notice Trusts or distrusts `node` to claim jobs on this Datanet. Only private or restricted
    /// Datanets check it ({canClaim}): the node that claims a job is the one its curators' key
    /// grants go to, so such a Datanet must name who may read and train on its data. Owner only.
    /// Emits {TrustedNodeSet}.
    function setTrustedNode(uint256 datanetId, address node, bool trusted) external onlyOwnerOf(datanetId) {
        _trustedNodes[datanetId][node] = trusted;
        emit TrustedNodeSet(datanetId, node, trusted);
    }

    /// @notice Points the Datanet at new metadata. Owner only. Emits {DatanetMetadataUpdated}.
    function setMetadata(uint256 datanetId, string calldata metadataCID) external onlyOwnerOf(datanetId) {
        _datanets[datanetId].metadataCID = metadataCID;
        emit DatanetMetadataUpdated(datanetId, metadataCID);
    }

    // ------------------------------------------------------------- Contributions

    /// @notice Commits a contribution before revealing it: `commitment` is
    /// `keccak256(abi.encode(datanetId, contentHash, contributor, salt))` ({contributionCommitment}).
    /// Anyone may send it (a relayer for a contributor). The reveal ({contribute} and friends) must
    /// come in a later block, so whoever copies a revealed `(cid, contentHash)` from the mempool
    /// commits too late: the first commitment's reveal holds the content, and between Datanets the
    /// earliest commitment gets the credit. Emits {ContributionCommitted}.
    function commitContribution(bytes32 commitment) external {
        if (_commits[commitment].blockNumber != 0) revert DatanetCommitmentExists(commitment);
        _commits[commitment] = Commit(uint64(block.number), uint64(block.timestamp));
        emit ContributionCommitted(commitment, msg.sender);
    }

    /// @notice The commitment of a contribution: what {commitContribution} takes.
    function contributionCommitment(uint256 datanetId, bytes32 contentHash, address contributor, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(datanetId, contentHash, contributor, salt));
    }

    /// @notice Reveals a contribution the caller committed (with `salt`) in an earlier block,
    /// bonding `input.stake` from its allowance. Emits {ContributionSubmitted}.
    function contribute(ContributionInput calldata input, bytes32 salt) external returns (uint256) {
        return _contribute(msg.sender, input, salt);
    }

    /// @notice Like {contribute}, with an EIP-2612 permit instead of a prior approval.
    function contributeWithPermit(ContributionInput calldata input, bytes32 salt, Permit calldata permit)
        external
        returns (uint256)
    {
        _permit(msg.sender, input.stake, permit);
        return _contribute(msg.sender, input, salt);
    }

    /// @notice Submits a contribution signed by `contributor` (EIP-712 `Contribute`), sent by anyone
    /// (a relayer pays the gas). The stake comes from `contributor`, by permit or allowance. Each
    /// signature is valid once (per-contributor nonce) and until `deadline`; its commitment (with
    /// `salt`) must have been mined in an earlier block. Emits {ContributionSubmitted}.
    function contributeBySig(
        ContributionInput calldata input,
        address contributor,
        uint256 deadline,
        bytes calldata signature,
        Permit calldata permit,
        bytes32 salt
    ) external returns (uint256) {
        if (block.timestamp > deadline) revert DatanetSignatureExpired(deadline);
        bytes32 digest = _hashTypedDataV4(_contributeStructHash(input, contributor, _useNonce(contributor), deadline));
        if (!SignatureChecker.isValidSignatureNow(contributor, digest, signature)) {
            revert DatanetInvalidSignature(contributor);
        }
        _permit(contributor, input.stake, permit);
        return _contribute(contributor, input, salt);
    }

    /// @notice Cancels the caller's signed but unsent contributions: uses up its current nonce, so
    /// no {contributeBySig} signature made for it can be relayed any more (a relayer that sat on
    /// one, or a signature sent to the wrong Datanet, is void). Emits {NonceInvalidated}.
    function invalidateNonce() external returns (uint256 used) {
        used = _useNonce(msg.sender);
        emit NonceInvalidated(msg.sender, used);
    }

    /// @notice Approves a pending contribution. Curators only. Emits {ContributionApproved}.
    function approve(uint256 contributionId) external {
        Contribution storage c = _pendingAsCurator(contributionId);
        c.status = Status.Approved;
        c.decidedAt = uint64(block.timestamp);
        _datanets[c.datanetId].approvedCount += 1;
        emit ContributionApproved(contributionId, c.datanetId, msg.sender);
    }

    /// @notice Rejects a pending contribution: `slashBps` of the stake goes to the treasury, the
    /// rest back to the contributor. Curators only. Emits {ContributionRejected}.
    function reject(uint256 contributionId, string calldata reason) external {
        Contribution storage c = _pendingAsCurator(contributionId);
        Datanet storage d = _datanets[c.datanetId];
        uint256 stakeAmount = c.stake;
        uint256 slashed = (stakeAmount * d.slashBps) / MAX_BPS;
        // Effects
        c.status = Status.Rejected;
        c.decidedAt = uint64(block.timestamp);
        c.stake = 0;
        // The content is free again: nobody's rejected submission blocks it from the Datanet.
        delete _byContent[c.datanetId][c.contentHash];
        emit ContributionRejected(contributionId, c.datanetId, msg.sender, slashed, reason);
        // Interactions
        if (slashed != 0) token.safeTransfer(d.treasury, slashed);
        if (stakeAmount != slashed) token.safeTransfer(c.contributor, stakeAmount - slashed);
    }

    /// @notice Withdraws the stake of an approved contribution after its lock period (which also
    /// removes it from the Datanet), or of one left pending past the lock period (curators missed
    /// their window, so it is not slashable any more). Emits {ContributionWithdrawn}.
    function withdraw(uint256 contributionId) external {
        Contribution storage c = _contributions[contributionId];
        // Checks
        if (c.status == Status.None) revert DatanetUnknownContribution(contributionId);
        if (c.contributor != msg.sender) revert DatanetNotContributor(contributionId, msg.sender);
        if (c.status != Status.Approved && c.status != Status.Pending) {
            revert DatanetWrongStatus(contributionId, c.status);
        }
        uint64 since = c.status == Status.Approved ? c.decidedAt : c.submittedAt;
        // uint256 arithmetic: no overflow panic, whatever the stored times.
        uint256 unlocksAt = uint256(since) + _datanets[c.datanetId].lockPeriod;
        if (block.timestamp < unlocksAt) revert DatanetStillLocked(contributionId, unlocksAt);
        // Effects
        if (c.status == Status.Approved) _datanets[c.datanetId].approvedCount -= 1;
        uint256 amount = c.stake;
        c.status = Status.Withdrawn;
        c.stake = 0;
        delete _byContent[c.datanetId][c.contentHash]; // withdrawn content may be contributed again
        emit ContributionWithdrawn(contributionId, c.datanetId, msg.sender, amount);
        // Interactions
        if (amount != 0) token.safeTransfer(msg.sender, amount);
    }

    // --------------------------------------------------------------------- Views

    /// @notice Number of Datanets created; ids run from 1 to this.
    function datanetCount() external view returns (uint256) {
        return _datanetCount;
    }

    /// @notice Number of contributions submitted; ids run from 1 to this.
    function contributionCount() external view returns (uint256) {
        return _contributionCount;
    }

    /// @notice A Datanet's settings and counters. Reverts for an unknown id.
    function getDatanet(uint256 datanetId) external view returns (Datanet memory) {
        _requireDatanet(datanetId);
        return _datanets[datanetId];
    }

    /// @notice A contribution. Reverts for an unknown id.
    function getContribution(uint256 contributionId) external view returns (Contribution memory) {
        // An existence test on an enum the contract alone writes, not a balance an attacker can nudge.
        // slither-disable-next-line incorrect-equality
        if (_contributions[contributionId].status == Status.None) revert DatanetUnknownContribution(contributionId);
        return _contributions[contributionId];
    }

    /// @notice The contribution id holding `contentHash` in a Datanet (0 if none).
    function contributionByContent(uint256 datanetId, bytes32 contentHash) external view returns (uint256) {
        return _byContent[datanetId][contentHash];
    }

    /// @notice Whether `account` curates `datanetId`.
    function isCurator(uint256 datanetId, address account) external view returns (bool) {
        return _curators[datanetId][account];
    }

    /// @notice Whether `account` may post fine-tuning jobs on `datanetId` (always, unless restricted).
    function canTrain(uint256 datanetId, address account) external view returns (bool) {
        Datanet storage d = _datanets[datanetId];
        if (d.owner == address(0)) return false;
        return !d.restricted || d.owner == account || _trainers[datanetId][account];
    }

    /// @notice Whether `node` may claim a job that trains on `datanetId`: anyone for an open
    /// Datanet, only nodes its owner trusts for a private or restricted one.
    function canClaim(uint256 datanetId, address node) external view returns (bool) {
        Datanet storage d = _datanets[datanetId];
        if (d.owner == address(0)) return false;
        return !(d.isPrivate || d.restricted) || _trustedNodes[datanetId][node];
    }

    /// @notice Whether `node` is on `datanetId`'s trusted list (whether or not the Datanet checks it).
    function isTrustedNode(uint256 datanetId, address node) external view returns (bool) {
        return _trustedNodes[datanetId][node];
    }

    /// @notice Whether `datanetId` exists.
    function exists(uint256 datanetId) external view returns (bool) {
        return _datanets[datanetId].owner != address(0);
    }

    /// @notice The owner and treasury of a Datanet.
    function ownerAndTreasury(uint256 datanetId) external view returns (address owner, address treasury) {
        Datanet storage d = _datanets[datanetId];
        return (d.owner, d.treasury);
    }

    /// @notice The EIP-712 digest a contributor signs for {contributeBySig} with nonce `nonce`.
    function contributeDigest(ContributionInput calldata input, address contributor, uint256 nonce, uint256 deadline)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(_contributeStructHash(input, contributor, nonce, deadline));
    }

    /// @notice The EIP-712 domain separator.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ Internal

    function _contribute(address contributor, ContributionInput calldata input, bytes32 salt)
        private
        returns (uint256 id)
    {
        Datanet storage d = _datanets[input.datanetId];
        // Checks
        _requireDatanet(input.datanetId);
        if (bytes(input.cid).length == 0 || input.contentHash == bytes32(0) || input.recordCount == 0) {
            revert DatanetEmptyContribution();
        }
        if (input.stake < d.minStake || input.stake == 0) {
            revert DatanetStakeTooLow(input.datanetId, input.stake, d.minStake);
        }
        uint256 existing = _byContent[input.datanetId][input.contentHash];
        if (existing != 0) revert DatanetDuplicateContent(input.datanetId, input.contentHash, existing);
        bytes32 commitment = contributionCommitment(input.datanetId, input.contentHash, contributor, salt);
        Commit memory committed = _commits[commitment];
        if (committed.blockNumber == 0) revert DatanetNoCommitment(commitment);
        if (committed.blockNumber >= block.number) revert DatanetCommitmentTooRecent(commitment, committed.blockNumber);
        // Effects
        delete _commits[commitment];
        id = ++_contributionCount;
        _byContent[input.datanetId][input.contentHash] = id;
        d.contributionCount += 1;
        Contribution storage c = _contributions[id];
        c.datanetId = input.datanetId;
        c.contributor = contributor;
        c.status = Status.Pending;
        c.byteSize = input.byteSize;
        c.recordCount = input.recordCount;
        c.submittedAt = uint64(block.timestamp);
        c.committedAt = committed.timestamp;
        c.contentHash = input.contentHash;
        c.stake = input.stake;
        c.cid = input.cid;
        emit ContributionSubmitted(
            id, input.datanetId, contributor, input.cid, input.contentHash, input.byteSize, input.recordCount, input.stake
        );
        // Interactions
        token.safeTransferFrom(contributor, address(this), input.stake);
    }

    /// @dev Curators decide within `lockPeriod` of the submission; from then on the contributor may
    /// withdraw an undecided stake, and a decision could front-run that withdrawal (a rejection
    /// slashing it, an approval restarting its lock), so none is accepted.
    function _pendingAsCurator(uint256 contributionId) private view returns (Contribution storage c) {
        c = _contributions[contributionId];
        if (c.status == Status.None) revert DatanetUnknownContribution(contributionId);
        if (!_curators[c.datanetId][msg.sender]) revert DatanetNotCurator(c.datanetId, msg.sender);
        if (c.status != Status.Pending) revert DatanetWrongStatus(contributionId, c.status);
        uint256 closedAt = uint256(c.submittedAt) + _datanets[c.datanetId].lockPeriod;
        if (block.timestamp >= closedAt) revert DatanetDecisionWindowClosed(contributionId, closedAt);
    }

    function _permit(address owner, uint256 value, Permit calldata p) private {
        if (p.deadline == 0) return;
        // A front-runner may have used the permit already; the allowance then exists and
        // transferFrom below succeeds, otherwise it reverts with the token's own error.
        try IERC20Permit(address(token)).permit(owner, address(this), value, p.deadline, p.v, p.r, p.s) {} catch {}
    }

    function _setCurator(uint256 datanetId, address account, bool allowed) private {
        if (account == address(0)) revert DatanetInvalidParams("curator");
        _curators[datanetId][account] = allowed;
        emit CuratorSet(datanetId, account, allowed);
    }

    function _requireDatanet(uint256 datanetId) private view {
        if (_datanets[datanetId].owner == address(0)) revert DatanetUnknown(datanetId);
    }

    function _contributeStructHash(ContributionInput calldata input, address contributor, uint256 nonce, uint256 deadline)
        private
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                CONTRIBUTE_TYPEHASH,
                contributor,
                input.datanetId,
                keccak256(bytes(input.cid)),
                input.contentHash,
                input.byteSize,
                input.recordCount,
                input.stake,
                nonce,
                deadline
            )
        );
    }
}
