"""`datanet verify JOB`: recompute a registered job's attribution from public artifacts only.

Everything is fetched by the CIDs the chain (or the committed document) names and checked
against the hash the chain (or the document) committed to before it is used: the job config
(`configHash`), the training set (re-assembled from the chain at the claim block, exactly as the
node did, so its root must be `dataRoot`), the revealed eval set (`eval_sha256` of the config),
the adapter (`adapterHash`), every trajectory snapshot (its sha256 in the document), the base
model (`baseModelHash`). One training interval, drawn at random unless named, is replayed from
the snapshot before it on the committed data and config and must land on its snapshot
(`node.train.replay`: this is what ties the snapshots to the data). Then the scores are
recomputed in the isolated worker with the committed method parameters and score scale, and
compared in payout terms (`node.attribution.verify.compare`).

It lives beside the daemon because it reuses the daemon's own checks (config, base model,
private-Datanet key grants): a verifier is a node that re-runs a step instead of claiming.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from node import safe_json
from node.attribution.document import AttributionDocument
from node.attribution.pipeline import (
    EXAMPLE_COUNT_METHOD,
    QuerySet,
    RunInputs,
    attribute_run,
    count_document,
    eval_queries,
    held_out_queries,
    narrow_scores,
)
from node.attribution.request import MethodParams as EngineParams
from node.attribution.verify import Comparison, compare, compare_scores
from node.chain.models import Contribution, Datanet, Job, JobStatus
from node.chain.protocol import Protocol
from node.config import Settings
from node.daemon.eligibility import NotEligibleError, load_config, local_base_model
from node.data.assemble import assemble
from node.errors import AccessDeniedError, ContentMismatchError, DecryptionError, GrantCoverageError, NodeError
from node.rewards.shares import split_pool
from node.storage.base import ContentStore
from node.train.replay import IntervalReplay


class VerifyError(NodeError):
    """The job cannot be verified here (not registered, an artifact missing, no key grant)."""


class NoSuchPart(VerifyError):
    """The example or interval asked for is not part of the result (a claim naming nothing)."""


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class VerifyReport(BaseModel):
    job_id: int
    model_id: int
    verdict: Literal["MATCH", "MISMATCH"]
    method: str
    checks: list[Check] = Field(description="Every artifact checked against its committed hash, in order.")
    comparison: Comparison | None = Field(None, description="None when an artifact check already failed.")
    replay: IntervalReplay | None = Field(None, description="The training interval replayed, when one was.")
    seconds: float


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.items.append(Check(name=name, ok=ok, detail=detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.items)


def verify_job(
    p: Protocol, store: ContentStore, job_id: int, settings: Settings, *, interval: int | None = None,
    replay: bool = True, attribute: bool = True, example: int | None = None,
) -> VerifyReport:  # fmt: skip
    """Recomputes job `job_id`'s attribution and compares it with what was committed.

    A dispute narrows to one piece, and so can this: `interval` names the training interval to
    replay (default: one drawn at random, so a node cannot know which; `replay=False`: none);
    `example` recomputes only that manifest example's score, from its own gradients and the
    committed query vectors (one example's dispute); `attribute=False` recomputes no score at all
    (a replay dispute). By default every score is recomputed, and every snapshot's committed query
    vectors are compared with this verifier's."""
    t0 = time.perf_counter()
    job = p.job(job_id)
    if job.status not in (JobStatus.SUBMITTED, JobStatus.COMPLETED) or not job.modelId:
        raise VerifyError(
            f"job #{job_id} has no registered result to verify (it is {job.status.name.lower()}); "
            "`datanet job show` shows its state"
        )
    model = p.model(job.modelId)
    checks = _Checks()
    doc = AttributionDocument.from_json(_cat(store, model.attributionCID, "attribution document"))
    if example is not None and not 0 <= example < len(doc.scores.leaves):
        raise NoSuchPart(f"job #{job_id}'s result scores {len(doc.scores.leaves)} examples (0..): there is no "
                         f"example {example}")  # fmt: skip
    if interval is not None and not 0 <= interval < len(doc.snapshots):
        raise NoSuchPart(f"job #{job_id}'s result has {len(doc.snapshots)} training intervals (0..): there is no "
                         f"interval {interval}")  # fmt: skip
    checks.add("attribution root", doc.reward_root == "0x" + model.attributionRoot.hex(),
               f"document {doc.reward_root}, chain 0x{model.attributionRoot.hex()}")  # fmt: skip
    checks.add("scores root", doc.scores.root == "0x" + model.scoresRoot.hex(),
               f"document {doc.scores.root}, chain 0x{model.scoresRoot.hex()}")  # fmt: skip
    committed, onchain = (doc.total_weight, doc.example_count), (model.totalWeight, model.exampleCount)
    checks.add("total weight and example count", committed == onchain, f"document {committed}, chain {onchain}")
    try:
        config = load_config(store, job)
    except NotEligibleError as e:
        checks.add("job config", False, str(e))
        return _report(job_id, job.modelId, doc, checks, None, t0)
    checks.add("job config", True, f"{job.configCID} matches configHash")

    # The query set: the revealed eval file when the document says so (checked), else held out.
    evaluation = None
    query: QuerySet | None = None
    if doc.query.source == "eval-file":
        reveal = p.eval_reveal(job_id)
        if not checks.add("eval set revealed", reveal.revealed and reveal.evalCID == doc.query.cid,
                          f"document {doc.query.cid}, chain {reveal.evalCID or '(none)'}"):  # fmt: skip
            return _report(job_id, job.modelId, doc, checks, None, t0)
        assert config.eval_sha256 is not None and doc.query.cid is not None
        query = eval_queries(_cat(store, doc.query.cid, "eval set"), doc.query.cid, config.eval_sha256)
        checks.add("eval set", True, f"{doc.query.cid} matches the committed eval_sha256")
        evaluation = [q.example for q in query.queries]
    elif config.eval_sha256 is not None:
        reveal = p.eval_reveal(job_id)
        claimed = int(p.client.w3.eth.get_block(job.claimBlock)["timestamp"])
        in_time = reveal.revealed and reveal.revealedAt <= claimed + config.eval_reveal_s
        checks.add("query set", not in_time, "the eval set was revealed in time but the node used the held-out split"
                   if in_time else "no timely reveal: the held-out split is the query set")  # fmt: skip

    try:
        assembled = assemble(p, store, job_id, block=job.claimBlock, decrypt=_decrypt(p, store, job), config=None,
                             evaluation=evaluation)  # fmt: skip
    except AccessDeniedError as e:
        raise VerifyError(
            f"job #{job_id} trained on a private Datanet and this account holds no key grant for it ({e}). Publish "
            "this account's key (`datanet keys publish`), then ask the Datanet's owner for a grant "
            "(`datanet grant --datanet ID --to YOUR_ADDRESS`, run by them)"
        ) from e
    manifest, examples = assembled.manifest, assembled.examples
    if not checks.add("training set", manifest.data_root == "0x" + model.dataRoot.hex(),
                      f"re-assembled at block {job.claimBlock}: {len(examples)} examples, root {manifest.data_root}; "
                      f"chain 0x{model.dataRoot.hex()}"):  # fmt: skip
        return _report(job_id, job.modelId, doc, checks, None, t0)

    split = split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds))
    where: dict[str, Any] = {"chain_id": doc.chain_id, "model_registry": doc.model_registry,
             "dust_recipient": doc.payout.dust_recipient}  # fmt: skip
    treasury = p.datanet(job.datanetIds[0]).treasury
    checks.add("dust recipient", doc.payout.dust_recipient == treasury,
               f"document {doc.payout.dust_recipient}, Datanet #{job.datanetIds[0]} treasury {treasury}")  # fmt: skip
    checks.add("payout total", doc.payout.total == split.contributors,
               f"document {doc.payout.total}, the job's split gives {split.contributors}")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix=f"datanet-verify-{job_id}-") as tmp:
        work = Path(tmp)
        adapter = store.get(model.adapterCID, work / "adapter")
        digest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).digest()
        detail = f"{model.adapterCID}: sha256 0x{digest.hex()}, chain 0x{model.adapterHash.hex()}"
        if not checks.add("adapter", digest == bytes(model.adapterHash), detail):
            return _report(job_id, job.modelId, doc, checks, None, t0)
        try:  # the node's file, fetched by CID: outside JSON like any other
            train_split = safe_json.load_model(_Split, (adapter / "split.json").read_bytes(),
                                               f"{model.adapterCID}/split.json")  # fmt: skip
        except (OSError, safe_json.UntrustedJsonError) as e:
            checks.add("adapter split", False, f"the adapter's split.json (which examples trained): {e}")
            return _report(job_id, job.modelId, doc, checks, None, t0)
        if query is None and doc.query.source == "held-out" and doc.method.id != EXAMPLE_COUNT_METHOD:
            query = held_out_queries(manifest, examples, train_split.eval)
        if doc.method.id == EXAMPLE_COUNT_METHOD:
            recomputed = count_document(job, manifest, doc.query, split, **where)
        else:
            if query is None:
                checks.add("query set", False, "the document names a held-out query set but the adapter's split "
                           "holds nothing out")  # fmt: skip
                return _report(job_id, job.modelId, doc, checks, None, t0)
            snapshots = work / "snapshots"
            snapshots.mkdir()
            for s in doc.snapshots:
                data = _cat(store, s.cid, f"snapshot {s.index}")
                got = "0x" + hashlib.sha256(data).hexdigest()
                detail = f"{s.cid}: sha256 {got}, document {s.sha256}"
                if not checks.add(f"snapshot {s.index}", got == s.sha256, detail):
                    return _report(job_id, job.modelId, doc, checks, None, t0)
                (snapshots / f"snapshot-{s.index:03d}.safetensors").write_bytes(data)
            try:
                base_dir = local_base_model(job, settings)
            except NotEligibleError as e:
                raise VerifyError(f"the base model is not available here: {e}") from e
            checks.add("base model", True, f"{job.baseModel} matches baseModelHash")
            replayed = None
            if replay and doc.snapshots:
                k = secrets.randbelow(len(doc.snapshots)) if interval is None else interval
                replayed = _replay(checks, base_dir, examples, config.train_config(), snapshots, k, work / "replay")
                if replayed is None or not replayed.ok:
                    return _report(job_id, job.modelId, doc, checks, None, t0, replayed)
            params = doc.method.params
            engine = EngineParams.model_validate(params.model_extra.get("engine", {}) if params.model_extra else {})
            exponent = int((params.model_extra or {}).get("score_exponent", 0))
            inputs = RunInputs(
                job=job, manifest=manifest, examples=examples, config=config.train_config(), base_dir=base_dir,
                snapshots_dir=snapshots, snapshot_cids=[s.cid for s in doc.snapshots],
                train_indices=train_split.train, query=query, split=split, **where,
            )  # fmt: skip
            if not attribute:
                return _report(job_id, job.modelId, doc, checks, None, t0, replayed, scored=False)
            if example is not None:  # the example's score decides, within SCORE_TOLERANCE
                comparison = _narrowed(checks, store, doc, inputs, example, engine, exponent, work, settings)
                return _report(job_id, job.modelId, doc, checks, comparison, t0, replayed, scored=False)
            mine = work / "queries"
            recomputed = attribute_run(
                inputs, params=engine, score_exponent=exponent, threads=settings.worker_threads(), queries_dir=mine
            ).document
            _check_query_vectors(checks, store, doc, mine, work / "committed-queries")
            return _report(job_id, job.modelId, doc, checks, compare(doc, recomputed, manifest), t0, replayed)
    return _report(job_id, job.modelId, doc, checks, compare(doc, recomputed, manifest), t0)


SCORE_TOLERANCE = 1e-3
"""Largest |recomputed - committed| of one disputed example's score, as a share of the largest
committed |score|. Other CPUs move scores by about 1e-6 of it (docs/benchmarks.md); a score
that misses by more was not computed as committed, whether or not the payout shows it (a
negative contribution is clipped to 0, so one example's wrong score can hide in the amounts)."""

QUERY_TOLERANCE = 1e-3
"""Largest ||V_mine - V_committed|| / ||V_committed|| of a snapshot's query vectors that still
reproduces. Both are float64 solves of the same system from gradients that differ across
machines in the last bits (float32 attribution: about 1e-6 relative); a made-up V misses by O(1)."""


def _fetch_query_vectors(checks: _Checks, store: ContentStore, doc: AttributionDocument, into: Path) -> bool:
    """Every snapshot's committed query vectors, checked against the document's sha256, into `into`."""
    from node.attribution.query_vectors import file_name

    into.mkdir(parents=True, exist_ok=True)
    for s in doc.snapshots:
        if s.queries_cid is None or s.queries_sha256 is None:
            why = "the document commits no query vectors for it: only a full recomputation settles a dispute"
            return checks.add(f"query vectors file {s.index}", False, why)
        data = _cat(store, s.queries_cid, f"query vectors {s.index}")
        got = "0x" + hashlib.sha256(data).hexdigest()
        if not checks.add(f"query vectors file {s.index}", got == s.queries_sha256,
                          f"{s.queries_cid}: sha256 {got}, document {s.queries_sha256}"):  # fmt: skip
            return False
        (into / file_name(s.index)).write_bytes(data)
    return True


def _check_query_vectors(checks: _Checks, store: ContentStore, doc: AttributionDocument, mine: Path,
                         committed: Path) -> None:  # fmt: skip
    """Each snapshot's committed V_k against this verifier's, within `QUERY_TOLERANCE`."""
    import torch
    from safetensors.torch import load_file

    from node.attribution.query_vectors import QueryVectorsError, file_name, load

    if not _fetch_query_vectors(checks, store, doc, committed):
        return
    for s in doc.snapshots:
        ours = load_file(str(mine / file_name(s.index)))["v"]
        name = f"query vectors {s.index}"
        try:
            theirs = load(committed / file_name(s.index), snapshot=s.index, dim=ours.shape[0], queries=ours.shape[1])
        except QueryVectorsError as e:
            checks.add(name, False, str(e))
            continue
        scale = float(torch.linalg.vector_norm(theirs))
        rel = float(torch.linalg.vector_norm(ours - theirs)) / scale if scale else float(ours.abs().max() > 0)
        detail = f"the recomputed V_{s.index} differs by {rel:.2e} of its norm (tolerance {QUERY_TOLERANCE:g})"
        checks.add(name, rel <= QUERY_TOLERANCE, detail)


def _narrowed(checks: _Checks, store: ContentStore, doc: AttributionDocument, inputs: RunInputs, example: int,
              engine: EngineParams, exponent: int, work: Path, settings: Settings) -> Comparison | None:  # fmt: skip
    """Example `example`'s score from its own gradients and the committed query vectors, checked
    against its committed score (`SCORE_TOLERANCE`); also the payout comparison of the committed
    scores with that one replaced (the others are not disputed), for the report."""
    from node.attribution.quantise import quantise

    committed = [x.score for x in doc.scores.leaves]
    if not _fetch_query_vectors(checks, store, doc, work / "committed-queries"):
        return None
    raw = narrow_scores(inputs, [example], work / "committed-queries", params=engine,
                        threads=settings.worker_threads()).scores[example]  # fmt: skip
    mine = list(committed)
    mine[example] = quantise([raw], exponent)[0]
    peak = max((abs(x) for x in committed), default=0)
    off = abs(mine[example] - committed[example])
    checks.add(f"score of example {example}", off <= SCORE_TOLERANCE * peak,
               f"recomputed {mine[example]}, committed {committed[example]}: off by {off / peak if peak else 0:.2e} "
               f"of the largest score (tolerance {SCORE_TOLERANCE:g})")  # fmt: skip
    return compare_scores(doc, mine, inputs.manifest, scores_root_equal=mine == committed,
                          reward_root_equal=mine == committed)  # fmt: skip


def _replay(checks: _Checks, base_dir: Path, examples: Any, config: Any, snapshots_dir: Path, k: int,
            work: Path) -> IntervalReplay | None:  # fmt: skip
    """Replays interval `k` and records it as a check; None when it cannot be replayed (a failed check)."""
    from node.train.replay import ReplayError, replay_interval
    from node.train.snapshots import SnapshotError, load_all

    name = f"training replay (interval {k})"
    try:
        result = replay_interval(base_dir, examples, config, load_all(snapshots_dir), k, work)
    except (ReplayError, SnapshotError) as e:
        checks.add(name, False, str(e))
        return None
    checks.add(name, result.ok, f"steps {result.start + 1}..{result.end} from the committed data land "
               f"{result.relative:.2e} of the interval's movement from snapshot {k} (tolerance {result.tolerance:.0%})")
    return result


class _Split(BaseModel):
    """`split.json` of an adapter: manifest indices trained on and held out."""

    train: list[int]
    eval: list[int]


def _report(
    job_id: int, model_id: int, doc: AttributionDocument, checks: _Checks, comparison: Comparison | None, t0: float,
    replay: IntervalReplay | None = None, *, scored: bool = True,
) -> VerifyReport:  # fmt: skip
    """`scored=False`: no score was to be recomputed (a replay dispute): the checks decide alone."""
    ok = checks.ok and (not scored or (comparison is not None and comparison.verdict == "MATCH"))
    return VerifyReport(
        job_id=job_id, model_id=model_id, verdict="MATCH" if ok else "MISMATCH", method=doc.method.method_id(),
        checks=checks.items, comparison=comparison, replay=replay, seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _cat(store: ContentStore, cid: str, what: str) -> bytes:
    try:
        return store.cat(cid)
    except ContentMismatchError:
        raise
    except (OSError, NodeError) as e:
        raise VerifyError(f"cannot fetch the {what} {cid}: {e}. Point --ipfs-api at a node that has it") from e


def _decrypt(p: Protocol, store: ContentStore, job: Job) -> Any:
    """Private Datanets: the decryption hook of `assemble`, or None when the job needs none."""
    if not any(p.datanet(d).isPrivate for d in job.datanetIds):
        return None
    return _VerifierKeys(p, store, job)


class _VerifierKeys:
    """A verifier's keys, per Datanet. An account granted this job's keys (the job's own node)
    reads through that grant, as the daemon does (`JobKeys`). Any other account reads with the
    Datanet key it holds (owner, curator, or a standing grant: `datanet grant --datanet ID --to
    ADDRESS`), limited to the files the node's grant covers, so it re-assembles what the node could
    read. Holding neither (or no signing account): `AccessDeniedError`, which `verify_job` words."""

    def __init__(self, p: Protocol, store: ContentStore, job: Job):
        from node.data.grants import JobKeys

        self.p, self.store, self.job = p, store, job
        self.job_keys = JobKeys(p, store, job.id)  # AccessDeniedError without a signing account
        self._node_files: dict[int, dict[int, Any] | None] = {}  # Datanet -> None: read through own job grant

    def __call__(self, datanet: Datanet, contribution: Contribution, envelope: bytes) -> bytes:
        from node.data.grants import JobGrant, datanet_private_keys, open_as_holder

        if datanet.id not in self._node_files:
            if self.p.grant_of(datanet.id, self.p.address, self.job.id) is not None:
                self._node_files[datanet.id] = None
            else:
                datanet_private_keys(self.p, self.store, datanet.id)  # AccessDeniedError: it holds no key
                grant = self.p.grant_of(datanet.id, self.job.node, self.job.id)
                doc = None if grant is None else JobGrant.model_validate_json(self.store.cat(grant.grantCID))
                self._node_files[datanet.id] = {f.contribution_id: f for f in doc.files} if doc else {}
        files = self._node_files[datanet.id]
        if files is None:
            return self.job_keys(datanet, contribution, envelope)
        entry = files.get(contribution.id)  # what the node's `JobKeys` refused, the verifier leaves out too
        if entry is None:
            raise GrantCoverageError(
                f"The node's key grant for job #{self.job.id} on Datanet #{datanet.id} does not cover "
                f"contribution #{contribution.id}."
            )
        if entry.sha256 != contribution.contentHash or entry.cid != contribution.cid:
            raise DecryptionError(
                f"The node's grant entry for contribution #{contribution.id} does not match the chain."
            )
        return open_as_holder(self.p, self.store, contribution, envelope)


__all__ = ["QUERY_TOLERANCE", "SCORE_TOLERANCE", "Check", "NoSuchPart", "VerifyError", "VerifyReport", "verify_job"]
