"""The attribution worker: ``python -m node.attribution.worker REQUEST.json RESULT.json``.

Run by `node.attribution.isolated.run_isolated`, never imported by a long-lived process. It pins
the floating-point environment before torch is first imported (``MKL_CBWR=AVX2`` only
takes effect then), runs one thread with mkldnn off and deterministic algorithms on, and writes
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {"type", "message"}}`` to
RESULT.json atomically. Exit status: 0 done, 2 a `NodeError` (bad inputs), 3 an unexpected error
(its traceback on stderr).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

PINNED_ENV = {"MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
THREADS_ENV = "DATANET_ATTRIBUTION_THREADS"
"""Threads for the worker (default 1). With MKL_CBWR pinned matmuls give the same bits at any
thread count, but torch's own reductions do not: the same count reproduces bit for bit, another
count differs in the last bits only, which MATCH's payout tolerance absorbs (`node.attribution.verify`)."""


def pin_floating_point() -> None:
    """Must run before torch is imported in this process; raises if it is too late."""
    if "torch" in sys.modules:
        raise RuntimeError("torch was imported before the attribution worker pinned MKL_CBWR: results would vary")
    threads = max(1, int(os.environ.get(THREADS_ENV, "1") or 1))
    os.environ.update(PINNED_ENV | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    torch.use_deterministic_algorithms(True)


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m node.attribution.worker REQUEST.json RESULT.json", file=sys.stderr)
        return 64
    request_path, result_path = Path(argv[0]), Path(argv[1])
    pin_floating_point()
    import warnings

    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    from node.errors import NodeError

    try:
        from node.attribution.engine import attribute
        from node.attribution.request import AttributionRequest

        request = AttributionRequest.model_validate_json(request_path.read_text())
        result = attribute(request)
    except NodeError as e:
        _write(result_path, {"ok": False, "error": {"type": type(e).__name__, "message": str(e)}})
        return 2
    except Exception as e:
        traceback.print_exc()
        _write(result_path, {"ok": False, "error": {"type": type(e).__name__, "message": str(e)}})
        return 3
    _write(result_path, {"ok": True, "result": result.model_dump(mode="json")})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
