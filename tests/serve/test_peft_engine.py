"""The embedded engine against a real tiny Llama and real PEFT adapters: per-row adapters in one
batch give the same answers as each adapter alone, LRU eviction, stop sequences, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.serve.engine import Finished, GenerationRequest, InputTooLongError, SamplingParams, TextDelta
from node.serve.peft_engine import PeftEngine, _safe_prefix
from tests.serve.conftest import handle

PROMPT = "<|user|>\nWhere is the mill of Quillmarsh?\n<|assistant|>\n"


async def _answer(engine: PeftEngine, req: GenerationRequest) -> tuple[str, Finished]:
    text, done = "", None
    async for ev in await engine.stream(req):
        if isinstance(ev, TextDelta):
            text += ev.text
        else:
            done = ev
    assert done is not None
    return text, done


def _req(h, max_tokens: int = 12, **kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    return GenerationRequest(model=h, prompt=PROMPT, params=SamplingParams(max_tokens=max_tokens, temperature=0, **kw))


def test_mixed_batch_matches_each_adapter_alone(
    tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    handles = [handle(tiny_base_model, tiny_hash)] + [
        handle(tiny_base_model, tiny_hash, a, key=f"m{i}") for i, a in enumerate(tiny_adapters)
    ]

    async def run() -> tuple[list[str], list[str]]:
        engine = PeftEngine(device="cpu", max_adapters=8)
        try:
            alone = [(await _answer(engine, _req(h)))[0] for h in handles]
            together = await asyncio.gather(*(_answer(engine, _req(h)) for h in handles))
            return alone, [t for t, _ in together]
        finally:
            await engine.close()

    alone, together = asyncio.run(run())
    assert together == alone  # greedy: each row decoded with its own adapter, whatever its batch mates
    assert len(set(alone)) == len(alone)  # the adapters really change the answers (random B matrices)


def test_streamed_text_is_the_final_text_and_counts(tiny_base_model: Path, tiny_hash: str) -> None:
    async def run() -> tuple[str, Finished]:
        engine = PeftEngine(device="cpu")
        try:
            return await _answer(engine, _req(handle(tiny_base_model, tiny_hash), max_tokens=7))
        finally:
            await engine.close()

    text, done = asyncio.run(run())
    assert text == done.text
    assert done.completion_tokens <= 7 and done.prompt_tokens == len(done.prompt_ids) > 0
    assert done.finish_reason in ("stop", "length")


def test_lru_evicts_least_recently_used(tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]) -> None:
    async def run() -> list[list[str]]:
        engine = PeftEngine(device="cpu", max_adapters=2)
        seen = []
        try:
            for i in (0, 1, 0, 2):
                await _answer(engine, _req(handle(tiny_base_model, tiny_hash, tiny_adapters[i], key=f"m{i}"), 2))
                seen.append(engine.loaded())
            return seen
        finally:
            await engine.close()

    seen = asyncio.run(run())
    assert seen[-1] == ["m0", "m2"]  # m1 was least recently used when m2 came


def test_too_long_prompt_is_refused_before_streaming(tiny_base_model: Path, tiny_hash: str) -> None:
    async def run() -> None:
        engine = PeftEngine(device="cpu")
        try:
            await _answer(engine, _req(handle(tiny_base_model, tiny_hash), max_tokens=100_000))
        finally:
            await engine.close()

    with pytest.raises(InputTooLongError, match="max_tokens"):
        asyncio.run(run())


def test_sampling_with_a_seed_repeats(tiny_base_model: Path, tiny_hash: str) -> None:
    h = handle(tiny_base_model, tiny_hash)
    req = GenerationRequest(model=h, prompt=PROMPT, params=SamplingParams(max_tokens=10, temperature=1.0, seed=7))

    async def run() -> list[str]:
        engine = PeftEngine(device="cpu")
        try:
            return [(await _answer(engine, req))[0] for _ in range(2)]
        finally:
            await engine.close()

    a, b = asyncio.run(run())
    assert a == b


def test_safe_prefix_holds_back_a_possible_stop() -> None:
    assert _safe_prefix("hello wor", ("world",)) == "hello "
    assert _safe_prefix("hello", ("xyz",)) == "hello"
    assert _safe_prefix("caf\ufffd", ()) == "caf"


def test_merged_weights_answer_as_the_lora_path_and_leave_the_base_untouched(
    tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    """A one-adapter pass runs on W + delta (a pointer swap to a merged copy) instead of the LoRA
    path: the same greedy answers as the unmerged path, the bare base's answers and weights the
    same before and after, and an evicted adapter's merged copy dropped."""
    import torch
    from transformers import AutoModelForCausalLM

    base = handle(tiny_base_model, tiny_hash)
    adapters = [handle(tiny_base_model, tiny_hash, a, key=f"m{i}") for i, a in enumerate(tiny_adapters)]
    order = [base, adapters[0], base, adapters[1], adapters[0], adapters[2], base]

    async def run(merge: bool) -> tuple[list[str], PeftEngine]:
        engine = PeftEngine(device="cpu", max_adapters=2, merge_uniform=merge)
        try:
            return [(await _answer(engine, _req(h, max_tokens=16)))[0] for h in order], engine
        finally:
            await engine.close()

    merged, engine = asyncio.run(run(True))
    unmerged, _ = asyncio.run(run(False))
    assert merged == unmerged
    assert merged[0] == merged[2] == merged[6] and merged[1] == merged[4]
    loaded = engine._bases[tiny_hash]
    assert loaded.merged is not None and loaded.merged[0] == "m2"  # m0 was evicted (max 2): its copy went too
    own = AutoModelForCausalLM.from_pretrained(tiny_base_model, dtype=torch.float32).state_dict()
    now = loaded.model.get_base_model().state_dict()
    assert loaded.swapped is None  # the last pass was the bare base's: the layers hold their own weights
    for name, tensor in own.items():
        wrapped = name.replace(".weight", ".base_layer.weight")  # a LoRA-wrapped layer's own weight
        assert torch.equal(now[wrapped if wrapped in now else name], tensor), name


def test_short_answers_keep_the_lora_path_and_long_ones_merge(
    tiny_base_model: Path, tiny_hash: str, tiny_adapters: list[Path]
) -> None:
    """Computing merged weights costs a few passes: not worth it for an answer of a few tokens."""
    from node.serve.peft_engine import MERGE_AFTER

    a = handle(tiny_base_model, tiny_hash, tiny_adapters[0], key="m0")

    async def run() -> tuple[object, object]:
        engine = PeftEngine(device="cpu")
        try:
            await _answer(engine, _req(a, max_tokens=MERGE_AFTER // 2))
            short = engine._bases[tiny_hash].merged
            await _answer(engine, _req(a, max_tokens=MERGE_AFTER * 2))
            return short, engine._bases[tiny_hash].merged
        finally:
            await engine.close()

    short, long = asyncio.run(run())
    assert short is None and long is not None and long[0] == "m0"  # type: ignore[index]
