"""The manifest: deterministic bytes and root, credit order, verification, tampering, proofs."""

from __future__ import annotations

import json
import random

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from node.data.manifest import (
    LEAF_ENCODING,
    ContributionData,
    Manifest,
    ManifestEntry,
    ManifestError,
    TrainingSet,
    build_training_set,
    merkle_tree,
    verify,
)
from node.data.records import Example, SourceRecord
from node.data.validate import load_bytes
from node.demo.world import region_facts, to_jsonl
from node.rewards.merkle import leaf_hash, process_proof

ALICE = to_checksum_address("0x" + "a1" * 20)
BOB = to_checksum_address("0x" + "b2" * 20)
CAROL = to_checksum_address("0x" + "c3" * 20)


def _contribution(cid: int, who: str, approved_at: int, seed: int, datanet: int = 1) -> ContributionData:
    _, records = region_facts(seed, n_towns=2)
    return ContributionData(
        datanet_id=datanet,
        contribution_id=cid,
        contributor=who.lower(),  # any case in, checksummed out
        cid=f"bafkrei{cid:04d}",
        approved_at=approved_at,
        records=load_bytes(to_jsonl(records), f"c{cid}.jsonl"),
    )


def _copy_of(c: ContributionData, cid: int, who: str, approved_at: int) -> ContributionData:
    return c.model_copy(update={"contribution_id": cid, "contributor": who, "approved_at": approved_at})


@pytest.fixture
def contributions() -> list[ContributionData]:
    a = _contribution(1, ALICE, 100, seed=1)
    b = _contribution(2, BOB, 200, seed=2)
    c = _copy_of(a, 3, CAROL, 300)  # Carol re-submits Alice's file: all duplicates
    return [a, b, c]


def _build(contributions: list[ContributionData]) -> TrainingSet:
    return build_training_set(7, [2, 1, 1], contributions)


def test_entries_credit_and_dedup_stats(contributions: list[ContributionData]) -> None:
    ts = _build(contributions)
    m = ts.manifest
    n_a, n_b = len(contributions[0].records), len(contributions[1].records)
    assert m.format == "datanet-manifest-v1" and m.job_id == 7 and m.datanet_ids == [1, 2]
    assert [e.index for e in m.entries] == list(range(n_a + n_b))
    assert m.contributors() == {ALICE: n_a, BOB: n_b}
    assert m.entries[0].contributor == ALICE and m.entries[0].record_line == 1
    assert m.dedup.input_records == 2 * n_a + n_b and m.dedup.exact_dropped == n_a
    assert {(d.contribution_id, d.duplicate_of) for d in m.dedup.dropped} == {(3, i) for i in range(n_a)}
    assert [(s.contribution_id, s.records, s.kept) for s in m.contributions] == [
        (1, n_a, n_a),
        (2, n_b, n_b),
        (3, n_a, 0),
    ]
    assert [ex.sha256().hex() for ex in ts.examples] == [e.example_sha256[2:] for e in m.entries]
    assert verify(m, ts.examples)


def test_same_inputs_same_bytes_and_input_order_does_not_matter(
    contributions: list[ContributionData],
) -> None:
    one = _build(contributions).manifest
    shuffled = contributions[::-1]
    random.Random(3).shuffle(shuffled[0].records)  # records are ordered by line, too
    two = _build(shuffled).manifest
    assert one.canonical_json() == two.canonical_json()
    assert one.data_root == two.data_root


def test_credit_order_is_by_approval_time(contributions: list[ContributionData]) -> None:
    a, b, c = contributions
    m = _build([a, b, c.model_copy(update={"approved_at": 50})]).manifest  # Carol approved first
    assert m.contributors() == {BOB: len(b.records), CAROL: len(a.records)}
    assert m.contributions[0].contribution_id == 3
    assert m.data_root != _build(contributions).manifest.data_root


def test_credit_order_is_by_commitment_before_approval(contributions: list[ContributionData]) -> None:
    """M-3: the earliest commitment gets the credit, whatever order the curators approved in (they
    decided who got it before); approval only breaks ties between equal commitment times."""
    a, b, c = contributions
    alice = a.model_copy(update={"committed_at": 90})  # approved at 100
    carol = c.model_copy(update={"committed_at": 80})  # committed first, approved last (300)
    m = _build([alice, b.model_copy(update={"committed_at": 95}), carol]).manifest
    assert m.contributors() == {BOB: len(b.records), CAROL: len(a.records)}
    assert [x.contribution_id for x in m.contributions] == [3, 1, 2]
    assert m.contributions[0].committed_at == 80


def test_pinned_root_and_bytes(contributions: list[ContributionData]) -> None:
    """Changing the canonical JSON, leaf encoding or dedup must be a deliberate, versioned change."""
    m = _build(contributions).manifest
    assert m.data_root == PINNED_ROOT
    import hashlib

    assert hashlib.sha256(m.canonical_json()).hexdigest() == PINNED_SHA256


PINNED_ROOT = "0x58a73e6d5451b625ed3c6d09ce56ec4853c473b386c2ee636672cb5b699928de"
# The data root is unchanged by M-3; the bytes changed deliberately: each contribution summary
# now carries `committed_at`, the credit order's first key.
PINNED_SHA256 = "830c088321bae44cb4bcc9e6526e844e05d09dab3cb6fb307d302226dfcdcae0"


def test_near_duplicate_across_contributors_credits_the_earlier() -> None:
    story = (
        "Every Thawmonth the lamp moths of Belost gather above the salt marsh, and the children of the "
        "town follow them with paper lanterns until the moths settle on the old sea wall at midnight."
    )

    def mk(text: str) -> SourceRecord:
        return SourceRecord(
            line=1, example=Example.of_chat([("user", "Tell me a story."), ("assistant", text)])
        )

    bob = ContributionData(
        datanet_id=1, contribution_id=5, contributor=BOB, cid="b", approved_at=20, records=[mk(story)]
    )
    alice = ContributionData(
        datanet_id=1,
        contribution_id=9,
        contributor=ALICE,
        cid="a",
        approved_at=10,
        records=[mk(story.replace("midnight", "dawn"))],
    )
    m = build_training_set(1, [1], [bob, alice]).manifest
    assert [(e.contributor, e.contribution_id) for e in m.entries] == [(ALICE, 9)]
    [d] = m.dedup.dropped
    assert (d.contribution_id, d.reason, d.duplicate_of) == (5, "near", 0) and m.dedup.near_dropped == 1


def test_canonical_json_round_trips_with_no_floats(contributions: list[ContributionData]) -> None:
    m = _build(contributions).manifest
    data = m.canonical_json()
    assert (
        data
        == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert Manifest.from_json(data).canonical_json() == data

    def walk(x: object) -> None:
        assert not isinstance(x, float)
        for v in x.values() if isinstance(x, dict) else x if isinstance(x, list) else []:
            walk(v)

    walk(json.loads(data))


def test_proofs_verify_with_the_merkle_module(contributions: list[ContributionData]) -> None:
    m = Manifest.from_json(_build(contributions).manifest.canonical_json())  # tree rebuilt on load
    root = bytes.fromhex(m.data_root[2:])
    for e in (m.entries[0], m.entries[len(m.entries) // 2], m.entries[-1]):
        proof = m.proof(e.index)
        assert process_proof(leaf_hash(LEAF_ENCODING, list(e.leaf())), proof) == root
        other = m.entries[(e.index + 1) % len(m.entries)]
        assert process_proof(leaf_hash(LEAF_ENCODING, list(other.leaf())), proof) != root
    with pytest.raises(ManifestError, match="out of range"):
        m.proof(len(m.entries))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["entries"][1].update(contributor=CAROL),
        lambda d: d["entries"][1].update(example_sha256="0x" + "00" * 32),
        lambda d: d["entries"][1].update(contribution_id=99),
        lambda d: d["entries"].__setitem__(slice(0, 2), [d["entries"][1], d["entries"][0]]),
        lambda d: d["entries"].pop(),
        lambda d: d.update(data_root="0x" + "11" * 32),
    ],
)
def test_tampering_is_detected(contributions: list[ContributionData], tamper: object) -> None:
    d = json.loads(_build(contributions).manifest.canonical_json())
    tamper(d)  # type: ignore[operator]
    m = Manifest.model_validate(d)
    assert not verify(m)
    with pytest.raises(ManifestError, match="does not verify"):
        m.proof(0)


def test_verify_checks_examples(contributions: list[ContributionData]) -> None:
    ts = _build(contributions)
    swapped = [ts.examples[1], ts.examples[0], *ts.examples[2:]]
    assert verify(ts.manifest, ts.examples) and not verify(ts.manifest, swapped)
    assert not verify(ts.manifest, ts.examples[:-1])


def test_bad_inputs(contributions: list[ContributionData]) -> None:
    a = contributions[0]
    with pytest.raises(ManifestError, match="does not permit"):
        build_training_set(7, [2], [a])
    with pytest.raises(ManifestError, match="given twice"):
        build_training_set(7, [1], [a, a])
    with pytest.raises(ManifestError, match="no records"):
        build_training_set(7, [1], [a.model_copy(update={"records": []})])
    with pytest.raises(ValidationError, match="not an address"):
        ContributionData(
            datanet_id=1, contribution_id=1, contributor="0x12", cid="x", approved_at=0, records=[]
        )


_row = st.tuples(
    st.integers(0, 2**256 - 1),
    st.binary(min_size=20, max_size=20).map(to_checksum_address),
    st.binary(min_size=32, max_size=32),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_row, min_size=1, max_size=40), st.data())
def test_root_and_proofs_match_an_independent_abi_encoding(
    rows: list[tuple[int, str, bytes]], data: st.DataObject
) -> None:
    """The leaf is keccak256(keccak256(abi.encode(index, contributionId, contributor, exampleHash)))."""
    entries = [
        ManifestEntry(
            index=i,
            datanet_id=1,
            contribution_id=cid,
            contributor=who,
            cid="c",
            record_line=1,
            example_sha256="0x" + h.hex(),
        )
        for i, (cid, who, h) in enumerate(rows)
    ]
    tree = merkle_tree(entries)
    k = data.draw(st.integers(0, len(entries) - 1))
    e = entries[k]
    leaf = keccak(
        keccak(
            abi_encode(
                ["uint256", "uint256", "address", "bytes32"],
                [k, e.contribution_id, e.contributor, bytes.fromhex(e.example_sha256[2:])],
            )
        )
    )
    assert process_proof(leaf, tree.proof(k)) == tree.root
    if len(entries) == 1:
        assert tree.root == leaf


def test_many_examples_build_quickly() -> None:
    """10k examples (the ~100k case scales linearly: ~15 s, mostly near-dup search)."""
    recs = [
        SourceRecord(line=i + 1, example=Example.of_text(f"fact {i} of {i * 7919 % 10007}"))
        for i in range(10_000)
    ]
    c = ContributionData(
        datanet_id=1, contribution_id=1, contributor=ALICE, cid="x", approved_at=0, records=recs
    )
    m = build_training_set(1, [1], [c]).manifest
    assert len(m.entries) + len(m.dedup.dropped) == 10_000 and verify(m)
