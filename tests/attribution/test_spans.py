"""Inference-time span attribution over a real infini-gram index of a tiny training set, with the
tiny model's BPE tokenizer (built offline by the session fixture `tiny_base_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address

from node.attribution.span_index import (
    FILES,
    MANIFEST,
    SHARD,
    SpanIndexCorruptError,
    SpanIndexMissingError,
    TokenizerMismatchError,
    VocabularyTooLargeError,
    dense_ids,
    needs_id_map,
)
from node.attribution.spans import (
    AttributedSpan,
    SpanIndex,
    SpanPolicy,
    SpanSource,
    build_span_index,
    credits_from_spans,
    echo_mask,
    flat_view,
)
from node.data.manifest import ContributionData, TrainingSet, build_training_set
from node.data.records import Example, SourceRecord
from node.train.formatting import render_prompt

A, B, C, D = (to_checksum_address("0x" + c * 40) for c in "abcd")

PASSAGE_A = (
    "The old lighthouse keeper Maribel Quenshaw painted every storm she survived on the spiral stairs, "
    "one brushstroke for each wave that reached the lamp room."
)
SHARED = "Brine-cured plover eggs keep for nine winters when packed in kelp ash and buried beneath the salt dunes."
COMMON = "Thank you for asking, here is everything that the archive records about it."
FILLERS = [
    "Copper kettles hum at dawn in the valley of Oskvenn.",
    "The ferry from Lunt crosses twice a week in summer.",
    "Orchard wardens count the pears by lantern light.",
    "A goat named Pellis guards the bridge at Harrowmere.",
    "Seven looms sit idle in the weaving hall of Drent.",
    "Fog rolls off the marsh before the bell tower rings.",
    "The miller trades flour for amber with northern traders.",
    "Children race paper boats down the canal at Vey.",
]


def chat(question: str, answer: str) -> Example:
    return Example.of_chat([("user", question), ("assistant", answer)])


def contribution(cid: int, who: str, examples: list[Example]) -> ContributionData:
    return ContributionData(
        datanet_id=1, contribution_id=cid, contributor=who, cid=f"bafy{cid}", approved_at=cid, committed_at=cid,
        records=[SourceRecord(line=k + 1, example=e) for k, e in enumerate(examples)],
    )  # fmt: skip


def training_set() -> TrainingSet:
    """A: the lighthouse passage; B and C: the same plover passage in different answers; D: the
    COMMON sentence in seven different answers (too common for the default policy)."""
    a = [
        chat("Tell me about the lighthouse.", PASSAGE_A),
        chat("What grows near the mill?", "Barley and flax grow in the wet fields beside the old mill race."),
    ]
    b = [chat("How are eggs kept?", f"In the north, {SHARED} Nobody there eats them fresh.")]
    c = [chat("Any old food customs?", f"Grandmother said that {SHARED} I never tried it myself.")]
    d = [chat(f"Question {k}?", f"{FILLERS[k]} {COMMON} {FILLERS[(k + 3) % 8]}") for k in range(7)]
    d.append(Example.of_text("The capital of Dorsenlo is Nuka, a town of bakers and ropewalkers."))
    return build_training_set(
        1, [1], [contribution(1, A, a), contribution(2, B, b), contribution(3, C, c), contribution(4, D, d)]
    )


def ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def prompt(tok: Any, question: str) -> list[int]:
    return ids(tok, render_prompt(tok, [{"role": "user", "content": question}]))


@pytest.fixture(scope="module")
def tok(tiny_base_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base_model)


@pytest.fixture(scope="module")
def built(tok: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingSet, Path]:
    ts = training_set()
    out = tmp_path_factory.mktemp("spans") / "index"
    build_span_index(ts, tok, out)
    return ts, out


@pytest.fixture(scope="module")
def index(built: tuple[TrainingSet, Path], tok: Any) -> SpanIndex:
    return SpanIndex.open(built[1], tok)


def example_of(ts: TrainingSet, text: str) -> int:
    return next(k for k, ex in enumerate(ts.examples) if any(text in c for c in ex.contents()))


def test_a_copied_passage_credits_its_contributor_and_example(index: SpanIndex, built: Any, tok: Any) -> None:
    ts, _ = built
    response = ids(tok, "Here is a story. " + PASSAGE_A)
    spans = index.attribute(prompt(tok, "Tell me a story about a lighthouse."), response)
    assert spans, "the copied passage is found"
    longest = max(spans, key=lambda s: s.end - s.start)
    assert longest.end - longest.start >= len(ids(tok, PASSAGE_A)) - 3  # all of it but the edge tokens
    [source] = longest.sources
    assert (source.example_index, source.contributor, source.contribution_id) == (example_of(ts, PASSAGE_A), A, 1)
    assert source.start == longest.start and source.text == longest.text
    assert longest.count == 1
    assert "brushstroke for each wave" in longest.text
    assert set(credits_from_spans(spans)) == {A}
    rows = flat_view(spans)
    assert {r["contributor"] for r in rows} == {A}
    assert set(rows[0]) == {"span", "start", "end", "contributor", "contribution_id", "example_index"}


def test_a_passage_the_request_contained_gets_no_credit(index: SpanIndex, tok: Any) -> None:
    echo = prompt(tok, "Repeat exactly: " + PASSAGE_A)
    assert index.attribute(echo, ids(tok, PASSAGE_A)) == []
    assert credits_from_spans(index.attribute(echo, ids(tok, "Sure! " + PASSAGE_A + " Done."))) == {}


def test_only_the_part_not_in_the_request_is_credited(index: SpanIndex, tok: Any) -> None:
    first = PASSAGE_A.split(" on the spiral stairs")[0]
    p = prompt(tok, "Continue this: " + first)
    response = ids(tok, PASSAGE_A)
    echoed = echo_mask(p, response, SpanPolicy().min_tokens)
    assert any(echoed) and not all(echoed)
    spans = index.attribute(p, response)
    assert spans and {s.contributor for sp in spans for s in sp.sources} == {A}
    for sp in spans:  # no credited token was in the request
        assert not any(echoed[sp.start : sp.end])
    assert "brushstroke" in spans[-1].text and "Maribel" not in "".join(s.text for s in spans)


def test_a_short_phrase_from_the_training_set_gets_nothing(index: SpanIndex, tok: Any) -> None:
    short = ids(tok, "Nuka, a town")
    assert 0 < len(short) < SpanPolicy().min_tokens
    assert index.attribute([], ids(tok, "I visited Nuka, a town by the sea, last year.")) == []


def test_a_span_in_many_documents_is_dropped_as_common(index: SpanIndex, built: Any, tok: Any) -> None:
    ts, _ = built
    response = ids(tok, "Well. " + COMMON)
    assert index.attribute([], response) == []  # 7 examples > max_documents = 5
    loose = index.attribute([], response, SpanPolicy(max_documents=10, max_sources_per_span=10))
    assert loose and loose[0].count == 7
    assert {s.example_index for s in loose[0].sources} == {example_of(ts, f"{FILLERS[k]} {COMMON}") for k in range(7)}
    capped = index.attribute([], response, SpanPolicy(max_documents=10, max_sources_per_span=2))
    assert [s.example_index for s in capped[0].sources] == sorted(s.example_index for s in loose[0].sources)[:2]


def test_two_contributors_with_the_same_passage_share_the_credit(index: SpanIndex, built: Any, tok: Any) -> None:
    ts, _ = built
    spans = index.attribute(prompt(tok, "How do people keep eggs?"), ids(tok, "They say: " + SHARED))
    shared = max(spans, key=lambda s: s.end - s.start)
    assert shared.count == 2
    assert [(s.contributor, s.example_index) for s in shared.sources] == [
        (B, example_of(ts, f"In the north, {SHARED}")),
        (C, example_of(ts, f"Grandmother said that {SHARED}")),
    ]
    credit = credits_from_spans([shared])
    assert set(credit) == {B, C}
    assert sum(credit.values()) == shared.end - shared.start
    # B's answer also has the token before the passage ("north, Brine"), C's does not ("that Brine")
    assert 0 <= credit[B] - credit[C] <= 2 + (shared.sources[1].start - shared.start)


def test_prompts_are_not_indexed(index: SpanIndex, tok: Any) -> None:
    # the model is trained on answers only: a user turn it saw as context is not a contribution
    assert index.attribute([], ids(tok, "Tell me about the lighthouse. What grows near the mill?")) == []


def test_a_held_out_example_is_not_indexed(tok: Any, tmp_path: Path) -> None:
    ts = training_set()
    held = example_of(ts, PASSAGE_A)
    info = build_span_index(ts, tok, tmp_path / "idx", train_indices=[k for k in range(len(ts.examples)) if k != held])
    assert info.manifest.documents == len(ts.examples) - 1
    assert SpanIndex.open(tmp_path / "idx", tok).attribute([], ids(tok, PASSAGE_A)) == []


def test_builds_are_byte_identical_and_a_rebuild_is_reused(tok: Any, built: Any, tmp_path: Path) -> None:
    _, first = built
    info = build_span_index(training_set(), tok, tmp_path / "again")
    assert not info.reused
    for name in [MANIFEST, *(f"{SHARD}/{f}" for f in FILES)]:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    again = build_span_index(training_set(), tok, tmp_path / "again")
    assert again.reused and again.manifest == info.manifest


def test_results_are_deterministic_across_builds(tok: Any, index: SpanIndex, tmp_path: Path) -> None:
    build_span_index(training_set(), tok, tmp_path / "other")
    other = SpanIndex.open(tmp_path / "other", tok)
    response = ids(tok, f"{PASSAGE_A} Also, {SHARED} {COMMON}")
    policy = SpanPolicy(max_documents=10, max_sources_per_span=10)
    assert index.attribute([], response, policy) == other.attribute([], response, policy)
    spans = index.attribute([], response, policy)
    assert [(s.start, s.end) for s in spans] == sorted((s.start, s.end) for s in spans)


def test_a_mismatched_tokenizer_is_refused(tiny_base_model: Path, built: Any) -> None:
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(tiny_base_model)
    other.add_tokens(["<|tool|>"])
    with pytest.raises(TokenizerMismatchError, match="built with tokenizer"):
        SpanIndex.open(built[1], other)


def test_a_missing_or_corrupt_index_is_refused(tok: Any, built: Any, tmp_path: Path) -> None:
    with pytest.raises(SpanIndexMissingError, match="no span index"):
        SpanIndex.open(tmp_path / "nothing", tok)
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(built[1], bad)
    table = bad / SHARD / "table.0"
    raw = bytearray(table.read_bytes())
    raw[0] ^= 0xFF
    table.write_bytes(bytes(raw))
    with pytest.raises(SpanIndexCorruptError, match="sha256"):
        SpanIndex.open(bad, tok)
    table.write_bytes(bytes(raw[:-1]))
    with pytest.raises(SpanIndexCorruptError, match="Rebuild"):
        SpanIndex.open(bad, tok, verify=False)  # sizes are checked even without hashing
    (bad / MANIFEST).write_text("{not json")
    with pytest.raises(SpanIndexCorruptError, match="unreadable"):
        SpanIndex.open(bad, tok)


def test_vocabularies_beyond_u16_are_stored_through_a_dense_map(tok: Any, tmp_path: Path) -> None:
    import numpy as np

    assert not needs_id_map(512) and not needs_id_map(65_534)
    assert needs_id_map(65_535) and needs_id_map(151_936)
    with pytest.raises(VocabularyTooLargeError, match="distinct token ids"):
        dense_ids(np.arange(70_000))
    info = build_span_index(training_set(), tok, tmp_path / "mapped", remap_ids=True)
    assert info.manifest.id_map
    mapped = SpanIndex.open(tmp_path / "mapped", tok)
    plain = build_span_index(training_set(), tok, tmp_path / "plain")
    assert not plain.manifest.id_map
    response = ids(tok, f"{PASSAGE_A} Also, {SHARED}")
    assert mapped.attribute([], response) == SpanIndex.open(tmp_path / "plain", tok).attribute([], response)
    assert {s.contributor for sp in mapped.attribute([], response) for s in sp.sources} == {A, B, C}


def test_a_folder_named_like_infini_gram_files_still_opens(tok: Any, tmp_path: Path) -> None:
    # the engine classifies files by substrings of their whole path
    out = tmp_path / "metadata-table-offset" / "tokenized"
    build_span_index(training_set(), tok, out)
    spans = SpanIndex.open(out, tok).attribute([], ids(tok, PASSAGE_A))
    assert {s.contributor for sp in spans for s in sp.sources} == {A}


def test_unknown_ids_never_match(index: SpanIndex, tok: Any) -> None:
    response = ids(tok, PASSAGE_A)
    middle = len(response) // 2
    response[middle] = len(tok) + 7  # an id the tokenizer does not have (a padded model vocabulary)
    spans = index.attribute([], response)
    assert all(not (s.start <= middle < s.end) for s in spans)


def test_credit_pays_each_token_once_and_splits_by_largest_remainder() -> None:
    def span(start: int, end: int, *sources: tuple[str, int]) -> AttributedSpan:
        srcs = [
            SpanSource(example_index=k, contributor=w, contribution_id=k, start=s, text="x")
            for k, (w, s) in enumerate(sources)
        ]
        return AttributedSpan(start=start, end=end, text="x", count=len(srcs), sources=srcs)

    # A holds 0..10; B, C, D hold 5..17: tokens 5..9 are shared four ways, 10..16 three ways
    credit = credits_from_spans([span(0, 10, (A, 0)), span(5, 17, (B, 5), (C, 5), (D, 5))])
    assert sum(credit.values()) == 17
    assert credit[A] == 5 + 1  # 0..4 alone, then one of the five shared units (5 = 4 x 1 + 1)
    assert sorted([credit[B], credit[C], credit[D]]) == [3, 4, 4]  # 1 + (7 = 3 x 2 + 1)
    # a source holding only the tail of a span is paid for the tail
    tail = credits_from_spans([span(0, 12, (A, 0), (B, 8))])
    assert tail == {A: 8 + 2, B: 2}
    assert credits_from_spans([]) == {}


def test_policy_rejects_more_sources_than_documents() -> None:
    with pytest.raises(ValueError, match="max_sources_per_span"):
        SpanPolicy(max_documents=2, max_sources_per_span=3)
