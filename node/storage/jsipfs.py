"""A real IPFS node on this machine: js-ipfs from npm (Kubo's RPC API), offline, on loopback.

Used by the tests and the storage benchmark (Kubo itself cannot be installed offline here).
Two fixes from STACK.md are applied: no swarm addresses (else the daemon hangs before its API is
up), and every port chosen free on 127.0.0.1. The daemon runs in its own process group, which is
stopped as a whole.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from node.chain.devchain import free_port
from node.config import REPO_ROOT
from node.errors import StorageUnavailableError
from node.process import stop_group

JSIPFS = REPO_ROOT / "node_modules" / ".bin" / "jsipfs"


class JsIpfsNode:
    """`with JsIpfsNode(repo_dir) as node: node.api_url`."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.api_url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> None:
        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        subprocess.run([str(JSIPFS), *args], env=env, check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60.0) -> JsIpfsNode:
        if not JSIPFS.exists():
            raise StorageUnavailableError(f"js-ipfs is not installed at {JSIPFS}; run `npm ci` in the repo.")
        self.repo.mkdir(parents=True, exist_ok=True)
        self._run("init", "--empty-repo")
        api, gateway, rpc = free_port(), free_port(), free_port()
        self._run("config", "Addresses.Swarm", "--json", "[]")
        self._run("config", "Addresses.API", f"/ip4/127.0.0.1/tcp/{api}")
        self._run("config", "Addresses.Gateway", f"/ip4/127.0.0.1/tcp/{gateway}")
        self._run("config", "Addresses.RPC", f"/ip4/127.0.0.1/tcp/{rpc}")
        log = open(self.repo / "daemon.log", "wb")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [str(JSIPFS), "daemon", "--offline"],
            env={**os.environ, "IPFS_PATH": str(self.repo)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.api_url = f"http://127.0.0.1:{api}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.post(f"{self.api_url}/api/v0/id", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self._proc.poll() is not None:
                tail = (self.repo / "daemon.log").read_text()[-2000:]
                raise StorageUnavailableError(f"the js-ipfs daemon exited at start-up:\n{tail}")
            time.sleep(0.2)
        self.stop()
        raise StorageUnavailableError(f"the js-ipfs daemon did not answer within {timeout} s")

    def stop(self) -> None:
        stop_group(self._proc)
        self._proc = None

    def __enter__(self) -> JsIpfsNode:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
