"""The operator's hand on a running job: pause training and resume it (the CLI's `datanet node
pause|resume`, the web app's Stop and Resume).

A pause is a marker file in the job's working directory, so it survives a daemon restart and any
process (CLI, web server, daemon) sees the same answer without a database write racing the
daemon's own. The daemon checks it after every training step: the run checkpoints that step and
waits; resuming removes the marker and the next pass continues from the checkpoint. A paused job
still runs against its deadline: the chain's maximum training time counts from the claim, and a
job not submitted in it can be reopened for another node.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from node.chain.models import Deployment
from node.config import Settings
from node.daemon.steps import jobs_root

MARKER = "PAUSED"


class PauseState(BaseModel):
    job_id: int
    paused: bool
    since: float | None = None


def marker(settings: Settings, deployment: Deployment, job_id: int) -> Path:
    return jobs_root(settings, deployment) / f"job-{job_id}" / MARKER


def pause(settings: Settings, deployment: Deployment, job_id: int) -> PauseState:
    path = marker(settings, deployment, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{time.time()}\n")
        os.replace(tmp, path)
    return state(settings, deployment, job_id)


def resume(settings: Settings, deployment: Deployment, job_id: int) -> PauseState:
    marker(settings, deployment, job_id).unlink(missing_ok=True)
    return state(settings, deployment, job_id)


def state(settings: Settings, deployment: Deployment, job_id: int) -> PauseState:
    path = marker(settings, deployment, job_id)
    if not path.exists():
        return PauseState(job_id=job_id, paused=False)
    try:
        since = float(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        since = None
    return PauseState(job_id=job_id, paused=True, since=since)
