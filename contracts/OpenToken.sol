// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title OpenToken
/// @notice The OPEN ERC-20: the unit contributors stake, job posters fund pools with and
/// contributors are paid in. Fixed supply, minted once at deployment; EIP-2612 `permit`
/// lets wallets stake and fund in one transaction, without a separate `approve`.
contract OpenToken is ERC20, ERC20Permit {
    /// @notice Mints the whole `initialSupply` to `initialHolder`; there is no later minting.
    /// @param initialHolder Receives the supply (a treasury, or the deployer on a dev chain).
    /// @param initialSupply Total supply in base units (18 decimals).
    constructor(address initialHolder, uint256 initialSupply) ERC20("Open", "OPEN") ERC20Permit("Open") {
        _mint(initialHolder, initialSupply);
    }
}
