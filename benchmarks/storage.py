"""Fetch+verify throughput of the content stores against a plain loopback copy, and CID speed.

Run from the repository root (starts and stops its own js-ipfs node; one to two minutes):

    .venv/bin/python benchmarks/storage.py              # 64 MiB; writes docs/benchmarks.md
    .venv/bin/python benchmarks/storage.py --mib 8 --no-write

Baselines in the same run, on the same bytes, none verified: the plain loopback copy (served
over HTTP on 127.0.0.1 by a thread here, fetched in one request with the stdlib client); the same
with httpx, the stores' client, in one request and in one request per 256 KiB block (as the
store's `block/get` reads go), which split the gap to js-ipfs into client, request and node
costs; and a copy between two files on this disk (the fastest a local read could be). Ratios are
throughput / baseline throughput. Every store read re-hashes every block against its CID, which
is what the node does before training on it.

Failure detection, too: how long a store takes to give up with a clear error (an API nobody
listens on; a CID the live node does not have), against the floor its retry settings allow (the
backoff sum; the timeouts it must wait out). The tests only guard these against hangs (30 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from pydantic import BaseModel

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gas_report import write_section
from node.chain.devchain import free_port
from node.errors import NodeError
from node.storage import unixfs
from node.storage.embedded import EmbeddedStore
from node.storage.jsipfs import JsIpfsNode
from node.storage.kubo import KuboStore

BEGIN, END = "<!-- storage:begin -->", "<!-- storage:end -->"
BLOCK = 256 * 1024  # the chunk size of our DAGs (and Kubo's), so one block per request


class Row(BaseModel):
    what: str
    seconds: float
    mib_per_s: float
    vs_loopback: float | None = None  # throughput / the plain loopback HTTP copy's
    vs_disk: float | None = None  # throughput / the disk file copy's


class FailRow(BaseModel):
    what: str
    seconds: float
    floor: float  # what the retry settings make the least possible time to give up

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor


def _time_to_fail(fn: Callable[[], object]) -> float:
    """Seconds until `fn` raises the store's clear error (anything else is a bug: it propagates)."""
    t = time.perf_counter()
    try:
        fn()
    except NodeError:
        return time.perf_counter() - t
    raise AssertionError("expected the store to give up with a NodeError")


def failure_rows(api_url: str) -> list[FailRow]:
    """Time to a clear error on an API nobody listens on and on a CID the live node lacks."""
    dead = f"http://127.0.0.1:{free_port()}"
    retries, backoff = 3, 0.05
    unreachable = _time_to_fail(lambda: KuboStore(dead, timeout=5, retries=retries, backoff=backoff).cat(MISSING))
    timeout = 1.0
    missing = _time_to_fail(lambda: KuboStore(api_url, timeout=timeout, backoff=0.01).cat(MISSING))
    return [
        FailRow(what=f"unreachable API: {retries} retries, backoff {backoff} s doubling", seconds=unreachable,
                floor=sum(backoff * 2**k for k in range(retries))),
        FailRow(what=f"CID the live node lacks: timeout {timeout} s, one timeout retry", seconds=missing,
                floor=2 * timeout),
    ]  # fmt: skip


MISSING = unixfs.build_file(b"a block no node here has ever stored").cid


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@contextmanager
def _loopback_server(data: bytes) -> Iterator[str]:
    """Serves `data` at GET / and its 256 KiB slices at GET /block/<i>, on 127.0.0.1, keep-alive."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx and the IPFS API use

        def do_GET(self) -> None:
            body = data
            if self.path.startswith("/block/"):
                i = int(self.path.rsplit("/", 1)[1])
                body = data[i * BLOCK : (i + 1) * BLOCK]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _loopback(data: bytes) -> tuple[float, float, float]:
    """Seconds for the best loopback HTTP copy of `data`: in one request with the stdlib client (the
    plain copy), in one request with httpx (the store's client), and with httpx one request per block."""
    n_blocks = -(-len(data) // BLOCK)
    with _loopback_server(data) as url, httpx.Client(base_url=url, timeout=120) as http:

        def plain() -> None:
            with urllib.request.urlopen(f"{url}/", timeout=120) as r:
                assert len(r.read()) == len(data)

        def whole() -> None:
            assert len(http.get("/").content) == len(data)

        def per_block() -> None:
            assert sum(len(http.get(f"/block/{i}").content) for i in range(n_blocks)) == len(data)

        return _best(plain), _best(whole), _best(per_block)


def run(mib: int) -> tuple[list[Row], list[FailRow]]:
    data = os.urandom(mib * 2**20)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src, dst = tmp / "src.bin", tmp / "dst.bin"
        src.write_bytes(data)
        disk = _best(lambda: shutil.copyfile(src, dst))
        plain, http_one, http_blocks = _loopback(data)
        cid_time = _best(lambda: unixfs.build_file(data))
        embedded = EmbeddedStore(tmp / "embedded")
        cid = embedded.add_bytes(data)
        emb = _best(lambda: embedded.cat(cid))
        with JsIpfsNode(tmp / "jsipfs") as node:
            kubo = KuboStore(node.api_url, timeout=120)
            assert kubo.add_bytes(data) == cid
            ipfs = _best(lambda: kubo.cat(cid), repeat=2)
            failures = failure_rows(node.api_url)

    def row(what: str, seconds: float, ratios: bool = True) -> Row:
        rate = mib / seconds
        if not ratios:
            return Row(what=what, seconds=seconds, mib_per_s=rate)
        return Row(what=what, seconds=seconds, mib_per_s=rate, vs_loopback=plain / seconds, vs_disk=disk / seconds)

    return [
        row("loopback HTTP copy, one request, stdlib client (baseline)", plain),
        row("loopback HTTP copy, one request, httpx (the store's client)", http_one),
        row("loopback HTTP copy, httpx, one request per 256 KiB block", http_blocks),
        row("disk file copy (shutil.copyfile)", disk),
        row("embedded store: fetch + verify", emb),
        row("js-ipfs node (RPC API on loopback): fetch + verify", ipfs),
        row("CID computation (UnixFS DAG build)", cid_time, ratios=False),
    ], failures


def markdown(rows: list[Row], failures: list[FailRow], mib: int, load: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Storage (benchmarks/storage.py)",
        "",
        f"Measured {when} on this machine ({os.cpu_count()} cores, load average {load:.1f} at the start), "
        f"{mib} MiB of random bytes, best of 3 (2 for js-ipfs). "
        "Fetch + verify re-hashes every block against its CID. The baseline is a plain loopback copy: the "
        "same bytes served over HTTP on 127.0.0.1 and fetched in one request (stdlib client), unverified. "
        "Ratios: throughput / the baseline's, and / a disk-to-disk file copy's. "
        "Regenerate with `.venv/bin/python benchmarks/storage.py`.",
        "",
        "| What | Seconds | MiB/s | Ratio vs loopback copy | Ratio vs disk copy |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        loop = f"{r.vs_loopback:.3f}" if r.vs_loopback is not None else "n/a"
        disk = f"{r.vs_disk:.3f}" if r.vs_disk is not None else "n/a"
        lines.append(f"| {r.what} | {r.seconds:.3f} | {r.mib_per_s:,.0f} | {loop} | {disk} |")
    lines += [
        "", "Failure detection: seconds until the store gives up with a clear error, against the least its retry "
        "settings allow (ratio 1.0 = no time lost beyond the configured waits).", "",
        "| Failure | Seconds | Floor (s) | Ratio |", "|---|---:|---:|---:|",
    ]  # fmt: skip
    lines += [f"| {f.what} | {f.seconds:.3f} | {f.floor:.3f} | {f.ratio:.2f} |" for f in failures]
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other work on the machine slows every row; say how much there was
    rows, failures = run(args.mib)
    md = markdown(rows, failures, args.mib, load)
    print(md)
    if not args.no_write:
        print(f"wrote {write_section(md, begin=BEGIN, end=END)}")


if __name__ == "__main__":
    main()
