"""UnixFS DAGs exactly as Kubo builds them with `--cid-version=1` (raw leaves, 256 KiB chunks,
balanced layout of at most 174 links per node), so our CIDs equal a real IPFS node's.

A file of one chunk (or none) is a single raw block. A larger one is a tree of dag-pb nodes whose
UnixFS `Data` says File, the total size and each child's size; dag-pb writes Links (field 2)
before Data (field 1). A directory is a dag-pb node of type Directory with one named link per
entry, sorted by name. A link's Tsize is the child's whole DAG size in bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from node.errors import StorageError

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174
RAW, DAG_PB, SHA2_256 = 0x55, 0x70, 0x12
_FILE, _DIRECTORY = 2, 1


class CidError(StorageError, ValueError):
    """A string that is not a CID (v1 base32, or v0 "Qm...": sha2-256, raw or dag-pb) we can verify."""


# ------------------------------------------------------------------------ CIDs


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7


def cid_bytes(codec: int, data: bytes) -> bytes:
    return bytes([0x01, codec, SHA2_256, 32]) + hashlib.sha256(data).digest()


def cid_str(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def parse_cid(cid: str) -> tuple[int, bytes]:
    """(codec, sha256 digest) of a base32 CIDv1 or a CIDv0 ("Qm...", always dag-pb); raises
    CidError for anything else."""
    if cid.startswith("Qm"):
        return DAG_PB, _cidv0_digest(cid)
    if not cid.startswith("b"):
        raise CidError(
            f"{cid!r} is not a base32 CIDv1 ('bafy...' or 'bafk...') nor a CIDv0 ('Qm' and 44 base58 characters); "
            "copy the whole CID."
        )
    body = cid[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as e:
        raise CidError(f"{cid!r} is not valid base32: {e}") from None
    if len(raw) != 36 or raw[0] != 1 or raw[1] not in (RAW, DAG_PB) or raw[2:4] != bytes([SHA2_256, 32]):
        raise CidError(f"{cid!r} is not a CIDv1 with codec raw/dag-pb and a sha2-256 multihash.")
    return raw[1], raw[4:]


def _cidv0_digest(cid: str) -> bytes:
    """The sha2-256 digest of a CIDv0: base58btc of the multihash 0x12 0x20 + 32 bytes."""
    n = 0
    for ch in cid:
        if ch not in _B58:
            raise CidError(f"{cid!r} is not a base32 CIDv1 nor a CIDv0 ({ch!r} is not base58); copy the whole CID.")
        n = n * 58 + _B58.index(ch)
    raw = n.to_bytes(max(34, (n.bit_length() + 7) // 8), "big")
    if len(cid) != 46 or len(raw) != 34 or raw[:2] != bytes([SHA2_256, 32]):
        raise CidError(f"{cid!r} is not a base32 CIDv1 nor a CIDv0 ('Qm' and 44 base58 characters, a sha2-256 "
                       "multihash); copy the whole CID.")  # fmt: skip
    return raw[2:]


def normalize_cid(cid: str) -> str:
    """`cid` as the base32 CIDv1 the stores key blocks by: a CIDv0 ("Qm...", what most IPFS tools
    print) names the same dag-pb block as the CIDv1 with its multihash, so both fetch the same
    content. Raises CidError for anything that is not a CID."""
    cid = cid.strip()
    codec, digest = parse_cid(cid)
    return cid_str(bytes([0x01, codec, SHA2_256, 32]) + digest) if cid.startswith("Qm") else cid


def _link_cid(binary: bytes) -> str:
    """A dag-pb link's binary CID as a string (a CIDv0 link is the bare multihash)."""
    if len(binary) == 34 and binary[:2] == bytes([SHA2_256, 32]):
        return cid_str(bytes([0x01, DAG_PB]) + binary)
    return cid_str(binary)


def block_matches(cid: str, block: bytes) -> bool:
    """Whether `block` is exactly the bytes `cid` names."""
    _, digest = parse_cid(cid)
    return hashlib.sha256(block).digest() == digest


# -------------------------------------------------------------------- protobuf


def _field_bytes(num: int, value: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _field_varint(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield num, value
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            yield num, buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


@dataclass(frozen=True)
class Link:
    cid: bytes  # binary CID
    name: str
    tsize: int


def encode_node(links: list[Link], data: bytes) -> bytes:
    """dag-pb PBNode: Links first (field 2), then Data (field 1)."""
    out = b"".join(
        _field_bytes(
            2, _field_bytes(1, ln.cid) + _field_bytes(2, ln.name.encode()) + _field_varint(3, ln.tsize)
        )
        for ln in links
    )
    return out + _field_bytes(1, data)


def decode_node(block: bytes) -> tuple[list[Link], bytes]:
    links: list[Link] = []
    data = b""
    for num, value in _fields(block):
        if num == 2 and isinstance(value, bytes):
            f = dict(_fields(value))
            links.append(Link(bytes(f.get(1, b"")), bytes(f.get(2, b"")).decode(), int(f.get(3, 0))))  # type: ignore[arg-type]
        elif num == 1 and isinstance(value, bytes):
            data = value
    return links, data


def _unixfs(kind: int, filesize: int | None = None, blocksizes: list[int] | None = None) -> bytes:
    out = _field_varint(1, kind)
    if filesize is not None:
        out += _field_varint(3, filesize)
    for size in blocksizes or []:
        out += _field_varint(4, size)
    return out


def unixfs_info(data: bytes) -> tuple[int, bytes, int | None]:
    """(type, inline data, filesize) of a UnixFS Data message."""
    kind, inline, filesize = -1, b"", None
    for num, value in _fields(data):
        if num == 1 and isinstance(value, int):
            kind = value
        elif num == 2 and isinstance(value, bytes):
            inline = value
        elif num == 3 and isinstance(value, int):
            filesize = value
    return kind, inline, filesize


# ---------------------------------------------------------------------- import


@dataclass(frozen=True)
class Built:
    """A built DAG: its root CID, every block by CID, and the numbers a parent link needs."""

    cid: str
    blocks: dict[str, bytes]
    tsize: int  # whole DAG size in bytes (for the parent's link)
    filesize: int  # file bytes below this node (for the parent's blocksizes)


def build_file(data: bytes, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> Built:
    """The DAG of a file, as `ipfs add --cid-version=1` builds it (balanced layout)."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    blocks: dict[str, bytes] = {}
    layer: list[Built] = []
    for chunk in chunks:
        cid = cid_str(cid_bytes(RAW, chunk))
        blocks[cid] = chunk
        layer.append(Built(cid, {}, len(chunk), len(chunk)))
    while len(layer) > 1:
        layer = [_file_node(layer[i : i + max_links], blocks) for i in range(0, len(layer), max_links)]
    root = layer[0]
    return Built(root.cid, blocks, root.tsize, root.filesize)


def _file_node(children: list[Built], blocks: dict[str, bytes]) -> Built:
    links = [Link(_cid_binary(c.cid), "", c.tsize) for c in children]
    filesize = sum(c.filesize for c in children)
    node = encode_node(links, _unixfs(_FILE, filesize, [c.filesize for c in children]))
    cid = cid_str(cid_bytes(DAG_PB, node))
    blocks[cid] = node
    return Built(cid, {}, len(node) + sum(c.tsize for c in children), filesize)


def build_directory(entries: dict[str, Built]) -> Built:
    """A directory node over already built entries (files or directories), sorted by name."""
    blocks: dict[str, bytes] = {}
    for child in entries.values():
        blocks.update(child.blocks)
    links = [Link(_cid_binary(entries[n].cid), n, entries[n].tsize) for n in sorted(entries)]
    node = encode_node(links, _unixfs(_DIRECTORY))
    cid = cid_str(cid_bytes(DAG_PB, node))
    blocks[cid] = node
    return Built(cid, blocks, len(node) + sum(ln.tsize for ln in links), 0)


def _cid_binary(cid: str) -> bytes:
    codec, digest = parse_cid(cid)
    return bytes([0x01, codec, SHA2_256, 32]) + digest


# ------------------------------------------------------------------------ read


GetBlock = Callable[[str], bytes]


class Tree:
    """A read DAG: a file's bytes, or a directory's entries by name."""

    def __init__(self, data: bytes | None = None, entries: dict[str, Tree] | None = None):
        self.data = data
        self.entries = entries

    @property
    def is_dir(self) -> bool:
        return self.entries is not None


def read(cid: str, get_block: GetBlock) -> Tree:
    """Reads a file or directory DAG; every block is checked against its CID by `verified`."""
    cid = normalize_cid(cid)
    codec, _ = parse_cid(cid)
    block = verified(cid, get_block)
    if codec == RAW:
        return Tree(data=block)
    links, data = decode_node(block)
    kind, inline, _ = unixfs_info(data)
    if kind == _DIRECTORY:
        return Tree(entries={ln.name: read(_link_cid(ln.cid), get_block) for ln in links})
    if kind in (_FILE, 0):
        parts = [inline] + [_file_bytes(_link_cid(ln.cid), get_block) for ln in links]
        return Tree(data=b"".join(parts))
    raise CidError(f"{cid}: UnixFS type {kind} is not supported (only files and directories).")


def _file_bytes(cid: str, get_block: GetBlock) -> bytes:
    tree = read(cid, get_block)
    if tree.data is None:
        raise CidError(f"{cid}: a file links to a directory; the DAG is malformed.")
    return tree.data


def verified(cid: str, get_block: GetBlock) -> bytes:
    from node.errors import ContentMismatchError

    block = get_block(cid)
    if not block_matches(cid, block):
        raise ContentMismatchError(
            f"Block {cid} does not hash to its CID (got sha256 {hashlib.sha256(block).hexdigest()}). "
            "The store returned wrong bytes; they were rejected and nothing was used."
        )
    return block
