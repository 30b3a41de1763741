"""The event watcher against a real anvil: confirmations, checkpoint/restart, crash redelivery,
reorgs (evm_revert and anvil_reorg), and an RPC outage through a loopback TCP proxy."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from web3.types import LogReceipt, TxReceipt

from node.chain.checkpoints import CheckpointStore
from node.chain.client import ChainClient
from node.chain.models import DatanetParams
from node.chain.protocol import Protocol
from node.chain.watcher import (
    ChainEvent,
    EventWatcher,
    HandlerError,
    ReorgTooDeepError,
    WatcherStateError,
)
from node.errors import ConfigError, RpcUnavailableError
from tests.conftest import World


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


def _client(url: str) -> ChainClient:
    """A read-only client that gives up fast: web3's own inner retries are switched off so
    that `ChainClient.rpc` is the only retry layer and an outage is detected in ~0.1 s."""
    client = ChainClient(url, retries=2, backoff=0.02, timeout=1.0)
    client.w3.provider.exception_retry_configuration = None  # type: ignore[attr-defined]
    return client


def _contracts(p: Protocol) -> dict[str, Any]:
    return {
        "OpenToken": p.token,
        "DatanetRegistry": p.datanets,
        "NodeStaking": p.staking,
        "RewardDistributor": p.rewards,
        "ModelRegistry": p.models,
    }


def _watcher(
    world: World, store: CheckpointStore, start: int, url: str | None = None, **kw: Any
) -> EventWatcher:
    kw.setdefault("confirmations", 0)
    return EventWatcher(
        _client(url or world.rpc_url), _contracts(world.admin), store, start_block=start, **kw
    )


def _head(world: World) -> int:
    return world.admin.client.block_number()


def _keys(receipts: list[TxReceipt]) -> list[str]:
    """The event keys a watcher must produce for these receipts' logs, in chain order."""
    return [f"0x{bytes(lg['blockHash']).hex()}:{lg['logIndex']}" for r in receipts for lg in r["logs"]]


def _pay(p: Protocol, world: World, amount: int) -> TxReceipt:
    """A one-log transaction (an OPEN Transfer) whose amount tells branches apart."""
    return p.transfer(world.outsider.address, amount)


def _drain(w: EventWatcher) -> list[ChainEvent]:
    out: list[ChainEvent] = []
    for _ in range(50):
        got = w.poll_once()
        if not got and w.checkpoint() >= w.client.block_number() - w.config.confirmations:
            return out
        out += got
    raise AssertionError("watcher did not catch up in 50 polls")


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_events_delivered_once_in_order_after_confirmations(world: World, db: Path) -> None:
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, confirmations=2)
        seen: list[ChainEvent] = []
        created: list[int] = []
        w.on("*", seen.append)
        w.on("DatanetRegistry.DatanetCreated", lambda e: created.append(e.args["datanetId"]))
        with pytest.raises(ConfigError, match="JobPostd"):
            w.on("JobPostd", seen.append)

        pay = _pay(world.contributors[0], world, 7)  # block start
        params = DatanetParams(name="w", treasury=world.curator.address, curators=[world.curator.address])
        world.curator.create_datanet(params)  # block start + 1
        make = world.curator.client.last_receipt
        assert make is not None and pay["blockNumber"] == start
        assert w.poll_once() == []  # head = start + 1: nothing has 2 confirmations yet

        world.rpc("evm_mine")
        first = w.poll_once()
        assert [(e.contract, e.name, e.args) for e in first] == [
            (
                "OpenToken",
                "Transfer",
                {"from": world.contributors[0].address, "to": world.outsider.address, "value": 7},
            )
        ]
        world.rpc("evm_mine")
        second = w.poll_once()
        assert {e.contract for e in second} == {"DatanetRegistry"}
        assert "DatanetCreated" in [e.name for e in second]
        for _ in range(3):
            world.rpc("evm_mine")
            assert w.poll_once() == []  # nothing twice

        assert [e.key for e in first + second] == _keys([pay, make])
        assert seen == first + second
        assert created == [world.curator.datanet_count()]
        assert [(e.block_number, e.log_index) for e in seen] == sorted(
            (e.block_number, e.log_index) for e in seen
        )
        assert json.loads(json.dumps([e.model_dump(mode="json") for e in seen]))[0]["args"]["value"] == 7
        assert w.checkpoint() == _head(world) - 2


def test_restart_resumes_from_checkpoint(world: World, db: Path) -> None:
    start = _head(world) + 1
    payers = world.contributors
    before = [_pay(payers[i], world, 10 + i) for i in range(3)]
    with CheckpointStore(db) as store:
        got1 = _drain(_watcher(world, store, start, batch_size=2))  # two ranges: 2 + 1 blocks
    after = [_pay(payers[i], world, 20 + i) for i in range(2)]  # while "the node is down"

    with CheckpointStore(db) as store:  # a new process: same file, same name, new watcher
        w2 = _watcher(world, store, start, batch_size=2)
        assert w2.checkpoint() == start + 2
        got2 = _drain(w2)

    assert [e.key for e in got1] == _keys(before)
    assert [e.key for e in got2] == _keys(after)
    assert [e.args["value"] for e in got1 + got2] == [10, 11, 12, 20, 21]

    with CheckpointStore(db) as store, pytest.raises(WatcherStateError, match="another"):
        # Same name, other contracts: resuming that checkpoint would silently skip events.
        EventWatcher(_client(world.rpc_url), {"OpenToken": world.admin.token}, store).poll_once()


def test_handler_crash_redelivers_only_the_failed_event(world: World, db: Path) -> None:
    start = _head(world) + 1
    receipts = [_pay(world.contributors[i], world, 30 + i) for i in range(3)]
    crash_key = _keys(receipts)[1]
    calls: list[int] = []

    def flaky(e: ChainEvent) -> None:
        calls.append(e.args["value"])
        if e.key == crash_key:
            raise RuntimeError("disk full")

    with CheckpointStore(db) as store:
        w1 = _watcher(world, store, start)
        w1.on("Transfer", flaky)
        with pytest.raises(HandlerError, match="disk full") as info:
            w1.poll_once()
        assert info.value.event.key == crash_key
        assert calls == [30, 31]
        # The first event is recorded; the checkpoint did not move past the range.
        assert [s.key for s in store.events(w1.name)] == _keys(receipts)[:1]
        assert w1.checkpoint() == start - 1

    with CheckpointStore(db) as store:  # restart: the range is re-read, event 30 is skipped
        w2 = _watcher(world, store, start)
        w2.on("Transfer", lambda e: calls.append(e.args["value"]))
        redelivered = _drain(w2)
        assert [e.key for e in redelivered] == _keys(receipts)[1:]
        assert [s.key for s in store.events(w2.name)] == _keys(receipts)
    assert calls == [30, 31, 31, 32]


def test_reorg_by_snapshot_revert_rewinds_and_redelivers(world: World, db: Path) -> None:
    reorgs: list[tuple[int, int]] = []
    c = world.contributors
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, on_reorg=lambda a, b: reorgs.append((a, b)))
        snapshot = world.rpc("evm_snapshot")
        old = [_pay(c[0], world, 1), _pay(c[1], world, 2)]  # blocks start, start + 1
        assert [e.key for e in w.poll_once()] == _keys(old)

        world.rpc("evm_revert", snapshot)  # the other branch: same heights, other txs
        new = [_pay(c[2], world, 3), _pay(c[3], world, 4), _pay(c[2], world, 5)]
        assert [r["blockNumber"] for r in new] == [start, start + 1, start + 2]

        got = _drain(w)
        assert reorgs == [(start, start + 1)]
        assert [e.key for e in got] == _keys(new)
        assert [e.args["value"] for e in got] == [3, 4, 5]
        assert [s.key for s in store.events(w.name)] == _keys(new)  # orphans dropped
        assert w.poll_once() == [] and reorgs == [(start, start + 1)]


def test_anvil_reorg_deeper_than_confirmations_keeps_canonical_events(world: World, db: Path) -> None:
    reorgs: list[tuple[int, int]] = []
    c = world.contributors
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, confirmations=1, on_reorg=lambda a, b: reorgs.append((a, b)))
        kept, orphan = _pay(c[0], world, 1), _pay(c[1], world, 2)  # blocks start, start + 1
        world.rpc("evm_mine")  # start + 2
        assert [e.key for e in _drain(w)] == _keys([kept, orphan])

        # Replace the last 2 blocks (start + 1, start + 2): a reorg deeper than confirmations.
        token = world.admin.token
        tx = {"from": c[2].address, "to": token.address}
        replay = [
            [{**tx, "data": token.encode_abi("transfer", [world.outsider.address, v])}, k]
            for k, v in ((0, 3), (1, 4))
        ]
        world.rpc("anvil_reorg", 2, replay)
        got = _drain(w)  # confirms start + 1 only (head is still start + 2)
        assert reorgs == [(start + 1, start + 1)]
        assert [(e.block_number, e.args["value"]) for e in got] == [(start + 1, 3)]
        world.rpc("evm_mine")
        got += _drain(w)
        assert [(e.block_number, e.args["value"]) for e in got] == [(start + 1, 3), (start + 2, 4)]
        # The event in the unchanged block is neither dropped nor delivered again.
        assert [s.key for s in store.events(w.name)] == _keys([kept]) + [e.key for e in got]


def test_reorg_with_sparse_hashes_drops_only_orphaned_events(world: World, db: Path) -> None:
    """Blocks read far below the head get no stored hash, so the walk-back can land below the
    real fork point; events in the canonical blocks between must not be delivered again."""
    reorgs: list[tuple[int, int]] = []
    c = world.contributors
    with CheckpointStore(db) as store:
        s = _head(world) + 1
        w = _watcher(
            world, store, s, confirmations=2, reorg_window=4, batch_size=3,
            on_reorg=lambda a, b: reorgs.append((a, b)),
        )  # fmt: skip
        receipts = [_pay(c[i % 4], world, i + 1) for i in range(5)]  # blocks s .. s+4
        for _ in range(3):
            world.rpc("evm_mine")  # head s+7: ranges [s, s+2] and [s+3, s+5]
        first = _drain(w)
        assert [e.key for e in first] == _keys(receipts)
        assert store.block_hash(w.name, s + 3) is None  # sparse: only s+2, s+4, s+5 stored

        token = world.admin.token
        data = token.encode_abi("transfer", [world.outsider.address, 6])
        world.rpc("anvil_reorg", 4, [[{"from": c[1].address, "to": token.address, "data": data}, 0]])
        again = _drain(w)
        assert reorgs == [(s + 3, s + 5)]  # rewound to s+2, the newest stored hash still valid
        assert [(e.block_number, e.args["value"]) for e in again] == [(s + 4, 6)]  # 4 not repeated
        # Above the ancestor: the canonical record kept, the orphan replaced by the new event.
        assert [r.key for r in store.events(w.name, s + 2)] == [*_keys(receipts[3:4]), again[0].key]


def test_reorg_between_two_reads_is_not_mixed_into_one_range(
    world: World, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers read before a reorg and logs read after it must not be stored as one branch."""
    reorgs: list[tuple[int, int]] = []
    c = world.contributors
    with CheckpointStore(db) as store:
        s = _head(world) + 1
        w = _watcher(world, store, s, on_reorg=lambda a, b: reorgs.append((a, b)))
        _pay(c[0], world, 1)  # block s
        _pay(c[1], world, 2)  # block s+1, replaced below
        read_logs = w._get_logs
        token = world.admin.token
        data = token.encode_abi("transfer", [world.outsider.address, 3])

        def reorg_then_read(first: int, last: int) -> list[LogReceipt]:
            monkeypatch.setattr(w, "_get_logs", read_logs)  # only once
            world.rpc("anvil_reorg", 1, [[{"from": c[2].address, "to": token.address, "data": data}, 0]])
            return read_logs(first, last)

        monkeypatch.setattr(w, "_get_logs", reorg_then_read)
        assert w.poll_once() == []  # the headers (old s+1) and the logs (new s+1) disagree
        assert w.checkpoint() == s - 1 and store.events(w.name) == []
        assert [e.args["value"] for e in _drain(w)] == [1, 3]
        assert reorgs == []  # nothing wrong was stored, so there is nothing to rewind


def test_reorg_below_stored_hashes_is_refused(world: World, db: Path) -> None:
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, reorg_window=1)
        for i in range(3):
            _pay(world.contributors[i], world, i + 1)
        _drain(w)
        world.rpc("anvil_reorg", 3, [])  # all three blocks replaced by empty ones
        with pytest.raises(ReorgTooDeepError, match="reorg_window=1"):
            w.poll_once()


class _Proxy:
    """A loopback TCP proxy that can simulate an outage: while down it accepts and closes
    every connection (and cuts the open ones), so HTTP clients see connection errors."""

    def __init__(self, upstream: str):
        u = urlparse(upstream)
        self._upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._up = True
        self._closed = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set_up(self, up: bool) -> None:
        with self._lock:
            self._up = up
            if not up:
                for s in self._open:
                    s.close()
                self._open.clear()

    def close(self) -> None:
        self._closed = True
        self.set_up(False)
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if not self._up:
                    conn.close()
                    continue
                upstream = socket.create_connection(self._upstream)
                self._open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


@pytest.fixture
def proxy(world: World) -> Iterator[_Proxy]:
    p = _Proxy(world.rpc_url)
    yield p
    p.close()


def test_outage_poll_raises_and_run_recovers(world: World, db: Path, proxy: _Proxy) -> None:
    c = world.contributors
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, url=proxy.url, max_backoff=0.1)
        seen: list[ChainEvent] = []
        w.on("Transfer", seen.append)
        before = _pay(c[0], world, 1)
        assert [e.key for e in w.poll_once()] == _keys([before])

        proxy.set_up(False)
        t0 = time.monotonic()
        with pytest.raises(RpcUnavailableError, match=proxy.url):
            w.poll_once()
        assert time.monotonic() - t0 < 30  # a hang guard: the retries are bounded, not fast on a busy CI
        during = _pay(c[1], world, 2)  # the chain moves on; the watcher cannot see it

        stop = threading.Event()
        runner = threading.Thread(target=w.run, args=(stop, 0.02), daemon=True)
        runner.start()
        try:
            _wait(lambda: w.consecutive_failures >= 3)  # run() outlives several failed polls
            assert runner.is_alive() and len(seen) == 1
            proxy.set_up(True)
            _wait(lambda: len(seen) == 2)
            after = _pay(c[2], world, 3)
            _wait(lambda: len(seen) == 3)
        finally:
            stop.set()
            runner.join(timeout=5)
        assert not runner.is_alive()
        assert w.consecutive_failures == 0
        assert [e.key for e in seen] == _keys([before, during, after])


def test_run_retries_a_failing_handler_until_it_succeeds(world: World, db: Path) -> None:
    with CheckpointStore(db) as store:
        start = _head(world) + 1
        w = _watcher(world, store, start, max_backoff=0.05)
        attempts: list[str] = []
        done = threading.Event()

        def handler(e: ChainEvent) -> None:
            attempts.append(e.key)
            if len(attempts) < 3:
                raise ConnectionError("storage not reachable yet")
            done.set()

        w.on("Transfer", handler)
        receipt = _pay(world.contributors[0], world, 9)
        stop = threading.Event()
        runner = threading.Thread(target=w.run, args=(stop, 0.01), daemon=True)
        runner.start()
        try:
            assert done.wait(5)
            _wait(lambda: len(store.events(w.name)) == 1)
        finally:
            stop.set()
            runner.join(timeout=5)
        assert attempts == _keys([receipt]) * 3
        assert [s.key for s in store.events(w.name)] == _keys([receipt])
