"""The embedded content store: blocks on disk, no daemon. CIDs equal Kubo's, so content moves
between it and any IPFS node unchanged; every block is re-hashed when read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from node.errors import ContentNotFoundError
from node.storage import unixfs
from node.storage.base import ContentStore


class EmbeddedStore(ContentStore):
    """One file per block under `root/blocks/`, pins in `root/pins.json`."""

    def __init__(self, root: Path):
        self.root = root
        self.blocks_dir = root / "blocks"
        self.blocks_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, cid: str) -> Path:
        unixfs.parse_cid(cid)  # rejects anything that is not a CID before touching the disk
        return self.blocks_dir / cid

    def get_block(self, cid: str) -> bytes:
        path = self._path(cid)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ContentNotFoundError(
                f"{cid} is not in the embedded store at {self.root}. Add it first, or point the node at an "
                "IPFS node that has it (--ipfs-api / DATANET_IPFS_API)."
            ) from None

    def has(self, cid: str) -> bool:
        return self._path(cid).exists()

    def put_blocks(self, blocks: dict[str, bytes], root: str) -> str:
        for cid, block in blocks.items():
            path = self._path(cid)
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(block)
                os.replace(tmp, path)
        self.pin(root)
        return root

    def pin(self, cid: str) -> None:
        pins_file = self.root / "pins.json"
        pins = set(json.loads(pins_file.read_text())) if pins_file.exists() else set()
        if cid not in pins:
            pins.add(cid)
            tmp = pins_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(pins)))
            os.replace(tmp, pins_file)
