// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title NodeStaking
/// @notice Node operators bond OPEN to be allowed to claim fine-tuning jobs. A bond backs the
/// operator's promise to deliver: the job registry locks it while a job is in flight and slashes
/// it for a proven fault (a claimed job left to expire). Unbonding takes `unbondingPeriod`, so a
/// fault found shortly after cannot be escaped by withdrawing first.
contract NodeStaking is AccessControl {
    using SafeERC20 for IERC20;

    /// @notice May lock/unlock stakes and slash them (granted to the ModelRegistry).
    bytes32 public constant JOB_MANAGER_ROLE = keccak256("JOB_MANAGER_ROLE");

    struct Stake {
        uint256 active; // counts towards eligibility
        uint256 unbonding; // on its way out, still slashable
        uint64 unbondingEndsAt; // when `unbonding` may be withdrawn
        uint32 locks; // jobs in flight; no withdrawal while > 0
    }

    IERC20 public immutable token;
    /// @notice Minimum active stake to claim a job.
    uint256 public minStake;
    /// @notice Seconds between `requestUnbond` and `withdraw`.
    uint64 public unbondingPeriod;

    mapping(address node => Stake) private _stakes;

    error NodeStakingZeroAmount();
    error NodeStakingInsufficientActive(address node, uint256 active, uint256 requested);
    error NodeStakingNothingToWithdraw(address node);
    error NodeStakingStillUnbonding(address node, uint64 unbondingEndsAt);
    error NodeStakingLocked(address node, uint32 locks);
    error NodeStakingNotLocked(address node);

    /// @notice Emitted when `node` adds `amount` to its active stake.
    event Staked(address indexed node, uint256 amount, uint256 active);
    /// @notice Emitted when `node` moves `amount` from active to unbonding.
    event UnbondRequested(address indexed node, uint256 amount, uint64 unbondingEndsAt);
    /// @notice Emitted when `node` withdraws its unbonded stake.
    event Withdrawn(address indexed node, uint256 amount);
    /// @notice Emitted when `amount` of `node`'s stake is slashed to `recipient`.
    event Slashed(address indexed node, address indexed recipient, uint256 amount, bytes32 reason);
    /// @notice Emitted when a job manager locks or unlocks `node`'s stake.
    event LockChanged(address indexed node, uint32 locks);
    /// @notice Emitted when the admin changes the staking parameters.
    event ParametersSet(uint256 minStake, uint64 unbondingPeriod);

    /// @param token_ The OPEN token.
    /// @param admin Holds DEFAULT_ADMIN_ROLE (grants JOB_MANAGER_ROLE, sets parameters).
    /// @param minStake_ Minimum active stake to claim a job.
    /// @param unbondingPeriod_ Seconds a stake stays slashable after `requestUnbond`.
    constructor(IERC20 token_, address admin, uint256 minStake_, uint64 unbondingPeriod_) {
        token = token_;
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit ParametersSet(minStake_, unbondingPeriod_);
    }

    /// @notice Bonds `amount` OPEN (needs an allowance). Emits {Staked}.
    function stake(uint256 amount) external {
        _stake(msg.sender, amount);
    }

    /// @notice Bonds `amount` OPEN using an EIP-2612 permit instead of an allowance. Emits {Staked}.
    /// @dev The permit call may fail if someone front-ran it; the allowance then already exists.
    function stakeWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _stake(msg.sender, amount);
    }

    /// @notice Starts unbonding `amount` of the caller's active stake; it stays slashable until
    /// withdrawn. Restarts the unbonding clock for everything unbonding. Emits {UnbondRequested}.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert NodeStakingZeroAmount();
        Stake storage s = _stakes[msg.sender];
        if (s.active < amount) revert NodeStakingInsufficientActive(msg.sender, s.active, amount);
        s.active -= amount;
        s.unbonding += amount;
        s.unbondingEndsAt = uint64(block.timestamp) + unbondingPeriod;
        emit UnbondRequested(msg.sender, amount, s.unbondingEndsAt);
    }

    /// @notice Withdraws all unbonded stake once the period has passed and no job is in flight.
    /// Emits {Withdrawn}.
    function withdraw() external {
        Stake storage s = _stakes[msg.sender];
        uint256 amount = s.unbonding;
        // Checks
        if (amount == 0) revert NodeStakingNothingToWithdraw(msg.sender);
        if (block.timestamp < s.unbondingEndsAt) revert NodeStakingStillUnbonding(msg.sender, s.unbondingEndsAt);
        if (s.locks != 0) revert NodeStakingLocked(msg.sender, s.locks);
        // Effects
        s.unbonding = 0;
        emit Withdrawn(msg.sender, amount);
        // Interactions
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Marks one more job in flight for `node`, blocking withdrawals. Emits {LockChanged}.
    function lock(address node) external onlyRole(JOB_MANAGER_ROLE) {
        Stake storage s = _stakes[node];
        s.locks += 1;
        emit LockChanged(node, s.locks);
    }

    /// @notice Releases one job lock of `node`. Emits {LockChanged}.
    function unlock(address node) external onlyRole(JOB_MANAGER_ROLE) {
        Stake storage s = _stakes[node];
        if (s.locks == 0) revert NodeStakingNotLocked(node);
        s.locks -= 1;
        emit LockChanged(node, s.locks);
    }

    /// @notice Slashes up to `amount` of `node`'s stake (active first, then unbonding) to
    /// `recipient`. Returns what was actually slashed. Emits {Slashed}.
    function slash(address node, uint256 amount, address recipient, bytes32 reason)
        external
        onlyRole(JOB_MANAGER_ROLE)
        returns (uint256 slashed)
    {
        Stake storage s = _stakes[node];
        uint256 fromActive = amount < s.active ? amount : s.active;
        uint256 rest = amount - fromActive;
        uint256 fromUnbonding = rest < s.unbonding ? rest : s.unbonding;
        s.active -= fromActive;
        s.unbonding -= fromUnbonding;
        slashed = fromActive + fromUnbonding;
        emit Slashed(node, recipient, slashed, reason);
        if (slashed != 0) token.safeTransfer(recipient, slashed);
    }

    /// @notice Sets the minimum stake and the unbonding period. Emits {ParametersSet}.
    function setParameters(uint256 minStake_, uint64 unbondingPeriod_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
        emit ParametersSet(minStake_, unbondingPeriod_);
    }

    /// @notice The full stake record of `node`.
    function stakeOf(address node) external view returns (Stake memory) {
        return _stakes[node];
    }

    /// @notice Whether `node` has a non-zero active stake of at least `minStake`.
    function isEligible(address node) external view returns (bool) {
        uint256 active = _stakes[node].active;
        return active != 0 && active >= minStake;
    }

    function _stake(address node, uint256 amount) private {
        if (amount == 0) revert NodeStakingZeroAmount();
        Stake storage s = _stakes[node];
        s.active += amount;
        emit Staked(node, amount, s.active);
        token.safeTransferFrom(node, address(this), amount);
    }
}
