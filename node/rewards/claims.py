"""What an account can claim, read from public artifacts only: the chain and the content store.

Per job with a registered model, the model's `attributionCID` names the attribution document;
its reward tree (OpenZeppelin `standard-v1`) must have the root the RewardDistributor holds for
the job, or nothing in it is trusted: a claim would revert anyway, and a user should hear why
before paying gas. Proofs come from that tree and are checked against the on-chain root before
they are returned. The CLI (`datanet rewards`, `datanet claim`) and the API are thin shells over
`job_rewards`.

Both document shapes are read: v0 (`datanet-attribution-v0`, example counts: `tree`, `weights`)
and v1 (`datanet-attribution-v1`: `reward_tree`, `weights`, `total_weight`, per contribution its
score sum, weight and best/worst examples, per example its quantised score).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field
from web3 import Web3

from node import safe_json
from node.chain.models import Model, ModelStatus, Round
from node.chain.protocol import Protocol
from node.errors import NodeError
from node.rewards.merkle import MerkleTreeError, StandardMerkleTree

LEAF_ENCODING = ["uint256", "uint256", "address", "uint256"]  # what RewardDistributor.claim hashes
ClaimStatus = Literal["claimable", "claimed", "window-closed", "swept", "none"]


class RewardTreeError(NodeError, ValueError):
    """A published attribution document that cannot be claimed from (unreadable, or not the tree
    the RewardDistributor pays out)."""


class RewardLeaf(BaseModel):
    """One leaf of a job's reward tree: what `RewardDistributor.claim` takes."""

    job_id: int
    index: int = Field(description="The leaf's claim index (the distributor's claimed-bitmap bit).")
    account: str
    amount: int = Field(description="OPEN base units.")
    proof: list[str] = Field(description="Sibling hashes, 0x-hex, checked against the on-chain root.")
    claimed: bool


class ExampleScore(BaseModel):
    index: int = Field(description="The example's index in the training manifest.")
    score: int = Field(description="Its quantised influence on the query set (positive: it helped).")


class ContributionReward(BaseModel):
    """Why one contribution earned what it did (attribution v1 only)."""

    contribution_id: int
    examples: int
    score_sum: int
    weight: int = Field(description="max(0, score_sum): a contribution never costs its contributor more.")
    best: list[ExampleScore]
    worst: list[ExampleScore]


class JobReward(BaseModel):
    """One account's reward from one job."""

    job_id: int
    model_id: int
    account: str
    method: str = Field(description="Attribution method id from the document.")
    attribution_cid: str
    root: str = Field(description="The reward root, equal on-chain and in the published tree.")
    weight: int
    total_weight: int
    share: float = Field(description="weight / total_weight (0 when the total is 0).")
    amount: int = Field(description="OPEN base units over all of the account's leaves.")
    claimed: bool = Field(description="Every leaf of the account is claimed (false when it has none).")
    status: ClaimStatus
    claim_deadline: int = Field(description="Chain time after which claims fail and `sweep` refunds the rest.")
    swept: bool
    leaves: list[RewardLeaf]
    contributions: list[ContributionReward] = Field(default_factory=list)


def rewarded_models(p: Protocol) -> Iterator[Model]:
    """Finalized models (each opened a reward round; pending ones have none yet, voided never)."""
    for model_id in range(1, p.model_count() + 1):
        m = p.model(model_id)
        if m.status == ModelStatus.FINALIZED:
            yield m


def load_reward_tree(doc: dict[str, Any], cid: str) -> StandardMerkleTree:
    """The reward tree of an attribution document (v0 `tree`, v1 `reward_tree`), fully checked."""
    dump = doc.get("reward_tree", doc.get("tree"))
    if not isinstance(dump, dict):
        raise RewardTreeError(f"The attribution document {cid} has no reward tree (format {doc.get('format')!r}).")
    try:
        return StandardMerkleTree.load(dump)
    except MerkleTreeError as e:
        raise RewardTreeError(f"The reward tree in {cid} is unusable: {e}") from e


def job_rewards(p: Protocol, store: Any, model: Model, account: str, now: int) -> JobReward:
    """`account`'s reward from `model`'s job, its proofs checked against the distributor's root.

    Raises `RewardTreeError` when the document is unreadable or its tree is not the one paid out."""
    job_id, cid = model.jobId, model.attributionCID
    doc = _document(store, cid, job_id)
    tree = load_reward_tree(doc, cid)
    rnd = p.reward_round(job_id)
    if tree.root != rnd.root:
        raise RewardTreeError(
            f"Job #{job_id}: the reward tree published at {cid} has root 0x{tree.root.hex()}, but the "
            f"RewardDistributor pays out root 0x{bytes(rnd.root).hex()}; no claim from it would pass. The node "
            f"{model.node} published the wrong document: check it with `datanet model show {model.id}`."
        )
    if tree.leaf_encoding != LEAF_ENCODING or {int(v[0]) for v in tree.values()} != {job_id}:
        raise RewardTreeError(
            f"The reward tree at {cid} is not job #{job_id}'s: its leaves must be (jobId, index, "
            f"account, amount) = {LEAF_ENCODING} with jobId {job_id}."
        )
    who = Web3.to_checksum_address(account)
    leaves = [_leaf(p, tree, k, v) for k, v in enumerate(tree.values()) if _same(v[2], who)]
    weights = {Web3.to_checksum_address(a): int(w) for a, w in (doc.get("weights") or {}).items()}
    total_weight = int(doc.get("total_weight", sum(weights.values())))
    weight = weights.get(who, 0)
    return JobReward(
        job_id=job_id,
        model_id=model.id,
        account=who,
        method=_method(doc),
        attribution_cid=cid,
        root="0x" + tree.root.hex(),
        weight=weight,
        total_weight=total_weight,
        share=weight / total_weight if total_weight else 0.0,
        amount=sum(x.amount for x in leaves),
        claimed=bool(leaves) and all(x.claimed for x in leaves),
        status=_status(leaves, rnd, now),
        claim_deadline=rnd.claimDeadline,
        swept=rnd.swept,
        leaves=leaves,
        contributions=_why(doc, who),
    )


def _document(store: Any, cid: str, job_id: int) -> dict[str, Any]:
    if not cid:
        raise RewardTreeError(f"Job #{job_id}'s model published no attribution document (empty attributionCID).")
    try:
        doc = safe_json.loads(store.cat(cid), f"job #{job_id}'s attribution document {cid}")
    except safe_json.UntrustedJsonError as e:
        raise RewardTreeError(str(e)) from None
    if not isinstance(doc, dict):
        raise RewardTreeError(f"Job #{job_id}'s attribution document {cid} is not a JSON object.")
    return doc


def _leaf(p: Protocol, tree: StandardMerkleTree, k: int, value: list[Any]) -> RewardLeaf:
    job_id, index, account, amount = (int(value[0]), int(value[1]), str(value[2]), int(value[3]))
    proof = tree.proof(k)  # checked against the tree's root, which equals the on-chain root
    return RewardLeaf(
        job_id=job_id,
        index=index,
        account=Web3.to_checksum_address(account),
        amount=amount,
        proof=["0x" + h.hex() for h in proof],
        claimed=p.is_claimed(job_id, index),
    )


def _same(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.lower() == b.lower()


def _method(doc: dict[str, Any]) -> str:
    m = doc.get("method")
    if isinstance(m, dict):
        return str(m.get("id", ""))
    return str(m or "")


def _status(leaves: list[RewardLeaf], rnd: Round, now: int) -> ClaimStatus:
    if not leaves or not sum(x.amount for x in leaves):
        return "none"
    if all(x.claimed for x in leaves):
        return "claimed"
    if rnd.swept:
        return "swept"
    return "window-closed" if now > rnd.claimDeadline else "claimable"


def _why(doc: dict[str, Any], who: str) -> list[ContributionReward]:
    """Per contribution of `who`: its weight and its best and worst examples (v1 documents)."""
    scores = {int(x["index"]): int(x["score"]) for x in (doc.get("scores") or {}).get("leaves", [])}
    out = []
    for c in doc.get("contributions") or []:
        if not _same(c.get("contributor"), who):
            continue
        out.append(
            ContributionReward(
                contribution_id=int(c["contribution_id"]),
                examples=int(c.get("examples", 0)),
                score_sum=int(c.get("score_sum", 0)),
                weight=int(c.get("weight", 0)),
                best=[ExampleScore(index=int(i), score=scores.get(int(i), 0)) for i in c.get("best", [])],
                worst=[ExampleScore(index=int(i), score=scores.get(int(i), 0)) for i in c.get("worst", [])],
            )
        )
    return out


__all__ = [
    "ContributionReward",
    "ExampleScore",
    "JobReward",
    "RewardLeaf",
    "RewardTreeError",
    "job_rewards",
    "load_reward_tree",
    "rewarded_models",
]
