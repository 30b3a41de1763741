"""The Kubo RPC client against a real js-ipfs node behind a loopback proxy that misbehaves on cue:
it heals from 5xx, dropped connections and slow answers and still verifies every block; it gives
up with a clear error after bounded retries; it never retries what will not heal (4xx, the
node's own RPC errors, bytes that do not match their CID)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from node.errors import (
    ConfigError,
    ContentMismatchError,
    ContentNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from node.storage import unixfs
from node.storage.kubo import KuboStore

KiB = 1024
RPC_500 = b'{"Message":"block was not found locally (offline)","Code":0,"Type":"error"}'


def _client(url: str, timeout: float = 5.0) -> KuboStore:
    """Four retries with next to no backoff: these tests count tries, not seconds."""
    return KuboStore(url, timeout=timeout, retries=4, backoff=0.01)


class FlakyProxy:
    """Forwards POSTs on 127.0.0.1 to `upstream`, after playing `script`: one action per request
    ("503", "502", "504", "500", "400", "403", "404", "rpc500", "503+retry-after", "drop", "slow",
    "corrupt"), then "forward" for every request after it. `log` records (path, action)."""

    def __init__(self, upstream: str, script: list[str], delay: float = 1.0):
        self.upstream, self.script, self.delay = upstream, list(script), delay
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def next_action(self, path: str) -> str:
        with self._lock:
            action = self.script.pop(0) if self.script else "forward"
            self.log.append((path.split("?")[0], action))
            return action

    def actions(self, path: str = "/api/v0/block/get") -> list[str]:
        return [a for p, a in self.log if p == path]

    def forward(self, path: str, body: bytes, content_type: str | None) -> tuple[int, bytes]:
        headers = {"content-type": content_type} if content_type else {}
        r = httpx.post(self.upstream + path, content=body, headers=headers, timeout=30)
        return r.status_code, r.content

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(proxy: FlakyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action = proxy.next_action(self.path)
            if action == "drop":  # the connection closes with no answer at all
                self.close_connection = True
                return
            if action == "slow":
                time.sleep(proxy.delay)
            # The client may have given up first (that is the point of "slow").
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._act(action, body)

        def _act(self, action: str, body: bytes) -> None:
            if action in ("forward", "slow", "corrupt"):
                code, content = proxy.forward(self.path, body, self.headers.get("Content-Type"))
                if action == "corrupt":
                    content = content[:-1] + bytes([content[-1] ^ 1])
                self._reply(code, content)
            elif action == "rpc500":
                self._reply(500, RPC_500, "application/json")
            elif action == "503+retry-after":
                self._reply(503, b"restarting", extra={"Retry-After": "1"})
            else:
                self._reply(int(action), f"proxy says {action}".encode())

        def _reply(
            self, code: int, content: bytes, ctype: str = "text/plain", extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(content)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def proxy(ipfs_api: str) -> Iterator[FlakyProxy]:
    p = FlakyProxy(ipfs_api, [])
    yield p
    p.close()


@pytest.fixture(scope="module")
def stored(ipfs_api: str) -> tuple[str, bytes]:
    """A 600 KiB file on the node: 3 leaves and a root, so `cat` is 4 `block/get`s."""
    data = os.urandom(600 * KiB)
    return KuboStore(ipfs_api, timeout=10).add_bytes(data), data


@pytest.mark.parametrize("action", ["503", "502", "504", "500", "drop"])
def test_recovers_from_a_failing_proxy_and_verifies_the_content(
    proxy: FlakyProxy, stored: tuple[str, bytes], action: str
) -> None:
    cid, data = stored
    proxy.script = [action] * 3
    assert _client(proxy.url).cat(cid) == data
    assert proxy.actions() == [action] * 3 + ["forward"] * 4


def test_recovers_from_one_slow_answer(proxy: FlakyProxy, stored: tuple[str, bytes]) -> None:
    cid, data = stored
    proxy.script, proxy.delay = ["slow"], 1.0
    assert _client(proxy.url, timeout=0.5).cat(cid) == data
    assert proxy.actions()[:2] == ["slow", "forward"]


def test_uploads_are_retried_and_still_checked(proxy: FlakyProxy, ipfs_api: str) -> None:
    data = os.urandom(300 * KiB)
    proxy.script = ["503", "drop"]
    cid = _client(proxy.url).add_bytes(data)
    assert cid == unixfs.build_file(data).cid
    assert proxy.actions("/api/v0/add") == ["503", "drop", "forward"]
    assert KuboStore(ipfs_api, timeout=5).cat(cid) == data


def test_a_proxy_that_never_recovers_fails_clearly_after_bounded_retries(
    proxy: FlakyProxy, stored: tuple[str, bytes]
) -> None:
    proxy.script = ["503"] * 100
    start = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        KuboStore(proxy.url, timeout=5, retries=3, backoff=0.05).cat(stored[0])
    assert time.monotonic() - start < 30  # a hang guard (0.35 s of backoff); the proxy's log counts the tries
    message = str(caught.value)
    assert f"block/get {stored[0]}" in message and f"{proxy.url}/api/v0/block/get" in message
    assert "HTTP 503 Service Unavailable on all 4 tries: proxy says 503" in message
    assert "DATANET_IPFS_API" in message
    assert proxy.actions() == ["503"] * 4


def test_retry_after_is_honoured(proxy: FlakyProxy, stored: tuple[str, bytes]) -> None:
    cid, data = stored
    proxy.script = ["503+retry-after"]
    start = time.monotonic()
    assert _client(proxy.url).cat(cid) == data
    assert time.monotonic() - start >= 1.0  # the server's 1 s, not the 0.01 s backoff


def test_timeouts_are_retried_only_timeout_retries_times(proxy: FlakyProxy, stored: tuple[str, bytes]) -> None:
    proxy.script, proxy.delay = ["slow"] * 3, 1.0
    with pytest.raises(ContentNotFoundError, match=r"did not answer within 0\.3 s \(2 tries\)"):
        _client(proxy.url, timeout=0.3).cat(stored[0])
    assert proxy.actions() == ["slow", "slow"]


@pytest.mark.parametrize(
    ("action", "error", "says"),
    [
        ("400", StorageError, "refused the request with HTTP 400: proxy says 400. Not retried"),
        ("403", StorageError, "HTTP 403: proxy says 403. Kubo refuses requests with a browser Origin"),
        ("404", ContentNotFoundError, "not a Kubo RPC API"),
        ("rpc500", ContentNotFoundError, "HTTP 500: block was not found locally"),
    ],
)
def test_answers_that_will_not_heal_are_not_retried(
    proxy: FlakyProxy, stored: tuple[str, bytes], action: str, error: type[Exception], says: str
) -> None:
    proxy.script = [action] * 5
    with pytest.raises(error, match=says) as caught:
        _client(proxy.url).cat(stored[0])
    assert not isinstance(caught.value, StorageUnavailableError)
    assert proxy.actions() == [action]


def test_a_corrupted_block_is_rejected_not_retried(proxy: FlakyProxy, stored: tuple[str, bytes]) -> None:
    proxy.script = ["corrupt"]
    with pytest.raises(ContentMismatchError, match="does not hash to its CID"):
        _client(proxy.url).cat(stored[0])
    assert proxy.actions() == ["corrupt"]


def test_has_does_not_wait_twice_for_a_missing_block(proxy: FlakyProxy) -> None:
    """js-ipfs ignores `offline` on block/stat and waits for the block: one timeout means "not here"."""
    missing = unixfs.build_file(os.urandom(64)).cid
    assert _client(proxy.url, timeout=0.5).has(missing) is False
    assert proxy.actions("/api/v0/block/stat") == ["forward"]


def test_no_retries_means_one_try(proxy: FlakyProxy, stored: tuple[str, bytes]) -> None:
    proxy.script = ["503"]
    with pytest.raises(StorageUnavailableError, match="503 Service Unavailable on the only try"):
        KuboStore(proxy.url, timeout=5, retries=0).cat(stored[0])
    assert proxy.actions() == ["503"]


@pytest.mark.parametrize("bad", [{"timeout": 0}, {"retries": -1}, {"backoff": -0.1}, {"timeout_retries": -1}])
def test_settings_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="KuboStore"):
        KuboStore("http://127.0.0.1:5001", **bad)  # type: ignore[arg-type]
