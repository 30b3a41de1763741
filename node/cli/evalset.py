"""The poster's query set, committed then revealed: `datanet job post --eval-file FILE` and
`datanet job reveal-eval N`.

At posting only the file's sha256 goes into the job config (and so into `configHash` on-chain);
the file itself is uploaded and its CID sent (`ModelRegistry.revealEval`) only after a node has
claimed the job, when its training set is already fixed at the claim block: contributors cannot
tailor data to questions they have seen. This machine remembers which file it committed for which
job (`<data dir>/eval-commits.json`, keyed by the chain's genesis hash and the ModelRegistry, so a
fresh dev chain never meets another chain's records); from another machine, `--eval-file` names it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field

from node.chain.models import JobStatus
from node.chain.protocol import Protocol
from node.cli.common import JsonOpt, console, print_json, settings, write_protocol
from node.data.validate import ValidationReport, validate_file
from node.errors import NodeError
from node.storage import ContentStore, open_store
from node.train.config import JobConfig


class EvalSetError(NodeError, ValueError):
    """An eval set that cannot be committed or revealed as asked (the message says what to run)."""


class EvalCommit(BaseModel):
    """Which file this machine committed for a job."""

    path: str = Field(description="Absolute path of the committed file.")
    sha256: str = Field(description="0x-hex sha256 of its bytes, as in the job config's eval_sha256.")
    records: int


def validate_eval_file(path: Path) -> ValidationReport:
    """Validates an eval file exactly as a contribution is validated; raises on any error."""
    if not path.is_file():
        raise EvalSetError(f"--eval-file {path} does not exist.")
    report = validate_file(path)
    report.raise_for_errors()
    return report


def _namespace(p: Protocol) -> str:
    genesis = p.client.rpc(lambda: p.client.w3.eth.get_block(0)["hash"], "get genesis block")
    return f"{p.chain_id}:0x{bytes(genesis).hex()}:{p.models.address}"


def _commits_file(p: Protocol, data_dir: Path) -> tuple[Path, str]:
    return data_dir / "eval-commits.json", _namespace(p)


def _read(path: Path) -> dict[str, dict[str, dict[str, object]]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise EvalSetError(f"{path} is not JSON ({e}); move it aside, then pass --eval-file to reveal.") from None
    return data if isinstance(data, dict) else {}


def remember_commit(p: Protocol, data_dir: Path, job_id: int, path: Path, report: ValidationReport) -> None:
    """Records (atomically) that `path` is job `job_id`'s committed eval set on this chain."""
    file, ns = _commits_file(p, data_dir)
    data = _read(file)
    commit = EvalCommit(path=str(path.resolve()), sha256=report.sha256, records=report.record_count)
    data.setdefault(ns, {})[str(job_id)] = commit.model_dump()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, file)  # atomic: a crash leaves the old records or the new ones


def commits(p: Protocol, data_dir: Path) -> dict[int, EvalCommit]:
    """Every eval set this machine committed on this chain, by job id."""
    file, ns = _commits_file(p, data_dir)
    return {int(job): EvalCommit.model_validate(raw) for job, raw in _read(file).get(ns, {}).items()}


def committed(p: Protocol, data_dir: Path, job_id: int) -> EvalCommit | None:
    file, ns = _commits_file(p, data_dir)
    raw = _read(file).get(ns, {}).get(str(job_id))
    return EvalCommit.model_validate(raw) if raw else None


def reveal_eval_cmd(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job whose eval set you committed.")],
    eval_file: Annotated[
        Path | None, typer.Option(help="The committed file (default: the one `job post --eval-file` used here).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Reveal a claimed job's eval set: check it against the committed sha256, upload it, send its CID."""
    out = reveal_eval(write_protocol(ctx), open_store(settings(ctx)), settings(ctx).data_dir, job_id, eval_file)
    if json_out:
        print_json(out)
        return
    console.print(f"revealed job #{job_id}'s eval set {out['file']} as {out['eval_cid']} (sha256 {out['eval_sha256']}) "
                  f"in tx {out['tx']}")  # fmt: skip


def reveal_eval(
    p: Protocol, store: ContentStore, data_dir: Path, job_id: int, eval_file: Path | None
) -> dict[str, Any]:
    """The reveal's checks and transaction (`datanet job reveal-eval` and the run page): `EvalSetError`
    saying what to do when it cannot happen now; what was revealed when it did."""
    if not 1 <= job_id <= p.job_count():
        raise EvalSetError(f"No job #{job_id} (`datanet job list`).")
    job = p.job(job_id)
    if job.poster != p.address:
        raise EvalSetError(
            f"Job #{job_id} was posted by {job.poster}; only its poster reveals its eval set "
            f"(this wallet is {p.address}; pick the poster's with --wallet)."
        )
    if job.status == JobStatus.OPEN:
        raise EvalSetError(
            f"Job #{job_id} is not claimed yet: reveal its eval set only after a node claims it (the claim fixes "
            f"the training set, so contributors cannot tailor data to the questions). Run `datanet job reveal-eval "
            f"{job_id}` again once `datanet job show {job_id}` says claimed."
        )
    if job.status != JobStatus.CLAIMED:
        raise EvalSetError(f"Job #{job_id} is {job.status.name.lower()}: its eval set can no longer be revealed.")
    if p.client.block_number() <= job.claimBlock:  # the contract wants a block after the claim's
        raise EvalSetError(
            f"Job #{job_id} was claimed in block {job.claimBlock}, the latest one; the reveal must "
            f"come in a later block. Run `datanet job reveal-eval {job_id}` again in a few seconds."
        )
    revealed = p.eval_reveal(job_id)
    if revealed.revealed:
        raise EvalSetError(f"Job #{job_id}'s eval set is already revealed as {revealed.evalCID}; nothing to do.")
    config = JobConfig.parse(store.cat(job.configCID), f"job #{job_id}'s config {job.configCID}")
    if config.eval_sha256 is None:
        raise EvalSetError(
            f"Job #{job_id} was posted without --eval-file: it committed no eval set, so there is "
            "nothing to reveal (its held-out split is the query set)."
        )
    path = eval_file or _committed_path(p, data_dir, job_id)
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        raise EvalSetError(f"The eval file {path} does not exist; pass the committed file with --eval-file FILE.")
    digest = "0x" + hashlib.sha256(data).hexdigest()
    if digest != config.eval_sha256:
        raise EvalSetError(
            f"{path} has sha256 {digest}, but job #{job_id} committed {config.eval_sha256}: it is not "
            "the committed file (even one changed byte differs); pass that one with --eval-file."
        )
    cid = store.add_bytes(data)
    p.reveal_eval(job_id, cid)
    return {"job_id": job_id, "eval_cid": cid, "eval_sha256": digest, "file": str(path), "tx": p.client.last_tx}


def _committed_path(p: Protocol, data_dir: Path, job_id: int) -> Path:
    commit = committed(p, data_dir, job_id)
    if commit is None:
        raise EvalSetError(
            f"This machine has no record of job #{job_id}'s committed eval file (it was posted "
            f"elsewhere, or with another data directory); pass it with --eval-file FILE."
        )
    return Path(commit.path)
