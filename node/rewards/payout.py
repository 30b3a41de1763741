"""The payout rule: per-example integer scores -> per-contribution weights -> contributor amounts.

Why each step (docs/protocol.md, "Payout rule", says it for users):

* **Sum per contribution, then clip at zero.** A contribution is one staked, curated file. Netting
  its examples' scores first keeps zero-mean junk from earning (clipping each example would pay
  the positive half of pure noise), and clipping the sum lets one bad file cost only itself, not
  the contributor's other files. The stake per file prices splitting junk into many files.
* **A contributor's weight is the sum over its contributions.**
* **amount = floor(total * w / W), the rounding dust to one fixed recipient** (the first Datanet's
  treasury). Each amount then depends only on its own weight and two committed numbers, so any
  leaf can be checked on its own (on-chain challenges need that), where largest-remainder shares
  need a global ranking.
* **No positive weight at all: fall back to example counts**, never back to the poster, who picks
  the evaluation set and could otherwise make every score negative to get the pool back.

Everything here is integer arithmetic on the manifest order, so the same scores always give the
same result, to the unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import BaseModel, Field

from node.data.manifest import Manifest
from node.rewards.shares import Share, SharesError

EXTREMES = 3
"""How many best and worst examples each contribution lists (its 'why')."""

Fallback = Literal["example-count"]


class ExampleRef(BaseModel):
    """What the payout rule needs of a manifest entry: whose contribution an example is."""

    index: int = Field(ge=0)
    contribution_id: int = Field(ge=0)
    contributor: ChecksumAddress


class ContributionWeight(BaseModel):
    """One contribution's examples netted: `weight = max(0, score_sum)`; its extremes by index."""

    contribution_id: int
    contributor: ChecksumAddress
    examples: int = Field(ge=1)
    first_index: int = Field(ge=0, description="Manifest index of its first example (they are contiguous).")
    score_sum: int
    weight: int = Field(ge=0)
    best: list[int] = Field(description=f"Manifest indices of its up to {EXTREMES} highest scores, best first.")
    worst: list[int] = Field(description=f"Manifest indices of its up to {EXTREMES} lowest scores, worst first.")


class PayoutResult(BaseModel):
    """The whole payout: what the reward tree pays and why."""

    contributions: list[ContributionWeight] = Field(description="In manifest (credit) order.")
    weights: dict[str, int] = Field(
        description="Payout weight per contributor (checksum address): the sum of its contribution "
        "weights, or its example count under the fallback."
    )
    total_weight: int = Field(ge=1, description="W, the sum of `weights`.")
    fallback: Fallback | None = Field(None, description="Set when no contribution had a positive weight.")
    total: int = Field(ge=0, description="OPEN base units distributed (the distributor's contributors' share).")
    amounts: list[Share] = Field(description="floor(total * w / W) per contributor with w > 0, by address.")
    dust: int = Field(ge=0, description="total - sum(amounts), paid to `dust_recipient`.")
    dust_recipient: ChecksumAddress


def example_refs(manifest: Manifest) -> list[ExampleRef]:
    return [
        ExampleRef.model_construct(index=e.index, contribution_id=e.contribution_id, contributor=e.contributor)
        for e in manifest.entries
    ]


def contribution_weights(refs: Sequence[ExampleRef], scores: Sequence[int]) -> list[ContributionWeight]:
    """Scores netted per contribution, in manifest order. Raises `SharesError` if the lengths
    differ, an index is out of place, or a contribution's examples are not contiguous (the
    manifest numbers a contribution's kept records one after another)."""
    if len(refs) != len(scores):
        raise SharesError(f"{len(scores)} scores for {len(refs)} manifest examples; give one score per example.")
    groups: list[list[int]] = []
    first_at: dict[int, int] = {}  # contribution id -> manifest index of its first example
    for k, ref in enumerate(refs):
        if ref.index != k:
            raise SharesError(f"manifest entry {k} has index {ref.index}; entries must be numbered 0..n-1.")
        if type(scores[k]) is not int:
            raise SharesError(f"score {k} is {scores[k]!r}; scores must be quantised integers.")
        if groups and refs[groups[-1][0]].contribution_id == ref.contribution_id:
            groups[-1].append(k)
            continue
        if ref.contribution_id in first_at:
            raise SharesError(
                f"contribution {ref.contribution_id} has examples from {first_at[ref.contribution_id]} and again "
                f"at {k}; a contribution's examples must be contiguous in the manifest."
            )
        first_at[ref.contribution_id] = k
        groups.append([k])
    return [_netted(refs, scores, g) for g in groups]


def _netted(refs: Sequence[ExampleRef], scores: Sequence[int], idx: list[int]) -> ContributionWeight:
    total = sum(scores[i] for i in idx)
    by_score = sorted(idx, key=lambda i: (scores[i], i))
    first = refs[idx[0]]
    return ContributionWeight(
        contribution_id=first.contribution_id,
        contributor=first.contributor,
        examples=len(idx),
        first_index=idx[0],
        score_sum=total,
        weight=max(0, total),
        best=sorted(idx, key=lambda i: (-scores[i], i))[:EXTREMES],
        worst=by_score[:EXTREMES],
    )


def floor_amounts(weights: Mapping[str, int], total: int) -> tuple[list[Share], int]:
    """`floor(total * w / W)` per account with `w > 0`, sorted by address, and the dust
    `total - sum(amounts)` (always below the number of accounts)."""
    if total < 0:
        raise SharesError(f"cannot distribute a negative total ({total}).")
    if any(w < 0 for w in weights.values()):
        raise SharesError(f"negative payout weights: { {a: w for a, w in weights.items() if w < 0} }.")
    positive = {to_checksum_address(a): w for a, w in weights.items() if w > 0}
    big_w = sum(positive.values())
    if big_w == 0:
        raise SharesError("no account has a positive weight; there is nobody to pay.")
    shares = [Share(account=a, amount=total * positive[a] // big_w) for a in sorted(positive, key=str.lower)]
    return shares, total - sum(s.amount for s in shares)


def compute_payout(
    refs: Sequence[ExampleRef] | Manifest, scores: Sequence[int], total: int, dust_recipient: str
) -> PayoutResult:
    """The payout of `total` for per-example `scores` (one per manifest example, in index order)."""
    rows = example_refs(refs) if isinstance(refs, Manifest) else list(refs)
    contributions = contribution_weights(rows, scores)
    weights: dict[str, int] = {}
    for c in contributions:
        weights[c.contributor] = weights.get(c.contributor, 0) + c.weight
    fallback: Fallback | None = None
    if not any(weights.values()):
        fallback = "example-count"
        weights = {}
        for c in contributions:
            weights[c.contributor] = weights.get(c.contributor, 0) + c.examples
    weights = dict(sorted(weights.items(), key=lambda aw: aw[0].lower()))
    amounts, dust = floor_amounts(weights, total)
    return PayoutResult(
        contributions=contributions,
        weights=weights,
        total_weight=sum(weights.values()),
        fallback=fallback,
        total=total,
        amounts=amounts,
        dust=dust,
        dust_recipient=to_checksum_address(dust_recipient),
    )


__all__ = [
    "EXTREMES",
    "ContributionWeight",
    "ExampleRef",
    "PayoutResult",
    "compute_payout",
    "contribution_weights",
    "example_refs",
    "floor_amounts",
]
