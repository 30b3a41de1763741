// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title ScoreLeafVerifier
/// @notice Test-only: checks a scores-tree leaf exactly as an on-chain challenge will, so
/// tests/test_scores_tree.py can hold node/rewards/scores_tree.py to Solidity's hashing and to
/// OpenZeppelin's `MerkleProof.verify`. Not part of the protocol.
contract ScoreLeafVerifier {
    /// @notice The leaf hash of one example's committed score.
    /// @param index Manifest index of the example.
    /// @param contributionId Its contribution.
    /// @param contributor Its contributor.
    /// @param score Its quantised score.
    /// @param runningTotal Sum of the scores of examples 0..index.
    /// @param gradientsHash Hash of its projected gradients.
    /// @return The double keccak of the standard ABI encoding (OpenZeppelin's StandardMerkleTree leaf).
    function leafHash(
        uint256 index,
        uint256 contributionId,
        address contributor,
        int256 score,
        int256 runningTotal,
        bytes32 gradientsHash
    ) public pure returns (bytes32) {
        return keccak256(
            bytes.concat(keccak256(abi.encode(index, contributionId, contributor, score, runningTotal, gradientsHash)))
        );
    }

    /// @notice Whether `proof` shows the leaf under `root`.
    /// @param proof Sibling hashes from the leaf up.
    /// @param root The scores root.
    /// @param index Manifest index of the example.
    /// @param contributionId Its contribution.
    /// @param contributor Its contributor.
    /// @param score Its quantised score.
    /// @param runningTotal Sum of the scores of examples 0..index.
    /// @param gradientsHash Hash of its projected gradients.
    /// @return True if the proof verifies.
    function verify(
        bytes32[] calldata proof,
        bytes32 root,
        uint256 index,
        uint256 contributionId,
        address contributor,
        int256 score,
        int256 runningTotal,
        bytes32 gradientsHash
    ) external pure returns (bool) {
        bytes32 leaf = leafHash(index, contributionId, contributor, score, runningTotal, gradientsHash);
        return MerkleProof.verify(proof, root, leaf);
    }
}
