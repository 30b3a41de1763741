"""The OpenAI wire format this server speaks: requests it accepts and what it answers.

Requests forbid unknown fields, so a parameter this server does not implement gets a 400 naming
it (`errors.install`) instead of being silently ignored. Parameters that clients often send at
their neutral value (``n: 1``, ``presence_penalty: 0``, ``logprobs: false``) are accepted at that
value and refused at any other, again naming the parameter.

Responses add one field the SDK ignores: ``attribution``, the spans of the answer that match the
model's training data and whom they credit (`node.attribution.spans`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from node.serve.errors import bad_request


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ContentPart(BaseModel):
    """A text part of a message (these models read text only)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: accepted and ignored

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self, index: int) -> str:
        """The message's text; parts other than text are refused (this server serves text models)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


StopText = Annotated[str, Field(min_length=1)]


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]


class _Sampling(BaseModel):
    """Parameters chat and completions share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="A model id from GET /v1/models.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 is greedy decoding; default 1.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass; default 1.")
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = Field(
        None, description="Up to 4 sequences where the answer stops."
    )
    seed: int | None = Field(None, description="Seeds the sampler: the same seed and inputs give the same answer.")
    n: Literal[1] | None = Field(None, description="Only 1 is supported.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Accepted and ignored.")
    presence_penalty: float | None = Field(None, ge=0, le=0, description="Only 0 is supported.")
    frequency_penalty: float | None = Field(None, ge=0, le=0, description="Only 0 is supported.")

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def check_supported(self) -> None:
        """400 for what the schema cannot say: parameters that only fit together."""
        if self.stream_options is not None and not self.stream:
            raise bad_request("stream_options is only allowed when stream is true", param="stream_options")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate (deprecated by OpenAI).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    logprobs: Literal[False] | None = Field(None, description="Only false is supported.")
    top_logprobs: None = Field(None, description="Not supported.")
    response_format: TextFormat | None = Field(None, description="Only {'type': 'text'} is supported.")
    tools: Annotated[list[dict[str, Any]], Field(max_length=0)] | None = Field(
        None, description="Not supported: these models were not trained for tool calls."
    )
    tool_choice: Literal["none"] | None = Field(None, description="Only 'none' is supported.")
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = Field(None, description="Accepted and ignored.")
    store: bool | None = Field(None, description="Accepted and ignored (see the retention rule in the docs).")

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="The text to continue (one prompt)."
    )
    max_tokens: int | None = Field(16, ge=1, description="Most tokens to generate; default 16, as OpenAI's.")
    echo: Literal[False] | None = Field(None, description="Only false is supported.")
    logprobs: None = Field(None, description="Not supported.")
    suffix: None = Field(None, description="Not supported.")
    best_of: Literal[1] | None = Field(None, description="Only 1 is supported.")
    logit_bias: Annotated[dict[str, float], Field(max_length=0)] | None = Field(None, description="Not supported.")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SpanCredit(BaseModel):
    """One span of an answer that matches a training example, and whom it credits."""

    span: str = Field(description="The answer's text that matches training data.")
    start: int = Field(description="Character offset of the span in the answer.")
    end: int
    contributor: str = Field(description="The contributor's address.")
    contribution_id: int
    example_index: int = Field(description="The example's index in the model's training manifest.")


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None
    attribution: list[SpanCredit] = Field(default_factory=list)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    attribution: list[SpanCredit] | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    attribution: list[SpanCredit] | None = None


class ModelCard(BaseModel):
    """One entry of GET /v1/models; `parent` and `root` as vLLM reports them for adapters."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str = Field(description="The base model's id (the model itself for a base model).")
    parent: str | None = Field(None, description="The base model an adapter runs on; null for a base model.")
    status: Literal["base", "finalized", "pending"] = Field(description="Registry standing (pending: challengeable).")
    model_id: int | None = Field(None, description="On-chain ModelRegistry id of an adapter.")
    aliases: list[str] = Field(default_factory=list)
    datanet_ids: list[int] = Field(default_factory=list)
    commercial_use: bool = Field(True, description="False when a training Datanet's licence forbids paid use.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
