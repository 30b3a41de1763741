// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title NodeStaking
/// @notice Node operators bond OPEN to be allowed to claim fine-tuning jobs. Each claim reserves a
/// bond out of the node's active stake (the job registry sizes it from the job's pool), so a node
/// holds only as many jobs as its stake covers, and a reserved bond can neither be unbonded nor
/// back a second job. A proven fault (a claimed job left to expire or to overrun its training
/// time) is slashed from that job's bond, which stays reserved until the job ends, so no fault can
/// be escaped by unbonding first. Unbonding free stake takes `unbondingPeriod` (at most
/// MAX_UNBONDING_PERIOD).
contract NodeStaking is AccessControl {
    using SafeERC20 for IERC20;


    struct Stake {
        uint256 active; // bonded; counts towards eligibility and bonds
        uint256 reserved; // the part of `active` backing claimed jobs: neither unbondable nor reusable
        uint256 unbonding; // on its way out, still slashable
        uint64 unbondingEndsAt; // when `unbonding` may be withdrawn
        uint32 jobs; // claimed jobs whose bonds are reserved
    }

    /// @notice The longest unbonding period the admin may set: a stake is never bonded forever, and
    /// `block.timestamp + unbondingPeriod` can never overflow (a huge period made requestUnbond
    /// revert with a panic, so no node could ever leave).
    uint64 public constant MAX_UNBONDING_PERIOD = 365 days;

    IERC20 public immutable token;
    /// @notice The account that wires {jobManager}, once, at deployment; it has no other power.
    address public immutable deployer;
    /// @notice The one contract that may reserve, release and slash bonds: the ModelRegistry, wired
    /// once at deployment ({setJobManager}) and never changed. A role the admin could grant (as
    /// before) would let the admin make itself job manager and slash every bond to itself.
    address public jobManager;
    /// @notice Minimum active stake to claim a job.
    uint256 public minStake;
    /// @notice Seconds between `requestUnbond` and `withdraw`.
    uint64 public unbondingPeriod;

    mapping(address node => Stake) private _stakes;

    error NodeStakingZeroAmount();
    error NodeStakingInsufficientActive(address node, uint256 active, uint256 requested);
    error NodeStakingNothingToWithdraw(address node);
    error NodeStakingStillUnbonding(address node, uint64 unbondingEndsAt);
    error NodeStakingInsufficientFree(address node, uint256 free, uint256 needed);
    error NodeStakingNotReserved(address node, uint256 reserved, uint256 amount);
    error NodeStakingSlashExceedsBond(uint256 amount, uint256 bond);
    error NodeStakingInvalidParameter(string parameter);
    error NodeStakingNotJobManager(address caller);
    error NodeStakingJobManagerSet(address jobManager);
    error NodeStakingNotDeployer(address caller);

    /// @notice Emitted when `node` adds `amount` to its active stake.
    event Staked(address indexed node, uint256 amount, uint256 active);
    /// @notice Emitted when `node` moves `amount` from active to unbonding.
    event UnbondRequested(address indexed node, uint256 amount, uint64 unbondingEndsAt);
    /// @notice Emitted when `node` withdraws its unbonded stake.
    event Withdrawn(address indexed node, uint256 amount);
    /// @notice Emitted when `amount` of `node`'s stake is slashed to `recipient`.
    event Slashed(address indexed node, address indexed recipient, uint256 amount, bytes32 reason);
    /// @notice Emitted when a claim reserves `amount` of `node`'s stake as a job's bond.
    event BondReserved(address indexed node, uint256 amount, uint256 reserved, uint32 jobs);
    /// @notice Emitted when a job's bond is released back to `node`'s free stake.
    event BondReleased(address indexed node, uint256 amount, uint256 reserved, uint32 jobs);
    /// @notice Emitted once, when the deployment wires the job manager.
    event JobManagerSet(address indexed jobManager);
    /// @notice Emitted when the admin changes the staking parameters.
    event ParametersSet(uint256 minStake, uint64 unbondingPeriod);

    /// @param token_ The OPEN token.
    /// @param admin Holds DEFAULT_ADMIN_ROLE: sets the (bounded) parameters. A deployment makes it the
    /// ProtocolTimelock, so every change waits at least an unbonding period plus a challenge window.
    /// @param minStake_ Minimum active stake to claim a job.
    /// @param unbondingPeriod_ Seconds a stake stays slashable after `requestUnbond`.
    constructor(IERC20 token_, address admin, uint256 minStake_, uint64 unbondingPeriod_) {
        if (unbondingPeriod_ > MAX_UNBONDING_PERIOD) revert NodeStakingInvalidParameter("unbondingPeriod");
        token = token_;
        deployer = msg.sender;
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit ParametersSet(minStake_, unbondingPeriod_);
    }

    modifier onlyJobManager() {
        if (msg.sender != jobManager) revert NodeStakingNotJobManager(msg.sender); // unset (0): no caller matches
        _;
    }

    /// @notice Wires the job manager (the ModelRegistry): the deployer only, once. Emits {JobManagerSet}.
    function setJobManager(address jobManager_) external {
        if (msg.sender != deployer) revert NodeStakingNotDeployer(msg.sender);
        if (jobManager != address(0)) revert NodeStakingJobManagerSet(jobManager);
        if (jobManager_ == address(0)) revert NodeStakingInvalidParameter("jobManager");
        jobManager = jobManager_;
        emit JobManagerSet(jobManager_);
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

    /// @notice Starts unbonding `amount` of the caller's free stake (active minus reserved bonds);
    /// it stays slashable until withdrawn. Restarts the unbonding clock for everything unbonding.
    /// Emits {UnbondRequested}.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert NodeStakingZeroAmount();
        Stake storage s = _stakes[msg.sender];
        uint256 free = s.active - s.reserved;
        if (free < amount) revert NodeStakingInsufficientActive(msg.sender, free, amount);
        s.active -= amount;
        s.unbonding += amount;
        s.unbondingEndsAt = uint64(block.timestamp) + unbondingPeriod;
        emit UnbondRequested(msg.sender, amount, s.unbondingEndsAt);
    }

    /// @notice Withdraws all unbonded stake once the period has passed (a reserved bond is never
    /// unbonding, so jobs in flight stay covered). Emits {Withdrawn}.
    function withdraw() external {
        Stake storage s = _stakes[msg.sender];
        uint256 amount = s.unbonding;
        // Checks
        if (amount == 0) revert NodeStakingNothingToWithdraw(msg.sender);
        if (block.timestamp < s.unbondingEndsAt) revert NodeStakingStillUnbonding(msg.sender, s.unbondingEndsAt);
        // Effects
        s.unbonding = 0;
        emit Withdrawn(msg.sender, amount);
        // Interactions
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Reserves `amount` of `node`'s free stake as the bond of one claimed job. Reverts
    /// unless the node has at least `minStake` active and `amount` free. Emits {BondReserved}.
    function reserve(address node, uint256 amount) external onlyJobManager {
        Stake storage s = _stakes[node];
        uint256 free = s.active - s.reserved;
        if (s.active < minStake || s.active == 0 || free < amount) {
            revert NodeStakingInsufficientFree(node, free, amount);
        }
        s.reserved += amount;
        s.jobs += 1;
        emit BondReserved(node, amount, s.reserved, s.jobs);
    }

    /// @notice Releases one job's bond `amount` back to `node`'s free stake. Emits {BondReleased}.
    function release(address node, uint256 amount) external onlyJobManager {
        _release(node, amount);
    }

    /// @notice Releases one job's `bond` and slashes `amount` (at most the bond) of it to
    /// `recipient`. The bond was reserved out of active stake, so the whole `amount` is always
    /// there: a penalty does not shrink with earlier faults. Emits {BondReleased} and {Slashed}.
    function slashBond(address node, uint256 bond, uint256 amount, address recipient, bytes32 reason)
        external
        onlyJobManager
    {
        if (amount > bond) revert NodeStakingSlashExceedsBond(amount, bond);
        _release(node, bond);
        _stakes[node].active -= amount; // safe: amount <= bond <= reserved <= active before release
        emit Slashed(node, recipient, amount, reason);
        if (amount != 0) token.safeTransfer(recipient, amount);
    }

    /// @notice Sets the minimum stake and the unbonding period. Emits {ParametersSet}.
    function setParameters(uint256 minStake_, uint64 unbondingPeriod_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (unbondingPeriod_ > MAX_UNBONDING_PERIOD) revert NodeStakingInvalidParameter("unbondingPeriod");
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

    /// @notice `node`'s active stake not reserved by claimed jobs: what new bonds can come from.
    function freeStake(address node) external view returns (uint256) {
        Stake storage s = _stakes[node];
        return s.active - s.reserved;
    }

    function _release(address node, uint256 amount) private {
        Stake storage s = _stakes[node];
        if (s.reserved < amount || s.jobs == 0) revert NodeStakingNotReserved(node, s.reserved, amount);
        s.reserved -= amount;
        s.jobs -= 1;
        emit BondReleased(node, amount, s.reserved, s.jobs);
    }

    function _stake(address node, uint256 amount) private {
        if (amount == 0) revert NodeStakingZeroAmount();
        Stake storage s = _stakes[node];
        s.active += amount;
        emit Staked(node, amount, s.active);
        token.safeTransferFrom(node, address(this), amount);
    }
}
