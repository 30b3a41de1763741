"""The node's event watcher: confirmed protocol events, delivered to handlers, checkpointed.

    store = CheckpointStore.from_settings(settings)
    watcher = EventWatcher.for_protocol(protocol, store, confirmations=settings.confirmations)
    watcher.on("JobPosted", on_job_posted)          # or "ModelRegistry.JobPosted", or "*"
    watcher.run(stop_event, settings.poll_interval)  # or poll_once() from your own loop

Features:
- one `eth_getLogs` over all watched addresses per range, decoded with the contracts' ABIs into
  `ChainEvent`s (JSON-safe args), delivered in chain order (block, log index);
- a block is processed once `confirmations` blocks are mined on top of it;
- the position is checkpointed in SQLite (`CheckpointStore`); a new watcher with the same
  `name` and store resumes after the checkpoint, if it belongs to the same chain (chain id and
  genesis hash: a restarted dev chain keeps its id, not its genesis) and contracts. A checkpoint
  of another chain or deployment is refused (`on_other_chain="fail"`, the default: a reader whose
  handlers keep state that is not keyed by the chain would mix two chains) or forgotten, reading
  again from `start_block` (`"restart"`: for the daemon, whose job store, work dirs and deployment
  file are all keyed by the chain, so an earlier chain's checkpoint is only stale);
- delivery is at-least-once, with duplicates confined to a crash window: each event's key is
  recorded in its own transaction right after its handlers return, so after a crash (or a
  handler raising) only the event whose handlers were running is delivered again; events whose
  key was recorded are never repeated. Handlers must still be idempotent for that one event;
- reorgs: the hashes of recent processed blocks are stored; each poll compares the checkpoint
  block's hash with the chain's, and on a mismatch walks back to the common ancestor, calls
  `on_reorg(first_block, last_block)`, drops the records of orphaned events (canonical ones
  are kept, so they are not repeated) and re-processes from there. Confirmations make reorgs
  rarer, not impossible;
- outages: every RPC goes through `ChainClient.rpc` (retries with backoff, then
  `RpcUnavailableError`); `poll_once` raises, `run` logs, backs off and keeps going.

Errors: `HandlerError` (a handler raised; the event is redelivered), `ReorgTooDeepError` (the
chain diverged below the stored hashes: a very deep reorg, or a chain replaced by another with
the same genesis), `WatcherStateError` (the checkpoint belongs to another chain or set of
contracts), `RpcUnavailableError`, `ConfigError` (bad settings or event name). Their messages
name `datanet daemon --reset-watcher` (`RESET_COMMAND`), which forgets the daemon's checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3.contract import Contract
from web3.contract.base_contract import BaseContractEvent
from web3.exceptions import BlockNotFound, Web3RPCError
from web3.types import FilterParams, LogReceipt

from node.chain.checkpoints import Checkpoint, CheckpointStore, StoredEvent
from node.chain.client import ChainClient
from node.chain.protocol import Protocol
from node.errors import ChainError, ConfigError, RpcUnavailableError

log = logging.getLogger(__name__)

RESET_COMMAND = "datanet daemon --reset-watcher"
"""The command that forgets the daemon's watcher checkpoint (with the daemon's own settings)."""

# Words in providers' "your eth_getLogs query is too big" errors (Alchemy, Infura, geth, ...).
_RANGE_LIMIT_HINTS = ("range", "limit", "more than", "too many", "exceed")


class WatcherError(ChainError):
    """Base of the watcher's own errors."""


class HandlerError(WatcherError):
    """A handler raised; the event was not recorded and will be delivered again."""

    def __init__(self, message: str, event: ChainEvent):
        super().__init__(message)
        self.event = event


class ReorgTooDeepError(WatcherError):
    """The chain no longer contains any block hash the watcher stored."""


class WatcherStateError(WatcherError, ValueError):
    """The stored checkpoint belongs to another chain or another set of contracts."""


class WatcherConfig(BaseModel):
    """How a watcher reads the chain (validated at construction)."""

    name: str = Field("protocol", min_length=1, description="Checkpoint namespace in the store.")
    confirmations: int = Field(2, ge=0, description="Blocks mined on top before a block counts.")
    start_block: int = Field(0, ge=0, description="First block to read when no checkpoint exists.")
    batch_size: int = Field(500, ge=1, description="Most blocks read per poll (one eth_getLogs).")
    reorg_window: int = Field(
        128, ge=1, description="Recent blocks whose hashes are kept; deeper reorgs are refused."
    )
    max_backoff: float = Field(30.0, gt=0, description="Longest wait between failing polls (s).")
    on_other_chain: Literal["fail", "restart"] = Field(
        "fail",
        description="A checkpoint of another chain (chain id or genesis hash) or other contracts: fail "
        "(WatcherStateError), or forget it and read again from start_block (only where everything the "
        "handlers keep is keyed by the chain too).",
    )


class ChainEvent(BaseModel):
    """One decoded log of a watched contract."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Solidity event name, e.g. JobPosted.")
    contract: str = Field(description="Name the contract was watched under, e.g. ModelRegistry.")
    address: str = Field(description="Checksummed address of the emitting contract.")
    args: dict[str, Any] = Field(description="Arguments by name; bytes as 0x-hex, structs as dicts.")
    block_number: int
    block_hash: str = Field(description="0x-hex, lower case.")
    tx_hash: str = Field(description="0x-hex, lower case.")
    log_index: int = Field(description="Position of the log in its block.")

    @property
    def key(self) -> str:
        """Unique per canonical log: the same tx re-mined in another block gets a new key."""
        return f"{self.block_hash}:{self.log_index}"


Handler = Callable[[ChainEvent], None]
ReorgCallback = Callable[[int, int], None]


class _Header(NamedTuple):
    hash: str
    parent: str


class EventWatcher:
    """Reads confirmed events of `contracts` in ranges and hands them to handlers.

    Life cycle: construct → `on(...)` for each event → `run(stop)` (or `poll_once()` in a loop).
    One watcher per `name` at a time: two processes sharing a name would both deliver.
    """

    def __init__(
        self,
        client: ChainClient,
        contracts: Mapping[str, Contract],
        store: CheckpointStore,
        confirmations: int = 2,
        start_block: int = 0,
        batch_size: int = 500,
        name: str = "protocol",
        *,
        reorg_window: int = 128,
        max_backoff: float = 30.0,
        on_reorg: ReorgCallback | None = None,
        on_other_chain: Literal["fail", "restart"] = "fail",
    ):
        try:
            self.config = WatcherConfig(
                name=name, confirmations=confirmations, start_block=start_block,
                batch_size=batch_size, reorg_window=reorg_window, max_backoff=max_backoff,
                on_other_chain=on_other_chain,
            )  # fmt: skip
        except ValidationError as e:
            raise ConfigError(f"Invalid event watcher settings: {e}") from e
        if not contracts:
            raise ConfigError("The event watcher needs at least one contract to watch.")
        self.client = client
        self.store = store
        self.on_reorg = on_reorg
        self.consecutive_failures = 0  # for health checks: failed polls in a row in run()
        self._events = _event_table(contracts)
        self._addresses = sorted({str(c.address) for c in contracts.values()})
        self._fingerprint = hashlib.sha256(",".join(a.lower() for a in self._addresses).encode()).hexdigest()
        self._known = {n for c, e in self._events.values() for n in (e.name, f"{c}.{e.name}")}
        self._handlers: dict[str, list[Handler]] = {}
        self._chain_id: int | None = None
        self._genesis: str | None = None

    @classmethod
    def for_protocol(
        cls,
        protocol: Protocol,
        store: CheckpointStore,
        *,
        confirmations: int = 2,
        batch_size: int = 500,
        name: str | None = None,
        on_reorg: ReorgCallback | None = None,
    ) -> EventWatcher:
        """Watches every protocol contract from its deployment block (KeyRegistry too, where the
        deployment has one: its `AccessGranted` events tell a node its key grant has arrived)."""
        contracts = {
            "OpenToken": protocol.token,
            "DatanetRegistry": protocol.datanets,
            "NodeStaking": protocol.staking,
            "RewardDistributor": protocol.rewards,
            "ModelRegistry": protocol.models,
        }
        if "KeyRegistry" in protocol.deployment.contracts:
            contracts["KeyRegistry"] = protocol.keys
        return cls(
            protocol.client, contracts, store, confirmations=confirmations,
            start_block=protocol.deployment.deploy_block, batch_size=batch_size,
            name=name or protocol.deployment.network, on_reorg=on_reorg,
        )  # fmt: skip

    @property
    def name(self) -> str:
        return self.config.name

    def on(self, event: str, handler: Handler) -> None:
        """Registers `handler` for `event` ("JobPosted", "ModelRegistry.JobPosted" or "*")."""
        if event != "*" and event not in self._known:
            raise ConfigError(
                f"No event {event!r} in the watched contracts. Known: {', '.join(sorted(self._known))}."
            )
        self._handlers.setdefault(event, []).append(handler)

    def checkpoint(self) -> int:
        """Last block whose events were all handled (start_block - 1 before the first poll)."""
        cp = self.store.checkpoint(self.name)
        return cp.block_number if cp else self.config.start_block - 1

    def resume(self) -> int:
        """Checks the stored checkpoint against the chain before the first poll and returns it:
        raises `WatcherStateError` for another chain's, or forgets it (`on_other_chain="restart"`),
        so that `checkpoint()` never reports another chain's position."""
        return self._resume_block()

    # ------------------------------------------------------------------ loop

    def poll_once(self) -> list[ChainEvent]:
        """Processes the next confirmed range; returns the events delivered (not the skipped).

        Raises `RpcUnavailableError` when the chain does not answer, `HandlerError` when a
        handler fails (the events before it stay recorded), and the fatal errors above.
        """
        events, _ = self._step()
        return events

    def run(self, stop: threading.Event, poll_interval: float = 1.0) -> None:
        """Polls until `stop` is set. Outages, node-side RPC errors and failing handlers are
        logged and retried with exponential backoff (up to `max_backoff`), because a daemon
        must outlive them; fatal errors (state mismatch, too-deep reorg) propagate."""
        delay = poll_interval
        while not stop.is_set():
            try:
                _, behind = self._step()
            except (RpcUnavailableError, Web3RPCError, HandlerError) as e:
                self.consecutive_failures += 1
                log.warning(
                    "watcher %s: poll failed (%s); retrying in %.2f s", self.name, e, delay,
                    exc_info=isinstance(e, HandlerError),
                )  # fmt: skip
                stop.wait(delay)
                delay = min(delay * 2, self.config.max_backoff)
                continue
            if self.consecutive_failures:
                log.info("watcher %s: recovered after %d failed polls", self.name, self.consecutive_failures)
            self.consecutive_failures = 0
            delay = poll_interval
            if not behind:  # caught up: wait for new blocks; otherwise read the next range now
                stop.wait(poll_interval)

    # ------------------------------------------------------------------ one step

    def _step(self) -> tuple[list[ChainEvent], bool]:
        """One range: (delivered events, whether more confirmed blocks are waiting)."""
        cp = self._check_reorg(self._resume_block())
        head = self.client.rpc(lambda: self.client.w3.eth.block_number, "eth_blockNumber")
        safe = head - self.config.confirmations
        if safe <= cp:
            return [], False
        first, last = cp + 1, min(safe, cp + self.config.batch_size)
        try:
            headers = self._headers(first, last, head)
            logs = self._get_logs(first, last)
        except BlockNotFound:  # the head went back between two calls: a reorg in progress
            log.info("watcher %s: chain changed while reading %d..%d; retrying", self.name, first, last)
            return [], False
        if not self._consistent(cp, headers, logs):
            log.info("watcher %s: blocks %d..%d changed while read; retrying", self.name, first, last)
            return [], False
        delivered = []
        for event in sorted(filter(None, map(self._decode, logs)), key=_order):
            if not self.store.is_processed(self.name, event.key):
                self._deliver(event)
                delivered.append(event)
        assert self._chain_id is not None
        checkpoint = Checkpoint(
            name=self.name, chain_id=self._chain_id, genesis_hash=self._genesis, fingerprint=self._fingerprint,
            block_number=last,
        )  # fmt: skip
        hashes = {n: h.hash for n, h in headers.items()}
        if first in headers and cp >= 0:
            # The parent too (checked equal to the stored one by _consistent): on the first
            # range it is the base a reorg of every processed block can rewind to.
            hashes[cp] = headers[first].parent
        self.store.advance(checkpoint, hashes, self.config.reorg_window)
        return delivered, last < safe

    def _resume_block(self) -> int:
        """The checkpoint, after checking it belongs to this chain and these contracts."""
        if self._chain_id is None or self._genesis is None:
            self._chain_id = self.client.chain_id
            self._genesis = self.client.genesis_hash
        cp = self.store.checkpoint(self.name)
        if cp is None:
            return self.config.start_block - 1
        other = self._other_chain(cp)
        if other is None:
            return cp.block_number
        if self.config.on_other_chain == "restart":
            log.warning(
                "watcher %s: the stored checkpoint (block %d) is %s; forgetting it and reading this chain "
                "from block %d", self.name, cp.block_number, other, self.config.start_block,
            )  # fmt: skip
            self.store.reset(self.name)
            return self.config.start_block - 1
        raise WatcherStateError(
            f"Watcher {self.name!r} has a checkpoint (block {cp.block_number}) {other}; resuming it would skip "
            f"or mix events. If the deployment file is for the chain at {self.client.rpc_url}, run "
            f"`{RESET_COMMAND}` to read it from its deployment block; if not, redeploy (`datanet deploy`), or "
            "use another data dir (DATANET_DATA_DIR) for the other chain."
        )

    def _other_chain(self, cp: Checkpoint) -> str | None:
        """Why checkpoint `cp` is not this chain's and contracts' (None: it is)."""
        url = self.client.rpc_url
        if cp.chain_id != self._chain_id:
            return f"for chain id {cp.chain_id}, but {url} is chain id {self._chain_id}"
        if cp.genesis_hash is not None and cp.genesis_hash != self._genesis:
            return (
                f"for another chain with chain id {cp.chain_id}: its genesis block is {cp.genesis_hash}, but "
                f"{url} has genesis {self._genesis} (the chain was restarted or replaced)"
            )
        if cp.fingerprint != self._fingerprint:
            return f"for another set of contracts than {', '.join(self._addresses)} (a redeployment)"
        return None

    def _check_reorg(self, cp: int) -> int:
        """The checkpoint to continue from: `cp`, or the common ancestor after a reorg."""
        stored = self.store.block_hash(self.name, cp)
        if stored is None or self._hash_at(cp) == stored:
            return cp
        canonical: dict[int, str | None] = {}

        def at(n: int) -> str | None:
            if n not in canonical:
                canonical[n] = self._hash_at(n)
            return canonical[n]

        hashes = self.store.block_hashes(self.name, cp - 1)
        ancestor = next((n for n, h in hashes if at(n) == h), None)
        if ancestor is None:
            raise ReorgTooDeepError(
                f"Watcher {self.name!r}: block {cp} was reorganised and none of the {len(hashes)} stored "
                f"older hashes is on the chain any more: a reorg deeper than reorg_window="
                f"{self.config.reorg_window}, or the chain at {self.client.rpc_url} was reset or replaced by "
                f"another with the same genesis. Run `{RESET_COMMAND}` to read it again from block "
                f"{self.config.start_block} (after `datanet deploy` if the contracts are gone too)."
            )
        orphaned = [
            e.key for e in self.store.events(self.name, ancestor) if at(e.block_number) != e.block_hash
        ]
        log.warning(
            "watcher %s: reorg, blocks %d..%d replaced; %d processed events orphaned, re-reading",
            self.name, ancestor + 1, cp, len(orphaned),
        )  # fmt: skip
        if self.on_reorg is not None:  # before the rewind commits: a failing callback is retried
            self.on_reorg(ancestor + 1, cp)
        self.store.rewind(self.name, ancestor, orphaned)
        return ancestor

    # ------------------------------------------------------------------ chain reads

    def _hash_at(self, n: int) -> str | None:
        try:
            block = self.client.rpc(lambda: self.client.w3.eth.get_block(n), f"eth_getBlockByNumber {n}")
        except BlockNotFound:
            return None
        return _hex(block["hash"])

    def _headers(self, first: int, last: int, head: int) -> dict[int, _Header]:
        """Headers of the range's recent blocks (within reorg_window of the head) and its last
        block: older blocks are final for our purposes, and skipping them keeps catch-up cheap."""
        numbers = {*range(max(first, head - self.config.reorg_window + 1), last + 1), last}
        headers = {}
        for n in sorted(numbers):
            block = self.client.rpc(lambda n=n: self.client.w3.eth.get_block(n), f"eth_getBlockByNumber {n}")  # type: ignore[misc]
            headers[n] = _Header(_hex(block["hash"]), _hex(block["parentHash"]))
        return headers

    def _get_logs(self, first: int, last: int) -> list[LogReceipt]:
        params: FilterParams = {"fromBlock": first, "toBlock": last, "address": self._addresses}  # type: ignore[typeddict-item]
        try:
            return list(
                self.client.rpc(lambda: self.client.w3.eth.get_logs(params), f"eth_getLogs {first}..{last}")
            )
        except Web3RPCError as e:
            # Public providers cap a query's block range or result count: halve and retry.
            if last == first or not any(w in str(e).lower() for w in _RANGE_LIMIT_HINTS):
                raise
            mid = (first + last) // 2
            return self._get_logs(first, mid) + self._get_logs(mid + 1, last)

    def _consistent(self, cp: int, headers: dict[int, _Header], logs: list[LogReceipt]) -> bool:
        """Whether the headers form one chain on top of the checkpoint and the logs belong to
        it (a reorg between our calls would otherwise mix two branches into one range)."""
        known: dict[int, str | None] = {cp: self.store.block_hash(self.name, cp)}
        known.update({n: h.hash for n, h in headers.items()})
        for n, header in headers.items():
            parent = known.get(n - 1)
            if parent is not None and header.parent != parent:
                return False
        return all(
            _hex(raw["blockHash"]) == headers[raw["blockNumber"]].hash
            for raw in logs
            if raw["blockNumber"] in headers
        )

    # ------------------------------------------------------------------ events

    def _decode(self, raw: LogReceipt) -> ChainEvent | None:
        topics = raw["topics"]
        entry = self._events.get((str(raw["address"]).lower(), _hex(topics[0]))) if topics else None
        if entry is None:
            tx = _hex(raw["transactionHash"])
            log.warning("watcher %s: undecodable log %s:%d skipped", self.name, tx, raw["logIndex"])
            return None
        contract, event = entry
        try:
            data = event.process_log(raw)
        except Exception as e:  # a log our ABI cannot decode means the artifacts are stale
            raise WatcherStateError(
                f"Cannot decode {contract}.{event.name} in tx {_hex(raw['transactionHash'])}: {e}. "
                "The compiled artifacts do not match the deployed contracts; recompile/redeploy."
            ) from e
        return ChainEvent(
            name=event.name, contract=contract, address=str(raw["address"]),
            args=_json_safe(dict(data["args"])), block_number=raw["blockNumber"],
            block_hash=_hex(raw["blockHash"]), tx_hash=_hex(raw["transactionHash"]),
            log_index=raw["logIndex"],
        )  # fmt: skip

    def _deliver(self, event: ChainEvent) -> None:
        """Runs every matching handler, then records the event (its own transaction)."""
        handlers = [
            *self._handlers.get(event.name, []),
            *self._handlers.get(f"{event.contract}.{event.name}", []),
            *self._handlers.get("*", []),
        ]
        for handler in handlers:
            try:
                handler(event)
            except Exception as e:
                raise HandlerError(
                    f"Handler {getattr(handler, '__qualname__', handler)!r} failed on "
                    f"{event.contract}.{event.name} {event.key} (block {event.block_number}): {e}. "
                    "The event was not recorded and will be delivered again.",
                    event,
                ) from e
        stored = StoredEvent(
            key=event.key, block_number=event.block_number, block_hash=event.block_hash,
            log_index=event.log_index, event_json=event.model_dump_json(),
        )  # fmt: skip
        self.store.record_event(self.name, stored)


def _event_table(contracts: Mapping[str, Contract]) -> dict[tuple[str, str], tuple[str, BaseContractEvent]]:
    """(lower-case address, topic0) → (contract name, event decoder)."""
    table: dict[tuple[str, str], tuple[str, BaseContractEvent]] = {}
    for cname, contract in contracts.items():
        if contract.address is None:
            raise ConfigError(f"Contract {cname!r} has no address; bind it to a deployment first.")
        for event in contract.all_events():
            if not event.abi.get("anonymous"):
                table[(str(contract.address).lower(), str(event.topic).lower())] = (cname, event)
    return table


def _order(event: ChainEvent) -> tuple[int, int]:
    return event.block_number, event.log_index


def _hex(value: bytes | str) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _json_safe(value: Any) -> Any:
    """Decoded ABI values as JSON types (ints stay ints: JSON has no size limit)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):  # a struct decoded as a named tuple (decode_tuples=True)
        return _json_safe(value._asdict())
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


__all__ = [
    "RESET_COMMAND",
    "ChainEvent",
    "EventWatcher",
    "HandlerError",
    "ReorgTooDeepError",
    "WatcherConfig",
    "WatcherError",
    "WatcherStateError",
]
