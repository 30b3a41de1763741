"""From a finished training run to the job's attribution document, in one call.

The daemon (`node.daemon.steps.JobSteps.attribute`) and `datanet verify` both go through
`attribute_run`: the same request to the isolated worker, the same quantisation, the same payout
and document builder. A verifier differs only in passing the *committed* score exponent instead
of choosing one, so its integers can be compared leaf by leaf with the committed ones.

The query set is the poster's revealed eval file when the job committed one (`eval_queries`),
else the trainer's held-out split (`held_out_queries`), whose queries never score their own
contributor's examples.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from node.attribution.document import (
    AttributionDocument,
    MethodInfo,
    MethodParams,
    QueryInfo,
    SnapshotInfo,
    build_document,
)
from node.attribution.quantise import choose_scale, quantise
from node.attribution.request import (
    METHOD_NAME,
    AttributionRequest,
    AttributionResult,
    QueryExample,
    TrainingExample,
)
from node.attribution.request import MethodParams as EngineParams
from node.chain.models import Job
from node.data.manifest import Manifest
from node.data.records import Example
from node.data.validate import load_bytes
from node.errors import NodeError
from node.rewards.shares import Split
from node.train.config import TrainConfig

EXAMPLE_COUNT_METHOD = "example-count-v1"
DEFAULT_DELTA_BPS = 10  # a contributor's recomputed amount may differ by 0.1% of the pool (float noise only)


class QuerySet(BaseModel):
    """The queries attribution scores against, and where they came from (for the document)."""

    model_config = ConfigDict(frozen=True)

    info: QueryInfo
    queries: list[QueryExample] = Field(min_length=1)


def eval_queries(data: bytes, cid: str, sha256: str) -> QuerySet:
    """The poster's revealed eval file (validated like a contribution; checked against `sha256`)."""
    digest = "0x" + hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise NodeError(f"the revealed eval set {cid} has sha256 {digest}, not the {sha256} the job committed")
    records = load_bytes(data, f"eval set {cid}")
    queries = [QueryExample(example=r.example) for r in records]
    return QuerySet(info=QueryInfo(source="eval-file", cid=cid, sha256=sha256, examples=len(queries)), queries=queries)


def held_out_queries(manifest: Manifest, examples: Sequence[Example], eval_indices: Sequence[int]) -> QuerySet | None:
    """The trainer's held-out split as queries (None if it held nothing out)."""
    queries = [
        QueryExample(example=examples[k], contributor=manifest.entries[k].contributor) for k in sorted(eval_indices)
    ]
    if not queries:
        return None
    return QuerySet(info=QueryInfo(source="held-out", examples=len(queries)), queries=queries)


def snapshot_infos(
    snapshots_dir: Path, cids: Sequence[str], queries_dir: Path | None = None,
    publish: Callable[[bytes], str] | None = None,
) -> list[SnapshotInfo]:  # fmt: skip
    """The document's snapshot list: each file's CID (as uploaded), sha256, step and step size,
    and its query vectors' file (from `queries_dir`, uploaded with `publish` when given)."""
    from node.attribution.query_vectors import file_name
    from node.train.snapshots import load_all  # torch: only where snapshots are read

    files = sorted(snapshots_dir.glob("snapshot-*.safetensors"))
    snaps = load_all(snapshots_dir)
    if len(cids) != len(files):
        raise NodeError(f"{len(files)} snapshot files in {snapshots_dir} but {len(cids)} CIDs")
    out = []
    for s, f, cid in zip(snaps, files, cids, strict=True):
        queries: dict[str, str | None] = {}
        q = queries_dir / file_name(s.meta.index) if queries_dir is not None else None
        if q is not None and q.is_file():
            data = q.read_bytes()
            queries = {"queries_cid": publish(data) if publish else None,
                       "queries_sha256": "0x" + hashlib.sha256(data).hexdigest()}  # fmt: skip
        out.append(SnapshotInfo(index=s.meta.index, cid=cid, sha256="0x" + hashlib.sha256(f.read_bytes()).hexdigest(),
                                step=s.meta.step, lr_sum=s.meta.lr_sum, **queries))  # fmt: skip
    return out


class RunInputs(BaseModel):
    """One finished run of job `job`, as the node has it on disk (or a verifier fetched it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    job: Job
    manifest: Manifest
    examples: list[Example]
    config: TrainConfig
    base_dir: Path
    snapshots_dir: Path
    snapshot_cids: list[str]
    train_indices: list[int] = Field(description="Manifest indices the trainer trained on (split.json's train).")
    query: QuerySet
    split: Split
    chain_id: int
    model_registry: str
    dust_recipient: str


class JobAttribution(BaseModel):
    document: AttributionDocument
    result: AttributionResult | None = Field(None, description="The engine's raw output (None: example counts).")


def count_document(
    job: Job,
    manifest: Manifest,
    query: QueryInfo | None,
    split: Split,
    *,
    chain_id: int,
    model_registry: str,
    dust_recipient: str,
) -> AttributionDocument:
    """The document when there is nothing to attribute with (the job saved no snapshots, or has
    no query set): every example scores 1, so contributors are paid by kept examples, under the
    same floor-and-dust rule and in the same document format."""
    n = len(manifest.entries)
    method = MethodInfo(
        id=EXAMPLE_COUNT_METHOD, versions={"node": versions()["node"]},
        params=MethodParams(snapshots=0, damping=0.0, projection_dim=0, score_scale=1.0, delta=0, score_exponent=0),
    )  # fmt: skip
    empty = "0x" + hashlib.sha256(b"").hexdigest()
    return build_document(
        job, manifest, [1] * n, [empty] * n, method, query or QueryInfo(source="held-out", examples=0), [], split,
        chain_id=chain_id, model_registry=model_registry, dust_recipient=dust_recipient,
    )  # fmt: skip


def versions() -> dict[str, str]:
    """The library versions the scores depend on (part of the method id)."""
    dists = {"torch": "torch", "transformers": "transformers", "peft": "peft", "node": "datanet-node"}
    return {name: importlib.metadata.version(dist) for name, dist in dists.items()}


def attribute_run(
    inputs: RunInputs,
    *,
    params: EngineParams | None = None,
    score_exponent: int | None = None,
    timeout_s: float | None = None,
    threads: int = 1,
    queries_dir: Path | None = None,
    publish: Callable[[bytes], str] | None = None,
) -> JobAttribution:
    """Scores every manifest example in the isolated worker, quantises with `score_exponent`
    (a verifier's: the committed one) or a freshly chosen one, and builds the document. The
    snapshots' query vectors are written to `queries_dir` (a temporary one if None) and uploaded
    with `publish` (the node's store; a verifier recomputing passes none)."""
    if queries_dir is None:
        with tempfile.TemporaryDirectory(prefix="datanet-queries-") as tmp:
            return attribute_run(inputs, params=params, score_exponent=score_exponent, timeout_s=timeout_s,
                                 threads=threads, queries_dir=Path(tmp), publish=publish)  # fmt: skip
    from node.attribution.isolated import run_isolated

    shutil.rmtree(queries_dir, ignore_errors=True)  # nothing of an earlier try
    request = _request(inputs, params or EngineParams(), queries_dir=queries_dir)
    result = run_isolated(request, timeout_s=timeout_s, threads=threads)
    exponent = choose_scale(result.scores) if score_exponent is None else score_exponent
    ints = quantise(result.scores, exponent)
    delta = inputs.split.contributors * DEFAULT_DELTA_BPS // 10_000
    method = MethodInfo(
        id=METHOD_NAME, versions=versions(),
        params=MethodParams(
            snapshots=len(inputs.snapshot_cids), damping=result.params.damping,
            projection_dim=result.gradient_dim if result.gradient_dim < result.lora_parameters else 0,
            score_scale=2.0**-exponent, delta=delta, score_exponent=exponent, engine=result.params.model_dump(),
            engine_method_id=result.method_id,
        ),
    )  # fmt: skip
    document = build_document(
        inputs.job, inputs.manifest, ints, result.gradients_hashes, method, inputs.query.info,
        snapshot_infos(inputs.snapshots_dir, inputs.snapshot_cids, queries_dir, publish), inputs.split,
        chain_id=inputs.chain_id, model_registry=inputs.model_registry, dust_recipient=inputs.dust_recipient,
    )  # fmt: skip
    if document.projection_seed != result.projection_seed:  # one definition; a drift here would mislabel
        raise NodeError(f"the engine projected with seed {result.projection_seed}, the document records "
                        f"{document.projection_seed}; node.attribution.sketch is the one definition")  # fmt: skip
    return JobAttribution(document=document, result=result)


def narrow_scores(
    inputs: RunInputs, only: Sequence[int], committed_queries_dir: Path, *, params: EngineParams,
    timeout_s: float | None = None, threads: int = 1,
) -> AttributionResult:  # fmt: skip
    """The raw scores of manifest examples `only` from their own gradients and the committed query
    vectors in `committed_queries_dir` (the other scores come back 0): one example's dispute."""
    from node.attribution.isolated import run_isolated

    request = _request(inputs, params, queries_dir=committed_queries_dir, only=list(only))
    return run_isolated(request, timeout_s=timeout_s, threads=threads)


def _request(inputs: RunInputs, params: EngineParams, *, queries_dir: Path, only: list[int] | None = None
             ) -> AttributionRequest:  # fmt: skip
    m, trained = inputs.manifest, set(inputs.train_indices)
    return AttributionRequest(
        base_model_dir=inputs.base_dir, method=inputs.config.method, config=inputs.config,
        examples=[TrainingExample(example=ex, contributor=e.contributor, trained=k in trained)
                  for k, (ex, e) in enumerate(zip(inputs.examples, m.entries, strict=True))],
        queries=inputs.query.queries, snapshots_dir=inputs.snapshots_dir, job_id=inputs.job.id,
        data_root=m.data_root, params=params, query_vectors_dir=queries_dir, only=only,
    )  # fmt: skip


__all__ = [
    "EXAMPLE_COUNT_METHOD",
    "JobAttribution",
    "QuerySet",
    "RunInputs",
    "attribute_run",
    "count_document",
    "eval_queries",
    "held_out_queries",
    "narrow_scores",
    "snapshot_infos",
    "versions",
]
