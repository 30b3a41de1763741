"""Examples → token ids with a loss mask, through the base model's own chat template.

A chat example is rendered with the tokenizer's chat template (or `DEFAULT_CHAT_TEMPLATE` when
it has none) and cut into segments at each assistant turn: the text the template adds for an
assistant reply (the reply itself and its end-of-turn marker) is trainable, everything else
(system, user turns, role headers) is context. The cut uses prefix differences of the rendered
conversation (render turns ``[:i]`` with a generation prompt, then ``[:i+1]``), which works for
any template that renders a conversation's prefix as a prefix of the whole, as chat templates do.
Segments are tokenised separately and concatenated, as torchtune does, so a boundary never
splits a token across prompt and answer.

A text example is ``bos + text + eos``, all trainable. The first token of every example is never
a target: in a packed row the token before it belongs to another example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from node.data.records import Example, Message
from node.train.config import TrainConfigError

IGNORE = -100  # the label PyTorch's cross-entropy skips

# A plain template for tokenizers that ship none (documented in the model card of each adapter).
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{{ '\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Tokenized:
    """One example as ids and labels of the same length (`labels[t]` is the target *at* t)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trainable(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def chat_template(tokenizer: Any) -> str:
    return tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE


def render_prompt(tokenizer: Any, messages: Sequence[Message] | Sequence[dict[str, str]]) -> str:
    """The text a model continues to answer `messages` (used for chat after training)."""
    return _render(tokenizer, [_as_dict(m) for m in messages], add_generation_prompt=True)


def chat_segments(tokenizer: Any, messages: Sequence[Message]) -> list[tuple[str, bool]]:
    """(text, trainable) pieces of a rendered conversation; their concatenation is the whole."""
    msgs = [_as_dict(m) for m in messages]
    segments: list[tuple[str, bool]] = []
    cursor = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, msgs[:i], add_generation_prompt=True)
        full = _render(tokenizer, msgs[: i + 1], add_generation_prompt=False)
        if not full.startswith(prompt) or len(prompt) < cursor:
            raise TrainConfigError(
                "The tokenizer's chat template does not render a conversation's beginning as a prefix of the "
                "whole, so answer tokens cannot be told apart from the prompt. Set `train_on_prompt: true`, or "
                "give the base model a prefix-stable chat template."
            )
        segments += [(prompt[cursor:], False), (full[len(prompt) :], True)]
        cursor = len(full)
    whole = _render(tokenizer, msgs, add_generation_prompt=False)
    if whole[cursor:]:
        segments.append((whole[cursor:], False))
    return [(t, trainable) for t, trainable in segments if t]


def tokenize_example(tokenizer: Any, example: Example, train_on_prompt: bool = False) -> Tokenized:
    """Ids and labels of one example (not yet truncated)."""
    if example.kind == "text":
        ids = _ids(tokenizer, example.text)
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids = bos + ids + eos
        labels = list(ids)
    else:
        ids, labels = [], []
        for text, trainable in chat_segments(tokenizer, example.messages):
            piece = _ids(tokenizer, text)
            ids += piece
            labels += piece if (trainable or train_on_prompt) else [IGNORE] * len(piece)
    if labels:
        labels[0] = IGNORE  # nothing of this example precedes it
    return Tokenized(ids, labels)


def truncate(t: Tokenized, max_len: int) -> Tokenized:
    return t if len(t) <= max_len else Tokenized(t.input_ids[:max_len], t.labels[:max_len])


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _render(tokenizer: Any, msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            msgs, chat_template=chat_template(tokenizer), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception:
        if msgs:
            raise
        return ""  # templates that refuse an empty conversation: an answer-first chat has no prompt
    return str(text)


def _as_dict(m: Message | dict[str, str]) -> dict[str, str]:
    return {"role": m.role, "content": m.content} if isinstance(m, Message) else dict(m)
