"""A client for the Kubo RPC API (`/api/v0`), which Kubo and js-ipfs both serve.

Uploads go through `add` with Kubo's CIDv1 options, and the CID the node answers must equal the
one we compute ourselves. Reads go block by block (`block/get`) and every block is checked
against its CID here: the node is never trusted. Every call has a timeout (an offline node asked
for a CID it lacks waits forever) and is retried with backoff before a clear failure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from node.errors import ContentMismatchError, ContentNotFoundError, StorageUnavailableError
from node.storage import unixfs
from node.storage.base import ContentStore

log = logging.getLogger(__name__)
T = TypeVar("T")

ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "pin": "true",
    "cid-base": "base32",
}


class KuboStore(ContentStore):
    """The node's content store backed by a real IPFS node at `api_url` (e.g. http://127.0.0.1:5001)."""

    def __init__(self, api_url: str, timeout: float = 30.0, retries: int = 4, backoff: float = 0.25):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=f"{self.api_url}/api/v0", timeout=timeout)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except httpx.TimeoutException as e:
                raise ContentNotFoundError(
                    f"{what}: the IPFS node at {self.api_url} did not answer within {self.timeout} s; it "
                    "may not have this content (an offline node waits forever for missing blocks)."
                ) from e
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise StorageUnavailableError(
                        f"{what}: the IPFS API at {self.api_url} is unreachable after {self.retries + 1} "
                        f"tries ({type(e).__name__}). Is the node running? Check --ipfs-api / DATANET_IPFS_API."
                    ) from e
                log.warning("%s: %s unreachable, retrying in %.2fs", what, self.api_url, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _post(self, path: str, what: str, **kwargs: object) -> httpx.Response:
        response = self._call(what, lambda: self._http.post(path, **kwargs))  # type: ignore[arg-type]
        if response.status_code != 200:
            raise ContentNotFoundError(
                f"{what}: the IPFS node answered {response.status_code}: {response.text[:200]}"
            )
        return response

    def get_block(self, cid: str) -> bytes:
        unixfs.parse_cid(cid)
        return self._post("/block/get", f"block/get {cid}", params={"arg": cid}).content

    def has(self, cid: str) -> bool:
        try:
            self._post("/block/stat", f"block/stat {cid}", params={"arg": cid, "offline": "true"})
        except ContentNotFoundError:
            return False
        return True

    def put_blocks(self, blocks: dict[str, bytes], root: str) -> str:
        """Uploads a built DAG block by block (raw leaves as raw, nodes as dag-pb) and pins it."""
        for cid, block in blocks.items():
            codec, _ = unixfs.parse_cid(cid)
            params = {
                "cid-codec": "raw" if codec == unixfs.RAW else "dag-pb",
                "mhtype": "sha2-256",
                "cid-base": "base32",
            }
            answer = self._post(
                "/block/put", f"block/put {cid}", params=params, files={"data": ("block", block)}
            )
            got = json.loads(answer.text)["Key"]
            if _digest(got) != unixfs.parse_cid(cid)[1]:
                raise ContentMismatchError(
                    f"The IPFS node stored block {cid} as {got}; the node is not compatible."
                )
        self._post("/pin/add", f"pin/add {root}", params={"arg": root})
        return root

    def add_bytes(self, data: bytes) -> str:
        """Adds through the node's own importer and checks its CID equals ours."""
        expected = unixfs.build_file(data).cid
        answer = self._post("/add", "add", params=ADD_PARAMS, files={"file": ("file", data)})
        got = json.loads(answer.text.strip().splitlines()[-1])["Hash"]
        if got != expected:
            raise ContentMismatchError(
                f"The IPFS node at {self.api_url} computed {got} for content whose CID is {expected}; its import "
                "options differ from Kubo's CIDv1 defaults."
            )
        return got

    def pin(self, cid: str) -> None:
        self._post("/pin/add", f"pin/add {cid}", params={"arg": cid})


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _digest(key: str) -> bytes:
    """The sha2-256 digest named by a key `block/put` printed: CIDv1 base32, or a CIDv0 ("Qm...",
    which js-ipfs prints for dag-pb blocks whatever the CID version asked for)."""
    if key.startswith("Qm"):
        n = 0
        for ch in key:
            n = n * 58 + _B58.index(ch)
        raw = n.to_bytes(34, "big")  # multihash: 0x12 0x20 + 32-byte digest
        return raw[2:]
    return unixfs.parse_cid(key)[1]
