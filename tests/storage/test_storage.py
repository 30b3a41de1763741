"""Storage against a real IPFS node: our CIDs equal js-ipfs's (and an independent CID library's)
for files of 0 bytes to several MiB and nested directories; content moves between the embedded
store and the node unchanged; every wrong byte is rejected; outages fail clearly."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from multiformats import CID, multihash
from typer.testing import CliRunner

from node.chain.devchain import free_port
from node.cli import app
from node.errors import ContentMismatchError, ContentNotFoundError, StorageUnavailableError
from node.storage import unixfs
from node.storage.embedded import EmbeddedStore
from node.storage.kubo import ADD_PARAMS, KuboStore

KiB, MiB = 1024, 1024 * 1024
SIZES = [0, 1, 1000, 256 * KiB - 1, 256 * KiB, 256 * KiB + 1, 1 * MiB, 5 * MiB + 123]


def _node_cid(api: str, data: bytes, **extra: str) -> str:
    params = {**ADD_PARAMS, "only-hash": "true", **extra}
    r = httpx.post(f"{api}/api/v0/add", params=params, files={"file": ("f", data)}, timeout=60)
    return str(json.loads(r.text.strip().splitlines()[-1])["Hash"])


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed + size).randbytes(size)


@pytest.mark.parametrize("size", SIZES)
def test_file_cids_equal_the_ipfs_node(ipfs_api: str, size: int) -> None:
    data = _data(size)
    assert unixfs.build_file(data).cid == _node_cid(ipfs_api, data)


def test_balanced_layout_over_several_levels_equals_the_node(ipfs_api: str) -> None:
    """With 64-byte chunks, 2 MB is 31,250 leaves: three levels of up-to-174-link nodes."""
    data = _data(2_000_000)
    ours = unixfs.build_file(data, chunk_size=64)
    assert ours.cid == _node_cid(ipfs_api, data, chunker="size-64")
    assert len(ours.blocks) > 31_250 + 174


@pytest.mark.parametrize("size", [0, 5, 256 * KiB])
def test_single_block_cid_equals_an_independent_implementation(size: int) -> None:
    data = _data(size)
    independent = CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))
    assert unixfs.build_file(data).cid == str(independent)


def test_directory_cid_equals_the_node(ipfs_api: str, tmp_path: Path) -> None:
    root = tmp_path / "adapter"
    (root / "sub" / "deeper").mkdir(parents=True)
    files = {
        "adapter_config.json": b'{"r": 8}',
        "sub/weights.bin": _data(300 * KiB),
        "sub/deeper/a.txt": b"hi\n",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    multipart = [("file", (f"adapter/{rel}".replace("/", "%2F"), data)) for rel, data in files.items()]
    r = httpx.post(
        f"{ipfs_api}/api/v0/add", params={**ADD_PARAMS, "only-hash": "true"}, files=multipart, timeout=60
    )
    node_root = next(
        json.loads(line)["Hash"] for line in r.text.splitlines() if json.loads(line)["Name"] == "adapter"
    )
    store = EmbeddedStore(tmp_path / "store")
    assert store.add_path(root) == node_root
    out = store.get(node_root, tmp_path / "out")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_content_moves_between_the_node_and_the_embedded_store(ipfs_api: str, tmp_path: Path) -> None:
    node = KuboStore(ipfs_api, timeout=10)
    embedded = EmbeddedStore(tmp_path / "store")
    data = _data(700 * KiB, seed=1)
    cid = node.add_bytes(data)  # the node's own importer, checked against our CID
    built = unixfs.build_file(data)
    embedded.put_blocks({c: node.get_block(c) for c in built.blocks}, cid)
    assert embedded.cat(cid) == data
    other = _data(900 * KiB, seed=2)
    cid2 = embedded.add_bytes(other)
    b2 = unixfs.build_file(other)
    assert node.put_blocks({c: embedded.get_block(c) for c in b2.blocks}, cid2) == cid2
    assert node.cat(cid2) == other and node.has(cid2)


def test_a_corrupted_block_on_disk_is_rejected(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = _data(600 * KiB, seed=3)
    cid = store.add_bytes(data)
    leaf = next(c for c in unixfs.build_file(data).blocks if c.startswith("bafk"))
    path = store.blocks_dir / leaf
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ContentMismatchError, match=leaf):
        store.cat(cid)


class _LyingNode(BaseHTTPRequestHandler):
    """Answers every block/get with bytes that do not match the CID."""

    def do_POST(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not the content you asked for")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lying_node() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _LyingNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_lying_node_is_caught(lying_node: str) -> None:
    cid = unixfs.build_file(b"real content").cid
    with pytest.raises(ContentMismatchError, match="does not hash to its CID"):
        KuboStore(lying_node, timeout=2).cat(cid)


def test_a_missing_cid_fails_within_the_timeout(ipfs_api: str) -> None:
    """An offline node waits forever for a block it lacks: one retry after a timeout, then a clear error."""
    missing = unixfs.build_file(os.urandom(64)).cid
    start = time.monotonic()
    with pytest.raises(ContentNotFoundError, match=r"did not answer within 1\.0 s \(2 tries\)"):
        KuboStore(ipfs_api, timeout=1.0, backoff=0.01).cat(missing)
    # The message counts the tries; the clock only guards against a hang (2 s of timeouts here,
    # a busy 2-core CI can take far longer without anything being wrong).
    assert time.monotonic() - start < 30


def test_an_unreachable_api_fails_after_retries() -> None:
    port = free_port()
    with socket.socket():  # nothing listens on `port`
        store = KuboStore(f"http://127.0.0.1:{port}", timeout=1, retries=2, backoff=0.01)
        with pytest.raises(StorageUnavailableError, match="unreachable after 3 tries"):
            store.cat(unixfs.build_file(b"x").cid)


def test_not_a_cid_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(unixfs.CidError, match="not a base32 CIDv1"):
        EmbeddedStore(tmp_path).cat("QmNotSupported")


def test_cli_store_add_get_roundtrip(ipfs_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(400 * KiB, seed=4))
    for extra in ([], ["--ipfs-api", ipfs_api]):
        added = runner.invoke(app, ["store", "add", str(src), "--json", *extra], catch_exceptions=False)
        assert added.exit_code == 0, added.output
        cid = json.loads(added.stdout)[0]["cid"]
        assert cid == unixfs.build_file(src.read_bytes()).cid
        out = tmp_path / f"out{len(extra)}.jsonl"
        got = runner.invoke(app, ["store", "get", cid, "-o", str(out), *extra], catch_exceptions=False)
        assert got.exit_code == 0, got.output
        assert out.read_bytes() == src.read_bytes()
