"""Sample answers on a model's page: a few prompts, each answered greedily by the model and by its
base model, so a visitor sees what the training changed beside the eval loss.

The prompts are the job's own eval questions when this node holds the job's data (the poster's
revealed eval set, else the trainer's held-out split: `node.daemon.query_set`, what attribution
scored against), else three generic ones. Answers come from `node.serve.app.answer_whole`, the
chat path (files, chat template, engine) without the API's metering, log or attribution.
Generating takes seconds to minutes on a CPU, so it runs only when asked (the page's button) and
the result is kept per model and adapter in ``<data_dir>/web/samples/`` (written atomically).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from node.data.records import Example
from node.data.records import Message as ChatTurn
from node.serve.app import Services, answer_whole
from node.serve.catalog import ServedModel
from node.serve.engine import SamplingParams

log = logging.getLogger(__name__)

COUNT = 3  # prompts per model
MAX_TOKENS = 48  # per answer: enough to see a difference, short enough for a CPU
PROMPT_WORDS = 12  # a text example's opening words, as the prompt to continue
GENERIC = ["What is a Datanet?", "Name a river and the town beside it.", "Describe a mill in one sentence."]
GREEDY = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)

Source = Literal["eval set", "held-out split", "generic"]


class SampleAnswer(BaseModel):
    prompt: str = Field(description="The user's turn (the last one, for a multi-turn example).")
    model: str = Field(description="The fine-tuned model's greedy answer.")
    base: str = Field(description="The base model's greedy answer to the same turns.")


class Samples(BaseModel):
    """What the page shows and the cache file holds."""

    format: Literal["datanet-samples-v1"] = "datanet-samples-v1"
    model: str
    base: str
    adapter_sha256: str | None
    source: Source
    max_tokens: int
    made_at: float
    seconds: float
    answers: list[SampleAnswer]


_locks: dict[str, asyncio.Lock] = {}  # one generation per model at a time (a second click waits, then reads it)


def cache_path(s: Services, model: ServedModel) -> Path | None:
    if s.node is None:
        return None
    tag = (model.adapter_sha256 or "0x")[2:14] or "base"
    return s.node.data_dir / "web" / "samples" / f"{model.id}-{tag}.json"


def cached(s: Services, model: ServedModel) -> Samples | None:
    path = cache_path(s, model)
    if path is None:
        return None
    try:
        return Samples.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as e:
        log.warning("sample answers %s unreadable (%s); they will be made again", path, e)
        return None


async def samples(s: Services, model: ServedModel) -> Samples:
    """The cached samples of `model`, made (and cached) first if there are none."""
    lock = _locks.setdefault(model.id, asyncio.Lock())
    async with lock:
        found = cached(s, model)
        if found is not None:
            return found
        made = await _make(s, model)
        _save(s, model, made)
        return made


async def _make(s: Services, model: ServedModel) -> Samples:
    base = s.catalog.get(model.base_id)
    if base is None:
        raise LookupError(f"{model.id}: its base model {model.base_id} is not served here")
    chats, source = await asyncio.to_thread(prompts_for, s, model)
    t0 = time.perf_counter()
    answers = []
    for turns in chats:
        tuned = await answer_whole(s, model, turns, GREEDY)
        plain = await answer_whole(s, base, turns, GREEDY)
        answers.append(SampleAnswer(prompt=turns[-1].content, model=tuned.text, base=plain.text))
    return Samples(
        model=model.id, base=base.id, adapter_sha256=model.adapter_sha256, source=source, max_tokens=MAX_TOKENS,
        made_at=time.time(), seconds=round(time.perf_counter() - t0, 2), answers=answers,
    )  # fmt: skip


def _save(s: Services, model: ServedModel, made: Samples) -> None:
    path = cache_path(s, model)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(made.model_dump_json(indent=1))
    os.replace(tmp, path)


# -- the prompts ----------------------------------------------------------------------------------


def prompts_for(s: Services, model: ServedModel) -> tuple[list[list[ChatTurn]], Source]:
    """Up to `COUNT` conversations to answer: the job's eval questions if this node has them."""
    try:
        found = _job_questions(s, model)
    except (OSError, ValueError, KeyError) as e:  # the job's files are advice here: fall back
        log.info("%s: no eval questions from its job data (%s); generic prompts", model.id, e)
        found = None
    if found:
        return found
    return [[ChatTurn(role="user", content=q)] for q in GENERIC], "generic"


def _job_questions(s: Services, model: ServedModel) -> tuple[list[list[ChatTurn]], Source] | None:
    from node.daemon.query_set import query_set
    from node.daemon.steps import jobs_root
    from node.data.manifest import Manifest

    if s.node is None or model.job_id is None:
        return None
    root = jobs_root(s.node, s.protocol.deployment) if s.protocol is not None else s.node.jobs_path
    work = root / f"job-{model.job_id}"
    data = work / "data"
    if not (data / "manifest.json").is_file():
        return None
    manifest = Manifest.from_json((data / "manifest.json").read_bytes())
    examples = [Example.model_validate_json(x) for x in (data / "examples.jsonl").read_text().splitlines()]
    split = work / "train" / "adapter" / "split.json"
    if not split.is_file() and model.adapter_cid:
        split = s.catalog.adapters_dir / model.adapter_cid / "split.json"
    held = json.loads(split.read_text())["eval"] if split.is_file() else []
    found = query_set(data, manifest, examples, held)
    if found is None:
        return None
    chats = [c for c in (as_prompt(q.example) for q in found.queries) if c][:COUNT]
    return (chats, "eval set" if found.info.source != "held-out" else "held-out split") if chats else None


def as_prompt(example: Example) -> list[ChatTurn] | None:
    """The example's turns up to its last answer (a chat), or its opening words (a text)."""
    if example.kind == "text":
        words = example.text.split()
        return [ChatTurn(role="user", content=" ".join(words[:PROMPT_WORDS]))] if words else None
    turns = list(example.messages)
    while turns and turns[-1].role == "assistant":
        turns.pop()
    return turns if turns and turns[-1].role == "user" else None
