"""Reward trees (OpenZeppelin StandardMerkleTree compatible), proofs and claims."""
