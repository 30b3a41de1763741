"""The vLLM engine on a GPU, beside the embedded PEFT engine on the same GPU, in one run.

Needs a CUDA GPU and a `vllm` executable installed in its own venv (vLLM pins its own torch:
never install it into the node's venv):

    python -m venv /opt/vllm && /opt/vllm/bin/pip install vllm
    VLLM_COMMAND=/opt/vllm/bin/vllm .venv/bin/python benchmarks/vllm_gpu.py --out docs/vllm-gpu.md

`scripts/gpu/vllm_check.sh` wraps it. On SmolLM2-135M-Instruct (the demo's base) with LoRA r=8
adapters on every linear layer, for each engine:
- **decode speed**, one request at a time: the bare base, then an adapter (ratio: target >= 0.9x);
- **throughput**: `--requests` requests at once spread over `--adapters` adapters (the case vLLM's
  continuous batching and multi-LoRA kernels are for): tokens/s, p50/p99 latency, errors;
- **agreement**: how many greedy answers of the base are the same text from both engines (bf16
  kernels differ, so this is reported, not required).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serving import QUESTIONS, _one, _pct, make_adapter


async def _decode(engine: Any, handles: list[Any], prompts: list[str], tokens: int) -> dict[str, float]:
    """Per handle: decode tokens/s after the first token, and the median time to first token."""
    from node.serve.engine import GenerationRequest, SamplingParams

    out: dict[str, float] = {}
    for h in handles:
        reqs = [GenerationRequest(model=h, prompt=p, params=SamplingParams(max_tokens=tokens, temperature=0))
                for p in prompts]  # fmt: skip
        await _one(engine, reqs[0])  # load (and register the adapter): not timed
        secs, n, ttft = 0.0, 0, []
        for r in reqs:
            first, total, count = await _one(engine, r)
            secs, n = secs + total - first, n + max(count - 1, 0)
            ttft.append(first)
        out[f"{h.name}_tps"] = n / secs
        out[f"{h.name}_ttft"] = sorted(ttft)[len(ttft) // 2]
    return out


async def _throughput(engine: Any, handles: list[Any], prompts: list[str], count: int, tokens: int) -> dict[str, Any]:
    from node.serve.engine import Finished, GenerationRequest, SamplingParams

    latencies: list[float] = []
    produced, errors = 0, 0

    async def one(i: int) -> None:
        nonlocal produced, errors
        req = GenerationRequest(model=handles[i % len(handles)], prompt=prompts[i % len(prompts)],
                                params=SamplingParams(max_tokens=tokens, temperature=0))  # fmt: skip
        t0 = time.perf_counter()
        try:
            async for ev in await engine.stream(req):
                if isinstance(ev, Finished):
                    produced += ev.completion_tokens
        except Exception as e:  # counted and shown: the run goes on
            errors += 1
            print(f"request {i} failed: {e}", flush=True)
        latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(i) for i in range(len(handles))))  # warm: every adapter registered
    latencies.clear()
    produced = 0
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - t0
    return {"tps": produced / wall, "p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "errors": errors,
            "wall": wall}  # fmt: skip


async def _answers(engine: Any, bare: Any, prompts: list[str], tokens: int) -> list[str]:
    from node.serve.engine import Finished, GenerationRequest, SamplingParams

    texts = []
    for p in prompts:
        req = GenerationRequest(model=bare, prompt=p, params=SamplingParams(max_tokens=tokens, temperature=0))
        texts += [ev.text async for ev in await engine.stream(req) if isinstance(ev, Finished)]
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vllm-command", default=os.environ.get("VLLM_COMMAND"))
    p.add_argument("--adapters", type=int, default=8)
    p.add_argument("--requests", type=int, default=128)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="Write the markdown here (default: print it).")
    args = p.parse_args()
    if not args.vllm_command:
        sys.exit("give the vllm executable of its own venv: --vllm-command or VLLM_COMMAND (module docstring)")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from node.config import Settings
    from node.serve.engine import ModelHandle
    from node.serve.peft_engine import PeftEngine
    from node.serve.vllm_engine import VllmEngine, VllmSettings
    from node.train.base_model import resolve_base_model, weights_hash
    from node.train.formatting import render_prompt
    from node.train.smollm2 import SMOLLM2

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark compares the engines on a GPU")
    started = time.time()
    base_dir = resolve_base_model(SMOLLM2, Settings().models_path)
    base_hash = "0x" + weights_hash(base_dir).hex()
    tok = AutoTokenizer.from_pretrained(base_dir)
    prompts = [render_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp_s:
        tmp = Path(tmp_s)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        adapters = [make_adapter(base, tmp / f"a{i}", seed=i) for i in range(args.adapters)]
        del base
        bare = ModelHandle(name="base", base_dir=base_dir, base_hash=base_hash)
        tuned = [ModelHandle(name=f"a{i}", base_dir=base_dir, base_hash=base_hash, adapter_key=f"a{i}",
                             adapter_dir=a) for i, a in enumerate(adapters)]  # fmt: skip
        engines = {
            "peft": lambda: PeftEngine(device="cuda", max_adapters=args.adapters, max_batch=32),
            "vllm": lambda: VllmEngine(VllmSettings(command=args.vllm_command, max_adapters=args.adapters,
                                                    max_loras=args.adapters, max_lora_rank=8,
                                                    gpu_memory_utilization=0.5, log_dir=tmp)),
        }  # fmt: skip
        for name, make in engines.items():

            async def run(engine: Any) -> dict[str, Any]:
                try:
                    got = await _decode(engine, [bare, tuned[0]], prompts, args.tokens)
                    got["load"] = await _throughput(engine, [bare, *tuned], prompts, args.requests, args.tokens)
                    got["answers"] = await _answers(engine, bare, prompts, 32)
                    return got
                finally:
                    await engine.close()

            print(f"{name} ...", flush=True)
            results[name] = asyncio.run(run(make()))
            print({k: v for k, v in results[name].items() if k != "answers"}, flush=True)
    same = sum(a == b for a, b in zip(results["peft"]["answers"], results["vllm"]["answers"], strict=True))
    gpu = torch.cuda.get_device_name(0)
    lines = [
        f"## vLLM against the embedded engine on {gpu} (`benchmarks/vllm_gpu.py`)", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {gpu}, {(time.time() - started) / 60:.0f} minutes in all. "
        f"SmolLM2-135M-Instruct, LoRA r=8 on every linear layer, greedy decoding, up to {args.tokens} tokens.", "",
        "| | embedded PEFT | vLLM |", "|---|---:|---:|",
        *(f"| {label} | {results['peft'][k]:.1f} | {results['vllm'][k]:.1f} |" for label, k in (
            ("decode tokens/s, bare base", "base_tps"), ("decode tokens/s, with an adapter", "a0_tps"))),
        "| adapter / bare base | " + " | ".join(
            f"{results[e]['a0_tps'] / results[e]['base_tps']:.2f}x" for e in ("peft", "vllm")) + " |",
        "| time to first token, median (ms) | " + " | ".join(
            f"{results[e]['base_ttft'] * 1000:.1f}" for e in ("peft", "vllm")) + " |",
        f"| {args.requests} requests at once over {args.adapters} adapters + base: tokens/s | " + " | ".join(
            f"{results[e]['load']['tps']:.0f}" for e in ("peft", "vllm")) + " |",
        "| ... p50 / p99 latency (s) | " + " | ".join(
            f"{results[e]['load']['p50']:.2f} / {results[e]['load']['p99']:.2f}" for e in ("peft", "vllm")) + " |",
        "| ... errors | " + " | ".join(str(results[e]["load"]["errors"]) for e in ("peft", "vllm")) + " |", "",
        f"Greedy answers of the base, first 32 tokens: {same} of {len(prompts)} the same text from both engines.",
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
