"""The content-store interface the node uses, whichever store is behind it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from node.errors import ContentMismatchError
from node.storage import unixfs


class ContentStore(ABC):
    """Content-addressed storage with Kubo-identical CIDs; every read is verified."""

    @abstractmethod
    def get_block(self, cid: str) -> bytes:
        """The raw bytes of one block (verified by the callers of `read`)."""

    @abstractmethod
    def put_blocks(self, blocks: dict[str, bytes], root: str) -> str:
        """Stores a built DAG, pins its root, and returns the root CID."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether the store holds `cid`'s root block."""

    def add_bytes(self, data: bytes) -> str:
        built = unixfs.build_file(data)
        return self.put_blocks(built.blocks, built.cid)

    def add_path(self, path: Path) -> str:
        """Adds a file, or a directory recursively (as `ipfs add -r --cid-version=1`)."""
        built = _build_path(path)
        return self.put_blocks(built.blocks, built.cid)

    def cat(self, cid: str) -> bytes:
        """A file's bytes, every block checked against its CID."""
        tree = unixfs.read(cid, self.get_block)
        if tree.data is None:
            raise IsADirectoryError(f"{cid} is a directory; use `get` to write it out.")
        return tree.data

    def get(self, cid: str, out: Path) -> Path:
        """Writes the verified file or directory to `out` (atomically: all or nothing)."""
        tree = unixfs.read(cid, self.get_block)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            staged = tmp / "content"
            _write_tree(tree, staged)
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(staged, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


def verify_sha256(data: bytes, expected: bytes, what: str) -> None:
    """Rejects `data` unless its sha256 is `expected` (the hash recorded on-chain)."""
    got = hashlib.sha256(data).digest()
    if got != expected:
        raise ContentMismatchError(
            f"{what}: sha256 {got.hex()} does not match the on-chain {expected.hex()}; rejected, not used."
        )


def _build_path(path: Path) -> unixfs.Built:
    if path.is_dir():
        return unixfs.build_directory({p.name: _build_path(p) for p in sorted(path.iterdir())})
    return unixfs.build_file(path.read_bytes())


def _write_tree(tree: unixfs.Tree, dest: Path) -> None:
    if tree.entries is not None:
        dest.mkdir()
        for name, child in tree.entries.items():
            if "/" in name or name in ("", ".", ".."):
                raise ContentMismatchError(f"Directory entry name {name!r} is unsafe; refusing to write it.")
            _write_tree(child, dest / name)
    else:
        dest.write_bytes(tree.data or b"")
