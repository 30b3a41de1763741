"""A job's query set on the node's side: waiting for the poster's eval-set reveal, and what the
work directory keeps of it (`data/eval.bin`, `data/eval.json`), so the training set (assembled
against it) and the attribution (scored against it) both read the same bytes after a restart.

Without a commitment in the job config, or when the reveal window (`eval_reveal_s` after the
claim) closes without a usable reveal, the trainer's held-out split is the query set instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from node.attribution.pipeline import QuerySet, eval_queries, held_out_queries
from node.chain.protocol import Protocol
from node.daemon.outputs import write_atomic
from node.data.manifest import Manifest
from node.data.records import Example
from node.errors import NodeError
from node.storage.base import ContentStore
from node.train.config import JobConfig

log = logging.getLogger("node.daemon")


class RevealPending(NodeError):
    """The reveal window is still open and the eval set is not revealed yet."""

    def __init__(self, seconds_left: int):
        super().__init__(f"waiting for the poster to reveal the eval set ({seconds_left} s left)")
        self.seconds_left = seconds_left


def fetch_eval_set(
    p: Protocol,
    store: ContentStore,
    job_id: int,
    config: JobConfig,
    claim_time: int,
    now: Callable[[], int],
    data_dir: Path,
) -> list[Example] | None:
    """The revealed eval set's examples (checked against the committed sha256 and written to
    `data_dir`), None when the job has none to use; raises `RevealPending` inside the window."""
    if config.eval_sha256 is None:
        return None
    reveal = p.eval_reveal(job_id)
    if not reveal.revealed:
        left = claim_time + config.eval_reveal_s - now()
        if left > 0:
            raise RevealPending(left)
        log.warning("job #%d: the eval set was not revealed in time; the held-out split is the query set", job_id)
        write_atomic(data_dir / "eval.json", json.dumps({"revealed": False}).encode())
        return None
    payload = store.cat(reveal.evalCID)
    try:
        queries = eval_queries(payload, reveal.evalCID, config.eval_sha256)
    except (NodeError, ValueError) as e:
        log.error("job #%d: the revealed eval set is unusable (%s); the held-out split is the query set", job_id, e)
        write_atomic(data_dir / "eval.json", json.dumps({"revealed": True, "usable": False, "why": str(e)}).encode())
        return None
    write_atomic(data_dir / "eval.bin", payload)
    meta = {"revealed": True, "usable": True, "cid": reveal.evalCID, "sha256": config.eval_sha256}
    write_atomic(data_dir / "eval.json", json.dumps(meta).encode())
    return [q.example for q in queries.queries]


def written_eval_set(data_dir: Path) -> QuerySet | None:
    """The eval set the job's data was assembled against, from the work dir (None: none used)."""
    try:
        meta = json.loads((data_dir / "eval.json").read_text())
    except FileNotFoundError:
        return None
    if not meta.get("usable"):
        return None
    return eval_queries((data_dir / "eval.bin").read_bytes(), meta["cid"], meta["sha256"])


def query_set(data_dir: Path, manifest: Manifest, examples: list[Example], held_out: list[int]) -> QuerySet | None:
    """What attribution scores against: the written eval set, else the held-out split."""
    return written_eval_set(data_dir) or held_out_queries(manifest, examples, held_out)


__all__ = ["RevealPending", "fetch_eval_set", "query_set", "written_eval_set"]
