"""`kill -9` of a real `datanet daemon` process at several points, and restarts: the job still
ends as one registered model, with exactly one claim and one submitResult on-chain.

Points, in one sequence where each restart takes over from the last kill: right after the claim
transaction is mined but before it is recorded; in the middle of the download (one contribution
fetched, the training set not written or recorded); in the middle of training after a checkpoint
(the test polls the job store and the checkpoint directory, then SIGKILLs); in the middle of the
upload (the adapter stored, the metrics and attribution documents not yet); after the uploads are
recorded; right before submitResult is sent; and right after it is mined but before it is
recorded. `DATANET_FAILPOINT` makes the daemon SIGKILL itself at a named point (`failpoint()`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.chain.accounts import dev_account
from node.chain.models import JobStatus
from node.daemon.store import JobRecord, JobState, JobStore, namespace_of
from tests.conftest import NODE, World
from tests.daemon_setup import NodeHome, approved_datanet, job_events, node_home, post_job, stake

STEPS = 40  # long enough that the test sees a checkpoint and kills well before the last step
LONGER = {"max_steps": STEPS, "checkpoint_every": 4, "batch_size": 8, "max_seq_len": 256}


def _start(home: NodeHome, world: World, failpoint: str | None, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **home.env(world, "0x" + bytes(dev_account(NODE).key).hex())}
    env.pop("DATANET_FAILPOINT", None)
    if failpoint:
        env["DATANET_FAILPOINT"] = failpoint
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "daemon", "--exit-when-idle"],
            env=env, cwd=home.root, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _wait_exit(proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"daemon did not exit in {timeout} s:\n{log.read_text()[-4000:]}")


def _wait_for(
    proc: subprocess.Popen[bytes], cond: Callable[[], bool], log: Path, what: str, timeout: float = 180
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"daemon exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_kill_9_at_every_stage_then_restart_submits_exactly_once(
    world: World, tmp_path: Path, tiny_base_model: Path
) -> None:
    home = node_home(world, tmp_path, tiny_base_model)
    datanet_id = approved_datanet(world, home)
    stake(world.node)
    job_id = post_job(world, home, datanet_id, config=LONGER)
    jobs = JobStore(home.settings.state_db, namespace_of(world.deployment))
    log = tmp_path / "daemon.log"

    def row() -> JobRecord | None:
        return jobs.get(job_id)

    # 1. Killed right after claimJob is mined, before the claim is recorded.
    proc = _start(home, world, "claim-sent", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert world.admin.job(job_id).node == world.node.address
    assert (r := row()) is not None and r.state == JobState.SEEN

    # 2. Killed in the middle of the download: one contribution fetched, the set neither written nor recorded.
    proc = _start(home, world, "data-fetching", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert (r := row()) is not None and r.state == JobState.CLAIMED and r.data_root is None
    work = home.settings.jobs_path / f"test-{world.deployment.chain_key}" / f"job-{job_id}"
    assert not (work / "data" / "manifest.json").exists()

    # 3. Killed in the middle of training, after the trainer wrote a checkpoint.
    proc = _start(home, world, None, log)
    checkpoints = work / "train" / "checkpoints"

    def mid_training() -> bool:
        r = row()
        if r is not None and r.state not in (JobState.SEEN, JobState.CLAIMED, JobState.DATA_READY, JobState.TRAINING):
            pytest.fail(f"training finished before the test could kill it (state {r.state}); make LONGER longer")
        return r is not None and r.state == JobState.TRAINING and any(checkpoints.glob("step-*.pt"))

    _wait_for(proc, mid_training, log, "a training checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = row()
    assert r is not None and r.state == JobState.TRAINING and r.step is not None and r.step < STEPS

    # 4. Training resumes and finishes; killed in the middle of the upload (adapter stored, the rest not).
    proc = _start(home, world, "upload-adapter", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert (r := row()) is not None and r.state == JobState.ATTRIBUTED and r.adapter_cid is None

    # 5. Killed after the uploads are recorded, before submitResult.
    proc = _start(home, world, "uploaded", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert (r := row()) is not None and r.state == JobState.UPLOADED
    assert world.admin.job(job_id).status == JobStatus.CLAIMED

    # 6. Killed right before submitResult is sent (the chain already re-read: nothing there yet).
    proc = _start(home, world, "submit-before", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert (r := row()) is not None and r.state == JobState.UPLOADED
    assert world.admin.job(job_id).status == JobStatus.CLAIMED and job_events(world, "ModelRegistered", job_id) == []

    # 7. Killed right after submitResult is mined, before it is recorded.
    proc = _start(home, world, "submit-sent", log)
    assert _wait_exit(proc, log) == -signal.SIGKILL
    assert (r := row()) is not None and r.state == JobState.UPLOADED
    assert world.admin.job(job_id).status == JobStatus.SUBMITTED

    # 8. A clean restart records what the chain already has and finishes.
    proc = _start(home, world, None, log)
    assert _wait_exit(proc, log) == 0, log.read_text()[-4000:]
    r = row()
    assert r is not None and r.state == JobState.SETTLED and r.model_id == world.admin.job(job_id).modelId
    assert len(job_events(world, "JobClaimed", job_id)) == 1
    [registered] = job_events(world, "ModelRegistered", job_id)
    assert registered["tx"] == r.submit_tx and registered["adapterCID"] == r.adapter_cid
    notes = [t.note for t in jobs.history(job_id)]
    assert "claim found on-chain, not resent" in notes and "result found on-chain, not resent" in notes
    assert [t.to_state for t in jobs.history(job_id)].count(JobState.TRAINING) == 1
    # Training resumed rather than restarted: the fourth process's first progress line is the step
    # after a checkpoint, not step 1, and the stream holds every step exactly once.
    runs = log.read_text().split("daemon: node ")[1:]
    assert len(runs) == 8
    first_step = int(re.findall(rf"step (\d+)/{STEPS}", runs[3])[0])
    assert first_step > 1 and (first_step - 1) % LONGER["checkpoint_every"] == 0, runs[3]
    stream = [json.loads(line) for line in (Path(r.work_dir or "") / "train" / "metrics.jsonl").read_text().split()]
    assert [p["step"] for p in stream if p["kind"] == "train"] == list(range(1, STEPS + 1))
    jobs.close()
