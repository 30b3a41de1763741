"""What the Models and Datanets pages show, read from the chain, the catalog and the content store.

The catalog says which models this node serves; the chain is the registry itself, so models this
node cannot serve (their base model is not here, or voided) are listed too, marked. Documents in
the content store are immutable by CID, so the ones read (metrics, job configs, contributions'
records) are cached by CID.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from web3 import Web3

from node.chain.models import Contribution, ContributionStatus, Datanet, ModelStatus
from node.daemon.outputs import MetricsDocument
from node.data.records import Example
from node.data.validate import load_bytes
from node.errors import NodeError
from node.serve.app import Services
from node.serve.catalog import ServedModel, base_id_of
from node.train.config import JobConfig, TrainConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE = 50  # rows per page of the registry lists


class ModelRow(BaseModel):
    """One model of the registry as the Models page shows it."""

    id: str = Field(description="datanet-<modelId>, or a base model's served id.")
    kind: str
    status: str = Field(description="base, pending, finalized or voided.")
    served: bool = Field(description="This node serves it (its base model is here).")
    model_id: int | None = None
    job_id: int | None = None
    aliases: list[str] = Field(default_factory=list)
    base: str = Field("", description="The base model's served id (never a local path).")
    base_hash: str = ""
    adapter_cid: str | None = None
    adapter_sha256: str | None = None
    datanet_ids: list[int] = Field(default_factory=list)
    parent_model_id: int | None = None
    node: str | None = None
    registered_at: int | None = None
    metrics_cid: str | None = None
    config_cid: str | None = None
    data_root: str | None = None
    attribution_cid: str | None = None
    example_count: int | None = None
    method: str | None = None


class Cache:
    """A small thread-safe LRU (content is immutable by CID, so entries never go stale)."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[object, object] = OrderedDict()
        self._lock, self.size = threading.Lock(), size

    def get(self, key: object, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class EventLog:
    """One contract event's logs, read incrementally: each call asks the chain only for the blocks
    since the last one (the Datanets pages would otherwise scan every block since deployment,
    once per Datanet, on every page view). The last `REORG_DEPTH` blocks are read again each time,
    so a log a reorganisation dropped does not stay cached."""

    REORG_DEPTH = 12

    def __init__(self, protocol: Any, contract: str, event: str) -> None:
        self.p, self.contract, self.event = protocol, contract, event
        self._settled: list[Any] = []  # logs at least REORG_DEPTH blocks deep
        self._next = int(protocol.deployment.deploy_block)  # first block not settled yet
        self._lock = threading.Lock()

    def all(self) -> list[Any]:
        with self._lock:
            head = int(self.p.client.block_number())
            ev = getattr(getattr(self.p, self.contract).events, self.event)
            start = self._next
            recent = (
                self.p.client.rpc(lambda: ev.get_logs(from_block=start, to_block=head), f"get {self.event} logs")
                if start <= head else []
            )  # fmt: skip
            settle_to = head - self.REORG_DEPTH
            self._settled += [log for log in recent if log["blockNumber"] <= settle_to]
            self._next = max(self._next, settle_to + 1)
            return self._settled + [log for log in recent if log["blockNumber"] > settle_to]


class Registry:
    """Read-only views over `Services` for the pages."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._docs = Cache()
        self._logs_of: object = None  # the protocol `_logs` were read from
        self._logs: dict[str, EventLog] = {}

    # -- models ------------------------------------------------------------------------
    def models(self, page: int = 1) -> tuple[list[ModelRow], int]:
        """Base models served here, then registered models newest first; and the page count."""
        served = self.s.catalog.served(include_pending=True)
        bases = [_base_row(m) for m in served if m.kind == "base"]
        by_id = {m.model_id: m for m in served if m.kind == "adapter"}
        if self.s.protocol is None:  # no chain: what the catalog was given
            rows = [_served_row(m) for m in sorted(by_id.values(), key=lambda m: -(m.model_id or 0))]
            return bases + rows, 1
        count = self.s.protocol.model_count()
        pages = max(1, -(-count // PAGE))
        top = count - (page - 1) * PAGE
        ids = range(top, max(0, top - PAGE), -1)
        return (bases if page == 1 else []) + [self._chain_row(i, by_id.get(i)) for i in ids], pages

    def model(self, name: str) -> ModelRow | None:
        served = self.s.catalog.get(name)
        if served is not None and served.kind == "base":
            return _base_row(served)
        model_id = served.model_id if served is not None else _registered_id(name)
        if model_id is None:
            return None
        if self.s.protocol is None:
            return _served_row(served) if served is not None else None
        if not 1 <= model_id <= self.s.protocol.model_count():
            return None
        return self._chain_row(model_id, served)

    def _chain_row(self, model_id: int, served: ServedModel | None) -> ModelRow:
        assert self.s.protocol is not None
        m = self.s.protocol.model(model_id)
        return ModelRow(
            id=f"datanet-{model_id}", kind="adapter", status=ModelStatus(m.status).name.lower(),
            served=served is not None, model_id=model_id, job_id=m.jobId, aliases=served.aliases if served else [],
            base=served.base_id if served else base_id_of(m.baseModel), base_hash="0x" + bytes(m.baseModelHash).hex(),
            adapter_cid=m.adapterCID, adapter_sha256="0x" + bytes(m.adapterHash).hex(),
            datanet_ids=list(m.datanetIds), parent_model_id=m.parentModelId or None, node=m.node,
            registered_at=m.registeredAt, metrics_cid=m.metricsCID or None, config_cid=m.configCID or None,
            data_root="0x" + bytes(m.dataRoot).hex(), attribution_cid=m.attributionCID or None,
            example_count=m.exampleCount, method=m.method.name.lower(),
        )  # fmt: skip

    def lineage(self, model_id: int) -> list[int]:
        return self.s.protocol.lineage(model_id) if self.s.protocol is not None else [model_id]

    def metrics(self, cid: str | None) -> tuple[MetricsDocument | None, str | None]:
        """The metrics document at `cid`, or None and why it could not be read."""
        if not cid:
            return None, "no metrics document registered"
        return self._docs.get(("metrics", cid), lambda: self._read(cid, MetricsDocument.model_validate_json))

    def job_config(self, cid: str | None) -> tuple[JobConfig | None, str | None]:
        if not cid:
            return None, "no config document"
        return self._docs.get(("config", cid), lambda: self._read(cid, lambda b: JobConfig.parse(b, cid)))

    def _read(self, cid: str, parse: Callable[[bytes], T]) -> tuple[T | None, str | None]:
        if self.s.store is None:
            return None, "this node has no content store configured"
        try:
            return parse(self.s.store.cat(cid)), None
        except (NodeError, OSError, ValueError, TrainConfigError) as e:
            log.info("document %s unreadable: %s", cid, e)
            return None, f"{cid} could not be read: {str(e).splitlines()[0][:200]}"

    # -- Datanets ------------------------------------------------------------------------
    def datanets(self, query: str = "") -> list[tuple[Datanet, list[str]]]:
        """Every Datanet with its curators, those matching `query` (name, licence, curator,
        owner) when one is given."""
        p = self.s.protocol
        if p is None:
            return []
        rows = [(d, self._curators(d.id)) for d in (p.datanet(i) for i in range(1, p.datanet_count() + 1))]
        q = query.strip().lower()
        if not q:
            return rows
        return [
            (d, c) for d, c in rows
            if q in d.name.lower() or q in d.license.lower() or q in d.owner.lower() or any(q in a.lower() for a in c)
            or q == str(d.id)
        ]  # fmt: skip

    def datanet(self, datanet_id: int) -> tuple[Datanet, list[str]] | None:
        p = self.s.protocol
        if p is None or not 1 <= datanet_id <= p.datanet_count():
            return None
        return p.datanet(datanet_id), self._curators(datanet_id)

    def contributions(self, datanet_id: int) -> list[Contribution]:
        p = self.s.protocol
        if p is None:
            return []
        ids = sorted(int(log["args"]["contributionId"]) for log in self._log("ContributionSubmitted").all()
                     if int(log["args"]["datanetId"]) == datanet_id)  # fmt: skip
        return [p.contribution(i) for i in ids]

    def _curators(self, datanet_id: int) -> list[str]:
        """A Datanet's current curators: every account a `CuratorSet` log named, still a curator
        (`node.data.grants.curators`, from the incremental log)."""
        p = self.s.protocol
        assert p is not None
        named = dict.fromkeys(
            Web3.to_checksum_address(log["args"]["account"]) for log in self._log("CuratorSet").all()
            if int(log["args"]["datanetId"]) == datanet_id
        )  # fmt: skip
        return [a for a in named if p.is_curator(datanet_id, a)]

    def _log(self, event: str) -> EventLog:
        p = self.s.protocol
        if p is not self._logs_of:  # another deployment: start over
            self._logs_of, self._logs = p, {}
        if event not in self._logs:
            self._logs[event] = EventLog(p, "datanets", event)
        return self._logs[event]

    def approved_examples(self, datanet_id: int) -> tuple[list[tuple[int, Example]], list[str]]:
        """The approved records of a public Datanet, each with its contribution id; and notes on
        contributions that could not be read. Private Datanets are sealed: nothing to preview."""
        p = self.s.protocol
        found = self.datanet(datanet_id)
        if p is None or found is None:
            return [], ["no such Datanet"]
        if found[0].isPrivate:
            return [], ["this Datanet is private: its records are encrypted for the nodes it trusts"]
        out: list[tuple[int, Example]] = []
        notes: list[str] = []
        for c in self.contributions(datanet_id):
            if c.status != ContributionStatus.APPROVED:
                continue
            examples, why = self._docs.get(("records", c.cid), lambda c=c: self._records(c))  # type: ignore[misc]
            if why:
                notes.append(f"contribution #{c.id}: {why}")
            out += [(c.id, e) for e in examples]
        return out, notes

    def _records(self, c: Contribution) -> tuple[list[Example], str | None]:
        if self.s.store is None:
            return [], "no content store"
        try:
            data = self.s.store.cat(c.cid)
        except (NodeError, OSError) as e:
            return [], f"not in the content store ({str(e)[:120]})"
        if hashlib.sha256(data).digest() != bytes(c.contentHash):
            return [], "its content does not match the sha256 on-chain"
        try:
            return [r.example for r in load_bytes(data, f"contribution-{c.id}")], None
        except (NodeError, ValueError) as e:
            return [], f"does not parse: {str(e).splitlines()[0][:160]}"


def _registered_id(name: str) -> int | None:
    from node.serve.catalog import registered_id

    return registered_id(name)


def _base_row(m: ServedModel) -> ModelRow:
    return ModelRow(id=m.id, kind="base", status="base", served=True, base=m.base_id, base_hash=m.base_hash,
                    registered_at=m.created)  # fmt: skip


def _served_row(m: ServedModel) -> ModelRow:
    return ModelRow(
        id=m.id, kind=m.kind, status=m.status, served=True, model_id=m.model_id, job_id=m.job_id, aliases=m.aliases,
        base=m.base_id, base_hash=m.base_hash, adapter_cid=m.adapter_cid, adapter_sha256=m.adapter_sha256,
        datanet_ids=m.datanet_ids, node=m.owned_by, registered_at=m.created,
    )  # fmt: skip
