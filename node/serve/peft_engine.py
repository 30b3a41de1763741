"""The embedded engine: many PEFT LoRA adapters on one shared base model per base hash, in this
process, on the CPU or one GPU.

How it keeps many fine-tunes on one device:
- one base model per ``baseModelHash``, loaded once; adapters are added beside each other with
  PEFT's `load_adapter` and evicted least-recently-used past `max_adapters` (`delete_adapter`);
- a batch may mix adapters: a forward pass over rows of different adapters names each row's
  adapter (PEFT's per-row ``adapter_names``; ``__base__`` for the bare base). A pass whose rows
  all use one adapter runs with that adapter active (the LoRA path) and, once the adapter has had
  `MERGE_AFTER` such passes in a row, on its **merged weights**: W + B·A·scale computed once into
  a copy kept for one adapter at a time, the base layers pointed at it (a pointer swap per layer:
  the base's own tensors are never written and need no unmerge), the LoRA layers switched off.
  Computing the copy costs a few passes, wasted on short answers or alternating adapters, hence
  the wait. Measured on SmolLM2-135M (CPU, 2 threads, all-linear r=8): the per-row path decodes
  at 0.5-0.6x the bare base's speed, the LoRA path at 0.73-0.86x, merged weights at 1.0x; the
  price is memory for one copy of the adapted layers (`merge_uniform=False` keeps the LoRA
  path). The LoRA layers' on/off state and the swap persist between passes, because switching
  walks every module. All of this is safe only because one worker thread owns the model and
  changes it between passes, never during one;
- one worker thread owns the models (PEFT's per-row adapter hooks are registered on the modules
  themselves, so two forward passes at once would see each other's hooks); requests that arrive
  while a batch runs wait for the next one, and a batch takes every waiting request of one base,
  whatever its adapter and sampling settings (`_Row` samples each row with its own settings and
  generator).

Decoding is our own loop over the model's forward with a KV cache rather than `generate`, so
each row has its own temperature, top-p, seed, stop sequences and token limit, finished rows
leave the batch at once (`DynamicCache.batch_select_indices`), and a client that disconnects
stops costing compute at the next token. This is static batching; vLLM's continuous batching is
the engine for busy GPUs (`node.serve.vllm_engine`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from node.serve.adapters import AdapterPolicy, check_adapter
from node.serve.engine import (
    AdapterRefusedError,
    Engine,
    EngineError,
    Event,
    Finished,
    GenerationRequest,
    InputTooLongError,
    ModelHandle,
    TextDelta,
    prompt_ids,
)

log = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no adapter" in per-row adapter_names
MERGE_AFTER = 8  # one-adapter passes in a row before that adapter's merged weights are computed


@dataclass
class _Base:
    """One loaded base model, its tokenizer and the adapters loaded on it (LRU order)."""

    model: Any
    tokenizer: Any
    device: Any
    eos_ids: set[int]
    max_positions: int
    adapters: OrderedDict[str, None] = field(default_factory=OrderedDict)
    active: str | None = None  # the adapter `set_adapter` last made active (uniform passes)
    merged: tuple[str, dict[str, Any]] | None = None  # (adapter, module -> W + its delta): one adapter's
    swapped: str | None = None  # whose merged weights the base layers hold now (None: their own)
    own: dict[str, Any] = field(default_factory=dict)  # module -> the base layer's own weight tensor
    merge_uniform: bool = True  # run one-adapter passes on merged weights (PeftEngine's merge_uniform)
    streak: tuple[str | None, int] = (None, 0)  # the adapter of the last one-adapter passes, and how many in a row
    lora_on: bool | None = True  # the LoRA layers add their deltas (off: base layers alone; None: unknown)

    @property
    def peft(self) -> bool:
        return hasattr(self.model, "peft_config")


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event | BaseException]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class PeftEngine(Engine):
    """The default engine (module docstring)."""

    name = "peft"

    def __init__(
        self, *, device: str | None = None, max_adapters: int = 8, max_batch: int = 8,
        policy: AdapterPolicy | None = None, merge_uniform: bool = True,
    ) -> None:  # fmt: skip
        self.device_name = device
        self.merge_uniform = merge_uniform
        self.max_adapters = max_adapters
        self.max_batch = max_batch
        self.policy = policy or AdapterPolicy()
        self._bases: dict[str, _Base] = {}
        self._queue: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="peft-engine", daemon=True)
        self._worker.start()

    # -- the async side ------------------------------------------------------------------
    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        job = _Job(request, asyncio.get_running_loop(), asyncio.Queue())
        with self._wake:
            if self._closed:
                raise EngineError("the engine is shut down")
            self._queue.append(job)
            self._wake.notify()
        return self._events(job)

    async def _events(self, job: _Job) -> AsyncIterator[Event]:
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()

    async def tokenizer_of(self, model: ModelHandle) -> Any:
        base = self._bases.get(model.base_hash)
        if base is not None:
            return base.tokenizer
        from transformers import AutoTokenizer

        return await asyncio.to_thread(AutoTokenizer.from_pretrained, model.base_dir)

    def loaded(self) -> list[str]:
        return [k for b in self._bases.values() for k in b.adapters]

    async def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        await asyncio.to_thread(self._worker.join, 30)

    # -- the worker thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    for job in self._queue:
                        job.emit(EngineError("the engine shut down before this request ran"))
                    return
                batch = self._take_batch()
            try:
                self._run_batch(batch)
            except BaseException as e:  # never let the worker die: report to every waiting request
                log.exception("engine batch failed")
                err = (
                    e
                    if isinstance(e, EngineError | InputTooLongError | AdapterRefusedError)
                    else EngineError(f"generation failed: {type(e).__name__}: {e}")
                )
                for job in batch:
                    job.emit(err)

    def _take_batch(self) -> list[_Job]:
        """The oldest request and every waiting one on the same base, up to `max_batch` rows and
        `max_adapters` distinct adapters (all of a batch's adapters must be loaded at once)."""
        first = self._queue.popleft()
        batch, adapters, rest = [first], {first.request.model.adapter_key}, deque[_Job]()
        while self._queue and len(batch) < self.max_batch:
            job = self._queue.popleft()
            key = job.request.model.adapter_key
            same_base = job.request.model.base_hash == first.request.model.base_hash
            if same_base and (key in adapters or len(adapters - {None}) < self.max_adapters):
                batch.append(job)
                adapters.add(key)
            else:
                rest.append(job)
        self._queue.extendleft(reversed(rest))
        return batch

    def _run_batch(self, batch: list[_Job]) -> None:
        base = self._base(batch[0].request.model)
        rows: list[_Row] = []
        for job in batch:
            if job.cancelled.is_set():
                continue
            try:
                if job.request.model.adapter_key is not None:
                    self._ensure_adapter(base, job.request.model, keep={j.request.model.adapter_key for j in batch})
                rows.append(_Row.start(job, base))
            except (InputTooLongError, AdapterRefusedError, EngineError) as e:
                job.emit(e)
        if rows:
            _decode(base, rows)

    def _base(self, handle: ModelHandle) -> _Base:
        if handle.base_hash in self._bases:
            return self._bases[handle.base_hash]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = torch.device(self.device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        log.info("loading base model %s (%s) on %s", handle.base_dir, handle.base_hash[:12], device)
        tok = AutoTokenizer.from_pretrained(handle.base_dir)
        model = AutoModelForCausalLM.from_pretrained(handle.base_dir, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
        eos = model.generation_config.eos_token_id
        eos_ids = {
            *([eos] if isinstance(eos, int) else (eos or [])),
            *([tok.eos_token_id] if tok.eos_token_id is not None else []),
        }
        max_pos = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._bases[handle.base_hash] = _Base(model, tok, device, eos_ids, max_pos, merge_uniform=self.merge_uniform)
        return self._bases[handle.base_hash]

    def _ensure_adapter(self, base: _Base, handle: ModelHandle, keep: set[str | None]) -> None:
        key = handle.adapter_key
        assert key is not None and handle.adapter_dir is not None
        if key in base.adapters:
            base.adapters.move_to_end(key)
            return
        plain = base.model.get_base_model() if base.peft else base.model
        info = check_adapter(handle.adapter_dir, plain, self.policy, expected_sha256=None)  # hash: checked at fetch
        from peft import PeftModel

        _use_weights(base, None)
        if base.peft:
            base.model.load_adapter(str(handle.adapter_dir), adapter_name=key, is_trainable=False)
        else:
            base.model = PeftModel.from_pretrained(
                base.model, str(handle.adapter_dir), adapter_name=key, is_trainable=False
            )
        base.model.eval()
        base.adapters[key] = None
        base.lora_on = None  # new LoRA layers start switched on: set the next pass's state anew
        log.info("loaded adapter %s (r=%d, %d modules) for %s", key, info.rank, len(info.target_modules), handle.name)
        while len(base.adapters) > self.max_adapters:
            old = next((k for k in base.adapters if k not in keep), None)
            if old is None:
                break
            del base.adapters[old]
            _use_weights(base, None)
            if base.merged and base.merged[0] == old:
                base.merged = None
            base.model.delete_adapter(old)
            base.active = None  # PEFT picks another active adapter when the active one goes
            base.lora_on = None
            log.info("evicted adapter %s (least recently used)", old)


class _Row:
    """One request's state inside a running batch."""

    def __init__(self, job: _Job, prompt_ids: list[int], generator: Any) -> None:
        self.job, self.prompt_ids, self.generator = job, prompt_ids, generator
        self.params = job.request.params
        self.adapter = job.request.model.adapter_key or BASE
        self.ids: list[int] = []
        self.emitted = ""
        self.finish: str | None = None
        self.text = ""

    @classmethod
    def start(cls, job: _Job, base: _Base) -> _Row:
        import torch

        req = job.request
        ids = prompt_ids(base.tokenizer, req, base.max_positions)
        gen = torch.Generator(device="cpu").manual_seed(
            req.params.seed if req.params.seed is not None else secrets.randbits(63)
        )
        return cls(job, ids, gen)

    def choose(self, logits: Any) -> int:
        """The next token from this row's logits (V,), with this row's own sampling settings."""
        import torch

        if self.params.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float().cpu() / self.params.temperature, dim=-1)
        if self.params.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_p, dim=-1) - sorted_p > self.params.top_p  # keep the top mass
            sorted_p[outside] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def push(self, token: int, base: _Base) -> None:
        """Takes a new token: updates the text, emits what is safe to show, decides finishing."""
        if token in base.eos_ids:
            self.finish = "stop"
        else:
            self.ids.append(token)
        full = str(base.tokenizer.decode(self.ids, skip_special_tokens=True))
        for stop in self.params.stop:
            at = full.find(stop)
            if at >= 0:
                full, self.finish = full[:at], "stop"
        if self.finish is None and len(self.ids) >= self.params.max_tokens:
            self.finish = "length"
        self.text = full
        shown = full if self.finish else _safe_prefix(full, self.params.stop)
        if len(shown) > len(self.emitted) and shown.startswith(self.emitted):
            self.job.emit(TextDelta(text=shown[len(self.emitted) :]))
            self.emitted = shown
        if self.finish:
            if len(full) > len(self.emitted) and not full.startswith(self.emitted):
                log.warning("detokenisation changed already-streamed text of a response")
            self.job.emit(
                Finished(
                    text=full, finish_reason=self.finish, prompt_tokens=len(self.prompt_ids),
                    completion_tokens=len(self.ids), prompt_ids=self.prompt_ids, completion_ids=list(self.ids),
                )
            )  # fmt: skip


def _safe_prefix(text: str, stops: tuple[str, ...]) -> str:
    """`text` minus a trailing half-decoded character and minus any tail that could be the start
    of a stop sequence (it is shown once the next tokens show it is not)."""
    text = text.rstrip("\ufffd")
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return text[: len(text) - hold] if hold else text


def _adapters_for(base: _Base, names: list[str]) -> dict[str, Any]:
    """How one forward pass selects its rows' adapters (module docstring): sets the model up for
    them and returns the keyword arguments to pass. The set-up persists between passes (one
    worker thread owns the model): switching the LoRA layers on or off walks every module, too
    slow to do per decoded token."""
    if not base.peft:
        return {}
    if len(set(names)) > 1:
        base.streak = (None, 0)
        _use_weights(base, None)
        _lora_on(base, True)
        return {"adapter_names": names}
    if names[0] == BASE:
        base.streak = (None, 0)
        _use_weights(base, None)
        _lora_on(base, False)
    elif base.merge_uniform and _worth_merging(base, names[0]):
        _use_weights(base, names[0])
        _lora_on(base, False)  # the base layers hold W + delta: no LoRA path on top
    else:
        _use_weights(base, None)
        _lora_on(base, True)
        if base.active != names[0]:
            base.model.set_adapter(names[0])
            base.active = names[0]
    return {}


def _worth_merging(base: _Base, adapter: str) -> bool:
    """Whether `adapter`'s passes should run on merged weights: yes when its merged copy is at hand;
    otherwise only once it has had MERGE_AFTER passes in a row (computing W + delta costs a few
    passes' time, so short answers and traffic that alternates adapters keep the LoRA path)."""
    run, count = base.streak
    base.streak = (adapter, count + 1 if run == adapter else 1)
    return (base.merged is not None and base.merged[0] == adapter) or base.streak[1] > MERGE_AFTER


def _lora_on(base: _Base, on: bool) -> None:
    if base.lora_on != on:
        if on:
            base.model.base_model.enable_adapter_layers()
        else:
            base.model.base_model.disable_adapter_layers()
        base.lora_on = on


def _use_weights(base: _Base, adapter: str | None) -> None:
    """Point the adapted base layers at `adapter`'s merged weights (W + its LoRA delta, computed
    once and kept for one adapter), or back at their own weights (None). The base's own tensors
    are never written, so the bare base and other adapters see exactly the weights they always
    had; switching is a pointer swap per layer, not a copy."""
    if base.swapped == adapter:
        return
    layers = _lora_layers(base)
    if adapter is not None and (base.merged is None or base.merged[0] != adapter):
        _use_weights(base, None)
        base.merged = None  # at most one merged copy: its memory is that of the adapted layers
        merged = {}
        for name, layer in layers.items():
            if adapter in layer.lora_A:
                w = layer.get_base_layer().weight
                merged[name] = w + layer.get_delta_weight(adapter).to(w.dtype)
        base.merged = (adapter, merged)
    for name, layer in layers.items():
        w = layer.get_base_layer().weight
        base.own.setdefault(name, w.data)
        target = base.merged[1].get(name) if adapter is not None and base.merged else None
        w.data = target if target is not None else base.own[name]
    base.swapped = adapter


def _lora_layers(base: _Base) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in base.model.named_modules() if isinstance(m, LoraLayer)}


def _decode(base: _Base, rows: list[_Row]) -> None:
    """Prefill every row's prompt (left-padded), then one token per live row per step."""
    import torch
    from transformers import DynamicCache

    pad = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else next(iter(base.eos_ids), 0)
    width = max(len(r.prompt_ids) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=base.device)
    mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows], device=base.device)
    cache = DynamicCache()
    live = list(rows)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        while live:
            kwargs = _adapters_for(base, [r.adapter for r in live])
            out = base.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, **kwargs
            )
            logits = out.logits[:, -1, :]  # (B, V)
            nxt = []  # aligned with `live`
            for i, row in enumerate(live):
                if row.job.cancelled.is_set():  # the client went away: the row leaves the batch now
                    row.finish = "cancelled"
                    nxt.append(-1)
                    continue
                token = row.choose(logits[i])
                row.push(token, base)
                nxt.append(token)
            keep = [i for i, r in enumerate(live) if r.finish is None]
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=base.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                nxt = [nxt[i] for i in keep]
                live = [live[i] for i in keep]
            ids = torch.tensor([[t] for t in nxt], device=base.device)
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=base.device)], dim=1)
            positions = positions[:, -1:] + 1
