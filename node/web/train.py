"""The Train page: a job's settings checked by `JobConfig` itself, a preview of the Datanets'
approved data, posting the job on-chain with the node's keystore (local operator only), and each
run's live loss curves from its `metrics.jsonl`.

Training runs in the daemon (`datanet daemon`), not in the web server: the page only posts the
job and watches the files the daemon writes, so closing the browser changes nothing. The local
operator's Stop and Resume on a run's page are `datanet node pause|resume` (`node.daemon.control`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from node.chain.accounts import resolve_account
from node.chain.models import JobStatus
from node.cli.evalset import commits, committed, remember_commit, reveal_eval, validate_eval_file
from node.daemon import control
from node.daemon.steps import jobs_root
from node.daemon.store import JobRecord, JobState, JobStore, namespace_of
from node.errors import NodeError
from node.serve.app import Services
from node.train.config import JobConfig
from node.web.progress import last_event_id, progress_events
from node.web.security import WebError, form_lists, require_local
from node.web.site import FormSession, PageSession, form_session, is_htmx, not_found, render, web_of

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

# (field, label, step): the JobConfig fields the form offers; the rest keep JobConfig's defaults
NUMBERS = [("learning_rate", "Learning rate", "any"), ("epochs", "Epochs", "any"), ("batch_size", "Batch size", "1"),
           ("lora_r", "LoRA rank (r)", "1"), ("lora_alpha", "LoRA alpha", "1"), ("lora_dropout", "LoRA dropout", "any"),
           ("max_seq_len", "Max length (tokens)", "1"), ("eval_fraction", "Eval split fraction", "any"),
           ("eval_every", "Eval every (steps)", "1"), ("max_steps", "Max steps (optional)", "1")]  # fmt: skip
LABELS = dict([(n, label) for n, label, _ in NUMBERS], method="Method", name="Job name", base_model="Base model",
              eval_sha256="Eval file")  # fmt: skip
DEFAULT_POOL, DEFAULT_HOURS = "100", "72"
PREVIEW_PAGE = 5  # records per page of the data preview
EVAL_SETS = "eval-sets"  # under the data directory: uploaded eval files, named by sha256
TRAINING = frozenset({JobState.SEEN, JobState.CLAIMED, JobState.DATA_READY, JobState.TRAINING})


@dataclass
class JobForm:
    """The form's values as typed, and what is wrong with them (by field, and overall)."""

    values: dict[str, str]
    datanets: list[int]
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.problems


def defaults(datanet: int | None = None) -> JobForm:
    values = {n: _shown(JobConfig.model_fields[n].default) for n, _, _ in NUMBERS}
    values |= {"method": "lora", "name": "", "base_model": "", "pool": DEFAULT_POOL, "hours": DEFAULT_HOURS}
    return JobForm(values=values, datanets=[datanet] if datanet else [])


def _shown(default: object) -> str:
    return "" if default is None else str(default)  # an optional field (max_steps) starts empty


def _bases(s: Services) -> dict[str, str]:
    """The base models a job may name, by served id: their references (a local directory's path
    stays on the server; the form shows and sends the id)."""
    return {m.id: m.base_ref for m in s.catalog.served() if m.kind == "base"}


async def read_form(request: Request) -> JobForm:
    items = await form_lists(request)
    values = {k: v.strip() for k, v in items if k != "datanet"}
    datanets = sorted({int(v) for k, v in items if k == "datanet" and v.strip().isdigit()})
    return JobForm(values=values, datanets=datanets)


def check(s: Services, form: JobForm) -> tuple[JobConfig | None, int]:
    """Fills `form.errors` from JobConfig's own validation (and the pool and deadline); the config
    and the pool in OPEN base units when all is well."""
    from node.cli.operator import open_units

    v = form.values
    bases = _bases(s)
    if v.get("base_model") not in bases:
        form.errors["base_model"] = "Choose one of the base models this node has."
    if not form.datanets:
        form.errors["datanets"] = "Choose at least one Datanet to train on."
    doc: dict[str, Any] = {n: v[n] for n, _, _ in NUMBERS if v.get(n)}
    doc |= {"method": v.get("method") or "lora", "base_model": bases.get(v.get("base_model") or "", "?")}
    if v.get("name"):
        doc["name"] = v["name"]
    if v.get("eval_sha256"):
        if s.node is None or eval_file_of(s.node.data_dir, v["eval_sha256"]) is None:
            form.errors["eval_sha256"] = "The eval file is not on this node (any more): choose it again."
        else:
            doc["eval_sha256"] = v["eval_sha256"]
    config = None
    try:
        config = JobConfig.model_validate(doc)
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            form.errors.setdefault(name, _say(name, err["msg"]))
    amount = 0
    try:
        amount = open_units(v.get("pool", ""), "The reward pool")
    except NodeError as e:
        form.errors["pool"] = str(e)
    try:
        hours = float(v.get("hours", ""))
        if not (math.isfinite(hours) and hours > 0):
            raise ValueError
    except ValueError:
        form.errors["hours"] = f"Hours until the deadline must be a positive number, got '{v.get('hours', '')}'."
    return (config if form.ok else None), amount


def _say(name: str, msg: str) -> str:
    """Pydantic's message, as an instruction about the form's field."""
    label = LABELS.get(name, name)
    msg = msg.replace("Input should be", "must be").replace("String should", "must")
    if name == "name" and "pattern" in msg:
        msg = "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
    default = JobConfig.model_fields[name].default if name in JobConfig.model_fields else None
    hint = f" (default {default})" if default not in (None, "") else ""
    return f"{label} {msg}{hint}."


def _page(request: Request, form: JobForm, status: int = 200) -> Response:
    s = web_of(request).services
    datanets = web_of(request).registry.datanets()
    fields = [(n, label, step, JobConfig.model_fields[n].description) for n, label, step in NUMBERS]
    return render(request, "train.html", status=status, active="train", form=form, fields=fields,
                  bases=_bases(s), datanets=datanets, chain=s.protocol is not None)  # fmt: skip


@router.get("/train")
def train_page(request: Request, session: PageSession, datanet: int | None = None) -> Response:
    return _page(request, defaults(datanet))


@router.post("/train/check")
async def train_check(request: Request, session: FormSession) -> Response:
    """The form checked as it is filled in (htmx): what to fix, or that it is ready."""
    form = await read_form(request)
    check(web_of(request).services, form)
    return render(request, "train_check.html", form=form, labels=LABELS)


@router.post("/train")
async def train_post(request: Request) -> Response:
    """Posts the job on-chain, signed with the node's keystore: the local operator only (checked
    before the session, so a forwarded request gets the 403 that says why)."""
    require_local(request, "Posting a job")
    await form_session(request)
    s = web_of(request).services
    form = await read_form(request)
    config, amount = check(s, form)
    if config is None:
        return _page(request, form, status=422)
    if s.protocol is None or s.node is None or s.store is None:
        form.problems.append("This node has no deployment, settings or content store configured: it cannot post jobs.")
        return _page(request, form, status=422)
    try:
        job_id = _post(s, form, amount)
    except (NodeError, ValueError) as e:
        form.problems.append(str(e))
        return _page(request, form, status=422)
    return web_of(request).sessions.finish(request, RedirectResponse(f"/train/jobs/{job_id}", status_code=303))


def _poster(s: Services) -> Any:
    """The protocol acting with the node's keystore (the local operator's account)."""
    assert s.protocol is not None and s.node is not None
    n = s.node
    account, _ = resolve_account(
        n.keystore, n.keystore_password.get_secret_value() if n.keystore_password else None,
        n.private_key.get_secret_value() if n.private_key else None, s.protocol.chain_id, prompt=False,
    )  # fmt: skip
    return s.protocol.as_account(account)


def _post(s: Services, form: JobForm, amount: int) -> int:
    from node.cli.poster import _check_poster, _job_config, post_job_config

    assert s.protocol is not None and s.node is not None and s.store is not None
    n = s.node
    p = _poster(s)
    v = form.values
    flags = {k: v[k] for k, _, _ in NUMBERS if v.get(k)} | {"method": v["method"], "name": v.get("name") or None}
    eval_path = eval_file_of(n.data_dir, v["eval_sha256"]) if v.get("eval_sha256") else None
    eval_report = validate_eval_file(eval_path) if eval_path is not None else None
    flags["eval_sha256"] = eval_report.sha256 if eval_report is not None else None
    ref = _bases(s)[v["base_model"]]
    config, base_dir = _job_config(ref, None, flags, n.models_path)  # JobPostError names the field
    hours = float(v["hours"])
    _check_poster(p, form.datanets, amount, hours)
    job_id, *_ = post_job_config(p, s.store, config, base_dir, form.datanets, amount, hours)
    if eval_path is not None and eval_report is not None:
        remember_commit(p, n.data_dir, job_id, eval_path, eval_report)  # what the run page's Reveal sends
    return job_id


# -- the poster's eval set (committed now, revealed after the claim) ---------------------------------


def eval_file_of(data_dir: Path, sha256: str) -> Path | None:
    """The uploaded eval file with this sha256 (kept under its hash, with its format's suffix)."""
    if not re.fullmatch(r"0x[0-9a-f]{64}", sha256):
        return None
    return next(iter(sorted((data_dir / EVAL_SETS).glob(f"{sha256[2:]}*"))), None)


@router.post("/train/eval-set")
async def eval_set(request: Request, name: str) -> JSONResponse:
    """The poster's eval set (the raw body, as the Contribute page sends files): checked as a
    contribution is, kept on this node under its sha256 so the form carries only that hash. Only
    the hash is posted with the job; the run's page reveals the file once a node has claimed it
    (`datanet job post --eval-file` / `job reveal-eval`). The local operator only, who posts."""
    from node.web.contribute import _file_name, _report_json, check_bytes

    require_local(request, "Committing an eval set")
    await form_session(request)
    s = web_of(request).services
    if s.node is None:
        raise WebError(409, "No node settings", "This server has no node settings: it cannot keep an eval set.")
    file = _file_name(name)
    data = await request.body()
    report, preview = check_bytes(data, file)
    if report.ok and eval_file_of(s.node.data_dir, report.sha256) is None:
        path = s.node.data_dir / EVAL_SETS / f"{report.sha256[2:]}{Path(file).suffix.lower()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: never half a file under the hash
    return JSONResponse(_report_json(report, preview), status_code=200 if report.ok else 422)


class EvalReveals:
    """A duty of the server (run with each registry refresh): reveal, once a node has claimed it,
    the eval set of each job this node posted with one, as the run page's Reveal button does, so
    the reveal window (`eval_reveal_s` after the claim) does not pass while nobody watches.
    `DATANET_SERVE_AUTO_REVEAL=false` leaves it to the button and `datanet job reveal-eval`."""

    __name__ = "revealing committed eval sets"

    def __init__(self, services: Services) -> None:
        self.s = services
        self.done: set[int] = set()  # revealed, or past revealing: not read again
        self.disabled = False

    def __call__(self) -> None:
        s = self.s
        if self.disabled or not s.settings.auto_reveal or s.node is None or s.protocol is None or s.store is None:
            return
        pending = sorted(set(commits(s.protocol, s.node.data_dir)) - self.done)
        poster = None
        for job_id in pending:
            job = s.protocol.job(job_id)
            if job.status == JobStatus.OPEN or s.protocol.client.block_number() <= job.claimBlock:
                continue  # not claimed yet, or claimed in the latest block (the reveal must come later)
            if job.status != JobStatus.CLAIMED or s.protocol.eval_reveal(job_id).revealed:
                self.done.add(job_id)
                continue
            if poster is None:
                try:
                    poster = _poster(s)
                except NodeError as e:  # no usable keystore here: say so once, leave it to the operator
                    log.warning("not revealing eval sets automatically: %s", e)
                    self.disabled = True
                    return
            if job.poster != poster.address:
                self.done.add(job_id)
                continue
            out = reveal_eval(poster, s.store, s.node.data_dir, job_id, None)
            log.info("revealed job #%d's eval set as %s (tx %s)", job_id, out["eval_cid"], out["tx"])
            self.done.add(job_id)


@router.post("/train/jobs/{job_id}/reveal-eval")
async def run_reveal_eval(request: Request, job_id: str) -> Response:
    """Reveal the committed eval set now that a node has claimed the job (`datanet job reveal-eval`):
    uploaded to the content store, its CID sent with the node's keystore."""
    require_local(request, "Revealing an eval set")
    await form_session(request)
    s = web_of(request).services
    if s.node is None or s.protocol is None or s.store is None:
        raise WebError(409, "No deployment", "Revealing an eval set needs this node's settings, deployment and store.")
    v = find_run(request, job_id)
    try:
        reveal_eval(_poster(s), s.store, s.node.data_dir, v.job_id, None)
    except (NodeError, ValueError) as e:
        raise WebError(409, "Not revealed", str(e)) from None
    return web_of(request).sessions.finish(request, RedirectResponse(f"/train/jobs/{v.job_id}", status_code=303))


# -- the data preview ----------------------------------------------------------------------------


@router.get("/train/preview")
def preview(request: Request, session: PageSession, datanet: int, page: int = 1) -> Response:
    examples, notes = web_of(request).registry.approved_examples(datanet)
    pages = max(1, -(-len(examples) // PREVIEW_PAGE))
    page = min(max(1, page), pages)
    shown = examples[(page - 1) * PREVIEW_PAGE : page * PREVIEW_PAGE]
    template = "preview_body.html" if is_htmx(request) else "preview.html"
    return render(request, template, active="train", datanet=datanet, shown=shown, notes=notes, page=page,
                  pages=pages, total=len(examples), per_page=PREVIEW_PAGE)  # fmt: skip


# -- runs and their progress ------------------------------------------------------------------------


def job_store(request: Request) -> JobStore | None:
    """The daemon's job store of this node and deployment (None without either)."""
    web = web_of(request)
    s = web.services
    if s.node is None or s.protocol is None:
        return None
    store: JobStore | None = getattr(web, "jobs", None)
    if store is None:
        store = web.jobs = JobStore(s.node.state_db, namespace_of(s.protocol.deployment))  # type: ignore[attr-defined]
    return store


def metrics_path(request: Request, job_id: int, record: JobRecord | None) -> Path | None:
    s = web_of(request).services
    if record is not None and record.work_dir:
        return Path(record.work_dir) / "train" / "metrics.jsonl"
    if s.node is None:
        return None
    root = jobs_root(s.node, s.protocol.deployment) if s.protocol is not None else s.node.jobs_path
    return root / f"job-{job_id}" / "train" / "metrics.jsonl"  # where the daemon will put it


@router.get("/train/jobs")
def runs(request: Request, session: PageSession) -> Response:
    store = job_store(request)
    records = sorted(store.all(), key=lambda r: -r.job_id) if store is not None else []
    return render(request, "runs.html", active="train", records=records, has_store=store is not None)


@dataclass
class RunView:
    """What the run's page knows of job `job_id`: the daemon's record, the chain's job, its metrics file."""

    job_id: int
    record: JobRecord | None
    job: Any
    path: Path | None


def find_run(request: Request, job_id: str | int) -> RunView:
    s = web_of(request).services
    jid = int(job_id) if str(job_id).isdigit() else 0
    store = job_store(request)
    record = store.get(jid) if store is not None and jid else None
    job = s.protocol.job(jid) if s.protocol is not None and 1 <= jid <= s.protocol.job_count() else None
    path = metrics_path(request, jid, record) if jid else None
    if record is None and job is None and not (path is not None and path.exists()):
        raise not_found(f"No job #{job_id} on this chain or in this node's job store.")
    return RunView(jid, record, job, path)


@router.get("/train/jobs/{job_id}")
def run(request: Request, session: PageSession, job_id: str) -> Response:
    web = web_of(request)
    v = find_run(request, job_id)
    config, config_note = web.registry.job_config(v.job.configCID if v.job else None)
    pause = _pause_state(request, v.job_id)
    return render(request, "run.html", active="train", job_id=v.job_id, record=v.record, job=v.job, config=config,
                  config_note=config_note, pause=pause, training_due=_training_due(request, v.job),
                  can_pause=v.record is not None and v.record.state in TRAINING,
                  eval_set=_eval_state(request, v, config))  # fmt: skip


@dataclass
class EvalState:
    sha256: str
    revealed: bool
    cid: str
    reveal_s: int
    kept_here: bool  # this node remembers the committed file (it was posted from here)
    claimed: bool


def _eval_state(request: Request, v: RunView, config: Any) -> EvalState | None:
    """The job's committed eval set, whether it is revealed, and whether this node can reveal it."""
    s = web_of(request).services
    if config is None or not getattr(config, "eval_sha256", None) or v.job is None or s.protocol is None:
        return None
    try:
        reveal = s.protocol.eval_reveal(v.job_id)
        kept = s.node is not None and committed(s.protocol, s.node.data_dir, v.job_id) is not None
    except NodeError:
        return None
    return EvalState(config.eval_sha256, bool(reveal.revealed), reveal.evalCID or "", int(config.eval_reveal_s),
                     kept, v.job.status == JobStatus.CLAIMED)  # fmt: skip


def _pause_state(request: Request, job_id: int) -> control.PauseState | None:
    s = web_of(request).services
    if s.node is None or s.protocol is None:
        return None
    return control.state(s.node, s.protocol.deployment, job_id)


def _training_due(request: Request, job: Any) -> int | None:
    """When a claimed job must be submitted by (its claim plus the chain's maximum training time),
    paused or not; None unless claimed and not yet submitted."""
    s = web_of(request).services
    if job is None or job.status != JobStatus.CLAIMED or not job.claimedAt or s.protocol is None:
        return None
    return int(job.claimedAt) + s.protocol.max_training_time()


@router.post("/train/jobs/{job_id}/pause")
async def run_pause(request: Request, job_id: str) -> Response:
    """Stop: the daemon checkpoints after its current step and waits (`node.daemon.control`); the
    local operator only, as `datanet node pause`."""
    return await _control(request, job_id, "Pausing a job's training", resume=False)


@router.post("/train/jobs/{job_id}/resume")
async def run_resume(request: Request, job_id: str) -> Response:
    """Resume: the marker goes and the job is due now, as `datanet node resume`."""
    return await _control(request, job_id, "Resuming a job's training", resume=True)


async def _control(request: Request, job_id: str, action: str, *, resume: bool) -> Response:
    require_local(request, action)  # before the session, so a forwarded request gets the 403 that says why
    await form_session(request)
    s = web_of(request).services
    if s.node is None or s.protocol is None:
        why = f"{action} needs this node's settings and deployment; this server has none."
        raise WebError(409, "No deployment", why)
    v = find_run(request, job_id)
    if resume:
        control.resume(s.node, s.protocol.deployment, v.job_id)
        store = job_store(request)
        if store is not None and v.record is not None:
            store.nudge(v.job_id)  # due now, not after the wait it was deferred for
    else:
        if v.record is None:
            raise WebError(409, "Not this node's job", f"Job #{v.job_id} is not in this node's job store: only a job "
                           "this node's daemon is working on can be paused.")  # fmt: skip
        control.pause(s.node, s.protocol.deployment, v.job_id)
    return web_of(request).sessions.finish(request, RedirectResponse(f"/train/jobs/{v.job_id}", status_code=303))


@router.get("/train/jobs/{job_id}/metrics")
def run_metrics(request: Request, session: PageSession, job_id: int, after: str | None = None) -> Response:
    """The run's metrics.jsonl as server-sent events (`id` = line number; `Last-Event-ID` resumes)."""
    store = job_store(request)
    path = metrics_path(request, job_id, store.get(job_id) if store is not None else None)
    if path is None:
        raise not_found(f"Job #{job_id} has no metrics on this node.")

    def finished() -> bool:
        record = store.get(job_id) if store is not None else None
        return record is not None and record.state not in TRAINING

    events = progress_events(path, last_event_id(request.headers.get("last-event-id"), after), finished,
                             request.is_disconnected)  # fmt: skip
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
