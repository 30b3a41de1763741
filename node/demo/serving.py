"""The demo's last step: `datanet serve` over the demo chain, a real request through the official
`openai` SDK when it is installed (plain HTTP otherwise), and what a user needs to go on: the web
app's URL, an API key, a snippet to paste.

The server is its own process (as an operator runs it), started with the demo's settings in its
environment; with ``--keep`` it goes on running, recorded in a pid file that `datanet chain down`
also reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from node.errors import NodeError

PIDFILE = "serve.pid"


class DemoServer(BaseModel):
    url: str
    pid: int
    api_key: str = Field(description="Made for the demo; shown once.")
    model: str
    question: str
    answer: str
    attribution: list[dict[str, Any]] = Field(default_factory=list)
    kept: bool = False
    log: str

    def snippet(self) -> str:
        return (
            "from openai import OpenAI\n"
            f'client = OpenAI(base_url="{self.url}/v1", api_key="{self.api_key}")\n'
            f'r = client.chat.completions.create(model="{self.model}", '
            f'messages=[{{"role": "user", "content": {json.dumps(self.question)}}}])\n'
            "print(r.choices[0].message.content)"
        )


def serve_env(data_dir: Path, deployments_dir: Path, models_dir: Path, rpc_url: str) -> dict[str, str]:
    """The demo's layout as `datanet serve` settings: its store and deployment, the node daemon's
    job directories (the training sets attribution indexes), the models cache."""
    return {
        "DATANET_DATA_DIR": str(data_dir), "DATANET_DEPLOYMENTS_DIR": str(deployments_dir),
        "DATANET_NETWORK": "localhost", "DATANET_RPC_URL": rpc_url, "DATANET_MODELS_DIR": str(models_dir),
        "DATANET_WORK_DIR": str(data_dir / "demo" / "node" / "jobs"),  # where `Demo` runs the node's daemon
    }  # fmt: skip


def start(env: dict[str, str], port: int, log_path: Path, timeout: float = 300.0) -> subprocess.Popen[bytes]:
    """`datanet serve` in a session of its own (so a kept server outlives the demo), up when
    /health answers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve", "--port", str(port)], env={**os.environ, **env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeError(f"`datanet serve` exited with status {proc.returncode}; its log: {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc.pid)
    raise NodeError(f"`datanet serve` did not answer within {timeout:.0f} s; its log: {log_path}")


def ask(url: str, key: str, model: str, question: str) -> tuple[str, list[dict[str, Any]]]:
    """One chat request, through the official openai SDK if it is installed; (answer, spans)."""
    messages = [{"role": "user", "content": question}]
    deadline = time.monotonic() + 120
    while True:  # the registry refresh may not have seen the model yet in the first seconds
        try:
            try:
                from openai import OpenAI
            except ImportError:
                r = httpx.post(
                    f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=300,
                    json={"model": model, "messages": messages, "temperature": 0, "max_tokens": 48},
                )  # fmt: skip
                if r.status_code == 404 and time.monotonic() < deadline:
                    time.sleep(1)
                    continue
                r.raise_for_status()
                body = r.json()
                return body["choices"][0]["message"]["content"], body.get("attribution") or []
            client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)
            from openai import NotFoundError

            try:
                done = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=48)  # type: ignore[arg-type]
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
                continue
            return done.choices[0].message.content or "", list((done.model_extra or {}).get("attribution") or [])
        except httpx.HTTPError as e:
            raise NodeError(f"the demo's request to {url} failed: {e}") from e


def write_pidfile(data_dir: Path, pid: int, url: str) -> None:
    (data_dir / PIDFILE).write_text(json.dumps({"pid": pid, "url": url}))


def _runs_serve(pid: int) -> bool:
    """Whether `pid` is still our server (a recycled pid belongs to someone else)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"node.cli" in cmd and b"serve" in cmd


def stop(pid: int) -> None:
    if not _runs_serve(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_kept(data_dir: Path) -> str | None:
    """Stops the server a `demo --keep` left running; its URL, or None if there was none."""
    path = data_dir / PIDFILE
    if not path.exists():
        return None
    kept = json.loads(path.read_text())
    stop(int(kept["pid"]))
    path.unlink(missing_ok=True)
    return str(kept["url"])
