"""node/rewards/payout.py: netting per contribution, clipping, floor amounts with dust, the
example-count fallback, and the rule on a real manifest (contributions contiguous in it)."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.manifest import ContributionData, build_training_set
from node.data.records import Example, SourceRecord
from node.rewards.payout import ExampleRef, compute_payout, floor_amounts
from node.rewards.shares import SharesError

ALICE, BOB, CAROL = (to_checksum_address("0x" + h * 20) for h in ("a1", "b2", "c3"))
TREASURY = to_checksum_address("0x" + "7e" * 20)


def refs(*groups: tuple[int, str, int]) -> list[ExampleRef]:
    """(contribution id, contributor, examples) runs, numbered in order."""
    out: list[ExampleRef] = []
    for cid, who, n in groups:
        out += [ExampleRef(index=len(out) + k, contribution_id=cid, contributor=who) for k in range(n)]
    return out


def test_junk_nets_out_and_a_bad_file_costs_only_itself() -> None:
    rows = refs((1, ALICE, 3), (2, ALICE, 2), (3, BOB, 3), (4, CAROL, 2))
    scores = [5, 4, 1, -50, -3, 2, 2, 6, 9, -9]  # Alice: good file + bad file; Carol: zero-mean junk
    r = compute_payout(rows, scores, 1_000, TREASURY)
    by_id = {c.contribution_id: c for c in r.contributions}
    assert [(c.score_sum, c.weight) for c in r.contributions] == [(10, 10), (-53, 0), (10, 10), (0, 0)]
    assert r.weights == {ALICE: 10, BOB: 10, CAROL: 0}  # the bad file did not eat Alice's good one
    assert r.total_weight == 20 and r.fallback is None
    assert [(s.account, s.amount) for s in r.amounts] == [(ALICE, 500), (BOB, 500)]
    assert r.dust == 0 and r.dust_recipient == TREASURY
    assert by_id[1].best == [0, 1, 2] and by_id[2].worst == [3, 4] and by_id[3].best == [7, 5, 6]
    assert by_id[4].first_index == 8 and by_id[4].examples == 2


def test_floor_amounts_leave_dust_for_the_treasury() -> None:
    rows = refs((1, ALICE, 1), (2, BOB, 1), (3, CAROL, 1))
    r = compute_payout(rows, [1, 1, 1], 100, TREASURY)
    assert [s.amount for s in r.amounts] == [33, 33, 33] and r.dust == 1
    shares, dust = floor_amounts({ALICE: 2, BOB: 1}, 10)
    assert [(s.account, s.amount) for s in shares] == [(ALICE, 6), (BOB, 3)] and dust == 1


def test_no_positive_weight_falls_back_to_example_counts_never_the_poster() -> None:
    rows = refs((1, ALICE, 3), (2, BOB, 1))
    r = compute_payout(rows, [-1, -2, 0, -5], 1_000, TREASURY)
    assert r.fallback == "example-count"
    assert r.weights == {ALICE: 3, BOB: 1} and r.total_weight == 4
    assert [(s.account, s.amount) for s in r.amounts] == [(ALICE, 750), (BOB, 250)]
    assert all(c.weight == 0 for c in r.contributions)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    rows = refs((1, ALICE, 2))
    with pytest.raises(SharesError, match="one score per example"):
        compute_payout(rows, [1], 10, TREASURY)
    with pytest.raises(SharesError, match="quantised integers"):
        compute_payout(rows, [1, 0.5], 10, TREASURY)  # type: ignore[list-item]
    split = [*refs((1, ALICE, 1), (2, BOB, 1)), ExampleRef(index=2, contribution_id=1, contributor=ALICE)]
    with pytest.raises(SharesError, match="contiguous"):
        compute_payout(split, [1, 1, 1], 10, TREASURY)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(-50, 50)), min_size=1, max_size=30),
    st.integers(0, 10**24),
)
def test_amounts_plus_dust_are_the_total_and_each_leaf_stands_alone(
    rows_scores: list[tuple[int, int]], total: int
) -> None:
    people = [ALICE, BOB, CAROL, TREASURY]
    rows = [
        ExampleRef(index=k, contribution_id=k // 3, contributor=people[w - 1]) for k, (w, _) in enumerate(rows_scores)
    ]
    # one contributor per contribution: take the first example's
    rows = [r.model_copy(update={"contributor": rows[3 * (r.index // 3)].contributor}) for r in rows]
    r = compute_payout(rows, [s for _, s in rows_scores], total, TREASURY)
    assert sum(s.amount for s in r.amounts) + r.dust == total
    assert 0 <= r.dust < max(1, len(r.amounts))
    for s in r.amounts:
        assert s.amount == total * r.weights[s.account] // r.total_weight
    assert r.total_weight == sum(r.weights.values()) > 0


def test_on_a_real_manifest_each_contribution_is_one_run() -> None:
    def data(cid: int, who: str, approved_at: int, n: int) -> ContributionData:
        records = [
            SourceRecord(line=k + 1, example=Example(kind="text", text=f"fact {cid}-{k} is unique")) for k in range(n)
        ]
        return ContributionData(
            datanet_id=1,
            contribution_id=cid,
            contributor=who,
            cid=f"bafk{cid}",
            approved_at=approved_at,
            records=records,
        )

    ts = build_training_set(3, [1], [data(9, BOB, 200, 2), data(4, ALICE, 100, 3), data(5, ALICE, 300, 1)])
    r = compute_payout(ts.manifest, [1, 2, 3, 4, 5, -100], 60, TREASURY)
    assert [(c.contribution_id, c.first_index, c.examples) for c in r.contributions] == [
        (4, 0, 3),
        (9, 3, 2),
        (5, 5, 1),
    ]
    assert r.weights == {ALICE: 6, BOB: 9}
    assert [(s.account, s.amount) for s in r.amounts] == [(ALICE, 24), (BOB, 36)]
