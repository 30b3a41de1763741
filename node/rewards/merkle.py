"""OpenZeppelin `StandardMerkleTree` ("standard-v1"), byte for byte, in Python.

Leaves are `keccak256(keccak256(abi.encode(types, values)))`; internal nodes hash their two
children in ascending byte order; the tree is a flat array of 2n-1 hashes (root at 0, children
of i at 2i+1 and 2i+2) whose last n slots hold the leaves, sorted by hash, in reverse. The dump
format is what `@openzeppelin/merkle-tree` reads and writes, so JS and Solidity tooling (and
`MerkleProof.verify`) accept our trees and proofs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import encode
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field

from node.errors import NodeError


class MerkleTreeError(NodeError, ValueError):
    """Bad input to a tree (no leaves, wrong value shape, a value not in the tree)."""


class LeafEntry(BaseModel):
    value: list[Any]
    treeIndex: int


class StandardTreeDump(BaseModel):
    """The JSON file format ("standard-v1")."""

    model_config = ConfigDict(populate_by_name=True)

    format: str = "standard-v1"
    leafEncoding: list[str]
    tree: list[str]
    values: list[LeafEntry] = Field(default_factory=list)


def leaf_hash(types: Sequence[str], value: Sequence[Any]) -> bytes:
    return keccak(keccak(encode(list(types), list(value))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class StandardMerkleTree:
    """Build with `of(values, types)`; `root`, `proof(i)`, `verify`, `dump()`, `load()`."""

    def __init__(self, tree: list[bytes], values: list[tuple[list[Any], int]], types: list[str]):
        self._tree = tree
        self._values = values  # (value, treeIndex) in input order
        self.leaf_encoding = types
        self._index_of_hash = {tree[ti]: i for i, (_, ti) in enumerate(values)}

    @classmethod
    def of(cls, values: Sequence[Sequence[Any]], types: Sequence[str]) -> StandardMerkleTree:
        if not values:
            raise MerkleTreeError("A Merkle tree needs at least one leaf; got none.")
        hashed = []
        for i, v in enumerate(values):
            if len(v) != len(types):
                raise MerkleTreeError(f"Leaf {i} has {len(v)} fields but the encoding has {len(types)}.")
            try:
                hashed.append((leaf_hash(types, v), i))
            except Exception as e:  # eth_abi raises several types for bad values
                raise MerkleTreeError(f"Leaf {i} ({list(v)!r}) does not encode as {list(types)}: {e}") from e
        hashed.sort(key=lambda hv: hv[0])
        n = len(hashed)
        tree: list[bytes] = [b""] * (2 * n - 1)
        tree_index = [0] * n
        for k, (h, i) in enumerate(hashed):
            pos = len(tree) - 1 - k
            tree[pos] = h
            tree_index[i] = pos
        for pos in range(len(tree) - 1 - n, -1, -1):
            tree[pos] = hash_pair(tree[2 * pos + 1], tree[2 * pos + 2])
        return cls(tree, [(list(values[i]), tree_index[i]) for i in range(n)], list(types))

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> list[list[Any]]:
        return [v for v, _ in self._values]

    def proof(self, index: int) -> list[bytes]:
        """Proof of the `index`-th value (input order); checked before it is returned."""
        if not 0 <= index < len(self._values):
            raise MerkleTreeError(f"Index {index} is out of range (tree has {len(self._values)} leaves).")
        value, pos = self._values[index]
        proof = []
        while pos > 0:
            sibling = pos - 1 if pos % 2 == 0 else pos + 1
            proof.append(self._tree[sibling])
            pos = (pos - 1) // 2
        if not self.verify(value, proof):
            raise AssertionError("invariant: a freshly built proof must verify")
        return proof

    def proof_for(self, value: Sequence[Any]) -> list[bytes]:
        h = leaf_hash(self.leaf_encoding, value)
        if h not in self._index_of_hash:
            raise MerkleTreeError(f"Value {list(value)!r} is not a leaf of this tree.")
        return self.proof(self._index_of_hash[h])

    def verify(self, value: Sequence[Any], proof: Sequence[bytes]) -> bool:
        return process_proof(leaf_hash(self.leaf_encoding, value), proof) == self.root

    def dump(self) -> StandardTreeDump:
        return StandardTreeDump(
            leafEncoding=self.leaf_encoding,
            tree=["0x" + h.hex() for h in self._tree],
            values=[LeafEntry(value=[_jsonable(x) for x in v], treeIndex=ti) for v, ti in self._values],
        )

    @classmethod
    def load(cls, dump: StandardTreeDump | dict[str, Any]) -> StandardMerkleTree:
        d = dump if isinstance(dump, StandardTreeDump) else StandardTreeDump.model_validate(dump)
        if d.format != "standard-v1":
            raise MerkleTreeError(f"Unknown tree format {d.format!r}; expected 'standard-v1'.")
        tree = [bytes.fromhex(h[2:]) for h in d.tree]
        values = [([_from_json(t, x) for t, x in zip(d.leafEncoding, e.value, strict=True)], e.treeIndex) for e in d.values]
        loaded = cls(tree, values, d.leafEncoding)
        for v, ti in values:
            if tree[ti] != leaf_hash(d.leafEncoding, v):
                raise MerkleTreeError(f"Tree dump is corrupt: leaf at {ti} does not hash to its value.")
        for pos in range(len(tree) - 1 - len(values), -1, -1):
            if tree[pos] != hash_pair(tree[2 * pos + 1], tree[2 * pos + 2]):
                raise MerkleTreeError(f"Tree dump is corrupt: node {pos} is not the hash of its children.")
        return loaded


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    h = leaf
    for p in proof:
        h = hash_pair(h, p)
    return h


def _jsonable(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return str(x)  # the JS library writes big integers as decimal strings
    if isinstance(x, bytes):
        return "0x" + x.hex()
    return x


def _from_json(t: str, x: Any) -> Any:
    if t.startswith(("uint", "int")):
        return int(x)
    if t.startswith("bytes") and isinstance(x, str):
        return bytes.fromhex(x[2:])
    return x
