"""Scores to committed integers: ``q_i = round_half_even(s_i · 2^scale)``.

The scale is a power of two, committed as its exponent, because multiplying a float by 2^e is
exact (`math.ldexp`): the only rounding is the final one to an integer, the same on every
machine, with no libm `pow` whose last bit could differ. A verifier quantises its *recomputed*
scores with the *committed* exponent (never one it chooses itself), so a score that differs in
its last bits changes an integer only when it sits within that difference of a rounding
boundary.

`choose_scale` picks the exponent from the scores: the largest |score| lands in
[2^(bits-1), 2^bits), so integers resolve about 1/2^bits of the largest score. With the default
24 bits that is ~6e-8 of it: far finer than any payout needs, and coarse enough that a
recomputation off by a relative eps moves a given integer across a boundary with probability
about eps · 2^24 (float64 noise of 1e-12: under 2e-5 per example).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_BITS = 24


def choose_scale(scores: Sequence[float], bits: int = DEFAULT_BITS) -> int:
    """The exponent e (possibly negative) to commit: max |s| · 2^e in [2^(bits-1), 2^bits).
    All-zero scores give e = 0."""
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must be in [1, 62], got {bits}")
    peak = max((abs(s) for s in scores), default=0.0)
    if not math.isfinite(peak):
        raise ValueError("scores contain a NaN or an infinity: attribution diverged; nothing to commit")
    if peak == 0.0:
        return 0
    _, exp = math.frexp(peak)  # peak = m · 2^exp, m in [0.5, 1)
    return bits - exp


def quantise(scores: Sequence[float], scale: int) -> list[int]:
    """Each score times 2^scale, rounded to the nearest integer (ties to even)."""
    out = []
    for s in scores:
        if not math.isfinite(s):
            raise ValueError(f"cannot quantise the score {s!r}")
        out.append(round(math.ldexp(s, scale)))
    return out


def dequantise(values: Sequence[int], scale: int) -> list[float]:
    return [math.ldexp(float(v), -scale) for v in values]


__all__ = ["DEFAULT_BITS", "choose_scale", "dequantise", "quantise"]
