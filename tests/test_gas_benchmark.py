"""benchmarks/gas.py, run small (N = 10 and 1000) on its own anvil: every call measured, claims cheap, the
baseline ratio computed, and the docs section written without touching other sections."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.baseline_tree import SortedPairTree, packed_leaf, same_word_neighbour, synthetic_accounts
from benchmarks.gas import CALLS, BenchConfig, run_benchmark
from benchmarks.gas_report import (
    BEGIN,
    END,
    GasBenchmarkError,
    GasReport,
    ScalePoint,
    check_posting_constant,
    render_markdown,
    write_section,
)
from node.rewards.merkle import process_proof


@pytest.fixture(scope="module")
def report() -> GasReport:
    return run_benchmark(BenchConfig(sizes=[10, 1000]))


def test_every_user_facing_call_is_measured(report: GasReport) -> None:
    assert [c.call for c in report.calls] == [name for name, _, _ in CALLS]
    for c in report.calls:
        assert c.first > 21_000 and c.repeat > 21_000, c


def test_fresh_costs_more_only_where_the_first_pass_writes_a_slot_first(report: GasReport) -> None:
    calls = {c.call: c for c in report.calls}
    for name in ("transfer", "permit"):  # the recipient's balance; the signer's permit nonce
        assert calls[name].first - calls[name].repeat > 15_000, calls[name]
    for name in ("setTrainer", "setMetadata", "setEncryptionKey", "setDatanetKey", "grantAccess"):
        assert abs(calls[name].first - calls[name].repeat) < 100, calls[name]  # calldata bytes only


def test_claims_for_ten_contributors_are_cheap_and_compared_with_the_baseline(report: GasReport) -> None:
    point, large = report.scale
    assert (point.n, large.n) == (10, 1000)
    assert [c.index for c in point.claims] == [0, 5, 9]
    for c in point.claims:
        assert c.typical is not None and c.baseline_typical is not None
        assert c.typical < c.first < 100_000, c  # the first claim of a bitmap word pays for the word
        assert c.proof_len in (3, 4)
    for ratio in (point.ratio_typical, point.ratio_first):
        assert math.isfinite(ratio) and ratio > 0
    assert point.post_gas > 0
    # Posting stores a root: 100 times the contributors costs (nearly) the same gas, and claims grow
    # only with the proof (log2 N more hashes).
    assert report.post_spread == abs(large.post_gas - point.post_gas) <= BenchConfig().post_spread_limit
    assert max(c.proof_len for c in large.claims) == 10
    assert all(c.first < 100_000 for c in large.claims)


def test_markdown_has_both_tables_between_the_markers(report: GasReport) -> None:
    md = render_markdown(report)
    assert md.startswith(BEGIN) and md.endswith(END)
    assert "| `claim` | RewardDistributor |" in md
    assert "| `grantAccess` | KeyRegistry |" in md and "| `permit` | OpenToken |" in md
    assert f"| 10 | {report.scale[0].tree_build_s:.2f} |" in md
    assert report.commit.split()[0] in md


def test_write_section_replaces_only_the_gas_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_section(f"{BEGIN}\nold numbers\n{END}", doc)
    doc.write_text(doc.read_text() + "\n## Training throughput\n\nsomeone else's section\n")
    write_section(f"{BEGIN}\nnew numbers\n{END}", doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "new numbers" in text and "old numbers" not in text
    assert "someone else's section" in text
    assert text.count(BEGIN) == 1


def test_posting_that_grows_with_n_fails_the_check() -> None:
    def point(n: int, post: int) -> ScalePoint:
        return ScalePoint(n=n, tree_build_s=0, baseline_tree_build_s=0, post_gas=post, claims=[])

    report = GasReport(date="", anvil="", solc="", commit="", calls=[], scale=[point(10, 800_000)])
    check_posting_constant(report, 300)
    report.scale.append(point(1_000, 800_250))
    check_posting_constant(report, 300)
    report.scale.append(point(100_000, 801_000))
    with pytest.raises(GasBenchmarkError, match="varies by 1000"):
        check_posting_constant(report, 300)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 257])
def test_baseline_tree_proofs_verify(n: int) -> None:
    accounts = synthetic_accounts(n)
    leaves = [packed_leaf(i, accounts[i], 10 + i) for i in range(n)]
    tree = SortedPairTree(leaves)
    assert all(process_proof(leaves[i], tree.proof(i)) == tree.root for i in range(n))
    assert max(len(tree.proof(i)) for i in range(n)) == math.ceil(math.log2(n))


def test_same_word_neighbour_stays_in_the_bitmap_word() -> None:
    assert same_word_neighbour(0, 10) == 1
    assert same_word_neighbour(9, 10) == 8
    assert same_word_neighbour(4, 5) == 3
    assert same_word_neighbour(256, 257) is None  # alone in its word
    assert same_word_neighbour(0, 1) is None
