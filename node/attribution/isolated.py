"""`run_isolated(request) -> AttributionResult`: attribution in a fresh worker process.

The daemon and the CLI imported torch long before they attribute, and ``MKL_CBWR`` (which makes
MKL's results independent of the CPU's code path and thread count) works only when set before
torch's first import. So every attribution that is committed or verified runs in
``python -m node.attribution.worker`` with the pinned environment, request and result passed as
JSON files. Its failures come back as `AttributionError` with the worker's own message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from .request import AttributionError, AttributionRequest, AttributionResult
from .worker import PINNED_ENV, THREADS_ENV

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `node/`


def worker_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ) | PINNED_ENV | {THREADS_ENV: str(max(1, threads))}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), path) if p)
    return env


def run_isolated(request: AttributionRequest, *, timeout_s: float | None = None, threads: int = 1) -> AttributionResult:
    """Runs `node.attribution.engine.attribute(request)` in a fresh, pinned subprocess (`threads`:
    see `node.attribution.worker.THREADS_ENV`)."""
    with tempfile.TemporaryDirectory(prefix="datanet-attribution-") as tmp:
        req_path, res_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req_path.write_text(request.model_dump_json())
        cmd = [sys.executable, "-m", "node.attribution.worker", str(req_path), str(res_path)]
        try:
            proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AttributionError(
                f"attribution did not finish within {timeout_s:.0f} s; give it more time (or fewer snapshots, a "
                "smaller query set)"
            ) from None
        if not res_path.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["(no output)"]
            raise AttributionError(f"the attribution worker died (exit status {proc.returncode}): {tail[0]}")
        doc = json.loads(res_path.read_text())
    if not doc.get("ok"):
        err = doc.get("error", {})
        raise AttributionError(f"attribution failed: {err.get('message', 'unknown error')} ({err.get('type')})")
    try:
        return AttributionResult.model_validate(doc["result"])
    except ValidationError as e:
        raise AttributionError(f"the attribution worker returned a malformed result: {e}") from e


__all__ = ["run_isolated", "worker_env"]
