"""node/rewards/merkle.py against the reference: OpenZeppelin's JS `StandardMerkleTree`.

Every tree is built on both sides from the same values, and our dump (root, tree array, values
with treeIndex) and every proof must equal the library's exactly. Each test sends all its cases
to one `node tests/js/oz_merkle.cjs` process, so the suite stays fast. On-chain verification of
these proofs by `RewardDistributor.claim` is covered by tests/contracts and benchmarks/gas.py.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_abi.exceptions import EncodingError
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.config import REPO_ROOT
from node.rewards.merkle import MerkleTreeError, StandardMerkleTree, leaf_hash

OZ_SCRIPT = Path(__file__).parent / "js" / "oz_merkle.cjs"
REWARD_TYPES = ["uint256", "uint256", "address", "uint256"]  # (jobId, index, account, amount)

Case = tuple[list[str], list[list[Any]]]  # (leaf encoding, values)


# --------------------------------------------------------------------------- helpers


def oz(requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JS library's answers to `requests`, all from one node process."""
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "node_modules" / "@openzeppelin" / "merkle-tree").exists():
        pytest.skip("needs Node.js and `npm ci` (@openzeppelin/merkle-tree) for the reference tree")
    proc = subprocess.run(
        [node, str(OZ_SCRIPT)],
        input=json.dumps({"batch": list(requests)}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"oz_merkle.cjs failed:\n{proc.stderr}"
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def to_js(x: Any) -> Any:
    """A Python leaf field as the JS library takes it (big integers as decimal strings)."""
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return str(x)
    if isinstance(x, bytes):
        return "0x" + x.hex()
    return x


def build_request(types: list[str], values: list[list[Any]]) -> dict[str, Any]:
    return {"encoding": types, "values": [[to_js(x) for x in v] for v in values]}


def hexes(hashes: Sequence[bytes]) -> list[str]:
    return ["0x" + h.hex() for h in hashes]


def assert_same_as_js(tree: StandardMerkleTree, js: dict[str, Any], case: object = None) -> None:
    """Our dump, root and every proof equal the library's, exactly."""
    assert "error" not in js, f"the JS library refused {case!r}: {js.get('error')}"
    assert tree.dump().model_dump(mode="json") == js["dump"], f"dumps differ for {case!r}"
    assert "0x" + tree.root.hex() == js["root"]
    assert [hexes(tree.proof(i)) for i in range(len(tree))] == js["proofs"], f"proofs differ for {case!r}"


def address(i: int) -> str:
    return to_checksum_address(f"0x{i:040x}")


def reward_leaves(n: int, job_id: int = 7) -> list[list[Any]]:
    return [[job_id, i, address(0xC0FFEE00 + i), (i + 1) * 10**18] for i in range(n)]


# ------------------------------------------------------------------ fixed cases

FIXED_CASES: dict[str, Case] = {
    "reward, 1 leaf": (REWARD_TYPES, reward_leaves(1)),
    "reward, 2 leaves": (REWARD_TYPES, reward_leaves(2)),
    "reward, 3 leaves": (REWARD_TYPES, reward_leaves(3)),
    "reward, 5 leaves": (REWARD_TYPES, reward_leaves(5)),
    "reward, 8 leaves": (REWARD_TYPES, reward_leaves(8)),
    "reward, 33 leaves": (REWARD_TYPES, reward_leaves(33)),
    "reward, 257 leaves": (REWARD_TYPES, reward_leaves(257)),
    "reward, duplicates": (REWARD_TYPES, [*reward_leaves(3), reward_leaves(3)[1], reward_leaves(3)[1]]),
    "all leaves equal": (["uint256"], [[5], [5], [5], [5]]),
    "airdrop (address, uint256)": (
        ["address", "uint256"],
        [[address(0xA1), 10**18], [address(0xB2).lower(), 0], [address(0xC3), 2**256 - 1]],
    ),
    "bytes32": (["bytes32"], [[bytes([i]) * 32] for i in range(6)]),
    "small ints and bool": (
        ["uint8", "int8", "int256", "bool", "bytes4", "uint64"],
        [
            [255, -128, -(2**255), True, b"\x01\x02\x03\x04", 2**64 - 1],
            [0, 127, 2**255 - 1, False, b"\xff", 0],
        ],
    ),
    "dynamic types": (
        ["string", "bytes", "uint256"],
        [["", b"", 0], ["héllo ✓", b"\x00\x01", 1], ["x" * 100, bytes(range(70)), 2]],
    ),
}


@pytest.fixture(scope="module")
def fixed_js() -> dict[str, dict[str, Any]]:
    names = list(FIXED_CASES)
    answers = oz([build_request(*FIXED_CASES[n]) for n in names])
    return dict(zip(names, answers, strict=True))


@pytest.mark.parametrize("name", list(FIXED_CASES))
def test_dump_and_proofs_equal_the_js_library(name: str, fixed_js: dict[str, dict[str, Any]]) -> None:
    types, values = FIXED_CASES[name]
    assert_same_as_js(StandardMerkleTree.of(values, types), fixed_js[name], name)


def test_one_leaf_tree_is_the_leaf_with_an_empty_proof() -> None:
    tree = StandardMerkleTree.of([[1, 2, address(3), 4]], REWARD_TYPES)
    assert tree.root == keccak(keccak(encode(REWARD_TYPES, [1, 2, address(3), 4])))
    assert tree.proof(0) == []


def test_duplicates_keep_input_order_and_each_has_a_proof() -> None:
    types, values = FIXED_CASES["reward, duplicates"]
    tree = StandardMerkleTree.of(values, types)
    indices = [ti for _, ti in tree._values]
    assert len(set(indices)) == len(values)  # every copy has its own slot
    assert all(tree.verify(values[i], tree.proof(i)) for i in range(len(values)))


# ---------------------------------------------------------------- generated cases

_ENCODINGS: list[list[str]] = [
    REWARD_TYPES,
    ["address", "uint256"],
    ["uint8", "int16", "bool", "bytes32"],
    ["int256", "bytes4", "address"],
    ["string", "uint256"],
]


def _field(t: str) -> st.SearchStrategy[Any]:
    if t == "address":
        raw = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
        return st.one_of(raw, raw.map(to_checksum_address))
    if t == "bool":
        return st.booleans()
    if t == "string":
        return st.text(max_size=40)
    if t.startswith("bytes"):
        return st.binary(min_size=0, max_size=int(t[5:]))
    bits = int(t.removeprefix("u").removeprefix("int"))
    if t.startswith("uint"):
        return st.integers(0, 2**bits - 1)
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


@st.composite
def leaf_sets(draw: st.DrawFn) -> Case:
    """An encoding, 1..40 leaves of it, and sometimes copies of some of them."""
    types = draw(st.sampled_from(_ENCODINGS))
    leaf = st.tuples(*[_field(t) for t in types]).map(list)
    values = draw(st.lists(leaf, min_size=1, max_size=40))
    dup_at = draw(st.lists(st.integers(0, len(values) - 1), max_size=3))
    return types, values + [values[i] for i in dup_at]


def test_generated_leaf_sets_equal_the_js_library() -> None:
    cases: list[Case] = []

    # Hypothesis only draws here; all cases then go to one node process.
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=leaf_sets())
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    answers = oz([build_request(*c) for c in cases])
    for case, js in zip(cases, answers, strict=True):
        assert_same_as_js(StandardMerkleTree.of(case[1], case[0]), js, case)


class _Small(IntEnum):
    THREE = 3


@pytest.mark.parametrize(
    ("types", "value"),
    [
        (["uint256"], [True]),  # bool is not an int for eth_abi
        (["uint256"], [_Small.THREE]),  # an int subclass: eth_abi's path
        (["uint8"], [256]),
        (["uint8"], [-1]),
        (["int8"], [-129]),
        (["int8"], [128]),
        (["address"], ["ab" * 20]),  # unprefixed: eth_abi accepts it
        (["address"], ["0X" + "AB" * 20]),
        (["address"], ["0x" + "ab" * 19 + " a"]),  # whitespace must not slip through fromhex
        (["address"], ["0x" + "ab" * 19]),
        (["address"], [b"\x01" * 20]),
        (["address"], [bytearray(20)]),
        (["bytes4"], [b"\x01\x02\x03\x04\x05"]),
        (["bytes4"], [bytearray(b"\x01")]),
        (["bool"], [1]),
        (["uint256", "uint256"], [1]),  # wrong arity
        (["uint256"], ["1"]),
    ],
)
def test_fast_leaf_encoding_accepts_and_rejects_exactly_as_eth_abi(
    types: list[str], value: list[Any]
) -> None:
    """Accepted: the same hash. Rejected: the very error eth_abi raises (the fast path declines
    and hands the value to eth_abi), never some other exception from the hand-written encoders."""
    try:
        expected = keccak(keccak(encode(types, value)))
    except EncodingError as refused:
        with pytest.raises(EncodingError) as raised:
            leaf_hash(types, value)
        assert type(raised.value) is type(refused) and str(raised.value) == str(refused)
    else:
        assert leaf_hash(types, value) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.data(), types=st.sampled_from(_ENCODINGS))
def test_fast_leaf_encoding_equals_eth_abi(data: st.DataObject, types: list[str]) -> None:
    value = data.draw(st.tuples(*[_field(t) for t in types]).map(list))
    assert leaf_hash(types, value) == keccak(keccak(encode(types, value)))


# ------------------------------------------------------------------ dump and load


def test_js_dump_loads_with_same_root_values_and_proofs(fixed_js: dict[str, dict[str, Any]]) -> None:
    js = fixed_js["reward, 33 leaves"]
    tree = StandardMerkleTree.load(js["dump"])
    assert "0x" + tree.root.hex() == js["root"]
    assert tree.values() == reward_leaves(33)  # typed again: ints, checksummed addresses
    assert [hexes(tree.proof(i)) for i in range(len(tree))] == js["proofs"]
    assert hexes(tree.proof_for(reward_leaves(33)[17])) == js["proofs"][17]
    assert tree.dump().model_dump(mode="json") == js["dump"]


def test_our_dump_loads_in_the_js_library() -> None:
    names = ["reward, 5 leaves", "reward, duplicates", "dynamic types", "small ints and bool"]
    trees = [StandardMerkleTree.of(FIXED_CASES[n][1], FIXED_CASES[n][0]) for n in names]
    answers = oz([{"load": t.dump().model_dump(mode="json")} for t in trees])
    for name, tree, js in zip(names, trees, answers, strict=True):
        assert_same_as_js(tree, js, name)


def test_dump_round_trips_through_json_text() -> None:
    tree = StandardMerkleTree.of(reward_leaves(9), REWARD_TYPES)
    again = StandardMerkleTree.load(json.loads(tree.dump().model_dump_json()))
    assert again.root == tree.root
    assert again.values() == tree.values()


def _flip_internal_node(d: dict[str, Any]) -> None:
    h = d["tree"][1]
    d["tree"][1] = h[:-1] + ("0" if h[-1] != "0" else "1")


def _change_amount(d: dict[str, Any]) -> None:
    d["values"][2]["value"][3] = str(int(d["values"][2]["value"][3]) + 1)


def _swap_tree_indices(d: dict[str, Any]) -> None:
    a, b = d["values"][0], d["values"][1]
    a["treeIndex"], b["treeIndex"] = b["treeIndex"], a["treeIndex"]


CORRUPTIONS = {
    "internal node changed": _flip_internal_node,
    "leaf value changed": _change_amount,
    "tree indices swapped": _swap_tree_indices,
    "treeIndex past the end": lambda d: d["values"][0].update(treeIndex=len(d["tree"])),
    "last node dropped": lambda d: d["tree"].pop(),
    "node not hex": lambda d: d["tree"].__setitem__(0, "0xzz" + d["tree"][0][4:]),
    "node too short": lambda d: d["tree"].__setitem__(0, d["tree"][0][:-2]),
    "unknown format": lambda d: d.update(format="standard-v2"),
    "no nodes": lambda d: d.update(tree=[], values=[]),
}


def test_corrupt_dumps_are_rejected_by_us_and_by_the_js_library() -> None:
    good = StandardMerkleTree.of(reward_leaves(6), REWARD_TYPES).dump().model_dump(mode="json")
    corrupt: dict[str, dict[str, Any]] = {}
    for name, corrupt_it in CORRUPTIONS.items():
        d = copy.deepcopy(good)
        corrupt_it(d)
        corrupt[name] = d
    assert StandardMerkleTree.load(good).root  # the untouched dump loads
    for name, d in corrupt.items():
        try:
            StandardMerkleTree.load(d)
        except MerkleTreeError:
            continue
        pytest.fail(f"load() accepted a dump with {name}")
    answers = oz([{"load": d} for d in corrupt.values()])
    for name, js in zip(corrupt, answers, strict=True):
        assert "error" in js, f"the JS library accepted a dump with {name}"


# --------------------------------------------------------------------- bad input


def test_zero_leaves_is_an_error_on_both_sides() -> None:
    with pytest.raises(MerkleTreeError, match="at least one leaf"):
        StandardMerkleTree.of([], REWARD_TYPES)
    (js,) = oz([build_request(REWARD_TYPES, [])])
    assert "error" in js


def test_proof_for_a_value_not_in_the_tree_is_rejected() -> None:
    tree = StandardMerkleTree.of(reward_leaves(4), REWARD_TYPES)
    absent = [7, 1, address(0xC0FFEE00 + 1), 999]  # right index and account, wrong amount
    with pytest.raises(MerkleTreeError, match="not a leaf"):
        tree.proof_for(absent)
    with pytest.raises(MerkleTreeError, match="out of range"):
        tree.proof(4)
    assert not tree.verify(absent, tree.proof(1))


@pytest.mark.parametrize(
    "value",
    [[1, 2, address(3)], [1, 2, "not an address", 4], [-1, 2, address(3), 4], [1, 2, address(3), 2**256]],
)
def test_bad_leaves_raise_merkle_tree_error(value: list[Any]) -> None:
    with pytest.raises(MerkleTreeError, match="Leaf 1"):
        StandardMerkleTree.of([[1, 1, address(1), 1], value], REWARD_TYPES)
