"""Stop and Resume on a run's page, over a real dev chain: the local operator's buttons write and
remove the daemon's PAUSED marker (`node.daemon.control`), the page says since when and when the
job must be submitted by; the same request from elsewhere (or without the CSRF token) changes nothing."""

from __future__ import annotations

from pathlib import Path

from node.daemon import control
from node.daemon.store import JobRecord, JobState, JobStore, namespace_of
from node.serve.app import create_app
from tests.conftest import World
from tests.contracts.helpers_jobs import claimed_job
from tests.web.conftest import REMOTE, client, csrf_of
from tests.web.test_wallet import chain_services


def test_the_operator_pauses_and_resumes_a_run_and_no_one_else_can(world: World, tmp_path: Path) -> None:
    services = chain_services(world, tmp_path)
    assert services.node is not None
    job = claimed_job(world)
    deployment = world.admin.deployment
    store = JobStore(services.node.state_db, namespace_of(deployment))
    store.see(JobRecord(job_id=job.job_id, state=JobState.TRAINING, next_attempt_at=1e12))
    app = create_app(services, refresh=False)
    c = client(app)

    page = c.get(f"/train/jobs/{job.job_id}")
    assert page.status_code == 200 and 'id="pause"' in page.text and "badge paused" not in page.text
    due = world.admin.job(job.job_id).claimedAt + world.admin.max_training_time()
    assert "Submit by" in page.text and "deadline runs while the job is paused" in page.text
    csrf = csrf_of(page.text)
    url = f"/train/jobs/{job.job_id}"

    assert c.post(url + "/pause", data={}).status_code == 403  # no CSRF token
    assert not control.state(services.node, deployment, job.job_id).paused

    remote = client(app, REMOTE, host="node.example:8000")
    refused = remote.post(url + "/pause", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "allowed only from the node" in refused.text
    assert not control.marker(services.node, deployment, job.job_id).exists()

    r = c.post(url + "/pause", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == url
    st = control.state(services.node, deployment, job.job_id)
    assert st.paused and st.since is not None
    page = c.get(url)
    assert "badge paused" in page.text and 'id="resume"' in page.text and 'id="pause"' not in page.text
    from node.web.site import fmt_time

    assert fmt_time(due) in page.text  # the deadline, paused or not

    assert remote.post(url + "/resume", data={"csrf_token": csrf}).status_code == 403
    assert control.state(services.node, deployment, job.job_id).paused

    r = c.post(url + "/resume", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert not control.marker(services.node, deployment, job.job_id).exists()
    record = store.get(job.job_id)
    assert record is not None and record.next_attempt_at == 0.0  # nudged: due now
    assert 'id="pause"' in c.get(url).text

    other = c.post("/train/jobs/999/pause", data={"csrf_token": csrf})
    assert other.status_code == 404  # no such job: no marker made
    assert not control.marker(services.node, deployment, 999).exists()
