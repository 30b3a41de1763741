"""The baseline's side of benchmarks/gas.py: a Uniswap MerkleDistributor-style tree (packed,
single-hashed leaves), plus the synthetic contributors and leaf choices both sides share."""

from __future__ import annotations

import hashlib

from eth_hash.auto import keccak

from node.rewards.merkle import hash_pair


class SortedPairTree:
    """A Uniswap MerkleDistributor-style tree: each level hashes neighbours as a sorted pair (what
    `MerkleProof.verify` expects) and moves an odd last node up as it is. Leaves stay in index
    order (Uniswap's sorts them by hash; the shape, so every proof length, is the same)."""

    def __init__(self, leaves: list[bytes]):
        self.layers = [leaves]
        while len(self.layers[-1]) > 1:
            layer = self.layers[-1]
            self.layers.append(
                [
                    hash_pair(layer[i], layer[i + 1]) if i + 1 < len(layer) else layer[i]
                    for i in range(0, len(layer), 2)
                ]
            )

    @property
    def root(self) -> bytes:
        return self.layers[-1][0]

    def proof(self, index: int) -> list[bytes]:
        proof = []
        for layer in self.layers[:-1]:
            if index ^ 1 < len(layer):
                proof.append(layer[index ^ 1])
            index //= 2
        return proof


def packed_leaf(index: int, account: str, amount: int) -> bytes:
    """`keccak256(abi.encodePacked(uint256 index, address account, uint256 amount))`."""
    return keccak(index.to_bytes(32, "big") + bytes.fromhex(account[2:]) + amount.to_bytes(32, "big"))


def same_word_neighbour(index: int, n: int) -> int | None:
    """Another leaf of `index`'s 256-leaf claimed-bitmap word, or None if it is alone there."""
    if index ^ 1 < n:
        return index ^ 1  # flipping bit 0 keeps index >> 8
    return index - 1 if index % 256 else None


def synthetic_accounts(n: int) -> list[str]:
    """`n` distinct, random-looking addresses (their calldata costs what real ones do)."""
    return [
        "0x" + hashlib.sha256(b"contributor" + i.to_bytes(8, "big")).digest()[:20].hex() for i in range(n)
    ]
