// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title RewardDistributor
/// @notice Pays each finished job's reward pool: explicit fees to the node operator and the
/// Datanet treasuries, the rest to contributors against the job's attribution Merkle root.
/// Leaves follow OpenZeppelin's StandardMerkleTree with leaf encoding
/// `(uint256 jobId, uint256 index, address account, uint256 amount)`, double-hashed. `index`
/// addresses a packed claimed-bitmap (as in Uniswap's MerkleDistributor). Whatever is left
/// unclaimed after the claim window can be swept back to the job's poster.
///
/// Funding is by construction: `openRound` pulls the pool from the funder in the same call, and a
/// round never pays out more than its own `total`, so the balance always covers every open round.
/// Rounds are keyed by (funder, jobId): a funder names job ids in its own namespace only, so no
/// other funder can take a job id first and make the registry's `openRound` revert (which would
/// block the honest node's result until its job expired).
/// The hot `claim` path touches three slots: the root, one packed (total, claimed, deadline)
/// word, and one bitmap word.
///
/// Epoch rounds (inference-time rewards) are a second, permissionless kind of round: anyone opens
/// its own round of `epoch` ({openEpochRound}), keyed by (msg.sender, epoch) and funded in the same
/// call, with its own storage, claim window, bitmap and sweep back to that funder. No role opens
/// them, so there is no role to squat ids with: a funder can only name epochs in its own namespace.
/// Their roots are attested by the funder alone (nothing recomputes them on-chain); what a round
/// can pay is bounded by what that funder paid in.
contract RewardDistributor {
    using SafeERC20 for IERC20;

    uint16 public constant MAX_BPS = 10_000;

    struct Round {
        bytes32 root;
        uint96 total; // the contributors' share of the pool (uint96 holds 7.9e28: > all OPEN)
        uint96 claimed; // never exceeds `total`
        uint64 claimDeadline;
        address refundTo;
        bool swept;
    }

    /// @notice An epoch round: inference rewards one funder posted and paid for one epoch. The
    /// remainder is swept back to the funder (the round's key), so there is no `refundTo`.
    struct EpochRound {
        bytes32 root;
        uint96 total; // what the funder paid in (uint96 holds 7.9e28: > all OPEN)
        uint96 claimed; // never exceeds `total`
        uint64 claimDeadline;
        bool swept;
    }

    /// @notice How a funded pool is split, computed on-chain from explicit basis points.
    struct Split {
        uint256 nodeFee;
        uint256 datanetFeeEach;
        uint256 contributors;
    }

    IERC20 public immutable token;
    /// @notice The account that wires {funder}, once, at deployment.
    address public immutable deployer;
    /// @notice The one contract that opens rounds: the ModelRegistry, wired once ({setFunder}) and
    /// never changed. A role an admin could grant and revoke (as before) let the admin revoke the
    /// registry's and so make every result revert, freezing claimed pools until their deadlines.
    address public funder;
    /// @notice Seconds contributors have to claim before the remainder may be swept.
    uint64 public immutable claimWindow;

    mapping(address funder => mapping(uint256 jobId => Round)) private _rounds;
    mapping(address funder => mapping(uint256 jobId => mapping(uint256 word => uint256 bits))) private _claimedBitmap;
    mapping(address funder => mapping(uint256 epoch => EpochRound)) private _epochRounds;
    mapping(address funder => mapping(uint256 epoch => mapping(uint256 word => uint256 bits))) private
        _epochClaimedBitmap;

    error RewardNotFunder(address caller);
    error RewardFunderSet(address funder);
    error RewardZeroFunder();
    error RewardRoundExists(address funder, uint256 jobId);
    error RewardUnknownRound(address funder, uint256 jobId);
    error RewardZeroPool();
    error RewardZeroRoot();
    error RewardInvalidFees(uint256 nodeFeeBps, uint256 datanetFeeBps);
    error RewardNoDatanets();
    error RewardPoolTooLarge(uint256 pool);
    error RewardAlreadyClaimed(uint256 jobId, uint256 index);
    error RewardInvalidProof(uint256 jobId, uint256 index, address account, uint256 amount);
    error RewardExceedsPool(uint256 jobId, uint256 claimed, uint256 amount, uint256 total);
    error RewardClaimWindowClosed(uint256 jobId, uint64 claimDeadline);
    error RewardClaimWindowOpen(uint256 jobId, uint64 claimDeadline);
    error RewardAlreadySwept(uint256 jobId);
    error RewardEpochRoundExists(address funder, uint256 epoch);
    error RewardUnknownEpochRound(address funder, uint256 epoch);
    error RewardEpochAlreadyClaimed(address funder, uint256 epoch, uint256 index);
    error RewardInvalidEpochProof(address funder, uint256 epoch, uint256 index, address account, uint256 amount);
    error RewardEpochExceedsFunding(address funder, uint256 epoch, uint256 claimed, uint256 amount, uint256 total);
    error RewardEpochClaimWindowClosed(address funder, uint256 epoch, uint64 claimDeadline);
    error RewardEpochClaimWindowOpen(address funder, uint256 epoch, uint64 claimDeadline);
    error RewardEpochAlreadySwept(address funder, uint256 epoch);

    /// @notice Emitted once, when the deployment wires the funder.
    event FunderSet(address indexed funder);
    /// @notice Emitted when a job's pool is funded and its fees paid.
    event RoundOpened(
        address indexed funder,
        uint256 indexed jobId,
        bytes32 indexed root,
        uint256 contributorsTotal,
        uint256 nodeFee,
        uint256 datanetFees,
        uint64 claimDeadline
    );
    /// @notice Emitted for each fee paid when a round opens.
    event FeePaid(address indexed funder, uint256 indexed jobId, address indexed recipient, uint256 amount, bool toNode);
    /// @notice Emitted when `account` claims `amount` for leaf `index` of `funder`'s round `jobId`.
    event Claimed(
        address indexed funder, uint256 indexed jobId, uint256 index, address indexed account, uint256 amount
    );
    /// @notice Emitted when the unclaimed remainder of a round goes back to the poster.
    event Swept(address indexed funder, uint256 indexed jobId, address indexed refundTo, uint256 amount);
    /// @notice Emitted when `funder` opens and funds its epoch round `epoch`; `treeCID` names the
    /// published reward tree (OpenZeppelin standard-v1 dump) claimants read their proofs from.
    event EpochRoundOpened(
        address indexed funder,
        uint256 indexed epoch,
        bytes32 indexed root,
        uint256 amount,
        uint64 claimDeadline,
        string treeCID
    );
    /// @notice Emitted when `account` claims `amount` for leaf `index` of `funder`'s epoch round `epoch`.
    event EpochClaimed(
        address indexed funder, uint256 indexed epoch, uint256 index, address indexed account, uint256 amount
    );
    /// @notice Emitted when the unclaimed remainder of an epoch round goes back to its funder.
    event EpochSwept(address indexed funder, uint256 indexed epoch, uint256 amount);

    /// @param token_ The OPEN token.
    /// @param deployer_ May wire the funder, once ({setFunder}); it has no other power.
    /// @param claimWindow_ Seconds from funding until unclaimed rewards may be swept.
    constructor(IERC20 token_, address deployer_, uint64 claimWindow_) {
        token = token_;
        deployer = deployer_;
        claimWindow = claimWindow_;
    }

    /// @notice Wires the funder (the ModelRegistry): the deployer only, once. Emits {FunderSet}.
    function setFunder(address funder_) external {
        if (msg.sender != deployer) revert RewardNotFunder(msg.sender);
        if (funder != address(0)) revert RewardFunderSet(funder);
        if (funder_ == address(0)) revert RewardZeroFunder();
        funder = funder_;
        emit FunderSet(funder_);
    }

    /// @notice Opens the caller's reward round of `jobId`, pulling `pool` OPEN from the caller
    /// (which must have approved this contract). Pays the node fee and one equal Datanet fee per treasury; the
    /// rest becomes claimable under `root`. Emits {RoundOpened} and one {FeePaid} per fee.
    function openRound(
        uint256 jobId,
        bytes32 root,
        uint256 pool,
        address node,
        uint16 nodeFeeBps,
        address[] calldata datanetTreasuries,
        uint16 datanetFeeBps,
        address refundTo
    ) external {
        // Checks
        if (msg.sender != funder) revert RewardNotFunder(msg.sender); // unset (0): no caller matches
        if (_rounds[msg.sender][jobId].root != bytes32(0)) revert RewardRoundExists(msg.sender, jobId);
        if (root == bytes32(0)) revert RewardZeroRoot();
        if (pool == 0) revert RewardZeroPool();
        if (uint256(nodeFeeBps) + datanetFeeBps > MAX_BPS) revert RewardInvalidFees(nodeFeeBps, datanetFeeBps);
        if (datanetTreasuries.length == 0) revert RewardNoDatanets();
        if (pool > type(uint96).max) revert RewardPoolTooLarge(pool);
        Split memory split = splitPool(pool, nodeFeeBps, datanetFeeBps, datanetTreasuries.length);
        uint256 fees = pool - split.contributors;
        // Effects
        uint64 deadline = uint64(block.timestamp) + claimWindow;
        _rounds[msg.sender][jobId] = Round({
            root: root,
            total: uint96(split.contributors), // safe: <= pool <= type(uint96).max
            claimed: 0,
            claimDeadline: deadline,
            refundTo: refundTo,
            swept: false
        });
        emit RoundOpened(msg.sender, jobId, root, split.contributors, split.nodeFee, fees - split.nodeFee, deadline);
        // Interactions: fund first (reverts without allowance/balance), then pay the fees out of it.
        token.safeTransferFrom(msg.sender, address(this), pool);
        _payFee(jobId, node, split.nodeFee, true);
        for (uint256 i = 0; i < datanetTreasuries.length; ++i) {
            _payFee(jobId, datanetTreasuries[i], split.datanetFeeEach, false);
        }
    }

    /// @notice Claims `amount` for `account` from `roundFunder`'s round of `jobId` (anyone may send it;
    /// the tokens go to `account`). Emits {Claimed}.
    function claim(
        address roundFunder,
        uint256 jobId,
        uint256 index,
        address account,
        uint256 amount,
        bytes32[] calldata proof
    ) external {
        Round storage r = _rounds[roundFunder][jobId];
        // Checks
        if (r.root == bytes32(0)) revert RewardUnknownRound(roundFunder, jobId);
        if (block.timestamp > r.claimDeadline) revert RewardClaimWindowClosed(jobId, r.claimDeadline);
        if (isClaimed(roundFunder, jobId, index)) revert RewardAlreadyClaimed(jobId, index);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(jobId, index, account, amount))));
        if (!MerkleProof.verifyCalldata(proof, r.root, leaf)) {
            revert RewardInvalidProof(jobId, index, account, amount);
        }
        uint256 claimedAfter = uint256(r.claimed) + amount;
        if (claimedAfter > r.total) revert RewardExceedsPool(jobId, r.claimed, amount, r.total);
        // Effects
        _claimedBitmap[roundFunder][jobId][index >> 8] |= (1 << (index & 0xff));
        r.claimed = uint96(claimedAfter); // safe: claimedAfter <= total, a uint96
        emit Claimed(roundFunder, jobId, index, account, amount);
        // Interactions
        token.safeTransfer(account, amount);
    }

    /// @notice After the claim window, returns what was not claimed of `roundFunder`'s round `jobId` to
    /// the job's poster. Emits {Swept}.
    function sweep(address roundFunder, uint256 jobId) external {
        Round storage r = _rounds[roundFunder][jobId];
        // Checks
        if (r.root == bytes32(0)) revert RewardUnknownRound(roundFunder, jobId);
        if (block.timestamp <= r.claimDeadline) revert RewardClaimWindowOpen(jobId, r.claimDeadline);
        if (r.swept) revert RewardAlreadySwept(jobId);
        // Effects
        uint256 remainder = uint256(r.total) - r.claimed;
        r.swept = true;
        emit Swept(roundFunder, jobId, r.refundTo, remainder);
        // Interactions
        if (remainder != 0) token.safeTransfer(r.refundTo, remainder);
    }

    /// @notice Opens the caller's epoch round `epoch` (anyone may: rounds are keyed by (msg.sender,
    /// epoch), so no one can take another funder's epoch) and pulls `amount` OPEN from the caller in
    /// the same call (approve this contract first). The whole amount is claimable under `root`,
    /// whose leaves are `(address funder, uint256 epoch, uint256 index, address account, uint256
    /// amount)` (see {claimEpoch}). Emits {EpochRoundOpened}.
    /// @param epoch The funder's epoch number (an InferenceEscrow passes a round id derived from
    /// (node, epoch), so different nodes settling through it cannot collide).
    /// @param root The reward tree's root; attested by the funder alone (nothing here recomputes it).
    /// @param amount OPEN base units paid in, and the most the round will ever pay out.
    /// @param treeCID Where the tree dump is published (content store CID), for claimants.
    function openEpochRound(uint256 epoch, bytes32 root, uint256 amount, string calldata treeCID) external {
        // Checks
        if (_epochRounds[msg.sender][epoch].root != bytes32(0)) revert RewardEpochRoundExists(msg.sender, epoch);
        if (root == bytes32(0)) revert RewardZeroRoot();
        if (amount == 0) revert RewardZeroPool();
        if (amount > type(uint96).max) revert RewardPoolTooLarge(amount);
        // Effects
        uint64 deadline = uint64(block.timestamp) + claimWindow;
        _epochRounds[msg.sender][epoch] = EpochRound({
            root: root,
            total: uint96(amount), // safe: checked <= type(uint96).max above
            claimed: 0,
            claimDeadline: deadline,
            swept: false
        });
        emit EpochRoundOpened(msg.sender, epoch, root, amount, deadline, treeCID);
        // Interactions: the round is funded by construction (reverts without allowance/balance).
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Claims `amount` for `account` from `roundFunder`'s epoch round `epoch` (anyone may send
    /// it; the tokens go to `account`). Emits {EpochClaimed}.
    /// @dev The leaf is `keccak256(bytes.concat(keccak256(abi.encode(roundFunder, epoch, index,
    /// account, amount))))`: five words where a job-round leaf has four. Why a job-round proof cannot
    /// be replayed here (nor an epoch proof there): the roots live in separate mappings, and even a
    /// funder that opened an epoch round with a job round's root (roots are public) gets no job leaf
    /// accepted, because the inner preimage of every epoch leaf is 160 bytes and of every job leaf
    /// 128, so equal leaves need a keccak256 collision; leaves are double-hashed, so no 64-byte
    /// internal node passes as a leaf either. Naming the funder in the leaf also binds a published
    /// tree to the funder that paid for it (another funder re-posting the root cannot reuse its
    /// proofs), and a separate bitmap keeps claims of the two kinds apart.
    /// @param roundFunder Who opened the round (an InferenceEscrow for fee-funded rounds).
    /// @param epoch The round's epoch key (for escrow rounds, the escrow's round id).
    /// @param index The leaf's claim index (a bit of the round's claimed bitmap).
    /// @param account Who is paid.
    /// @param amount OPEN base units.
    /// @param proof Sibling hashes from the leaf to the root.
    function claimEpoch(
        address roundFunder,
        uint256 epoch,
        uint256 index,
        address account,
        uint256 amount,
        bytes32[] calldata proof
    ) external {
        EpochRound storage r = _epochRounds[roundFunder][epoch];
        // Checks
        if (r.root == bytes32(0)) revert RewardUnknownEpochRound(roundFunder, epoch);
        if (block.timestamp > r.claimDeadline) revert RewardEpochClaimWindowClosed(roundFunder, epoch, r.claimDeadline);
        if (isEpochClaimed(roundFunder, epoch, index)) revert RewardEpochAlreadyClaimed(roundFunder, epoch, index);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(roundFunder, epoch, index, account, amount))));
        if (!MerkleProof.verifyCalldata(proof, r.root, leaf)) {
            revert RewardInvalidEpochProof(roundFunder, epoch, index, account, amount);
        }
        uint256 claimedAfter = uint256(r.claimed) + amount;
        if (claimedAfter > r.total) revert RewardEpochExceedsFunding(roundFunder, epoch, r.claimed, amount, r.total);
        // Effects
        _epochClaimedBitmap[roundFunder][epoch][index >> 8] |= (1 << (index & 0xff));
        r.claimed = uint96(claimedAfter); // safe: claimedAfter <= total, a uint96
        emit EpochClaimed(roundFunder, epoch, index, account, amount);
        // Interactions
        token.safeTransfer(account, amount);
    }

    /// @notice After the claim window, returns what was not claimed of `roundFunder`'s epoch round
    /// `epoch` to `roundFunder` (anyone may call). Emits {EpochSwept}.
    /// @param roundFunder Who opened the round, and who gets the remainder.
    /// @param epoch The round's epoch key.
    function sweepEpoch(address roundFunder, uint256 epoch) external {
        EpochRound storage r = _epochRounds[roundFunder][epoch];
        // Checks
        if (r.root == bytes32(0)) revert RewardUnknownEpochRound(roundFunder, epoch);
        if (block.timestamp <= r.claimDeadline) revert RewardEpochClaimWindowOpen(roundFunder, epoch, r.claimDeadline);
        if (r.swept) revert RewardEpochAlreadySwept(roundFunder, epoch);
        // Effects
        uint256 remainder = uint256(r.total) - r.claimed;
        r.swept = true;
        emit EpochSwept(roundFunder, epoch, remainder);
        // Interactions
        if (remainder != 0) token.safeTransfer(roundFunder, remainder);
    }

    /// @notice Whether leaf `index` of `roundFunder`'s epoch round `epoch` has been claimed.
    /// @return True once claimed.
    function isEpochClaimed(address roundFunder, uint256 epoch, uint256 index) public view returns (bool) {
        return (_epochClaimedBitmap[roundFunder][epoch][index >> 8] >> (index & 0xff)) & 1 == 1;
    }

    /// @notice `roundFunder`'s epoch round `epoch` (root zero if none).
    /// @return The round.
    function getEpochRound(address roundFunder, uint256 epoch) external view returns (EpochRound memory) {
        return _epochRounds[roundFunder][epoch];
    }

    /// @notice Whether leaf `index` of `roundFunder`'s round `jobId` has been claimed.
    function isClaimed(address roundFunder, uint256 jobId, uint256 index) public view returns (bool) {
        return (_claimedBitmap[roundFunder][jobId][index >> 8] >> (index & 0xff)) & 1 == 1;
    }

    /// @notice `roundFunder`'s reward round of `jobId` (root zero if none).
    function getRound(address roundFunder, uint256 jobId) external view returns (Round memory) {
        return _rounds[roundFunder][jobId];
    }

    /// @notice How `pool` splits for the given fees and number of Datanets. Rounding dust stays
    /// with the contributors, so the three parts always add up to `pool` exactly.
    function splitPool(uint256 pool, uint16 nodeFeeBps, uint16 datanetFeeBps, uint256 datanets)
        public
        pure
        returns (Split memory s)
    {
        s.nodeFee = (pool * nodeFeeBps) / MAX_BPS;
        s.datanetFeeEach = datanets == 0 ? 0 : (pool * datanetFeeBps) / MAX_BPS / datanets;
        s.contributors = pool - s.nodeFee - s.datanetFeeEach * datanets;
    }

    function _payFee(uint256 jobId, address to, uint256 amount, bool toNode) private {
        if (amount == 0) return;
        emit FeePaid(msg.sender, jobId, to, amount, toNode);
        token.safeTransfer(to, amount);
    }
}
