"""`datanet store add|get` of a UnixFS directory through the CLI, with the embedded store and
with a real IPFS node: `get --json` reports what it wrote, and the tree comes back byte for byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.storage import unixfs

runner = CliRunner()
FILES = {
    "adapter_config.json": b'{"r": 8}',
    "weights/part-0.bin": os.urandom(300 * 1024),  # two blocks
    "weights/nested/empty.txt": b"",
}


def _run(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "adapter"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.mark.parametrize("node", [False, True], ids=["embedded", "ipfs-node"])
def test_store_get_json_of_a_directory(tree: Path, node: bool, request: pytest.FixtureRequest) -> None:
    extra = ["--ipfs-api", request.getfixturevalue("ipfs_api")] if node else []
    [added] = json.loads(_run(["store", "add", str(tree), "--json", *extra]))
    out = tree.parent / "out" / "adapter"
    got = json.loads(_run(["store", "get", added["cid"], "-o", str(out), "--json", *extra]))
    assert got == {
        "cid": added["cid"],
        "path": str(out),
        "type": "directory",
        "files": 3,
        "bytes": sum(len(d) for d in FILES.values()),
    }
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == FILES


def test_store_get_of_a_file_without_json(tree: Path) -> None:
    src = tree / "weights" / "part-0.bin"
    cid = _run(["store", "add", str(src)]).split()[0]
    assert cid == unixfs.build_file(src.read_bytes()).cid
    text = _run(["store", "get", cid, "-o", "copy.bin"])
    assert f"wrote {cid} to copy.bin (verified; 1 file(s), 307,200 bytes)" in text
    assert Path("copy.bin").read_bytes() == src.read_bytes()
