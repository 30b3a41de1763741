"""A local EVM dev chain (anvil from the npm package) for the demo and the tests.

anvil is started directly (not through `npx`, whose children survive a kill) in its own
process group, and the whole group is stopped on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx
from pydantic import BaseModel, Field

from node.config import REPO_ROOT
from node.errors import ChainError
from node.process import stop_group

ANVIL = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_ID = 31337


class DevChainConfig(BaseModel):
    """How to start the dev chain."""

    host: str = Field("127.0.0.1", description="Interface to listen on (loopback only by default).")
    port: int = Field(8545, ge=0, le=65535, description="0 picks a free port.")
    accounts: int = Field(20, ge=1, description="Funded dev accounts derived from the dev mnemonic.")
    block_time: float | None = Field(None, description="Seconds per block; None mines per tx.")
    state_file: Path | None = Field(None, description="Load/dump chain state here (persistence).")


def anvil_path() -> Path:
    path = Path(os.environ.get("DATANET_ANVIL", ANVIL))
    if not path.exists():
        raise ChainError(
            f"anvil not found at {path}. Run `npm ci` in the repo (it ships in the npm package "
            "@foundry-rs/anvil-linux-amd64), or point DATANET_ANVIL at an anvil binary."
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DevChain:
    """A running anvil. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, config: DevChainConfig | None = None):
        self.config = config or DevChainConfig()
        if self.config.port == 0:
            self.config = self.config.model_copy(update={"port": free_port(self.config.host)})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 20.0, log_path: Path | None = None) -> DevChain:
        if _answers(self.rpc_url):
            raise ChainError(
                f"Something already answers on {self.rpc_url}. Stop it, or choose another port (`--port`)."
            )
        cmd = [
            str(anvil_path()),
            "--host", self.config.host,
            "--port", str(self.config.port),
            "--accounts", str(self.config.accounts),
            "--mnemonic", DEV_MNEMONIC,
            "--chain-id", str(DEV_CHAIN_ID),
            "--hardfork", "cancun",
        ]  # fmt: skip
        if self.config.block_time:
            cmd += ["--block-time", str(self.config.block_time)]
        if self.config.state_file:
            cmd += ["--state", str(self.config.state_file)]
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ChainError(f"anvil exited with code {self._proc.returncode} at start-up.")
            if _answers(self.rpc_url):
                return self
            time.sleep(0.05)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.rpc_url} within {timeout} s.")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        """Stops the process group (SIGTERM, then SIGKILL)."""
        stop_group(self._proc, timeout=5)
        self._proc = None

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        r = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=0.5
        )
        return r.status_code == 200
    except httpx.HTTPError:
        return False
