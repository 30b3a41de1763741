// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title UniswapStyleDistributor
/// @notice A gas baseline for benchmarks/gas.py, not part of the protocol: the claim path of
/// Uniswap's MerkleDistributor, written from its description. One immutable token and root; the
/// leaf is `keccak256(abi.encodePacked(index, account, amount))`, hashed once; the proof is checked
/// with `MerkleProof.verify` over sorted pairs; claimed indices live in a packed bitmap; the
/// tokens go out with one ERC-20 transfer. Its choices (single-hashed packed leaf, proof copied to
/// memory, unindexed event) are kept on purpose, so that its gas is the original's; the
/// protocol's RewardDistributor does not copy them.
contract UniswapStyleDistributor {
    using SafeERC20 for IERC20;

    IERC20 public immutable token;
    bytes32 public immutable merkleRoot;

    mapping(uint256 word => uint256 bits) private _claimedBitmap;

    error UniswapStyleAlreadyClaimed(uint256 index);
    error UniswapStyleInvalidProof(uint256 index, address account, uint256 amount);

    /// @notice Emitted when `amount` is paid to `account` for leaf `index`.
    event Claimed(uint256 index, address account, uint256 amount);

    /// @param token_ The token paid out (the contract must hold enough of it).
    /// @param merkleRoot_ Root of the sorted-pair tree of packed `(index, account, amount)` leaves.
    constructor(IERC20 token_, bytes32 merkleRoot_) {
        token = token_;
        merkleRoot = merkleRoot_;
    }

    /// @notice Whether leaf `index` has been claimed.
    function isClaimed(uint256 index) public view returns (bool) {
        uint256 mask = 1 << (index % 256);
        return _claimedBitmap[index / 256] & mask == mask;
    }

    /// @notice Pays `amount` to `account` for leaf `index` of the tree (anyone may send it).
    /// Emits {Claimed}.
    function claim(uint256 index, address account, uint256 amount, bytes32[] calldata merkleProof) external {
        // Checks
        if (isClaimed(index)) revert UniswapStyleAlreadyClaimed(index);
        bytes32 leaf = keccak256(abi.encodePacked(index, account, amount));
        if (!MerkleProof.verify(merkleProof, merkleRoot, leaf)) {
            revert UniswapStyleInvalidProof(index, account, amount);
        }
        // Effects
        _claimedBitmap[index / 256] |= 1 << (index % 256);
        // Interactions
        token.safeTransfer(account, amount);
        emit Claimed(index, account, amount);
    }
}
