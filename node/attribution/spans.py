"""Inference-time attribution: which contributors' training examples a response repeats.

For each response the serving node calls `SpanIndex.attribute(prompt_ids, response_ids)` on the
index of the model's training set (`node.attribution.span_index`) and adds
`credits_from_spans(spans)` to the model's tally for the settlement epoch.

What is credited, exactly (with `SpanPolicy` p, m = ``p.min_tokens``):

1. **Echoes are never credited.** A response position t is *echoed* when some run of at least m
   response tokens covering t also occurs, contiguously, in the request's tokens (equivalently:
   some length-m window of the response covering t occurs in the request). A user who pastes a
   colluder's passage into the request and has the model repeat it earns that colluder nothing.
   Response ids the index's tokenizer does not have are treated like echoed positions.
2. The response is cut at echoed positions; within each remaining run, from every position the
   *longest* continuation that occurs in an indexed document is found (infini-gram's suffix-array
   ``attribute``), and a match that ends where an earlier one already ends is dropped (it is a
   suffix of it). Matches shorter than m tokens are dropped. What is left is the span.
3. **Rarity.** A match held by more than ``p.max_documents`` documents (training examples) is
   common language or a formula, not a contribution. A span's sources are the documents holding
   the span *or one of its suffixes* of at least m tokens held by at most ``p.max_documents``
   documents (each source says where its match starts): if A's example has a whole passage and
   B's only its last sentence, both are sources, and B is paid for that sentence only. Suffixes
   are only ever held by more documents, so a span whose whole is common is dropped entirely.
4. Sources are listed in manifest order (credit order: earliest commitment first, as dedup
   credits the earliest), at most ``p.max_sources_per_span`` of them.

Spans come back ordered by (start, end); two may overlap (a later one starts inside an earlier
one and runs past its end). `credits_from_spans` pays each attributed response token once.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_typing import ChecksumAddress
from pydantic import BaseModel, ConfigDict, Field, model_validator

from node.attribution.span_index import (
    DOC_SEP,
    ID_MAP,
    SHARD,
    SpanIndexCorruptError,
    SpanIndexError,
    SpanIndexManifest,
    TokenizerMismatchError,
    build_span_index,
    engine_path,
    read_manifest,
    tokenizer_identity,
    verify_files,
)

__all__ = [
    "AttributedSpan",
    "SpanCreditRow",
    "SpanIndex",
    "SpanPolicy",
    "SpanSource",
    "build_span_index",
    "credits_from_spans",
    "flat_view",
]

_MAX_CNT = (1 << 63) - 1  # no occurrence cap inside infini-gram: rarity is judged by documents, here


class SpanPolicy(BaseModel):
    """Which matches count. The defaults, and why:

    * ``min_tokens = 8``: about six English words with a 49k-token BPE vocabulary (SmolLM2), fewer
      with smaller ones: longer than the stock phrases answers share ("the capital of", "is one
      of the"), short enough to catch a reproduced sentence. It is also the echo window: a request
      and a response sharing 8 tokens in a row is a quote, not a coincidence.
    * ``max_documents = 5``: a passage that identifies a contribution is in one example, or a few
      when contributors share it; one in more is a template or boilerplate of the data set, whose
      tokens split five ways would pay each contributor little anyway. Repeating one's own passage
      across many examples to collect more credit therefore gets it dropped.
    * ``max_sources_per_span = 5``: list (and pay) every source of a span that passed the rarity
      filter; a lower value pays only the earliest ones in credit order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_tokens: int = Field(8, ge=1, le=4096, description="Shortest span credited, and the echo window (tokens).")
    max_documents: int = Field(5, ge=1, description="A span in more training examples than this is common: dropped.")
    max_sources_per_span: int = Field(5, ge=1, description="Most sources listed and paid per span (earliest first).")

    @model_validator(mode="after")
    def _sources_fit(self) -> SpanPolicy:
        if self.max_sources_per_span > self.max_documents:
            raise ValueError(
                f"max_sources_per_span ({self.max_sources_per_span}) exceeds max_documents ({self.max_documents}); "
                "a span never has more sources than documents: lower it"
            )
        return self


class SpanSource(BaseModel):
    """One training example a span repeats: its manifest entry's fields, and which part of the span
    it holds (``response[start:span.end]``; `start` is the span's own start for a full match)."""

    model_config = ConfigDict(frozen=True)

    example_index: int = Field(ge=0)
    contributor: ChecksumAddress
    contribution_id: int = Field(ge=0)
    start: int = Field(ge=0, description="First response token of this example's match; it runs to the span's end.")
    text: str = Field(description="That match, decoded.")


class SpanCreditRow(BaseModel):
    """One (span, source) pair, flat, for an API response: `span` is the source's own match."""

    model_config = ConfigDict(frozen=True)

    span: str
    start: int
    end: int
    contributor: ChecksumAddress
    contribution_id: int
    example_index: int


class AttributedSpan(BaseModel):
    """A maximal repeated run of response tokens ``[start, end)`` (no match starts earlier and ends
    here). `sources` are the examples holding it or one of its suffixes of at least ``min_tokens``
    that is itself rare enough, in manifest order, at most ``max_sources_per_span`` of them."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0, description="First response token of the span (offset in response_ids).")
    end: int = Field(description="One past its last response token.")
    text: str = Field(description="The span decoded by the index's tokenizer.")
    count: int = Field(ge=1, description="Training examples holding the span or a credited suffix of it.")
    sources: list[SpanSource]

    def rows(self) -> list[SpanCreditRow]:
        return [
            SpanCreditRow(
                span=s.text,
                start=s.start,
                end=self.end,
                contributor=s.contributor,
                contribution_id=s.contribution_id,
                example_index=s.example_index,
            )
            for s in self.sources
        ]


def flat_view(spans: Sequence[AttributedSpan]) -> list[dict[str, Any]]:
    """``[{span, start, end, contributor, contribution_id, example_index}, ...]`` in span order."""
    return [row.model_dump(mode="json") for s in spans for row in s.rows()]


class SpanIndex:
    """An opened span index: `open` once per model, then `attribute` per response (thread-safe:
    the engine only reads its memory-mapped files)."""

    def __init__(
        self,
        index_dir: Path,
        manifest: SpanIndexManifest,
        tokenizer: Any,
        engine: Any,
        offsets: np.ndarray,
        id_map: np.ndarray | None,
    ):
        self.dir = index_dir
        self.manifest = manifest
        self.tokenizer = tokenizer
        self._engine = engine
        self._offsets = offsets  # (documents,) u64: byte offset of each document's separator
        self._id_map = id_map  # (distinct ids,) sorted u32, or None: ids are stored as they are
        self._owners: dict[int, dict[str, Any]] = {}  # document -> its metadata (manifest fields)
        # (tokens, pointer_bytes) u8: the suffix array, read-only and memory-mapped
        self._table = np.memmap(index_dir / SHARD / "table.0", dtype=np.uint8, mode="r").reshape(
            manifest.tokens, manifest.pointer_bytes
        )

    @classmethod
    def open(cls, index_dir: Path, tokenizer: Any, *, verify: bool = True) -> SpanIndex:
        """Open the index in `index_dir` for ids of `tokenizer`. `verify` hashes every file against
        the manifest (one read of the index; sizes and layout are checked either way).

        Raises `SpanIndexMissingError`, `SpanIndexCorruptError`, `TokenizerMismatchError`.
        """
        from infini_gram.engine import InfiniGramEngine

        d = Path(index_dir)
        m = read_manifest(d)
        verify_files(d, m, hashes=verify)
        ident = tokenizer_identity(tokenizer)
        if (ident.sha256, ident.vocab_size) != (m.tokenizer.sha256, m.tokenizer.vocab_size):
            raise TokenizerMismatchError(
                f"span index {d} was built with tokenizer {m.tokenizer.name!r} ({m.tokenizer.vocab_size} ids, "
                f"sha256 {m.tokenizer.sha256[:12]}…), not {ident.name!r} ({ident.vocab_size} ids, sha256 "
                f"{ident.sha256[:12]}…): its ids would match nonsense. Open it with the model's own tokenizer, or "
                "rebuild the index with this one."
            )
        path, tmp = engine_path(d / SHARD)
        try:
            # eos only stands in for the separator in next-token queries, which we never make
            engine = InfiniGramEngine(index_dir=str(path), eos_token_id=0, vocab_size=DOC_SEP, token_dtype="u16")
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)  # the engine holds its files mapped
        offsets = np.fromfile(d / SHARD / "offset.0", dtype="<u8")
        if len(offsets) != m.documents or engine.get_total_doc_cnt() != m.documents:
            raise SpanIndexCorruptError(f"span index {d}: the engine sees a different number of documents")
        id_map = np.fromfile(d / ID_MAP, dtype="<u4").astype(np.int64) if m.id_map else None
        return cls(d, m, tokenizer, engine, offsets, id_map)

    def attribute(
        self, prompt_ids: Sequence[int], response_ids: Sequence[int], policy: SpanPolicy | None = None
    ) -> list[AttributedSpan]:
        """The response's credited spans (see the module docstring), ordered by (start, end)."""
        p = policy or SpanPolicy()
        response = _ids(response_ids, "response_ids")
        echoed = echo_mask(_ids(prompt_ids, "prompt_ids"), response, p.min_tokens)
        stored, known = self._stored(response)
        blocked = [e or not k for e, k in zip(echoed, known, strict=True)]
        spans: list[AttributedSpan] = []
        for a, b in _runs(blocked):
            if b - a >= p.min_tokens:
                spans += self._attribute_run(response, stored, a, b, p)
        return sorted(spans, key=lambda s: (s.start, s.end))

    def _stored(self, response: list[int]) -> tuple[list[int], list[bool]]:
        """The ids as the index stores them, and which of them it can hold at all."""
        r = np.asarray(response, dtype=np.int64)
        if self._id_map is None:
            known = r < self.manifest.tokenizer.vocab_size
            return np.where(known, r, 0).tolist(), known.tolist()
        pos = np.minimum(np.searchsorted(self._id_map, r), len(self._id_map) - 1)
        known = self._id_map[pos] == r
        return np.where(known, pos, 0).tolist(), known.tolist()

    def _attribute_run(
        self, response: list[int], stored: list[int], a: int, b: int, p: SpanPolicy
    ) -> list[AttributedSpan]:
        """Spans of ``response[a:b]``: infini-gram's maximal matches (leftmost start per end), each
        with the examples holding it or a rare-enough suffix of at least ``min_tokens``."""
        res = self._engine.attribute(
            input_ids=stored[a:b], delim_ids=[], min_len=p.min_tokens, max_cnt=_MAX_CNT, enforce_bow=False
        )
        if "error" in res:
            raise SpanIndexError(f"infini-gram refused the query: {res['error']}")
        out: list[AttributedSpan] = []
        for sp in res["spans"]:
            start, end = a + sp["l"], a + sp["r"]
            first = self._first_starts(stored, start, end, p)
            if not first:
                continue  # the whole span is common
            sources = [self._source(doc, s, response[s:end]) for doc, s in first.items()]
            sources.sort(key=lambda x: x.example_index)
            out.append(
                AttributedSpan(
                    start=start,
                    end=end,
                    text=self.tokenizer.decode(response[start:end]),
                    count=len(sources),
                    sources=sources[: p.max_sources_per_span],
                )
            )
        return out

    def _first_starts(self, stored: list[int], start: int, end: int, p: SpanPolicy) -> dict[int, int]:
        """Document -> the earliest s such that it holds ``[s, end)``, over the suffixes of at least
        ``min_tokens`` that are in at most ``max_documents`` documents.

        A later suffix occurs wherever an earlier one does (and maybe elsewhere): its occurrence
        count never falls, and an equal count means the same occurrences, so the same documents.
        The walk therefore jumps, by binary search, from one count change to the next (a passage
        found in one example costs ~log2(length) lookups, not one per token), and stops at the
        first suffix that is common.
        """
        last = end - p.min_tokens  # the last start of a long-enough suffix
        counts: dict[int, Any] = {}

        def find(s: int) -> Any:
            if s not in counts:
                # the C++ engine itself: the Python wrapper re-checks every id of every suffix
                # (quadratic); these ids were range-checked once in `_stored`
                counts[s] = self._engine.engine.find(input_ids=stored[s:end])
            return counts[s]

        first: dict[int, int] = {}
        s = start
        while s <= last:
            found = find(s)
            lo, hi = found.segment_by_shard[0]
            docs = self._documents(lo, hi)
            if len(docs) > p.max_documents:
                break
            for doc in docs:
                first.setdefault(int(doc), s)
            a, b = s, last  # the last start with this same count lies in [a, b]
            while a < b:
                mid = (a + b + 1) // 2
                a, b = (mid, b) if find(mid).cnt == found.cnt else (a, mid - 1)
            s = a + 1
        return first

    def _documents(self, lo: int, hi: int) -> np.ndarray:
        """Distinct document numbers of suffix-array ranks ``[lo, hi)`` (sorted)."""
        raw = self._table[lo:hi].astype(np.uint64)  # (hi-lo, pointer_bytes) little-endian bytes
        ptrs = (raw << (8 * np.arange(raw.shape[1], dtype=np.uint64))).sum(axis=1, dtype=np.uint64)
        return np.unique(np.searchsorted(self._offsets, ptrs, side="right") - 1)

    def _source(self, doc: int, start: int, ids: list[int]) -> SpanSource:
        """Who gave document `doc` (the metadata infini-gram's get_doc_by_ptr returns), and its match."""
        if doc not in self._owners:
            got = self._engine.get_doc_by_ptr(s=0, ptr=int(self._offsets[doc]), max_disp_len=1)
            try:
                if "error" in got or got["doc_ix"] != doc:
                    raise ValueError(got.get("error", f"document {got['doc_ix']}, expected {doc}"))
                self._owners[doc] = dict(json.loads(got["metadata"])["metadata"])
            except (ValueError, KeyError, TypeError) as e:
                raise SpanIndexCorruptError(
                    f"span index {self.dir}: document {doc} has no readable metadata ({e}). Rebuild the index."
                ) from e
        return SpanSource(**self._owners[doc], start=start, text=self.tokenizer.decode(ids))


def echo_mask(prompt: Sequence[int], response: Sequence[int], window: int) -> list[bool]:
    """``mask[t]`` is True when response position t lies in a run of at least `window` tokens that
    also occurs contiguously in `prompt` (checked through its length-`window` sub-windows, which
    cover exactly the same positions)."""
    mask = [False] * len(response)
    if len(prompt) < window or len(response) < window:
        return mask
    grams = {tuple(prompt[i : i + window]) for i in range(len(prompt) - window + 1)}
    for a in range(len(response) - window + 1):
        if tuple(response[a : a + window]) in grams:
            mask[a : a + window] = [True] * window
    return mask


def credits_from_spans(spans: Sequence[AttributedSpan]) -> dict[ChecksumAddress, int]:
    """Integer credit units per contributor for the spans of *one* response.

    Each response token inside a credited span is one unit, paid once. Its owners are the distinct
    contributors of every source whose match covers it (``source.start <= t < span.end``, over all
    spans covering t, so overlapping spans are not paid twice and a contributor holding only the
    tail of a long passage is paid only for the tail). Consecutive tokens with the same owners form
    a run whose units are split evenly; the ``units % n`` left over go one each to the owners in
    address order starting at position ``run_start % n``, so no address is favoured across runs.
    The total equals the number of response tokens with an owner.
    """
    owners: dict[int, set[ChecksumAddress]] = {}
    for span in spans:
        for src in span.sources:
            for t in range(src.start, span.end):
                owners.setdefault(t, set()).add(src.contributor)
    credit: dict[ChecksumAddress, int] = {}
    positions = sorted(owners)
    k = 0
    while k < len(positions):
        run_start, who = positions[k], owners[positions[k]]
        j = k
        while j + 1 < len(positions) and positions[j + 1] == positions[j] + 1 and owners[positions[j + 1]] == who:
            j += 1
        units, ordered = j - k + 1, sorted(who, key=str.lower)
        base, extra = divmod(units, len(ordered))
        for i, c in enumerate(ordered):
            credit[c] = credit.get(c, 0) + base + (1 if (i - run_start) % len(ordered) < extra else 0)
        k = j + 1
    return dict(sorted(credit.items(), key=lambda kv: kv[0].lower()))


def _ids(ids: Sequence[int], name: str) -> list[int]:
    out = [int(t) for t in ids]
    if any(t < 0 for t in out):
        raise ValueError(f"{name} has a negative token id ({min(out)}); pass the tokenizer's ids")
    return out


def _runs(blocked: list[bool]) -> list[tuple[int, int]]:
    """Maximal [a, b) runs of unblocked positions."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for t, b in enumerate([*blocked, True]):
        if not b and start is None:
            start = t
        elif b and start is not None:
            runs.append((start, t))
            start = None
    return runs
