"""node/attribution/document.py: the v1 document built from a real manifest, its canonical bytes,
`check_arithmetic` naming each tampered integer, and its reward tree loaded by OpenZeppelin's
JS `StandardMerkleTree.load` (tests/js/oz_merkle.cjs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from eth_utils import keccak, to_checksum_address

from node.attribution.document import (
    AttributionDocument,
    MethodInfo,
    MethodParams,
    QueryInfo,
    SnapshotInfo,
    build_document,
    check_arithmetic,
)
from node.chain.models import Job, JobStatus, Method
from node.data.manifest import ContributionData, Manifest, build_training_set
from node.data.records import Example, SourceRecord
from node.rewards.merkle import StandardMerkleTree
from node.rewards.shares import split_pool
from tests.test_merkle import oz

ALICE, BOB, CAROL = (to_checksum_address("0x" + h * 20) for h in ("a1", "b2", "c3"))
TREASURY = to_checksum_address("0x" + "7e" * 20)
REGISTRY = to_checksum_address("0x" + "99" * 20)
ZERO = "0x" + "00" * 20


def _job(job_id: int = 3) -> Job:
    return Job(
        id=job_id,
        poster=ZERO,
        status=JobStatus.COMPLETED,
        method=Method.LORA,
        nodeFeeBps=1000,
        datanetFeeBps=1000,
        deadline=0,
        postedAt=0,
        node=ZERO,
        claimedAt=0,
        baseModelHash=b"\x01" * 32,
        configHash=b"\x02" * 32,
        pool=10**21 + 7,
        parentModelId=0,
        modelId=1,
        baseModel="tiny",
        configCID="bafk",
        datanetIds=[1],
    )


def _manifest() -> Manifest:
    def data(cid: int, who: str, at: int, n: int) -> ContributionData:
        records = [
            SourceRecord(line=k + 1, example=Example(kind="text", text=f"fact {cid}-{k} only")) for k in range(n)
        ]
        return ContributionData(
            datanet_id=1, contribution_id=cid, contributor=who, cid=f"bafk{cid}", approved_at=at, records=records
        )

    return build_training_set(3, [1], [data(1, ALICE, 1, 3), data(2, BOB, 2, 2), data(3, CAROL, 3, 2)]).manifest


def _doc(scores: list[int] | None = None) -> AttributionDocument:
    manifest = _manifest()
    scores = scores if scores is not None else [7, 3, -1, 4, 4, 2, -9]
    job = _job()
    return build_document(
        job,
        manifest,
        scores,
        ["0x" + keccak(text=f"g{k}").hex() for k in range(len(scores))],
        MethodInfo(
            id="tracin-adam-kernel-v1",
            versions={"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2", "node": "0.1.0"},
            params=MethodParams(snapshots=3, damping=0.1, projection_dim=0, score_scale=1e-4, delta=10**12),
        ),
        QueryInfo(source="held-out", examples=4),
        [SnapshotInfo(index=0, cid="bafksnap0", sha256="0x" + "ab" * 32, step=10, lr_sum=0.02)],
        split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds)),
        chain_id=31337,
        model_registry=REGISTRY,
        dust_recipient=TREASURY,
    )


def test_the_document_holds_together_and_round_trips_canonically() -> None:
    doc = _doc()
    report = check_arithmetic(doc, _manifest())
    assert report.ok, report.problems
    raw = doc.canonical_json()
    assert b" " not in raw.replace(b"fact ", b"") and json.loads(raw) == json.loads(doc.model_dump_json())
    assert AttributionDocument.from_json(raw).canonical_json() == raw
    assert [c.weight for c in doc.contributions] == [9, 8, 0]
    assert doc.weights == {ALICE: 9, BOB: 8, CAROL: 0} and doc.total_weight == 17
    total = doc.payout.total
    leaves = StandardMerkleTree.load(doc.reward_tree).values()
    assert [v[2] for v in leaves] == [ALICE, BOB, TREASURY]  # contributors by address, then the dust leaf
    assert leaves[0][3] == total * 9 // 17 and leaves[2][3] == doc.payout.dust > 0
    assert sum(v[3] for v in leaves) == total
    assert "torch-2.13.0" in doc.method.method_id() and doc.method.method_id().endswith(f"delta-{10**12}")


def test_the_reward_tree_loads_in_openzeppelins_js_library() -> None:
    doc = _doc()
    (js,) = oz([{"load": doc.reward_tree}])
    assert "error" not in js, js
    assert js["root"] == doc.reward_root
    assert js["dump"] == doc.reward_tree


def test_the_fallback_document_is_consistent_too() -> None:
    doc = _doc([-1, -1, -1, 0, -2, -3, -4])
    assert doc.fallback == "example-count" and doc.weights == {ALICE: 3, BOB: 2, CAROL: 2}
    assert check_arithmetic(doc).ok


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda d: d["scores"]["leaves"][2].update(score=5), "scores.leaves[2].running_total"),
        (lambda d: d["scores"].update(root="0x" + "11" * 32), "scores.root"),
        (lambda d: d["contributions"][1].update(score_sum=99), "contributions[1] (contribution 2).score_sum"),
        (lambda d: d["contributions"][0].update(best=[1, 0, 2]), "contributions[0] (contribution 1).best"),
        (lambda d: d["weights"].update({ALICE: 10}), "weights"),
        (lambda d: d.update(total_weight=18), "total_weight"),
        (lambda d: d["payout"].update(dust=0), "payout.dust"),
        (lambda d: d.update(example_count=8), "example_count"),
        (lambda d: d.update(fallback="example-count"), "fallback"),
        (lambda d: d.update(reward_root="0x" + "22" * 32), "reward_root"),
        (lambda d: d.update(projection_seed="0x" + "33" * 32), "projection_seed"),
    ],
)
def test_each_tampered_integer_is_named(tamper: Callable[[dict[str, Any]], Any], named: str) -> None:
    raw = _doc().model_dump(mode="json")
    tamper(raw)
    report = check_arithmetic(AttributionDocument.model_validate(raw))
    assert not report.ok
    assert any(p.startswith(named) for p in report.problems), report.problems


def test_a_reward_tree_paying_someone_else_is_named() -> None:
    good = _doc()
    forged = StandardMerkleTree.of(
        [[good.job_id, 0, CAROL, good.payout.total]], ["uint256", "uint256", "address", "uint256"]
    )
    raw = good.model_dump(mode="json")
    raw["reward_tree"] = forged.dump().model_dump(mode="json")
    raw["reward_root"] = "0x" + forged.root.hex()
    problems = check_arithmetic(AttributionDocument.model_validate(raw)).problems
    assert any(p.startswith("reward_tree leaf 0") for p in problems), problems
    assert any(p.startswith("reward_tree leaf 2") for p in problems), problems


def test_a_document_for_another_manifest_is_named() -> None:
    doc = _doc()
    other = build_training_set(
        3,
        [1],
        [
            ContributionData(
                datanet_id=1,
                contribution_id=1,
                contributor=ALICE,
                cid="x",
                approved_at=1,
                records=[SourceRecord(line=1, example=Example(kind="text", text="other"))],
            )
        ],
    ).manifest
    problems = check_arithmetic(doc, other).problems
    assert any(p.startswith("data_root") for p in problems) and any("from index" in p for p in problems)


def test_the_document_records_the_engines_projection_seed() -> None:
    """The seed in the document is the one the engine's count-sketch is drawn from."""
    from node.attribution.document import projection_seed
    from node.attribution.sketch import projection_seed as engine_seed

    root = "0x" + "ab" * 32
    assert projection_seed(root, 7) == "0x" + engine_seed(root, 7).hex()
