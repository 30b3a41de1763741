"""Remove exact and near duplicates from a training set, crediting the earliest contributor.

Input is a sequence of examples in credit order (earliest committed contribution first, records
in file order); each example is kept unless it duplicates an example kept before it:

* exact: same `Example.dedup_key` (Unicode NFKC, casefolded, whitespace collapsed, roles kept);
* near: Jaccard similarity of word n-gram shingle sets >= `threshold_bps` / 10000. Words are
  ``\\w+`` runs of the normalised contents of all turns (roles ignored); a text shorter than n
  words is one shingle. Candidates come from MinHash signatures (`datasketch`, pinned, with an
  explicit scheme and seed) and LSH banding; every candidate is then checked with the *exact*
  Jaccard of the two shingle sets, so the decision does not depend on sketch noise, only
  whether a pair is looked at does (the bands are chosen so that a pair exactly at the
  threshold is looked at with probability >= `lsh_recall_bps` / 10000; more similar pairs even
  more surely).

A dropped example points at the earliest kept example it duplicates. The result depends only on
the examples, their order and the config: the same inputs give the same result on any machine.

Limitations: word shingles suit space-separated languages; a text in a script without spaces
(e.g. Chinese) is a few long "words", so its near duplicates are mostly missed (exact ones are
still caught). Short texts (under ~20 words) need nearly identical wording to reach 0.8.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
from datasketch import MinHash
from pydantic import BaseModel, ConfigDict, Field

from node.data.records import Example, normalize_text

_SCHEME = "affine32"  # explicit: datasketch's default scheme changed in 2.0.0
_WORD = re.compile(r"\w+")


class DedupConfig(BaseModel):
    """How duplicates are found; integers only, so it is recorded verbatim in the manifest."""

    model_config = ConfigDict(frozen=True)

    near: bool = Field(True, description="Also remove near duplicates (else exact only).")
    threshold_bps: int = Field(8000, ge=1, le=10_000, description="Jaccard threshold in basis points.")
    ngram: int = Field(3, ge=1, le=16, description="Words per shingle.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations.")
    lsh_recall_bps: int = Field(
        9900, ge=5000, le=9999, description="Chance that a pair exactly at the threshold is compared."
    )

    @cached_property
    def bands(self) -> tuple[int, int]:
        """(bands, rows per band): the most rows (fewest stray candidates) meeting the recall goal."""
        t, goal = self.threshold_bps / 10_000, self.lsh_recall_bps / 10_000
        best = (self.num_perm // 2, 2)  # datasketch needs at least 2 bands
        for r in range(2, self.num_perm // 2 + 1):
            b = self.num_perm // r
            if b >= 2 and 1 - (1 - t**r) ** b >= goal:
                best = (b, r)
        return best


class Dropped(BaseModel):
    """An input example left out, and the kept example it duplicates (both input positions)."""

    index: int
    duplicate_of: int
    reason: Literal["exact", "near"]
    similarity_bps: int = Field(description="Jaccard of the shingle sets, floored, in basis points.")


class DedupResult(BaseModel):
    kept: list[int] = Field(description="Input positions of the kept examples, ascending.")
    dropped: list[Dropped] = Field(default_factory=list, description="In input order.")

    def count(self, reason: Literal["exact", "near"]) -> int:
        return sum(1 for d in self.dropped if d.reason == reason)


def shingles(example: Example, ngram: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the example's word n-grams, shape (n_shingles,)."""
    words = _WORD.findall(normalize_text(" ".join(example.contents())))
    if not words:
        return np.empty(0, dtype=np.uint32)
    grams = {" ".join(words[i : i + ngram]) for i in range(max(1, len(words) - ngram + 1))}
    # CRC-32 only fingerprints a shingle (MinHash pre-mixes it with the MurmurHash3 finalizer); it
    # is 13x faster than a cryptographic hash, and a crafted collision gains nothing that copying
    # the text itself would not.
    return np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint32, count=len(grams)))


def jaccard_bps(a: np.ndarray, b: np.ndarray) -> int:
    """Exact Jaccard of two sorted unique hash arrays, floored to basis points."""
    inter = int(np.intersect1d(a, b, assume_unique=True).size)
    union = int(a.size + b.size - inter)
    return inter * 10_000 // union if union else 10_000


def dedup(examples: Sequence[Example], config: DedupConfig | None = None) -> DedupResult:
    """Keep the first of every group of duplicates (see the module docstring)."""
    cfg = config or DedupConfig()
    near = _NearIndex(cfg) if cfg.near else None
    seen: dict[bytes, int] = {}
    result = DedupResult(kept=[])
    for i, ex in enumerate(examples):
        key = ex.dedup_key()
        if key in seen:
            result.dropped.append(
                Dropped(index=i, duplicate_of=seen[key], reason="exact", similarity_bps=10_000)
            )
            continue
        if near is not None:
            match = near.add(i, ex)
            if match is not None:
                result.dropped.append(
                    Dropped(index=i, duplicate_of=match[0], reason="near", similarity_bps=match[1])
                )
                continue
        seen[key] = i
        result.kept.append(i)
    return result


class _NearIndex:
    """The kept examples' shingle sets and an LSH index over their MinHashes.

    LSH banding: the signature is cut into `bands` slices of `rows` values; two examples are
    candidates if any slice is equal. (Done here with one dict per band instead of
    `datasketch.MinHashLSH`: the same scheme, ~5x less overhead per example.)
    """

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        bands, rows = cfg.bands
        self.slices = [slice(b * rows, (b + 1) * rows) for b in range(bands)]
        self.tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        # The permutations come from np.random.RandomState(seed), whose stream numpy keeps stable.
        self.perms: Any = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=_SCHEME).permutations
        self.sets: dict[int, np.ndarray] = {}

    def add(self, i: int, ex: Example) -> tuple[int, int] | None:
        """The (earliest kept index, similarity) that `ex` near-duplicates, or None after keeping it."""
        sh = shingles(ex, self.cfg.ngram)
        if sh.size == 0:
            return None  # no words: only exact dedup applies
        mh = MinHash(
            num_perm=self.cfg.num_perm,
            seed=self.cfg.seed,
            hashfunc=int,
            permutations=self.perms,
            scheme=_SCHEME,
        )
        mh.update_batch(sh.tolist())
        sig = mh.hashvalues  # (num_perm,) uint32
        keys = [sig[s].tobytes() for s in self.slices]
        candidates: set[int] = set()
        for table, key in zip(self.tables, keys, strict=True):
            candidates.update(table.get(key, ()))
        for j in sorted(candidates):  # earliest first: credit goes to the earliest
            sim = jaccard_bps(sh, self.sets[j])
            if sim >= self.cfg.threshold_bps:
                return j, sim
        for table, key in zip(self.tables, keys, strict=True):
            table.setdefault(key, []).append(i)
        self.sets[i] = sh
        return None
