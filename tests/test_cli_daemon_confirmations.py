"""On the dev chain (31337) anvil mines a block only when a transaction arrives, so the daemon
waits for no confirmations there by default: `chain up` + `job post` + `daemon --once` sees the job.
An explicit setting wins; with confirmations to wait for, the daemon says which blocks it waits on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.chain.deploy import save_deployment
from node.config import Settings
from node.daemon import loop
from node.daemon.loop import Daemon
from node.storage.embedded import EmbeddedStore
from tests.conftest import World
from tests.contracts.helpers_jobs import posted_job


def test_confirmations_default_per_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().confirmations == 2 and Settings().for_chain(1).confirmations == 2
    assert Settings().for_chain(31337).confirmations == 0
    assert Settings(confirmations=3).for_chain(31337).confirmations == 3
    monkeypatch.setenv("DATANET_CONFIRMATIONS", "1")
    assert Settings().for_chain(31337).confirmations == 1


def test_the_last_posted_job_is_seen_at_once_on_the_dev_chain(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(rpc_url=world.rpc_url, network="test", data_dir=tmp_path / ".d", deployments_dir=tmp_path / "dep")
    save_deployment(world.deployment, s.deployment_file())
    store = EmbeddedStore(tmp_path / "ipfs")
    job = posted_job(world)  # the chain's last transaction: no block on top of it
    daemon = Daemon(world.node, store, s)
    try:
        assert daemon.settings.confirmations == 0
        daemon.catch_up()
        assert daemon.jobs.get(job.job_id) is not None
    finally:
        daemon.close()

    log = loop.log
    log.addHandler(caplog.handler)  # the CLI's daemon logging may have stopped propagation in this process
    level = log.level
    log.setLevel(logging.INFO)
    try:
        explicit = Settings(rpc_url=world.rpc_url, network="test", data_dir=tmp_path / ".e",
                            deployments_dir=tmp_path / "dep", confirmations=2)  # fmt: skip
        waiting = Daemon(world.node, store, explicit)
        try:
            waiting.catch_up()
            waiting._report_waiting()
        finally:
            waiting.close()
    finally:
        log.removeHandler(caplog.handler)
        log.setLevel(level)
    assert "waiting for 2 confirmation(s) of block" in caplog.text, caplog.text
