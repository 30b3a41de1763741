"""A client for the Kubo RPC API (`/api/v0`), which Kubo and js-ipfs both serve.

Uploads go through `add` with Kubo's CIDv1 options, and the CID the node answers must equal the
one we compute ourselves. Reads go block by block (`block/get`) and every block is checked
against its CID here: the node is never trusted. Every call has a timeout (an offline node asked
for a CID it lacks waits forever) and what may heal is retried with backoff before a clear failure.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

from node.errors import (
    ConfigError,
    ContentMismatchError,
    ContentNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from node.storage import unixfs
from node.storage.base import ContentStore

log = logging.getLogger(__name__)

ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "pin": "true",
    "cid-base": "base32",
}
# What a proxy or load balancer answers while the node behind it is down or restarting.
GATEWAY_STATUSES = frozenset({502, 503, 504})
MAX_BACKOFF = 5.0  # seconds; also caps a server's Retry-After, so one wait never runs long
FIX_URL = "--ipfs-api / DATANET_IPFS_API"


class KuboStore(ContentStore):
    """The node's content store backed by a real IPFS node at `api_url` (e.g. http://127.0.0.1:5001).

    Retried, up to `retries` times per call with exponential backoff (`backoff` s, doubling, at most
    5 s, or the server's Retry-After up to 5 s): connection errors, HTTP 502/503/504, any other 5xx
    that is not the node's own RPC error, and timeouts, but no more than `timeout_retries` of
    those: each costs a full `timeout`, and an offline node asked for a block it lacks never
    answers. So one call takes at most (timeout_retries + 1) * timeout + the backoff sum (3.75 s
    by default) + the fast failures. Never retried: 4xx, the node's RPC errors (JSON
    `{"Message", "Type": "error"}`), and content that does not match its CID.

    Raises:
        ConfigError: at construction, a timeout <= 0 or a negative retry setting.
        ContentNotFoundError: no answer within `timeout` on every try allowed, or the node's own
            RPC error (e.g. Kubo's 500 "block was not found locally"), or HTTP 404.
        StorageUnavailableError: unreachable, or 5xx, on every try.
        StorageError: any other 4xx (wrong URL, auth, a request the node will never accept).
        ContentMismatchError: the node's CIDs or bytes differ from ours (raised by the callers of
            `get_block` for block bytes).
    """

    def __init__(
        self,
        api_url: str,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        timeout_retries: int = 1,
    ):
        if timeout <= 0:
            raise ConfigError(f"KuboStore timeout={timeout!r} must be > 0 s (an offline node never answers).")
        if min(retries, backoff, timeout_retries) < 0:
            raise ConfigError(
                f"KuboStore retries={retries!r}, timeout_retries={timeout_retries!r} and backoff={backoff!r} "
                "must all be >= 0."
            )
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.timeout_retries = timeout_retries
        self._http = httpx.Client(base_url=f"{self.api_url}/api/v0", timeout=timeout)

    def _post(self, path: str, what: str, *, timeout_retries: int | None = None, **kwargs: Any) -> httpx.Response:
        """A 200 answer to POST `path`, after retrying what may heal (see the class docstring)."""
        url = f"{self.api_url}/api/v0{path}"
        timeouts_allowed = self.timeout_retries if timeout_retries is None else timeout_retries
        delay, timeouts, tries = self.backoff, 0, self.retries + 1
        for attempt in range(1, tries + 1):
            try:
                response = self._http.post(path, **kwargs)
            except httpx.TimeoutException as e:
                timeouts += 1
                if attempt == tries or timeouts > timeouts_allowed:
                    raise self._timed_out(what, url, e, attempt) from e
                reason = f"no answer within {self.timeout} s ({type(e).__name__})"
            except httpx.TransportError as e:
                if attempt == tries:
                    raise StorageUnavailableError(
                        f"{what}: the IPFS API at {url} is unreachable after {_tries(tries)} "
                        f"({type(e).__name__}: {e}). Is the node running? Start it, or fix {FIX_URL}."
                    ) from e
                reason = f"unreachable ({type(e).__name__})"
            else:
                if response.status_code == 200:
                    return response
                if not _heals(response):
                    raise _refused(what, url, response)
                if attempt == tries:
                    raise _unavailable(what, url, response, tries)
                reason = f"HTTP {response.status_code}"
                delay = max(delay, _retry_after(response))
            wait = min(delay, MAX_BACKOFF)
            log.warning("%s: %s at %s, try %d of %d; retrying in %.2f s", what, reason, url, attempt, tries, wait)
            time.sleep(wait)
            delay = min(delay * 2, MAX_BACKOFF)
        raise AssertionError("unreachable: the last try returns or raises")

    def _timed_out(self, what: str, url: str, e: httpx.TimeoutException, tries: int) -> StorageError:
        n = _tries(tries)
        if isinstance(e, httpx.ConnectTimeout):
            return StorageUnavailableError(
                f"{what}: could not connect to the IPFS API at {url} within {self.timeout} s ({n}). "
                f"Is the node running and reachable? Check {FIX_URL}."
            )
        return ContentNotFoundError(
            f"{what}: the IPFS node at {url} did not answer within {self.timeout} s ({n}). It may not have "
            "this content (an offline node waits forever for missing blocks) or be overloaded: check the "
            "content is on that node, or raise DATANET_IPFS_TIMEOUT."
        )

    def get_block(self, cid: str) -> bytes:
        unixfs.parse_cid(cid)
        return self._post("/block/get", f"block/get {cid}", params={"arg": cid}).content

    def has(self, cid: str) -> bool:
        # No retry after a timeout: js-ipfs ignores `offline` and waits for a block it lacks.
        try:
            self._post("/block/stat", f"block/stat {cid}", params={"arg": cid, "offline": "true"}, timeout_retries=0)
        except ContentNotFoundError:
            return False
        return True

    def put_blocks(self, blocks: dict[str, bytes], root: str) -> str:
        """Uploads a built DAG block by block (raw leaves as raw, nodes as dag-pb) and pins it.

        Every call here is idempotent (content addressing), so retrying one is safe."""
        for cid, block in blocks.items():
            codec, _ = unixfs.parse_cid(cid)
            params = {
                "cid-codec": "raw" if codec == unixfs.RAW else "dag-pb",
                "mhtype": "sha2-256",
                "cid-base": "base32",
            }
            answer = self._post("/block/put", f"block/put {cid}", params=params, files={"data": ("block", block)})
            got = json.loads(answer.text)["Key"]
            if _digest(got) != unixfs.parse_cid(cid)[1]:
                raise ContentMismatchError(f"The IPFS node stored block {cid} as {got}; the node is not compatible.")
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


def _tries(n: int) -> str:
    return f"{n} {'try' if n == 1 else 'tries'}"


def _rpc_error(response: httpx.Response) -> str | None:
    """The message of the node's own RPC error (`{"Message": ..., "Type": "error"}`), if that is the body."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("Type") == "error" and "Message" in body:
        return str(body["Message"])
    return None


def _heals(response: httpx.Response) -> bool:
    """Whether a non-200 answer may succeed if asked again: a proxy's 502/503/504, or another 5xx that is
    not the node's own RPC error (Kubo answers 500 with one for "block not found", which will not heal)."""
    code = response.status_code
    return code in GATEWAY_STATUSES or (code >= 500 and _rpc_error(response) is None)


def _retry_after(response: httpx.Response) -> float:
    """A Retry-After given in seconds (0 if absent, or an HTTP date, which we do not wait for)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _body(response: httpx.Response) -> str:
    return (_rpc_error(response) or response.text).strip()[:200] or "(empty body)"


def _unavailable(what: str, url: str, response: httpx.Response, tries: int) -> StorageUnavailableError:
    on = f"on all {tries} tries" if tries > 1 else "on the only try"
    return StorageUnavailableError(
        f"{what}: the IPFS API at {url} answered HTTP {response.status_code} {response.reason_phrase} {on}: "
        f"{_body(response)}. A proxy answers 502/503/504 while the node behind it is down or restarting: "
        f"check the node is up and its log, or point {FIX_URL} at the node itself."
    )


def _refused(what: str, url: str, response: httpx.Response) -> StorageError:
    """The error for an answer that will not change if asked again (not retried)."""
    code, body = response.status_code, _body(response)
    if code >= 500:  # the node's own RPC error
        return ContentNotFoundError(f"{what}: the IPFS node at {url} answered HTTP {code}: {body}.")
    if code == 404:
        return ContentNotFoundError(
            f"{what}: the IPFS node at {url} answered HTTP 404: {body}. If every call answers 404, this is "
            f"not a Kubo RPC API (port 5001, not a gateway): fix {FIX_URL}."
        )
    if code in (401, 403):
        hint = "Kubo refuses requests with a browser Origin, and a proxy may want credentials: check both."
    elif code == 405:
        hint = f"This is not a Kubo RPC API (it takes POST /api/v0/...; a gateway does not): fix {FIX_URL}."
    else:
        hint = "Not retried: the node will refuse this request however often it is sent."
    return StorageError(f"{what}: the IPFS API at {url} refused the request with HTTP {code}: {body}. {hint}")


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
