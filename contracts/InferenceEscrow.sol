// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {RewardDistributor} from "./RewardDistributor.sol";

/// @title InferenceEscrow
/// @notice Prepaid inference fees. A payer (the account behind API keys) deposits OPEN for one
/// serving node; at the end of an epoch the node charges payers for what it served and, in the same
/// call, the sum charged funds the node's epoch round in the RewardDistributor, where the
/// contributors whose examples the responses drew on claim it. Fees never reach the node's wallet:
/// they go from this contract straight into the round.
///
/// Rounds are opened with this contract as the funder and the round id `roundIdOf(node, epoch)`,
/// so two nodes settling the same epoch number cannot collide, and a node settles each epoch once.
/// A charge above the payer's balance reverts the whole settlement (it is not capped): the node
/// builds its reward tree from the exact total before it calls, so a capped total would fund less
/// than the tree pays out. Unspent funds leave after `withdrawDelay` (request, wait, withdraw) so a
/// node can still settle usage it served before the request; what a round's contributors do not
/// claim comes back here after its window ({refundUnclaimed}) and is credited to the charged payers
/// pro rata.
/// The epoch root is attested by the node alone: nothing recomputes it on-chain.
contract InferenceEscrow is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice A payer's funds for one node.
    struct Account {
        uint256 balance; // chargeable and withdrawable OPEN
        uint256 requested; // what the pending withdrawal asks for (0: none); still chargeable
        uint64 readyAt; // when the pending withdrawal may be taken
    }

    /// @notice What one payer is charged in a settlement.
    struct Charge {
        address payer;
        uint256 amount;
    }

    /// @notice One node's settled epoch.
    struct Settlement {
        bytes32 chargesHash; // keccak256(abi.encode(charges)); zero: not settled
        bool refunded; // the round's unclaimed remainder was credited back
    }

    IERC20 public immutable token;
    RewardDistributor public immutable rewards;
    /// @notice Seconds from a withdrawal request until it may be taken.
    uint64 public immutable withdrawDelay;

    mapping(address payer => mapping(address node => Account)) private _accounts;
    mapping(address node => mapping(uint256 epoch => Settlement)) private _settlements;

    error EscrowZeroNode();
    error EscrowZeroAmount();
    error EscrowInsufficientBalance(address payer, address node, uint256 balance, uint256 amount);
    error EscrowNoWithdrawRequest(address payer, address node);
    error EscrowWithdrawNotReady(address payer, address node, uint64 readyAt);
    error EscrowEpochSettled(address node, uint256 epoch);
    error EscrowNothingCharged(address node, uint256 epoch);
    error EscrowUnknownSettlement(address node, uint256 epoch);
    error EscrowWrongCharges(address node, uint256 epoch);
    error EscrowAlreadyRefunded(address node, uint256 epoch);
    error EscrowClaimWindowOpen(address node, uint256 epoch, uint64 claimDeadline);

    /// @notice Emitted when `payer` deposits `amount` OPEN for `node`.
    event Deposited(address indexed payer, address indexed node, uint256 amount, uint256 balance);
    /// @notice Emitted when `payer` asks to withdraw `amount` from its funds for `node`.
    event WithdrawRequested(address indexed payer, address indexed node, uint256 amount, uint64 readyAt);
    /// @notice Emitted when `payer` takes back `amount` of its funds for `node`.
    event Withdrawn(address indexed payer, address indexed node, uint256 amount, uint256 balance);
    /// @notice Emitted per payer charged when `node` settles `epoch`.
    event Charged(address indexed node, uint256 indexed epoch, address indexed payer, uint256 amount, uint256 balance);
    /// @notice Emitted once per settlement, after its {Charged} events: `total` funded the
    /// RewardDistributor's epoch round (this contract, `roundId`) under `root`.
    event Settled(
        address indexed node,
        uint256 indexed epoch,
        uint256 indexed roundId,
        bytes32 root,
        uint256 total,
        uint256 payers,
        string treeCID
    );
    /// @notice Emitted per payer credited when the unclaimed remainder of `node`'s `epoch` comes back.
    event Refunded(address indexed node, uint256 indexed epoch, address indexed payer, uint256 amount);

    /// @param token_ The OPEN token.
    /// @param rewards_ The RewardDistributor whose epoch rounds settlements fund.
    /// @param withdrawDelay_ Seconds a payer waits between requesting and taking a withdrawal.
    constructor(IERC20 token_, RewardDistributor rewards_, uint64 withdrawDelay_) {
        token = token_;
        rewards = rewards_;
        withdrawDelay = withdrawDelay_;
    }

    /// @notice Deposits `amount` OPEN (approve this contract first) for `node` to charge. Emits {Deposited}.
    /// @param node The serving node the funds are for.
    /// @param amount OPEN base units.
    function deposit(address node, uint256 amount) external nonReentrant {
        // Checks
        if (node == address(0)) revert EscrowZeroNode();
        if (amount == 0) revert EscrowZeroAmount();
        // Effects
        Account storage a = _accounts[msg.sender][node];
        a.balance += amount;
        emit Deposited(msg.sender, node, amount, a.balance);
        // Interactions
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Asks to withdraw `amount` of the caller's funds for `node` after `withdrawDelay`;
    /// replaces an earlier request (and restarts its wait). The funds stay chargeable meanwhile.
    /// Emits {WithdrawRequested}.
    /// @param node The serving node the funds are for.
    /// @param amount OPEN base units, at most the balance now.
    function requestWithdraw(address node, uint256 amount) external {
        Account storage a = _accounts[msg.sender][node];
        if (amount == 0) revert EscrowZeroAmount();
        if (amount > a.balance) revert EscrowInsufficientBalance(msg.sender, node, a.balance, amount);
        uint64 readyAt = uint64(block.timestamp) + withdrawDelay;
        a.requested = amount;
        a.readyAt = readyAt;
        emit WithdrawRequested(msg.sender, node, amount, readyAt);
    }

    /// @notice Takes the requested withdrawal once its delay has passed: the requested amount, or
    /// the balance if charges since the request left less. Emits {Withdrawn}.
    /// @param node The serving node the funds were for.
    /// @return amount What was paid to the caller.
    function withdraw(address node) external nonReentrant returns (uint256 amount) {
        Account storage a = _accounts[msg.sender][node];
        // Checks
        if (a.requested == 0) revert EscrowNoWithdrawRequest(msg.sender, node);
        if (block.timestamp < a.readyAt) revert EscrowWithdrawNotReady(msg.sender, node, a.readyAt);
        // Effects
        amount = a.requested < a.balance ? a.requested : a.balance;
        a.balance -= amount;
        a.requested = 0;
        a.readyAt = 0;
        emit Withdrawn(msg.sender, node, amount, a.balance);
        // Interactions
        if (amount != 0) token.safeTransfer(msg.sender, amount);
    }

    /// @notice The caller (a node) charges payers for `epoch` and funds its epoch round with exactly
    /// the sum charged, under `root`. Each charge must be at most what that payer holds for the
    /// caller at that point (else the whole call reverts); a payer may appear more than once.
    /// Emits one {Charged} per charge, then {Settled} (and the distributor's {EpochRoundOpened}).
    /// @param epoch The node's epoch number; each settles once.
    /// @param root The root of the epoch's reward tree, whose leaves name this contract as funder
    /// and `roundIdOf(msg.sender, epoch)` as epoch.
    /// @param charges Who pays what.
    /// @param treeCID Where the tree dump is published.
    /// @return roundId The distributor's epoch key of the round.
    function settle(uint256 epoch, bytes32 root, Charge[] calldata charges, string calldata treeCID)
        external
        nonReentrant
        returns (uint256 roundId)
    {
        Settlement storage s = _settlements[msg.sender][epoch];
        // Checks and effects, per charge (each balance check sees the earlier charges).
        if (s.chargesHash != bytes32(0)) revert EscrowEpochSettled(msg.sender, epoch);
        uint256 total = 0;
        for (uint256 i = 0; i < charges.length; ++i) {
            Charge calldata c = charges[i];
            Account storage a = _accounts[c.payer][msg.sender];
            if (c.amount > a.balance) revert EscrowInsufficientBalance(c.payer, msg.sender, a.balance, c.amount);
            a.balance -= c.amount;
            total += c.amount;
            emit Charged(msg.sender, epoch, c.payer, c.amount, a.balance);
        }
        if (total == 0) revert EscrowNothingCharged(msg.sender, epoch);
        s.chargesHash = keccak256(abi.encode(charges)); // non-zero (a keccak256 output)
        roundId = roundIdOf(msg.sender, epoch);
        emit Settled(msg.sender, epoch, roundId, root, total, charges.length, treeCID);
        // Interactions: the distributor pulls exactly `total` from here in the same call.
        token.forceApprove(address(rewards), total);
        rewards.openEpochRound(roundId, root, total, treeCID);
    }

    /// @notice After the claim window of `node`'s round for `epoch`, credits what its contributors
    /// did not claim back to the charged payers (anyone may call; `charges` exactly as settled, from
    /// the {Charged} events), pro rata to their charges, the rounding dust to the last charge's
    /// payer; sweeps the round here first unless someone already did. Emits one {Refunded} per charge.
    /// @param node The node that settled.
    /// @param epoch The settled epoch.
    /// @param charges The settlement's charges, in order.
    function refundUnclaimed(address node, uint256 epoch, Charge[] calldata charges) external nonReentrant {
        Settlement storage s = _settlements[node][epoch];
        // Checks
        if (s.chargesHash == bytes32(0)) revert EscrowUnknownSettlement(node, epoch);
        if (s.refunded) revert EscrowAlreadyRefunded(node, epoch);
        if (keccak256(abi.encode(charges)) != s.chargesHash) revert EscrowWrongCharges(node, epoch);
        uint256 roundId = roundIdOf(node, epoch);
        RewardDistributor.EpochRound memory r = rewards.getEpochRound(address(this), roundId);
        if (block.timestamp <= r.claimDeadline) revert EscrowClaimWindowOpen(node, epoch, r.claimDeadline);
        // Effects: no claim can change `claimed` after the window, so the remainder is final.
        s.refunded = true;
        uint256 remainder = uint256(r.total) - r.claimed;
        uint256 credited = 0;
        for (uint256 i = 0; i < charges.length; ++i) {
            // r.total is the sum of the charges (settle funded exactly that), so this never exceeds `remainder`.
            uint256 share = (remainder * charges[i].amount) / r.total;
            if (i == charges.length - 1) share = remainder - credited; // the dust, added to the last share
            credited += share;
            _accounts[charges[i].payer][node].balance += share;
            emit Refunded(node, epoch, charges[i].payer, share);
        }
        // Interactions: bring the remainder here (a sweep by anyone else already did).
        if (!r.swept) rewards.sweepEpoch(address(this), roundId);
    }

    /// @notice `payer`'s funds for `node`.
    /// @return The account (balance, pending withdrawal, when it is ready).
    function accountOf(address payer, address node) external view returns (Account memory) {
        return _accounts[payer][node];
    }

    /// @notice `node`'s settlement of `epoch` (chargesHash zero if none).
    /// @return The settlement.
    function settlementOf(address node, uint256 epoch) external view returns (Settlement memory) {
        return _settlements[node][epoch];
    }

    /// @notice The RewardDistributor epoch key of `node`'s round for `epoch`.
    /// @return keccak256(abi.encode(node, epoch)) as a uint256.
    function roundIdOf(address node, uint256 epoch) public pure returns (uint256) {
        return uint256(keccak256(abi.encode(node, epoch)));
    }
}
