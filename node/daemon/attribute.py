"""The daemon's attribution step: gather a finished run's inputs, publish its snapshots, and make
the one call into `node.attribution` that turns them into the job's attribution document.

The snapshots are uploaded here, before the document is built, because the document names them
by CID (content-addressed: uploading the same bytes again after a crash gives the same CIDs); so
are each snapshot's query vectors (`work/queries/`), which the attribution run writes and the
document names too (what lets a dispute narrow to one example, docs/protocol.md).
A job that saved no snapshots, or has no query set (no eval set and nothing held out), pays by
example counts in the same document format.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from node.attribution.document import AttributionDocument
from node.chain.models import Job
from node.chain.protocol import Protocol
from node.config import Settings
from node.daemon.query_set import query_set
from node.data.manifest import Manifest
from node.data.records import Example
from node.rewards.shares import split_pool
from node.storage.base import ContentStore
from node.train.config import JobConfig

log = logging.getLogger("node.daemon")


def attribute_job(
    p: Protocol, store: ContentStore, job: Job, work: Path, manifest: Manifest, examples: list[Example],
    config: JobConfig, base_dir: Path, settings: Settings,
) -> AttributionDocument:
    """The attribution document of job `job`, whose run lies in `work` (`train/`, `data/`)."""
    from node.attribution.pipeline import RunInputs, attribute_run, count_document
    from node.attribution.request import MethodParams

    split = split_pool(job.pool, job.nodeFeeBps, job.datanetFeeBps, len(job.datanetIds))
    chain_id, registry, treasury = p.chain_id, str(p.models.address), p.datanet(job.datanetIds[0]).treasury
    held = json.loads((work / "train" / "adapter" / "split.json").read_text())
    query = query_set(work / "data", manifest, examples, held["eval"])
    snapshots = work / "train" / "snapshots"
    files = sorted(snapshots.glob("snapshot-*.safetensors"))
    if not files or query is None:
        why = "it saved no snapshots" if not files else "it has no query set (no eval set, nothing held out)"
        log.warning("job #%d: paying by example counts: %s", job.id, why)
        return count_document(job, manifest, query.info if query else None, split, chain_id=chain_id,
                              model_registry=registry, dust_recipient=treasury)  # fmt: skip
    cids = [store.add_bytes(f.read_bytes()) for f in files]
    inputs = RunInputs(
        job=job, manifest=manifest, examples=examples, config=config.train_config(), base_dir=base_dir,
        snapshots_dir=snapshots, snapshot_cids=cids, train_indices=held["train"], query=query, split=split,
        chain_id=chain_id, model_registry=registry, dust_recipient=treasury,
    )  # fmt: skip
    t0 = time.perf_counter()
    params = MethodParams(dtype=settings.attribution_dtype)
    doc = attribute_run(inputs, params=params, threads=settings.worker_threads(), queries_dir=work / "queries",
                        publish=store.add_bytes).document  # fmt: skip
    log.info("job #%d: attribution of %d examples against %d queries (%s) over %d snapshots in %.1f s", job.id,
             len(examples), query.info.examples, query.info.source, len(files), time.perf_counter() - t0)  # fmt: skip
    return doc


__all__ = ["attribute_job"]
