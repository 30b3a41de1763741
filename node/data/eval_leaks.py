"""Training examples that copy an example of the job's evaluation set nearly verbatim.

The poster's eval set is the attribution query set, revealed only after the claim, so nobody can
tailor data to it before the training set is fixed. What remains to stop is a contribution that
*is* an eval example (copied from an earlier public reveal, say): it would score as highly
influential for the plain reason that it contains the test. Such copies are dropped, with the
reason, before training.

A training example that teaches the fact an eval question asks about is the point of the data, not
a leak, so the test is deliberately narrow: the prompt side (every non-assistant turn) **and** the
answer side (the assistant turns) must each match the same eval example at `threshold_bps` word-
trigram Jaccard or more. A whole-example MinHash match is too blunt: in short examples the answer
dominates, so "Q: where is X? A: in Y" and any other question answered "in Y" look alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from node.data.dedup import jaccard_bps
from node.data.records import Example, normalize_text

DEFAULT_THRESHOLD_BPS = 9000
_NGRAM = 3


class EvalCopy(BaseModel):
    """Training example `index` copies eval example `eval_index` (both sides at or above the bar)."""

    index: int
    eval_index: int
    prompt_bps: int = Field(ge=0, le=10_000)
    answer_bps: int = Field(ge=0, le=10_000)

    def reason(self) -> str:
        return (
            f"copies eval example {self.eval_index} nearly verbatim (prompt {self.prompt_bps / 100:.0f}%, "
            f"answer {self.answer_bps / 100:.0f}% word-trigram overlap)"
        )


def _sides(example: Example) -> tuple[str, str]:
    if example.kind == "text":
        return "", example.text
    prompt = " ".join(m.content for m in example.messages if m.role != "assistant")
    answer = " ".join(m.content for m in example.messages if m.role == "assistant")
    return prompt, answer


def _grams(text: str) -> np.ndarray:
    import zlib

    words = normalize_text(text).split()
    if not words:
        return np.empty(0, dtype=np.uint32)
    n = min(_NGRAM, len(words))
    grams = {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}
    return np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint32, count=len(grams)))


def eval_copies(
    train: Sequence[Example], evaluation: Sequence[Example], threshold_bps: int = DEFAULT_THRESHOLD_BPS
) -> list[EvalCopy]:
    """The training examples (by position) that copy an eval example on both sides; at most one
    `EvalCopy` per training example (its closest eval example). Exact O(n·m) comparison: eval sets
    are small (hundreds), and an index would only add a false-negative rate to a payout rule."""
    ev = [tuple(_grams(s) for s in _sides(e)) for e in evaluation]
    out: list[EvalCopy] = []
    for i, ex in enumerate(train):
        p, a = (_grams(s) for s in _sides(ex))
        best: EvalCopy | None = None
        for j, (ep, ea) in enumerate(ev):
            ab = jaccard_bps(a, ea)
            if ab < threshold_bps:
                continue
            pb = jaccard_bps(p, ep)
            if pb >= threshold_bps and (best is None or pb + ab > best.prompt_bps + best.answer_bps):
                best = EvalCopy(index=i, eval_index=j, prompt_bps=pb, answer_bps=ab)
        if best is not None:
            out.append(best)
    return out


__all__ = ["DEFAULT_THRESHOLD_BPS", "EvalCopy", "eval_copies"]
