"""A local EVM dev chain (anvil from the npm package) for the demo and the tests.

anvil is started directly (not through `npx`, whose children survive a kill) in its own
process group, and the whole group is stopped on exit. A chain left running on purpose
(`datanet chain up --detach`, `datanet demo --keep`) is recorded in a pid file in the data dir
(`write_pidfile`), which is the only way `datanet chain down` finds it (`stop_kept_chain`).
"""

from __future__ import annotations

import contextlib
import os
import signal
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
PIDFILE = "devchain.json"  # in the data dir: the chain left running by `chain up --detach` / `demo --keep`


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

    _last_started_at = 0.0  # wall clock when the latest anvil of this process answered

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
        _next_second_after(DevChain._last_started_at)
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ChainError(f"anvil exited with code {self._proc.returncode} at start-up.")
            if _answers(self.rpc_url):
                DevChain._last_started_at = time.time()
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


def _next_second_after(t: float) -> None:
    """Waits until the wall clock is past the second of `t`. anvil's genesis block depends only on
    its options and the second it started in, and the genesis hash is what tells a node one dev
    chain from the next: two chains started in the same second would look like one chain."""
    while int(time.time()) <= int(t):
        time.sleep(int(t) + 1.001 - time.time())


def _answers(url: str) -> bool:
    try:
        r = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=0.5
        )
        return r.status_code == 200
    except httpx.HTTPError:
        return False


class KeptChain(BaseModel):
    """A dev chain left running on purpose, as its pid file records it."""

    pid: int = Field(description="anvil's pid, also its process group (started in a session of its own).")
    rpc_url: str


def write_pidfile(data_dir: Path, chain: DevChain) -> Path:
    """Records `chain` as the data dir's kept chain (atomically: a half-written file would hide it)."""
    if chain.pid is None:
        raise ChainError("The dev chain is not running; there is nothing to record.")
    path = data_dir / PIDFILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(KeptChain(pid=chain.pid, rpc_url=chain.rpc_url).model_dump_json())
    os.replace(tmp, path)
    return path


def kept_chain(data_dir: Path) -> KeptChain | None:
    """The chain the pid file names, if it still runs; a pid file whose chain is gone (or whose pid
    now belongs to another program) is removed, so that nothing reports or stops a chain that is
    not there."""
    path = data_dir / PIDFILE
    if not path.exists():
        return None
    try:
        kept = KeptChain.model_validate_json(path.read_text())
    except ValueError:
        kept = None
    if kept is None or not _runs_anvil(kept.pid):
        path.unlink(missing_ok=True)
        return None
    return kept


def refuse_if_kept(data_dir: Path, doing: str) -> None:
    """Raises if a kept chain still runs: one per data dir, or a new pid file would orphan it."""
    kept = kept_chain(data_dir)
    if kept is not None:
        raise ChainError(
            f"A detached dev chain already runs at {kept.rpc_url} (pid {kept.pid}, {data_dir / PIDFILE}), so "
            f"this would {doing}. Use it, or stop it first with `datanet chain down`."
        )


def stop_kept_chain(data_dir: Path, timeout: float = 10.0) -> KeptChain | None:
    """Stops the kept chain and waits until it has exited (its port is free again); returns what
    was stopped, or None if no kept chain was running."""
    kept = kept_chain(data_dir)
    if kept is not None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(kept.pid, sig)
            deadline = time.monotonic() + wait
            while _runs_anvil(kept.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _runs_anvil(kept.pid):
                break
        else:
            raise ChainError(f"The dev chain at {kept.rpc_url} (pid {kept.pid}) did not stop; kill it by hand.")
    (data_dir / PIDFILE).unlink(missing_ok=True)
    return kept


def _runs_anvil(pid: int) -> bool:
    """Whether process `pid` is alive (not a zombie) and is anvil (a recycled pid is not our chain)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:  # exited, not yet reaped: reap it if it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return b"anvil" in cmdline
