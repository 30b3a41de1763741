"""Fetch+verify throughput of the content stores, and CID computation speed.

Run from the repository root (starts and stops its own js-ipfs node; about a minute):

    .venv/bin/python benchmarks/storage.py              # 64 MiB; writes docs/benchmarks.md
    .venv/bin/python benchmarks/storage.py --mib 8 --no-write

Baseline in the same run: a plain copy of the same bytes between two files on this disk (the
fastest a local read could be). Ratios are store throughput / copy throughput. Every store read
re-hashes every block against its CID, which is what the node does before training on anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gas_report import write_section
from node.storage import unixfs
from node.storage.embedded import EmbeddedStore
from node.storage.jsipfs import JsIpfsNode
from node.storage.kubo import KuboStore

BEGIN, END = "<!-- storage:begin -->", "<!-- storage:end -->"


class Row(BaseModel):
    what: str
    seconds: float
    mib_per_s: float
    ratio: float | None = None


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(mib: int) -> list[Row]:
    data = os.urandom(mib * 2**20)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src, dst = tmp / "src.bin", tmp / "dst.bin"
        src.write_bytes(data)
        copy = _best(lambda: shutil.copyfile(src, dst))
        cid_time = _best(lambda: unixfs.build_file(data))
        embedded = EmbeddedStore(tmp / "embedded")
        cid = embedded.add_bytes(data)
        emb = _best(lambda: embedded.cat(cid))
        with JsIpfsNode(tmp / "jsipfs") as node:
            kubo = KuboStore(node.api_url, timeout=120)
            assert kubo.add_bytes(data) == cid
            ipfs = _best(lambda: kubo.cat(cid), repeat=2)
    rate = mib / copy
    return [
        Row(what="plain file copy (baseline)", seconds=copy, mib_per_s=rate, ratio=1.0),
        Row(what="embedded store: fetch + verify", seconds=emb, mib_per_s=mib / emb, ratio=(mib / emb) / rate),
        Row(
            what="js-ipfs node (RPC API): fetch + verify", seconds=ipfs, mib_per_s=mib / ipfs, ratio=(mib / ipfs) / rate
        ),
        Row(what="CID computation (UnixFS DAG build)", seconds=cid_time, mib_per_s=mib / cid_time),
    ]


def markdown(rows: list[Row], mib: int) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Storage (benchmarks/storage.py)",
        "",
        f"Measured {when} on this machine (2 cores), {mib} MiB of random bytes, best of 3 (2 for js-ipfs). "
        "Fetch + verify re-hashes every block against its CID. Ratio: throughput / the plain file copy's. "
        "Regenerate with `.venv/bin/python benchmarks/storage.py`.",
        "",
        "| What | Seconds | MiB/s | Ratio vs copy |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else "n/a"
        lines.append(f"| {r.what} | {r.seconds:.3f} | {r.mib_per_s:,.0f} | {ratio} |")
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    md = markdown(run(args.mib), args.mib)
    print(md)
    if not args.no_write:
        print(f"wrote {write_section(md, begin=BEGIN, end=END)}")


if __name__ == "__main__":
    main()
