"""`datanet daemon` (train jobs), `datanet node jobs|retry` (this node's job states, from its local
store), `datanet model list` (the model registry, from the chain, with each model's metrics)."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from rich.table import Table

from node import safe_json
from node.chain.deploy import load_deployment
from node.chain.models import Model
from node.chain.protocol import Protocol
from node.cli.common import JsonOpt, console, err_console, jsonable, print_json, read_protocol, settings, write_protocol
from node.config import Settings
from node.daemon.store import JobRecord, JobState, JobStore
from node.errors import ConfigError, NodeError
from node.storage import open_store


def daemon_cmd(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Catch up with the chain, do what can be done now, exit.")
    ] = False,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Run until every job this node saw is finished, then exit.")
    ] = False,
    reset_watcher: Annotated[
        bool,
        typer.Option(
            "--reset-watcher",
            help="Forget where the event watcher stopped and read the chain again from the deployment block "
            "(after the chain was reset or replaced); jobs already in the job store keep their state.",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Run as a verifier instead: check every result in its challenge window and challenge a fault "
            "the contract can prove (needs OPEN for the challenge bond).",
        ),
    ] = False,
    recompute: Annotated[
        bool,
        typer.Option("--recompute", help="With --verify: also re-run each result's attribution (`datanet verify`)."),
    ] = False,
) -> None:
    """Watch for jobs, claim those this node can run, train, upload and submit the results.

    Runs until Ctrl-C (or SIGTERM): the job in progress stops at its next checkpoint and resumes
    on the next start. Progress: `datanet node jobs`. With --verify: a verifier (see above)."""
    from node.daemon.loop import Daemon  # torch and the training stack load only for the daemon

    _daemon_logging()
    s = settings(ctx)
    if verify:
        _run_verifier(ctx, s, once=once, recompute=recompute)
        return
    daemon = Daemon(write_protocol(ctx), open_store(s), s)
    if reset_watcher:
        forgotten = daemon.reset_watcher()
        where = f"block {forgotten}" if forgotten is not None else "no checkpoint"
        err_console.print(
            f"watcher checkpoint reset (was {where}); reading from block {daemon.p.deployment.deploy_block}"
        )

    def stop(signum: int, _frame: FrameType | None) -> None:
        err_console.print("[yellow]stopping after the current step (Ctrl-C again to abort now)[/]")
        daemon.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        daemon.run(once=once, exit_when_idle=exit_when_idle)
    finally:
        daemon.close()


def _run_verifier(ctx: typer.Context, s: Settings, *, once: bool, recompute: bool) -> None:
    from node.daemon.verifier import Verifier

    verifier = Verifier(write_protocol(ctx), open_store(s), s, recompute=recompute)

    def stop(signum: int, _frame: FrameType | None) -> None:
        verifier.stop.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    decided = verifier.run(once=once)
    if once:
        print_json([jsonable(c) for c in decided])


def _daemon_logging() -> None:
    """INFO for the node's loggers; one plain timestamped line per record when stderr is not a
    terminal (a service log, a file), where rich would wrap lines at 80 columns."""
    node_log = logging.getLogger("node")
    if node_log.getEffectiveLevel() > logging.INFO:
        node_log.setLevel(logging.INFO)
    if not sys.stderr.isatty():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        node_log.addHandler(handler)
        node_log.propagate = False


class JobView(BaseModel):
    """A job row as `datanet node jobs --json` prints it (the row plus its progress in percent)."""

    job: JobRecord
    percent: float | None


def jobs_cmd(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    retry_id: Annotated[  # hidden: the old spelling of `datanet node retry JOB`
        int | None, typer.Option("--retry", hidden=True, help="Put a skipped or failed job back to run again.")
    ] = None,
) -> None:
    """This node's jobs: state, training progress, errors (read from the local state file)."""
    s = settings(ctx)
    with JobStore.from_settings(s, load_deployment(s.deployment_file())) as store:
        if retry_id is not None:
            r = _retry(store, retry_id)
            err_console.print(f"job #{retry_id} is {r.state} again; a running daemon picks it up")
        rows = store.all()
    if json_out:
        print_json([jsonable(JobView(job=r, percent=r.percent)) for r in rows])
        return
    t = Table("job", "state", "progress", "loss", "eta", "model", "note")
    for r in rows:
        t.add_row(
            f"#{r.job_id}", _state(r), _bar(r.percent), _num(r.loss), _eta(r), f"#{r.model_id}" if r.model_id else "",
            r.reason or r.last_error or (r.adapter_cid or ""),
        )  # fmt: skip
    console.print(t if rows else "no jobs seen yet (is `datanet daemon` running?)")


def retry_cmd(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="A skipped or failed (retryable) job of this node.")],
    json_out: JsonOpt = False,
) -> None:
    """Put a skipped or failed (retryable) job back to run again; a running daemon picks it up."""
    s = settings(ctx)
    with JobStore.from_settings(s, load_deployment(s.deployment_file())) as store:
        r = _retry(store, job_id)
    if json_out:
        print_json(jsonable(JobView(job=r, percent=r.percent)))
        return
    console.print(f"job #{job_id} is {r.state} again; a running `datanet daemon` picks it up")


def pause_cmd(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="A job this node is training.")],
    json_out: JsonOpt = False,
) -> None:
    """Pause a job's training: the daemon checkpoints after the current step and waits (the job's
    deadline still runs: resume in time)."""
    from node.daemon import control

    s = settings(ctx)
    st = control.pause(s, load_deployment(s.deployment_file()), job_id)
    if json_out:
        print_json(st)
        return
    console.print(f"job #{job_id} paused: the daemon stops after its current step; `datanet node resume {job_id}`")


def resume_cmd(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="A job paused with `datanet node pause`.")],
    json_out: JsonOpt = False,
) -> None:
    """Resume a paused job: the daemon continues from the step it checkpointed."""
    from node.daemon import control

    s = settings(ctx)
    deployment = load_deployment(s.deployment_file())
    st = control.resume(s, deployment, job_id)
    with JobStore.from_settings(s, deployment) as store:
        if store.get(job_id) is not None:
            store.nudge(job_id)  # due now, not after the wait it was deferred for
    if json_out:
        print_json(st)
        return
    console.print(f"job #{job_id} resumed; a running `datanet daemon` continues it from its last checkpoint")


def _retry(store: JobStore, job_id: int) -> JobRecord:
    from node.daemon.loop import retry  # see daemon_cmd: the loop module loads the training stack

    return retry(store, job_id)


def _state(r: JobRecord) -> str:
    colour = {JobState.SETTLED: "green", JobState.FAILED: "red", JobState.LOST: "yellow", JobState.SKIPPED: "dim"}
    label = f"{r.state} {r.step}/{r.total_steps}" if r.state == JobState.TRAINING and r.total_steps else str(r.state)
    if r.state == JobState.FAILED:
        label += " (retryable)" if r.retryable else ""
    c = colour.get(r.state)
    return f"[{c}]{label}[/]" if c else label


def _bar(percent: float | None, width: int = 20) -> str:
    if percent is None:
        return ""
    full = round(width * percent / 100)
    return "█" * full + "░" * (width - full) + f" {percent:3.0f}%"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def _eta(r: JobRecord) -> str:
    if r.state != JobState.TRAINING or r.eta_s is None:
        return ""
    m, sec = divmod(int(r.eta_s), 60)
    return f"{m}m{sec:02d}s"


class ModelView(BaseModel):
    """One registered model as `datanet model list --json` prints it."""

    model_id: int
    job_id: int
    status: str = Field(description="pending (in its challenge window), finalized (rewards claimable) or voided.")
    node: str
    method: str
    base_model: str
    base_model_hash: str
    datanet_ids: list[int]
    adapter_cid: str
    adapter_sha256: str
    data_root: str
    metrics_cid: str
    metrics: dict[str, Any] | None
    config_cid: str
    config_hash: str
    parent_model_id: int
    registered_at: int
    attribution_root: str = Field(description="Root of the reward tree (what RewardDistributor pays against).")
    attribution_cid: str = Field(description="The attribution document: scores, weights, reward tree.")
    attribution_method: str | None = Field(description="The document's method id (None: not fetched/readable).")
    scores_root: str
    total_weight: int
    example_count: int


def models_cmd(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    datanet: Annotated[int | None, typer.Option("--datanet", help="Only models trained on this Datanet.")] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Only models of this base model weights hash (0x...).")
    ] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="Fetch each model's metrics document from the store.")
    ] = True,
) -> None:
    """Models registered on-chain: provenance (base model, Datanets, data root), adapter CID and hash."""
    p = read_protocol(ctx)
    ids = _model_ids(p, datanet, base_model)
    store = open_store(settings(ctx)) if metrics else None
    views = [_model_view(p.model(i), store) for i in ids]
    if json_out:
        print_json(views)
        return
    t = Table("#", "job", "status", "base model", "datanets", "adapter CID", "data root", "eval loss")
    for v in views:
        loss = (v.metrics or {}).get("train", {}).get("eval_loss")
        t.add_row(str(v.model_id), str(v.job_id), v.status, v.base_model, ",".join(map(str, v.datanet_ids)),
                  v.adapter_cid, v.data_root[:18] + "…", _num(loss))  # fmt: skip
    console.print(t if views else "no models match")


def _model_ids(p: Protocol, datanet: int | None, base_model: str | None) -> list[int]:
    ids: set[int] | None = None
    if datanet is not None:
        ids = set(_paged(lambda off: p.models_by_datanet(datanet, off, 100)))
    if base_model is not None:
        try:
            h = bytes.fromhex(base_model.removeprefix("0x"))
        except ValueError:
            h = b""
        if len(h) != 32:
            raise ConfigError(f"--base-model {base_model!r} is not a 32-byte hex hash (0x + 64 hex digits).")
        found = set(_paged(lambda off: p.models_by_base_model(h, off, 100)))
        ids = found if ids is None else ids & found
    return sorted(ids) if ids is not None else list(range(1, p.model_count() + 1))


def _paged(page: Any) -> list[int]:
    out: list[int] = []
    while batch := page(len(out)):
        out.extend(batch)
        if len(batch) < 100:
            break
    return out


def _model_view(m: Model, store: Any) -> ModelView:
    doc: dict[str, Any] | None = None
    method: str | None = None
    if store is not None and m.metricsCID:
        try:
            found = safe_json.loads(store.cat(m.metricsCID), f"metrics {m.metricsCID}")
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
            found.pop("stream", None)  # the per-step stream is for plots, not for a listing
            doc = found
        except (NodeError, ValueError) as e:
            print(f"model #{m.id}: metrics {m.metricsCID} not readable here ({e})", file=sys.stderr)
    if store is not None and m.attributionCID:
        try:
            found = safe_json.loads(store.cat(m.attributionCID), f"attribution {m.attributionCID}")
            raw = found.get("method") if isinstance(found, dict) else None
            method = _method_id(raw)
        except (NodeError, ValueError) as e:
            print(f"model #{m.id}: attribution {m.attributionCID} not readable here ({e})", file=sys.stderr)
    return ModelView(
        model_id=m.id, job_id=m.jobId, status=m.status.name.lower(), node=m.node, method=m.method.name.lower(),
        base_model=m.baseModel,
        base_model_hash="0x" + m.baseModelHash.hex(), datanet_ids=m.datanetIds, adapter_cid=m.adapterCID,
        adapter_sha256="0x" + m.adapterHash.hex(), data_root="0x" + m.dataRoot.hex(), metrics_cid=m.metricsCID,
        metrics=doc, config_cid=m.configCID, config_hash="0x" + m.configHash.hex(), parent_model_id=m.parentModelId,
        registered_at=m.registeredAt, attribution_root="0x" + m.attributionRoot.hex(), attribution_cid=m.attributionCID,
        attribution_method=method, scores_root="0x" + m.scoresRoot.hex(), total_weight=m.totalWeight,
        example_count=m.exampleCount,
    )  # fmt: skip


def _method_id(raw: Any) -> str | None:
    """The method id of a v1 document (`method` is an object) or a v0 one (`method` is a string)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        from node.attribution.document import MethodInfo

        try:
            return MethodInfo.model_validate(raw).method_id()
        except ValueError:
            return None
    return None
