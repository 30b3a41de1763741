// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title ProtocolTimelock
/// @notice The only holder of the protocol's adjustable parameters (NodeStaking's `minStake` and
/// `unbondingPeriod`): OpenZeppelin's TimelockController, self-administered (no admin account).
/// `proposers` schedule a change, anyone executes it once `minDelay` has passed. The deployment
/// sets `minDelay` to at least the unbonding period plus the challenge window, so every node can
/// unbond and leave, and every result in flight can be finalized, before a change it dislikes
/// takes effect. Changing the delay itself goes through the same delay.
contract ProtocolTimelock is TimelockController {
    /// @param minDelay Seconds between scheduling and executing a change.
    /// @param proposers Accounts that may schedule (and cancel) changes.
    /// @param executors Accounts that may execute ready changes; `[address(0)]` lets anyone.
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors)
        TimelockController(minDelay, proposers, executors, address(0))
    {}
}
