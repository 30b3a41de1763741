"""CIDs for content, computed locally.

A file no larger than one chunk (256 KiB), added to IPFS with CIDv1 and raw leaves (Kubo's
`--cid-version=1`), is a single raw block: its CID is `cidv1(raw, sha2-256(bytes))` in base32.
Larger files are UnixFS DAGs and need the chunking builder of the content store.
"""

from __future__ import annotations

import base64
import hashlib

CHUNK_SIZE = 256 * 1024
_RAW_CODEC = 0x55
_SHA2_256 = 0x12


def raw_cid(data: bytes) -> str:
    """The CIDv1 (raw codec, sha2-256, base32) of a single-block file."""
    if len(data) > CHUNK_SIZE:
        raise ValueError(
            f"raw_cid covers files up to {CHUNK_SIZE} bytes (one IPFS chunk); got {len(data)}. "
            "Larger files are UnixFS DAGs: add them through the content store."
        )
    digest = hashlib.sha256(data).digest()
    binary = bytes([0x01, _RAW_CODEC, _SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")
