"""OpenZeppelin `StandardMerkleTree` ("standard-v1"), byte for byte, in Python.

Leaves are `keccak256(keccak256(abi.encode(types, values)))`; internal nodes hash their two
children in ascending byte order; the tree is a flat array of 2n-1 hashes (root at 0, children
of i at 2i+1 and 2i+2) whose last n slots hold the leaves, sorted by hash, in reverse. The dump
format is what `@openzeppelin/merkle-tree` reads and writes, so JS and Solidity tooling (and
`MerkleProof.verify`) accept our trees and proofs unchanged.

Speed: reward trees reach 100k+ leaves, and eth_abi's generic `encode` is most of the build time.
Leaves made only of static words (`uintN`, `intN`, `address`, `bool`, `bytesN`) are encoded
here by hand (`_LeafEncoder`); any value off that fast path (a subclass of int, an unprefixed
address, an out-of-range number, ...) goes to eth_abi, so what is accepted, rejected and produced
is exactly what eth_abi does. tests/test_merkle.py checks both paths against eth_abi and the
whole tree against the JS library.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak
from pydantic import BaseModel, ConfigDict, Field

from node.errors import NodeError


class MerkleTreeError(NodeError, ValueError):
    """Bad input to a tree (no leaves, wrong value shape, a value not in the tree, a corrupt dump)."""


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


# ------------------------------------------------------------------ leaf encoding

_WordEncoder = Callable[[Any], bytes | None]
"""One static ABI type: a value's 32-byte word, or None to let eth_abi decide (and raise)."""

_ZERO12 = bytes(12)
_TRUE = (1).to_bytes(32, "big")
_FALSE = bytes(32)


def _uint(bits: int) -> _WordEncoder:
    limit = 1 << bits

    def word(x: Any) -> bytes | None:
        # `type(x) is int`: bools and int subclasses (IntEnum) take eth_abi's path.
        return x.to_bytes(32, "big") if type(x) is int and 0 <= x < limit else None

    return word


def _int(bits: int) -> _WordEncoder:
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def word(x: Any) -> bytes | None:
        return x.to_bytes(32, "big", signed=True) if type(x) is int and low <= x < high else None

    return word


def _address(x: Any) -> bytes | None:
    # eth_abi accepts any-case hex (it does not check EIP-55 checksums) or 20 raw bytes.
    if type(x) is str and len(x) == 42 and x[0] == "0" and x[1] in "xX":
        try:
            raw = bytes.fromhex(x[2:])
        except ValueError:
            return None
        return _ZERO12 + raw if len(raw) == 20 else None  # fromhex skips whitespace: reject it here
    if type(x) is bytes and len(x) == 20:
        return _ZERO12 + x
    return None


def _bool(x: Any) -> bytes | None:
    return (_TRUE if x else _FALSE) if type(x) is bool else None


def _fixed_bytes(size: int) -> _WordEncoder:
    def word(x: Any) -> bytes | None:
        return x.ljust(32, b"\0") if type(x) is bytes and len(x) <= size else None

    return word


_SIZED = re.compile(r"(uint|int|bytes)([1-9][0-9]*)")


def _word_encoder(abi_type: str) -> _WordEncoder | None:
    """The fast encoder of a static one-word type; None for any other type."""
    if abi_type == "address":
        return _address
    if abi_type == "bool":
        return _bool
    m = _SIZED.fullmatch(abi_type)
    if m is None:
        return None
    kind, size = m.group(1), int(m.group(2))
    if kind == "bytes":
        return _fixed_bytes(size) if size <= 32 else None
    if size % 8 or size > 256:
        return None
    return _uint(size) if kind == "uint" else _int(size)


class _LeafEncoder:
    """`abi.encode(types, value)`: static words concatenated by hand when possible, else eth_abi."""

    def __init__(self, types: tuple[str, ...]):
        self._types = list(types)
        words = [_word_encoder(t) for t in types]
        self._words: list[_WordEncoder] | None = (
            [w for w in words if w is not None] if all(w is not None for w in words) else None
        )

    def __call__(self, value: Sequence[Any]) -> bytes:
        words = self._words
        if words is not None and len(value) == len(words):
            parts = [w(x) for w, x in zip(words, value, strict=True)]
            if None not in parts:
                return b"".join(parts)  # type: ignore[arg-type]  # no None left
        return encode(self._types, list(value))


@lru_cache(maxsize=64)
def _leaf_encoder(types: tuple[str, ...]) -> _LeafEncoder:
    return _LeafEncoder(types)


def leaf_hash(types: Sequence[str], value: Sequence[Any]) -> bytes:
    return keccak(keccak(_leaf_encoder(tuple(types))(value)))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic GC while a tree is built, loaded or dumped. That allocates a few
    containers per leaf and no cycles, yet sets off collections that walk the whole heap again
    and again: ~40% of a 100k-leaf build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fill_internal_nodes(tree: list[bytes], n_leaves: int) -> None:
    """Hashes every internal node, bottom up (the last `n_leaves` slots hold the leaves)."""
    for pos in range(len(tree) - 1 - n_leaves, -1, -1):
        a, b = tree[2 * pos + 1], tree[2 * pos + 2]
        tree[pos] = keccak(a + b) if a < b else keccak(b + a)  # hash_pair, inlined: ~100k calls


# ------------------------------------------------------------------------ the tree


class StandardMerkleTree:
    """Build with `of(values, types)`; `root`, `proof(i)`, `verify`, `dump()`, `load()`."""

    def __init__(self, tree: list[bytes], values: list[tuple[list[Any], int]], types: list[str]):
        self._tree = tree
        self._values = values  # (value, treeIndex) in input order
        self.leaf_encoding = types
        self._index_of_hash = {tree[ti]: i for i, (_, ti) in enumerate(values)}

    @classmethod
    def of(cls, values: Sequence[Sequence[Any]], types: Sequence[str]) -> StandardMerkleTree:
        with _gc_paused():
            return cls._of(values, types)

    @classmethod
    def _of(cls, values: Sequence[Sequence[Any]], types: Sequence[str]) -> StandardMerkleTree:
        if not values:
            raise MerkleTreeError("A Merkle tree needs at least one leaf; got none.")
        encoder = _leaf_encoder(tuple(types))
        hashed = []
        for i, v in enumerate(values):
            if len(v) != len(types):
                raise MerkleTreeError(f"Leaf {i} has {len(v)} fields but the encoding has {len(types)}.")
            try:
                hashed.append((keccak(keccak(encoder(v))), i))
            except Exception as e:  # eth_abi raises several types for bad values
                raise MerkleTreeError(f"Leaf {i} ({list(v)!r}) does not encode as {list(types)}: {e}") from e
        hashed.sort(key=lambda hv: hv[0])  # stable: equal leaves keep input order, as in JS
        n = len(hashed)
        tree: list[bytes] = [b""] * (2 * n - 1)
        tree_index = [0] * n
        for k, (h, i) in enumerate(hashed):
            pos = len(tree) - 1 - k
            tree[pos] = h
            tree_index[i] = pos
        _fill_internal_nodes(tree, n)
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
        # model_construct: the fields are built right here, so validating 100k entries again
        # would only cost time (the JSON is identical).
        with _gc_paused():
            return self._dump()

    def _dump(self) -> StandardTreeDump:
        return StandardTreeDump.model_construct(
            format="standard-v1",
            leafEncoding=list(self.leaf_encoding),
            tree=["0x" + h.hex() for h in self._tree],
            values=[
                LeafEntry.model_construct(value=[_jsonable(x) for x in v], treeIndex=ti)
                for v, ti in self._values
            ],
        )

    @classmethod
    def load(cls, dump: StandardTreeDump | dict[str, Any]) -> StandardMerkleTree:
        """Reads a dump and checks all of it (as the JS library's `load` does)."""
        with _gc_paused():
            d = dump if isinstance(dump, StandardTreeDump) else StandardTreeDump.model_validate(dump)
            return cls._load(d)

    @classmethod
    def _load(cls, d: StandardTreeDump) -> StandardMerkleTree:
        if d.format != "standard-v1":
            raise MerkleTreeError(f"Unknown tree format {d.format!r}; expected 'standard-v1'.")
        tree, values = _parse_dump(d)
        for v, ti in values:
            if tree[ti] != leaf_hash(d.leafEncoding, v):
                raise MerkleTreeError(f"Tree dump is corrupt: leaf at {ti} does not hash to its value.")
        # Every node with children must be their hash; an even length leaves a node one child.
        if len(tree) % 2 == 0:
            raise MerkleTreeError(f"Tree dump is corrupt: {len(tree)} nodes; a tree has an odd number.")
        for pos in range((len(tree) - 1) // 2 - 1, -1, -1):
            if tree[pos] != hash_pair(tree[2 * pos + 1], tree[2 * pos + 2]):
                raise MerkleTreeError(f"Tree dump is corrupt: node {pos} is not the hash of its children.")
        return cls(tree, values, d.leafEncoding)


def _parse_dump(d: StandardTreeDump) -> tuple[list[bytes], list[tuple[list[Any], int]]]:
    """The dump's hashes and typed values; malformed entries raise `MerkleTreeError`."""
    if not d.tree:
        raise MerkleTreeError("Tree dump is corrupt: it has no nodes.")
    try:
        tree = [_node_from_hex(h) for h in d.tree]
        values = [
            ([_from_json(t, x) for t, x in zip(d.leafEncoding, e.value, strict=True)], e.treeIndex)
            for e in d.values
        ]
    except (ValueError, TypeError) as e:
        raise MerkleTreeError(f"Tree dump is corrupt: {e}") from e
    if any(len(h) != 32 for h in tree):
        raise MerkleTreeError("Tree dump is corrupt: every node must be a 32-byte hash.")
    bad = [ti for _, ti in values if not 0 <= ti < len(tree)]
    if bad:
        raise MerkleTreeError(f"Tree dump is corrupt: treeIndex {bad[0]} is outside the tree.")
    return tree, values


def _node_from_hex(h: str) -> bytes:
    if not h.startswith("0x"):
        raise ValueError(f"node {h!r} is not 0x-prefixed hex")
    return bytes.fromhex(h[2:])


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
