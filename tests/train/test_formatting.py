"""Chat rendering and answer-only labels, with the tiny model's tokenizer and the default template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from node.data.records import Example
from node.train.config import TrainConfigError
from node.train.formatting import DEFAULT_CHAT_TEMPLATE, IGNORE, chat_segments, render_prompt, tokenize_example

CHAT = Example.of_chat(
    [("system", "Answer briefly."), ("user", "Where is Kalo?"), ("assistant", "Kalo is in Mirsen."),
     ("user", "And Tavqui?"), ("assistant", "Tavqui is in Dorel.")]
)  # fmt: skip


@pytest.fixture(params=["model", "default"])
def tokenizer(request: pytest.FixtureRequest, tiny_base_model: Path):  # type: ignore[no-untyped-def]
    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    if request.param == "default":
        tok.chat_template = None
    return tok


def _learned_text(tok, example: Example) -> str:  # type: ignore[no-untyped-def]
    t = tokenize_example(tok, example)
    return tok.decode([i for i, label in zip(t.input_ids, t.labels, strict=True) if label != IGNORE])


def test_segments_cover_the_rendering_and_mark_only_answers(tokenizer) -> None:  # type: ignore[no-untyped-def]
    segments = chat_segments(tokenizer, CHAT.messages)
    whole = tokenizer.apply_chat_template(
        [m.model_dump() for m in CHAT.messages], chat_template=tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE,
        tokenize=False,
    )  # fmt: skip
    assert "".join(text for text, _ in segments) == whole
    learned = "".join(text for text, trainable in segments if trainable)
    assert "Kalo is in Mirsen." in learned and "Tavqui is in Dorel." in learned
    assert "Where is Kalo?" not in learned and "Answer briefly." not in learned


def test_labels_are_the_answers_and_their_end_of_turn(tokenizer) -> None:  # type: ignore[no-untyped-def]
    t = tokenize_example(tokenizer, CHAT)
    assert len(t.input_ids) == len(t.labels)
    learned = _learned_text(tokenizer, CHAT)
    assert "Kalo is in Mirsen." in learned and "Tavqui is in Dorel." in learned
    assert "Where is Kalo" not in learned
    answer_ids = [i for i, label in zip(t.input_ids, t.labels, strict=True) if label != IGNORE]
    assert tokenizer.eos_token_id in answer_ids or "<|" in tokenizer.decode(answer_ids)  # a stop marker is learned
    everything = tokenize_example(tokenizer, CHAT, train_on_prompt=True)
    assert everything.input_ids == t.input_ids
    assert everything.trainable == len(t) - 1 > t.trainable


def test_text_examples_learn_every_token_but_the_first(tokenizer) -> None:  # type: ignore[no-untyped-def]
    t = tokenize_example(tokenizer, Example.of_text("Glassberries grow in Kalo."))
    assert t.labels[0] == IGNORE and t.labels[1:] == t.input_ids[1:]
    assert "Glassberries grow in Kalo." in tokenizer.decode(t.input_ids)


def test_prompt_for_generation_ends_where_the_answer_starts(tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = render_prompt(tokenizer, CHAT.messages[:2])
    segments = chat_segments(tokenizer, CHAT.messages[:3])
    first_answer = next(k for k, (_, trainable) in enumerate(segments) if trainable)
    assert "".join(text for text, _ in segments[:first_answer]) == prompt
    assert segments[first_answer][0].startswith("Kalo is in Mirsen.")


def test_a_template_that_is_not_prefix_stable_is_refused(tiny_base_model: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    # Renders the turn count first: a conversation's beginning is not a prefix of the whole.
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TrainConfigError, match="prefix"):
        chat_segments(tok, CHAT.messages)
