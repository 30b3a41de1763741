"""Comparing a committed attribution document with a recomputation: MATCH is defined in payout terms.

Floating point differs in the last bits from one CPU family to another, so a recomputed score
can land on the other side of a rounding boundary and change one committed integer, and with it
the scores root. That alone is not a dishonest node. A result MATCHes when

1. the committed document is consistent with itself (`check_arithmetic`: every running total,
   sum, weight, amount and both roots follow from the committed scores), and
2. each contributor's amount recomputed from *our* scores is within the committed tolerance
   `delta` (part of the method) of the committed amount.

The report also gives what a person wants to see: how far the scores moved at most (in units of
the largest committed score), how many integers differ, whether the roots are equal.
"""

from __future__ import annotations

from typing import Literal

from eth_utils import to_checksum_address
from pydantic import BaseModel, Field

from node.attribution.document import AttributionDocument, check_arithmetic
from node.data.manifest import Manifest
from node.rewards.payout import compute_payout


class AmountDiff(BaseModel):
    account: str
    committed: int
    recomputed: int

    @property
    def diff(self) -> int:
        return self.recomputed - self.committed


class Comparison(BaseModel):
    """The payout-level comparison of a committed document with a recomputed one."""

    verdict: Literal["MATCH", "MISMATCH"]
    arithmetic_problems: list[str] = Field(default_factory=list)
    scores_differing: int = Field(0, description="Committed integers that the recomputation quantises otherwise.")
    max_score_deviation: int = Field(0, description="Largest |committed - recomputed| score integer.")
    max_relative_deviation: float = Field(0.0, description="max_score_deviation / the largest committed |score|.")
    worst_example: int | None = Field(None, description="The manifest index of the largest deviation.")
    scores_root_equal: bool
    reward_root_equal: bool
    delta: int = Field(description="The committed per-contributor tolerance, in OPEN base units.")
    amounts: list[AmountDiff] = Field(description="Every account either side pays (committed and recomputed).")
    differing: list[AmountDiff] = Field(default_factory=list, description="Accounts whose amounts differ by > delta.")


def committed_amounts(doc: AttributionDocument) -> dict[str, int]:
    """account -> amount, from the committed reward tree's values (dust leaf included)."""
    out: dict[str, int] = {}
    for entry in doc.reward_tree.get("values", []):
        _job, _index, account, amount = entry["value"]
        key = to_checksum_address(str(account))
        out[key] = out.get(key, 0) + int(amount)
    return out


def compare(committed: AttributionDocument, recomputed: AttributionDocument, manifest: Manifest) -> Comparison:
    """`committed` as published, `recomputed` by this verifier with the committed score scale."""
    mine = [x.score for x in recomputed.scores.leaves]
    return compare_scores(committed, mine, manifest, scores_root_equal=committed.scores.root == recomputed.scores.root,
                          reward_root_equal=committed.reward_root == recomputed.reward_root)  # fmt: skip


def compare_scores(
    committed: AttributionDocument, mine: list[int], manifest: Manifest, *, scores_root_equal: bool,
    reward_root_equal: bool,
) -> Comparison:  # fmt: skip
    """The comparison when this verifier's score integers are `mine` (all recomputed, or the
    committed ones with the disputed examples recomputed: `node.daemon.verify`'s narrowed check)."""
    arithmetic = check_arithmetic(committed, manifest)
    theirs = [x.score for x in committed.scores.leaves]
    deviations = [abs(a - b) for a, b in zip(mine, theirs, strict=False)]
    peak = max((abs(v) for v in theirs), default=0)
    # Our payout from our scores, under the committed total and dust recipient.
    ours = compute_payout(manifest, mine, committed.payout.total, committed.payout.dust_recipient)
    recomputed_amounts = {s.account: s.amount for s in ours.amounts}
    if ours.dust:
        recomputed_amounts[ours.dust_recipient] = recomputed_amounts.get(ours.dust_recipient, 0) + ours.dust
    theirs_amounts = committed_amounts(committed)
    accounts = sorted(set(recomputed_amounts) | set(theirs_amounts), key=str.lower)
    amounts = [
        AmountDiff(account=a, committed=theirs_amounts.get(a, 0), recomputed=recomputed_amounts.get(a, 0))
        for a in accounts
    ]
    delta = committed.method.params.delta
    differing = [d for d in amounts if abs(d.diff) > delta]
    count_mismatch = len(mine) != len(theirs)
    problems = list(arithmetic.problems)
    if count_mismatch:
        problems.append(f"the document scores {len(theirs)} examples, the recomputation {len(mine)}")
    ok = not problems and not differing
    return Comparison(
        verdict="MATCH" if ok else "MISMATCH",
        arithmetic_problems=problems,
        scores_differing=sum(1 for d in deviations if d) + abs(len(mine) - len(theirs)),
        max_score_deviation=max(deviations, default=0),
        max_relative_deviation=(max(deviations, default=0) / peak) if peak else 0.0,
        worst_example=max(range(len(deviations)), key=lambda i: deviations[i]) if deviations else None,
        scores_root_equal=scores_root_equal,
        reward_root_equal=reward_root_equal,
        delta=delta,
        amounts=amounts,
        differing=differing,
    )


__all__ = ["AmountDiff", "Comparison", "committed_amounts", "compare", "compare_scores"]
