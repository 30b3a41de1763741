"""A real IPFS node for the storage tests: js-ipfs from npm, offline, on free loopback ports,
started once per session in its own process group and stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.chain.devchain import free_port
from node.config import REPO_ROOT

JSIPFS = REPO_ROOT / "node_modules" / ".bin" / "jsipfs"


def _jsipfs(repo: Path, *args: str) -> None:
    env = {**os.environ, "IPFS_PATH": str(repo)}
    subprocess.run([str(JSIPFS), *args], env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def ipfs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not JSIPFS.exists():
        pytest.skip("js-ipfs is not installed (run `npm ci`)")
    repo = tmp_path_factory.mktemp("jsipfs")
    _jsipfs(repo, "init", "--empty-repo")
    api_port, gw_port, rpc_port = free_port(), free_port(), free_port()
    # No swarm (offline, and STACK.md: without this the daemon hangs before its API is up).
    _jsipfs(repo, "config", "Addresses.Swarm", "--json", "[]")
    _jsipfs(repo, "config", "Addresses.API", f"/ip4/127.0.0.1/tcp/{api_port}")
    _jsipfs(repo, "config", "Addresses.Gateway", f"/ip4/127.0.0.1/tcp/{gw_port}")
    _jsipfs(repo, "config", "Addresses.RPC", f"/ip4/127.0.0.1/tcp/{rpc_port}")
    log = open(repo / "daemon.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(JSIPFS), "daemon", "--offline"],
        env={**os.environ, "IPFS_PATH": str(repo)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.post(f"{url}/api/v0/id", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"jsipfs daemon exited: {(repo / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            raise RuntimeError("jsipfs daemon did not start within 60 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
