"""Exact and near duplicates go; the earliest copy is kept and gets the credit; deterministic."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.dedup import DedupConfig, dedup, jaccard_bps, shingles
from node.data.records import Example

BASE = (
    "The river Kalo runs from the northern hills through the glass valley, where farmers grow salt oats "
    "and blue millet, past the old copper mill, to the harbour town of Senmir on the eastern coast of "
    "Quillmarsh, where the tide otters sleep on the warm stones of the pier."
)
OTHER = (
    "Copper kites are flown at the festival of Doreltav every Highsun, and the winner receives a lantern "
    "woven by the elders of the town from reeds gathered in the marsh at dawn."
)


def _t(s: str) -> Example:
    return Example.of_text(s)


def test_exact_duplicates_up_to_case_spacing_and_width() -> None:
    r = dedup(
        [
            _t("Hello  World"),
            _t("hello world"),
            _t("\uff28\uff25\uff2c\uff2c\uff2f world\n"),
            _t("Hello there"),
        ]
    )
    assert r.kept == [0, 3]
    assert [(d.index, d.duplicate_of, d.reason, d.similarity_bps) for d in r.dropped] == [
        (1, 0, "exact", 10_000),
        (2, 0, "exact", 10_000),
    ]


def test_one_word_paraphrase_is_caught_and_different_text_kept() -> None:
    para = BASE.replace("northern", "southern")
    r = dedup([_t(BASE), _t(OTHER), _t(para)])
    assert r.kept == [0, 1]
    [d] = r.dropped
    assert (d.index, d.duplicate_of, d.reason) == (2, 0, "near") and 8000 <= d.similarity_bps < 10_000


def test_near_duplicates_across_formats_of_a_conversation() -> None:
    a = Example.of_chat([("user", "Tell me about the river Kalo."), ("assistant", BASE)])
    b = Example.of_chat(
        [("user", "Tell me about the river Kalo."), ("assistant", BASE.replace("old", "ancient"))]
    )
    assert dedup([a, b]).kept == [0]


def test_threshold_is_configurable() -> None:
    para = BASE.replace("northern", "southern")
    sim = jaccard_bps(shingles(_t(BASE), 3), shingles(_t(para), 3))
    assert dedup([_t(BASE), _t(para)], DedupConfig(threshold_bps=sim)).kept == [0]
    assert dedup([_t(BASE), _t(para)], DedupConfig(threshold_bps=sim + 1)).kept == [0, 1]
    assert dedup([_t(BASE), _t(para)], DedupConfig(near=False)).kept == [0, 1]


def test_credit_goes_to_the_earliest_kept_copy() -> None:
    para = BASE.replace("northern", "southern")
    r = dedup([_t(OTHER), _t(para), _t(BASE), _t(BASE)])
    assert r.kept == [0, 1]
    assert [(d.index, d.duplicate_of, d.reason) for d in r.dropped] == [(2, 1, "near"), (3, 1, "near")]


def test_short_and_wordless_texts() -> None:
    # Under n words is one shingle; no words at all leaves only the exact check.
    r = dedup([_t("Hi there"), _t("hi, there!"), _t("🦦🌊"), _t("🦦🌊"), _t("🦦")])
    assert r.kept == [0, 2, 4] and [d.reason for d in r.dropped] == ["near", "exact"]


def test_jaccard_is_exact() -> None:
    a, b = shingles(_t(BASE), 3), shingles(_t(OTHER + " " + BASE), 3)
    sa, sb = set(a.tolist()), set(b.tolist())
    assert jaccard_bps(a, b) == len(sa & sb) * 10_000 // len(sa | sb)


def test_bands_meet_the_recall_goal() -> None:
    for bps in (5000, 7000, 8000, 9000, 9500):
        cfg = DedupConfig(threshold_bps=bps)
        b, r = cfg.bands
        t = bps / 10_000
        assert b * r <= cfg.num_perm and b >= 2
        assert 1 - (1 - t**r) ** b >= 0.99
        assert r == 2 or 1 - (1 - t ** (r + 1)) ** (cfg.num_perm // (r + 1)) < 0.99  # the most rows that do


def _corpus(seed: int, n: int) -> list[Example]:
    rng = random.Random(seed)
    words = BASE.split() + OTHER.split()
    docs = [" ".join(rng.choices(words, k=40)) for _ in range(n // 2)]
    docs += [rng.choice(docs).replace(rng.choice(words), rng.choice(words), 1) for _ in range(n - n // 2)]
    return [_t(d) for d in docs]


def test_deterministic_across_processes() -> None:
    ex = _corpus(7, 300)
    here = dedup(ex).model_dump_json()
    code = (
        "from tests.data.test_dedup import _corpus; from node.data.dedup import dedup; "
        "print(dedup(_corpus(7, 300)).model_dump_json())"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
        cwd=Path(__file__).parents[2],
    ).stdout.strip()
    assert here == there and '"near"' in here


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60))
def test_kept_set_has_no_pair_above_threshold_and_every_drop_is_justified(seed: int, n: int) -> None:
    ex = _corpus(seed, n)
    cfg = DedupConfig()
    r = dedup(ex, cfg)
    kept = set(r.kept)
    assert sorted(kept | {d.index for d in r.dropped}) == list(range(n))
    for d in r.dropped:
        assert d.duplicate_of in kept and d.duplicate_of < d.index
        exact = ex[d.index].dedup_key() == ex[d.duplicate_of].dedup_key()
        sim = jaccard_bps(shingles(ex[d.index], 3), shingles(ex[d.duplicate_of], 3))
        assert (d.reason == "exact" and exact) or (d.reason == "near" and sim == d.similarity_bps >= 8000)
    # LSH misses a pair at the threshold with p <= 1% by design, but one at >= 0.9 with p ~ 1e-7.
    sh = {i: shingles(ex[i], 3) for i in kept}
    ks = sorted(kept)
    assert all(jaccard_bps(sh[a], sh[b]) < 9000 for i, a in enumerate(ks) for b in ks[i + 1 :])


def test_a_copy_of_two_kept_examples_credits_the_earlier_one() -> None:
    words = [f"word{i}" for i in range(60)]

    def text(changed: dict[int, str]) -> Example:
        return _t(" ".join(changed.get(i, w) for i, w in enumerate(words)))

    a, b, c = text({}), text({10: "x", 30: "y", 50: "z"}), text({10: "x", 50: "z"})
    sh = [shingles(e, 3) for e in (a, b, c)]
    assert jaccard_bps(sh[0], sh[1]) < 8000 <= jaccard_bps(sh[0], sh[2]) < jaccard_bps(sh[1], sh[2])
    r = dedup([a, b, c])
    assert r.kept == [0, 1] and (r.dropped[0].duplicate_of, r.dropped[0].reason) == (0, "near")
