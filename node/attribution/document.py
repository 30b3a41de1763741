"""Attribution document v1: what a model's `attributionCID` points to, and its arithmetic check.

The document carries everything a verifier or a challenger needs to check a payout without the
node's help: the method (with versions and the committed score scale), the query set and
snapshots it was computed from, every example's quantised score in the scores tree (manifest
index order, `node.rewards.scores_tree`), the netted contribution weights, the contributor
weights, the payout (`node.rewards.payout`: floor amounts, dust to the first Datanet's treasury)
and the reward tree as OpenZeppelin's standard-v1 dump (what `RewardDistributor.claim` checks).

Every integer except the scores is derived from the scores; `check_arithmetic` recomputes them all
from the leaves and names each one that disagrees, so "the committed integers are consistent with
each other" is one call. Recomputing the scores themselves is `datanet verify`'s job.

Serialised canonically (`canonical_json`: sorted keys, no whitespace; integers stay integers), so
the same inputs give the same bytes and the same CID.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field

from node import safe_json
from node.chain.models import Job
from node.data.manifest import Manifest
from node.rewards.merkle import MerkleTreeError, StandardMerkleTree
from node.rewards.payout import (
    ContributionWeight,
    ExampleRef,
    PayoutResult,
    compute_payout,
    example_refs,
)
from node.rewards.scores_tree import ScoreLeaf, ScoresTree, score_leaves
from node.rewards.shares import REWARD_LEAF_ENCODING, Share, SharesError, Split, reward_tree

FORMAT: Literal["datanet-attribution-v1"] = "datanet-attribution-v1"
_HASH = r"^0x[0-9a-f]{64}$"


class MethodParams(BaseModel):
    """The committed knobs of the method. Extra keys (the engine's own) are kept and hashed in."""

    model_config = ConfigDict(extra="allow", frozen=True)

    snapshots: int = Field(ge=0, description="K, trajectory snapshots the scores sum over (0: example counts).")
    damping: float = Field(ge=0, description="lambda of the kernel F = PhiᵀPhi/N + lambda·I.")
    projection_dim: int = Field(ge=0, description="Projected gradient length; 0: no projection.")
    score_scale: float = Field(
        gt=0, description="Score units per integer, 2^-score_exponent: score = round(raw * 2^score_exponent) "
        "(`node.attribution.quantise`, exact on every machine).",
    )  # fmt: skip
    delta: int = Field(ge=0, description="Payout tolerance: OPEN base units a contributor's amount may differ by.")


class MethodInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, description="Method name, e.g. tracin-adam-kernel-v1.")
    versions: dict[str, str] = Field(description="torch, transformers, peft, node versions the scores came from.")
    params: MethodParams

    def method_id(self) -> str:
        """One string naming the method, its versions and its payout tolerance."""
        versions = "+".join(f"{k}-{v}" for k, v in sorted(self.versions.items()))
        return f"{self.id}+{versions}+delta-{self.params.delta}"


class QueryInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: Literal["eval-file", "held-out"]
    cid: str | None = Field(None, description="The revealed eval file's CID (eval-file only).")
    sha256: str | None = Field(None, pattern=_HASH, description="Its sha256, as committed in the job config.")
    examples: int = Field(ge=0, description="0 only under the example-count method (no query set).")


class SnapshotInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    cid: str = Field(min_length=1)
    sha256: str = Field(pattern=_HASH)
    step: int = Field(ge=0)
    lr_sum: float = Field(description="Effective learning rate summed over the interval (clip factor included).")
    queries_cid: str | None = Field(None, description="This snapshot's query vectors V_k (`query_vectors`).")
    queries_sha256: str | None = Field(None, pattern=_HASH, description="Their file's sha256.")


class ScoresSection(BaseModel):
    root: str = Field(pattern=_HASH)
    leaves: list[ScoreLeaf]


class PayoutInfo(BaseModel):
    total: int = Field(ge=0, description="OPEN base units the reward tree distributes.")
    dust: int = Field(ge=0, description="total - sum of the contributors' amounts.")
    dust_recipient: ChecksumAddress = Field(description="The first Datanet's treasury (last reward leaf).")


class AttributionDocument(BaseModel):
    """Attribution document v1 (see /work/notes/doc_v1.md and docs/protocol.md)."""

    format: Literal["datanet-attribution-v1"] = FORMAT
    method: MethodInfo
    job_id: int = Field(ge=0)
    chain_id: int = Field(ge=1)
    model_registry: ChecksumAddress
    data_root: str = Field(pattern=_HASH)
    example_count: int = Field(ge=1)
    query: QueryInfo
    snapshots: list[SnapshotInfo]
    projection_seed: str = Field(pattern=_HASH)
    scores: ScoresSection
    contributions: list[ContributionWeight] = Field(description="In manifest order.")
    weights: dict[str, int] = Field(description="Payout weight per contributor (checksum address).")
    total_weight: int = Field(ge=1, description="W = sum(weights): ModelRegistry's totalWeight.")
    fallback: Literal["example-count"] | None = None
    payout: PayoutInfo
    reward_root: str = Field(pattern=_HASH)
    reward_tree: dict[str, Any] = Field(description="OpenZeppelin StandardMerkleTree standard-v1 dump.")

    def canonical_json(self) -> bytes:
        return _canonical(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "attribution document") -> AttributionDocument:
        """Parses a document someone else wrote (`UntrustedJsonError` names `source` and the problem)."""
        return safe_json.load_model(cls, data, source)


def projection_seed(data_root: str, job_id: int) -> str:
    """The count-sketch seed the engine derives (`node.attribution.sketch.projection_seed`), as hex:
    one definition, so the document records the seed the scores were actually computed with."""
    from node.attribution.sketch import projection_seed as seed_bytes

    return "0x" + seed_bytes(data_root, job_id).hex()


def reward_shares(result: PayoutResult) -> list[Share]:
    """The reward tree's leaves in order: contributors by address, then the dust leaf (if any)."""
    extra = [Share(account=result.dust_recipient, amount=result.dust)] if result.dust else []
    return [*result.amounts, *extra]


def build_document(
    job: Job,
    manifest: Manifest,
    scores: Sequence[int],
    gradients_hashes: Sequence[str],
    method: MethodInfo,
    query: QueryInfo,
    snapshots: Sequence[SnapshotInfo],
    split: Split,
    *,
    chain_id: int,
    model_registry: str,
    dust_recipient: str,
) -> AttributionDocument:
    """The document of job `job` for quantised `scores` (one per manifest example, in order).
    `split` is `node.rewards.shares.split_pool` of the job; `dust_recipient` the treasury of
    the job's first Datanet. Raises `SharesError`/`MerkleTreeError` for inconsistent inputs."""
    if manifest.job_id != job.id:
        raise SharesError(f"the manifest is for job {manifest.job_id}, not job {job.id}.")
    refs = example_refs(manifest)
    result = compute_payout(refs, scores, split.contributors, dust_recipient)
    leaves = score_leaves([(r.contribution_id, r.contributor) for r in refs], scores, gradients_hashes)
    tree = reward_tree(job.id, reward_shares(result))
    return AttributionDocument(
        method=method,
        job_id=job.id,
        chain_id=chain_id,
        model_registry=to_checksum_address(model_registry),
        data_root=manifest.data_root,
        example_count=len(refs),
        query=query,
        snapshots=list(snapshots),
        projection_seed=projection_seed(manifest.data_root, job.id),
        scores=ScoresSection(root=ScoresTree(leaves).root_hex, leaves=leaves),
        contributions=result.contributions,
        weights=result.weights,
        total_weight=result.total_weight,
        fallback=result.fallback,
        payout=PayoutInfo(total=result.total, dust=result.dust, dust_recipient=result.dust_recipient),
        reward_root="0x" + tree.root.hex(),
        reward_tree=tree.dump().model_dump(mode="json"),
    )


# ------------------------------------------------------------------ the arithmetic check


class ArithmeticReport(BaseModel):
    """`ok` when every derived integer of a document equals its recomputation from the leaves."""

    ok: bool
    problems: list[str] = Field(description="One line per inconsistency, naming the field and both values.")


def check_arithmetic(doc: AttributionDocument, manifest: Manifest | None = None) -> ArithmeticReport:
    """Recomputes running totals, the scores root, contribution sums and weights, contributor
    weights, W, amounts, dust, the fallback and the reward tree from the score leaves, and
    reports each that differs. With `manifest`, the leaves must also be its examples."""
    problems: list[str] = []
    leaves = doc.scores.leaves
    in_order = _check_leaves(doc, problems)
    if manifest is not None:
        _check_manifest(doc, manifest, problems)
    if not in_order:
        return ArithmeticReport(ok=False, problems=problems)  # nothing else is meaningful
    refs = [ExampleRef(index=x.index, contribution_id=x.contribution_id, contributor=x.contributor) for x in leaves]
    try:
        result = compute_payout(refs, [x.score for x in leaves], doc.payout.total, doc.payout.dust_recipient)
    except SharesError as e:
        return ArithmeticReport(ok=False, problems=[*problems, f"payout cannot be recomputed: {e}"])
    _check_contributions(doc.contributions, result.contributions, problems)
    _diff(problems, "weights", doc.weights, result.weights)
    _diff(problems, "total_weight", doc.total_weight, result.total_weight)
    _diff(problems, "fallback", doc.fallback, result.fallback)
    _diff(problems, "payout.dust", doc.payout.dust, result.dust)
    _check_reward_tree(doc, reward_shares(result), problems)
    return ArithmeticReport(ok=not problems, problems=problems)


def _check_leaves(doc: AttributionDocument, problems: list[str]) -> bool:
    """Checks the leaves among themselves; False if they are not numbered 0..n-1."""
    leaves = doc.scores.leaves
    _diff(problems, "example_count", doc.example_count, len(leaves))
    running = 0
    for k, x in enumerate(leaves):
        if x.index != k:
            problems.append(f"scores.leaves[{k}].index is {x.index}; leaves must be numbered 0..n-1 in order")
            return False
        running += x.score
        if x.running_total != running:
            problems.append(f"scores.leaves[{k}].running_total is {x.running_total}, recomputed {running}")
            running = x.running_total  # report each break once, not every leaf after it
    if leaves:
        _diff(problems, "scores.root", doc.scores.root, ScoresTree(leaves).root_hex)
    _diff(problems, "projection_seed", doc.projection_seed, projection_seed(doc.data_root, doc.job_id))
    return True


def _check_contributions(
    committed: Sequence[ContributionWeight], recomputed: Sequence[ContributionWeight], problems: list[str]
) -> None:
    if len(committed) != len(recomputed):
        problems.append(f"contributions has {len(committed)} entries, recomputed {len(recomputed)}")
    for k, (c, r) in enumerate(zip(committed, recomputed, strict=False)):
        for field, want in r.model_dump().items():
            got = getattr(c, field)
            if got != want:
                problems.append(
                    f"contributions[{k}] (contribution {r.contribution_id}).{field} is {got!r}, recomputed {want!r}"
                )


def _check_manifest(doc: AttributionDocument, manifest: Manifest, problems: list[str]) -> None:
    _diff(problems, "data_root", doc.data_root, manifest.data_root)
    want = [(e.contribution_id, e.contributor) for e in manifest.entries]
    got = [(x.contribution_id, x.contributor) for x in doc.scores.leaves]
    if want != got:
        k = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
        problems.append(f"scores.leaves differ from the manifest's examples from index {k}")


def _check_reward_tree(doc: AttributionDocument, shares: list[Share], problems: list[str]) -> None:
    try:
        tree = StandardMerkleTree.load(doc.reward_tree)
    except (MerkleTreeError, ValueError) as e:
        problems.append(f"reward_tree does not load: {e}")
        return
    if tree.leaf_encoding != REWARD_LEAF_ENCODING:
        problems.append(f"reward_tree.leafEncoding is {tree.leaf_encoding}, expected {REWARD_LEAF_ENCODING}")
        return
    want = [[doc.job_id, i, s.account, s.amount] for i, s in enumerate(shares)]
    got = [[v[0], v[1], to_checksum_address(v[2]), v[3]] for v in tree.values()]
    for i in range(max(len(want), len(got))):
        w, g = (want[i] if i < len(want) else None), (got[i] if i < len(got) else None)
        if w != g:
            problems.append(f"reward_tree leaf {i} is {g}, recomputed {w}")
    # The tree loaded (every node checked) and holds the recomputed leaves, so its root is the
    # recomputed root.
    _diff(problems, "reward_root", doc.reward_root, "0x" + tree.root.hex())


def _diff(problems: list[str], field: str, committed: Any, recomputed: Any) -> None:
    if committed != recomputed:
        problems.append(f"{field} is {committed!r}, recomputed {recomputed!r}")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


__all__ = [
    "FORMAT",
    "ArithmeticReport",
    "AttributionDocument",
    "MethodInfo",
    "MethodParams",
    "PayoutInfo",
    "QueryInfo",
    "ScoresSection",
    "SnapshotInfo",
    "build_document",
    "check_arithmetic",
    "projection_seed",
    "reward_shares",
]
