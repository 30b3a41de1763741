"""`datanet job post|cancel|expire|sweep`: fine-tuning jobs with an OPEN reward pool, as a job poster
(`job reveal-eval`, the query set's reveal, is in node/cli/evalset.py).

A posted job is what the training daemon will accept (node/eligibility.py): its config document
(a `JobConfig`, uploaded as canonical JSON) hashes to the on-chain `configHash` and names the same
base model and method as the job, and `baseModelHash` is the weights hash of the base model as
resolved here, the same way a node resolves it (`resolve_base_model` under the models directory).
Everything that can fail is checked before the upload and the transaction, so a bad post leaves
nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from web3.logs import DISCARD

from node import safe_json
from node.chain.deploy import fmt_open
from node.chain.models import JobParams, JobStatus, Method
from node.chain.protocol import Protocol
from node.cli.common import JobIdArg, JsonOpt, console, print_json, progress_bar, settings, write_protocol
from node.cli.evalset import remember_commit, validate_eval_file
from node.cli.operator import chain_now, fmt_when, open_units
from node.errors import NodeError
from node.storage import open_store
from node.storage.base import ContentStore
from node.train.base_model import resolve_base_model, weights_hash
from node.train.config import JobConfig, TrainConfigError


class JobPostError(NodeError, ValueError):
    """A job that cannot be posted as asked (the message says which option and how to fix it)."""


def job_post(
    ctx: typer.Context,
    base_model: Annotated[
        str, typer.Option(help="Base model: a local HF directory, or a name cached in the models directory.")
    ],
    datanet: Annotated[
        list[int], typer.Option("--datanet", help="Datanet id whose approved data trains (repeatable).")
    ],
    pool: Annotated[str, typer.Option(help="OPEN reward pool, escrowed by permit (contributors, node, Datanets).")],
    hours: Annotated[float, typer.Option(help="Hours until the deadline for a node to submit the result.")] = 72.0,
    method: Annotated[
        str | None,
        typer.Option(metavar="lora|qlora", help="Fine-tuning method (default: the config file's, else qlora)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON file of job config fields (hyperparameters, commercial_use); flags override it."),
    ] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate of the LoRA weights.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training set.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per micro-batch.")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    commercial_use: Annotated[
        bool, typer.Option("--commercial-use", help="For commercial use: leaves out Datanets licensed otherwise.")
    ] = False,
    eval_file: Annotated[
        Path | None,
        typer.Option(
            help="Your evaluation set (the attribution query set), in a contribution format: only its sha256 goes "
            "into the config now; reveal it after the claim with `datanet job reveal-eval`."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Post a fine-tuning job: config to IPFS, its sha256 and the base model's weights hash on-chain."""
    s = settings(ctx)
    p = write_protocol(ctx)
    eval_report = validate_eval_file(eval_file) if eval_file is not None else None
    flags = {"method": method, "learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size,
             "lora_r": lora_r, "commercial_use": commercial_use or None,
             "eval_sha256": eval_report.sha256 if eval_report else None}  # fmt: skip
    job_config, base_dir = _job_config(base_model, config, flags, s.models_path)
    amount = open_units(pool, "--pool")
    _check_poster(p, datanet, amount, hours)
    job_id, params, config_cid, now = post_job_config(p, open_store(s), job_config, base_dir, datanet, amount, hours)
    deadline = params.deadline
    tx = p.client.last_tx
    if eval_file is not None and eval_report is not None:
        remember_commit(p, s.data_dir, job_id, eval_file, eval_report)
    out = {"job_id": job_id, "tx": tx,
           "base_model": params.baseModel, "base_model_hash": "0x" + params.baseModelHash.hex(),
           "config_cid": config_cid, "config_hash": "0x" + params.configHash.hex(), "method": job_config.method.value,
           "datanets": params.datanetIds, "pool": amount, "deadline": deadline, "eval_sha256": job_config.eval_sha256,
           "eval_records": eval_report.record_count if eval_report else None}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"posted job #{job_id} in tx {out['tx']}: {job_config.method.value.upper()} of {params.baseModel} on "
                  f"Datanet(s) {', '.join(map(str, params.datanetIds))}, pool {fmt_open(amount)}, deadline "
                  f"{fmt_when(deadline, now)}")  # fmt: skip
    console.print(f"  config {config_cid} (sha256 {out['config_hash']}), base model weights {out['base_model_hash']}")
    if eval_report is not None:
        console.print(f"  eval set {eval_file} ({eval_report.record_count} records) committed, sha256 "
                      f"{eval_report.sha256}; after the claim: `datanet job reveal-eval {job_id}`")  # fmt: skip


def post_job_config(
    p: Protocol, store: ContentStore, job_config: JobConfig, base_dir: Path, datanets: list[int], amount: int,
    hours: float,
) -> tuple[int, JobParams, str, int]:  # fmt: skip
    """Uploads a checked job config and posts its job, the pool escrowed by permit (`job post` and
    the web app's Train page): the job id, the posted params, the config's CID, the chain time."""
    config_cid = store.add_bytes(job_config.canonical_json())
    now = chain_now(p)
    deadline = now + int(hours * 3600)
    params = JobParams(
        baseModel=job_config.base_model,
        baseModelHash=_hash_with_progress(base_dir),  # the identity a node checks its local copy against
        datanetIds=datanets,
        configCID=config_cid,
        configHash=job_config.sha256(),  # == sha256 of the uploaded bytes, what the node re-hashes
        method=Method.QLORA if job_config.method == "qlora" else Method.LORA,
        pool=amount,
        deadline=deadline,
    )
    job_id = p.post_job(params, p.permit(p.models.address, p.job_cost(amount), deadline))
    return job_id, params, config_cid, now


def _job_config(ref: str, path: Path | None, flags: dict[str, Any], models_dir: Path) -> tuple[JobConfig, Path]:
    """The job's config document and the local base model directory it names. The reference put
    on-chain is the one a node resolves: a directory as its absolute path, a cached name as is."""
    base_dir = resolve_base_model(ref, models_dir)  # BaseModelError: says where it looked and what to do
    on_chain_ref = str(Path(ref).expanduser().resolve()) if Path(ref).expanduser().is_dir() else ref
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = safe_json.loads(path.read_bytes(), f"--config {path}", max_bytes=safe_json.SMALL_BYTES)
        except FileNotFoundError:
            raise JobPostError(f"--config {path} does not exist.") from None
        except safe_json.UntrustedJsonError as e:
            raise JobPostError(f"{e}; it holds job config fields.") from None
        if not isinstance(doc, dict):
            raise JobPostError(f"--config {path} must be a JSON object of job config fields.")
        if doc.get("base_model") not in (None, ref, on_chain_ref):
            raise JobPostError(
                f"--config {path} names base model '{doc['base_model']}' but --base-model is '{ref}'; "
                "drop base_model from the file (--base-model sets it)."
            )
    doc |= {k: v for k, v in flags.items() if v is not None} | {"base_model": on_chain_ref}
    try:
        return JobConfig.parse(json.dumps(doc), f"the job config ({path or 'flags'})"), base_dir
    except TrainConfigError as e:
        raise JobPostError(f"{e}. Fix the flag or the --config field named.") from None


def _hash_with_progress(base_dir: Path) -> bytes:
    """`weights_hash` with a progress bar: a multi-GB base model takes a while to hash."""
    with progress_bar(f"hashing the weights of {base_dir.name}") as update:
        return weights_hash(base_dir, update)


def _check_poster(p: Protocol, datanets: list[int], amount: int, hours: float) -> None:
    """What the contract would refuse, said in terms of this command's options."""
    count = p.datanet_count()
    unknown = [d for d in datanets if not 1 <= d <= count]
    if unknown:
        raise JobPostError(f"--datanet {', '.join(map(str, unknown))}: no such Datanet (ids 1..{count}; "
                           "`datanet net list`).")  # fmt: skip
    if len(set(datanets)) > 16:
        raise JobPostError(f"A job trains on at most 16 Datanets, got {len(set(datanets))}.")
    if hours <= 0:
        raise JobPostError(f"--hours must be positive, got {hours}.")
    balance = p.balance()
    if balance < amount:
        raise JobPostError(f"Wallet {p.address} holds {fmt_open(balance)}, the pool needs {fmt_open(amount)}.")


def job_cancel(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """Cancel a job nobody has claimed yet; its pool and verifier fee are refunded to you (the poster)."""
    p = write_protocol(ctx)
    if not 1 <= job_id <= p.job_count():
        raise JobPostError(f"No job #{job_id} (`datanet job list`).")
    job = p.job(job_id)
    if job.poster != p.address:
        raise JobPostError(f"Job #{job_id} was posted by {job.poster}; only its poster can cancel it.")
    if job.status != JobStatus.OPEN:
        raise JobPostError(
            f"Job #{job_id} is {job.status.name.lower()}; only an open (unclaimed) job can be cancelled "
            "(a claimed one that misses its deadline can be expired instead)."
        )
    p.cancel_job(job_id)
    tx = p.client.last_tx
    if json_out:
        print_json({"job_id": job_id, "status": "cancelled", "refunded": job.pool + job.verifierFee, "tx": tx})
        return
    console.print(f"cancelled job #{job_id} in tx {tx}; {fmt_open(job.pool + job.verifierFee)} (pool and verifier "
                  f"fee) refunded to {p.address}")  # fmt: skip


def job_expire(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """End a job that passed its deadline without a result (anyone may): the pool goes back to the
    poster and a node that claimed it is slashed."""
    p = write_protocol(ctx)
    if not 1 <= job_id <= p.job_count():
        raise JobPostError(f"No job #{job_id} (`datanet job list`).")
    job, now = p.job(job_id), chain_now(p)
    if job.status not in (JobStatus.OPEN, JobStatus.CLAIMED):
        raise JobPostError(f"Job #{job_id} is {job.status.name.lower()}; only an open or claimed job can expire.")
    if now < job.deadline:
        raise JobPostError(f"Job #{job_id}'s deadline is {fmt_when(job.deadline, now)}; it can be expired after that "
                           f"(`datanet job expire {job_id}`)" + ("" if job.status == JobStatus.CLAIMED else
                           ", or cancelled now by its poster (`datanet job cancel`)") + ".")  # fmt: skip
    receipt = p.expire_job(job_id)
    [event] = p.models.events.JobExpired().process_receipt(receipt, errors=DISCARD)
    slashed, node = int(event["args"]["slashed"]), job.node if job.status == JobStatus.CLAIMED else None
    out = {"job_id": job_id, "status": "expired", "refunded": job.pool + job.verifierFee, "poster": job.poster,
           "node": node, "slashed": slashed, "tx": p.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"expired job #{job_id} in tx {out['tx']}; {fmt_open(job.pool + job.verifierFee)} refunded to the "
                  f"poster {job.poster}" + (f", node {node} slashed {fmt_open(slashed)}" if node else ""))  # fmt: skip


def job_reopen(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """Return a claimed job whose node overran the maximum training time to open, for another node
    (anyone may): half of that node's bond goes to the poster."""
    p = write_protocol(ctx)
    if not 1 <= job_id <= p.job_count():
        raise JobPostError(f"No job #{job_id} (`datanet job list`).")
    job, now = p.job(job_id), chain_now(p)
    if job.status != JobStatus.CLAIMED:
        raise JobPostError(f"Job #{job_id} is {job.status.name.lower()}; only a claimed job can be reopened.")
    if now >= job.deadline:
        raise JobPostError(f"Job #{job_id}'s deadline has passed: expire it instead (`datanet job expire {job_id}`).")
    reopens_at = job.claimedAt + p.max_training_time()
    if now < reopens_at:
        raise JobPostError(f"Node {job.node} claimed job #{job_id} and may train until {fmt_when(reopens_at, now)}; "
                           f"it can be reopened after that (`datanet job reopen {job_id}`).")  # fmt: skip
    receipt = p.reopen_job(job_id)
    [event] = p.models.events.JobReopened().process_receipt(receipt, errors=DISCARD)
    slashed = int(event["args"]["slashed"])
    out = {"job_id": job_id, "status": "open", "node": job.node, "slashed": slashed, "poster": job.poster,
           "tx": p.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"reopened job #{job_id} in tx {out['tx']}; node {job.node} overran its training time and lost "
                  f"{fmt_open(slashed)} of its bond to the poster {job.poster}")  # fmt: skip


def job_sweep(ctx: typer.Context, job_id: JobIdArg, json_out: JsonOpt = False) -> None:
    """After a job's claim window, return its unclaimed rewards to the poster (anyone may)."""
    p = write_protocol(ctx)
    rnd, now = p.reward_round(job_id), chain_now(p)
    if rnd.root == b"\0" * 32:
        raise JobPostError(f"Job #{job_id} has no reward round (no registered model; `datanet job show {job_id}`).")
    if rnd.swept:
        raise JobPostError(f"Job #{job_id}'s unclaimed rewards were already swept to {rnd.refundTo}.")
    if now <= rnd.claimDeadline:
        raise JobPostError(f"Job #{job_id}'s contributors can claim until {fmt_when(rnd.claimDeadline, now)}; sweep "
                           "after that.")  # fmt: skip
    p.sweep(job_id)
    out = {"job_id": job_id, "refunded": rnd.total - rnd.claimed, "refund_to": rnd.refundTo, "tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    console.print(f"swept job #{job_id}: {fmt_open(rnd.total - rnd.claimed)} unclaimed returned to {rnd.refundTo} "
                  f"in tx {out['tx']}")  # fmt: skip
