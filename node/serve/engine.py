"""The one small interface every inference engine implements, and the values crossing it.

The API routes, chat page and benchmarks speak only this: a `ModelHandle` (a verified base-model
directory and, optionally, a verified adapter directory) and `SamplingParams` in, a stream of
`TextDelta` events ending in one `Finished` out. Two engines implement it: the embedded PEFT
engine (`node.serve.peft_engine`, the default, CPU or one GPU) and vLLM run as its own process
(`node.serve.vllm_engine`, continuous batching on GPUs).

Both render chat prompts with the same chat template as training (`node.train.formatting`), so
a model answers the conversation shape it was fine-tuned on, whichever engine serves it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from node.errors import NodeError


class EngineError(NodeError, RuntimeError):
    """The engine could not run a request (the message says why); reported to clients as a 503."""


class InputTooLongError(NodeError, ValueError):
    """The prompt plus the requested tokens do not fit the model's context; reported as a 400."""


def prompt_ids(tokenizer: Any, request: GenerationRequest, context: int) -> list[int]:
    """The request's prompt as the model's token ids, checked to fit its context with the answer
    (the same rule and message whichever engine runs it)."""
    ids = list(tokenizer(request.prompt, add_special_tokens=request.add_special_tokens)["input_ids"])
    if not ids:
        raise InputTooLongError("the prompt is empty after tokenisation; send some text")
    if len(ids) + request.params.max_tokens > context:
        raise InputTooLongError(
            f"this model's context is {context} tokens; the prompt has {len(ids)} and max_tokens asks for "
            f"{request.params.max_tokens} more: shorten the prompt or lower max_tokens"
        )
    return ids


class AdapterRefusedError(NodeError, ValueError):
    """An adapter from the registry failed a safety or compatibility check (the reason says which)."""


class ModelHandle(BaseModel):
    """What an engine needs to run one served model, every file already verified."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The served model id (what the client asked for).")
    base_dir: Path = Field(description="The base model's Hugging Face directory.")
    base_hash: str = Field(description="0x-weights hash of base_dir: bases are shared by this key.")
    adapter_key: str | None = Field(None, description="A unique adapter name (PEFT module key); None: the base.")
    adapter_dir: Path | None = Field(None, description="The verified PEFT adapter directory.")


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_tokens: int = Field(ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5


class GenerationRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: ModelHandle
    prompt: str = Field(description="The full prompt text (chat prompts already rendered with the template).")
    add_special_tokens: bool = Field(False, description="Let the tokenizer add BOS (plain completions).")
    params: SamplingParams


class TextDelta(BaseModel):
    text: str


class Finished(BaseModel):
    text: str = Field(description="The whole answer (stop sequence cut off).")
    finish_reason: str = Field(description="stop (end of turn or a stop sequence) or length.")
    prompt_tokens: int
    completion_tokens: int
    prompt_ids: list[int] = Field(default_factory=list, description="The prompt's token ids (for attribution).")
    completion_ids: list[int] = Field(default_factory=list, description="The answer's token ids.")


Event = TextDelta | Finished


class Engine(ABC):
    """Runs generation for many models that share bases. Implementations must be safe to call
    from many concurrent requests: each request says which adapter it uses (never a global
    "active adapter" that another request could switch underneath it)."""

    name: str

    @abstractmethod
    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """The answer as it is generated; the last event is a `Finished`. Closing the iterator
        early cancels the request. Raises `InputTooLongError`, `AdapterRefusedError` or
        `EngineError` before the first event when the request cannot run."""

    @abstractmethod
    async def tokenizer_of(self, model: ModelHandle) -> object:
        """The tokenizer the model's answers are tokenised with (attribution matches its ids)."""

    def loaded(self) -> list[str]:
        """Adapter keys in memory now, least recently used first."""
        return []

    async def close(self) -> None:  # noqa: B027 (optional)
        """Frees what the engine holds."""
