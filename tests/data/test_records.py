"""Every accepted format parses into the one `Example` schema; canonical JSON and hashes."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from node.data.records import DataFormat, Example, Message, normalize_text, to_example
from node.data.validate import canonical_bytes, load_bytes


def _one(data: bytes, name: str, fmt: str | None = None) -> Example:
    [rec] = load_bytes(data, name, fmt)
    return rec.example


def _jsonl(*objs: object) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode()


def test_alpaca_with_and_without_input_and_system() -> None:
    recs = load_bytes(
        _jsonl(
            {"instruction": "Name the capital.", "input": "", "output": "Kalomir."},
            {"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "Be brief."},
        ),
        "a.jsonl",
    )
    assert [r.line for r in recs] == [1, 2]
    assert recs[0].example == Example.of_chat([("user", "Name the capital."), ("assistant", "Kalomir.")])
    assert recs[1].example == Example.of_chat(
        [("system", "Be brief."), ("user", "Translate\n\nbonjour"), ("assistant", "hello")]
    )


def test_sharegpt_maps_roles_and_top_level_system() -> None:
    ex = _one(
        _jsonl(
            {
                "system": "You are a guide.",
                "conversations": [
                    {"from": "human", "value": "Where is Senmir?"},
                    {"from": "gpt", "value": "On the east coast."},
                    {"from": "human", "value": "And Doreltav?"},
                    {"from": "gpt", "value": "Inland."},
                ],
            }
        ),
        "s.jsonl",
    )
    assert [m.role for m in ex.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert ex.messages[-1].content == "Inland."


def test_openai_messages() -> None:
    ex = _one(
        _jsonl(
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "U"},
                    {"role": "assistant", "content": "A"},
                ]
            }
        ),
        "o.jsonl",
    )
    assert ex == Example.of_chat([("system", "S"), ("user", "U"), ("assistant", "A")])


def test_text_jsonl_and_txt() -> None:
    assert _one(_jsonl({"text": "Once upon a time."}), "t.jsonl") == Example.of_text("Once upon a time.")
    recs = load_bytes(b"First para\nstill first.\n\n\nSecond.\n", "notes.txt")
    assert [(r.line, r.example.text) for r in recs] == [(1, "First para\nstill first."), (5, "Second.")]


def test_json_array_container_reports_element_lines() -> None:
    data = b'[\n  {"text": "a"},\n\n  {"text":\n    "b"}\n]\n'
    recs = load_bytes(data, "set.json")
    assert [(r.line, r.example.text) for r in recs] == [(2, "a"), (4, "b")]


@pytest.mark.parametrize(
    "content",
    [
        "Привет, мир",
        "日本語のテキスト",
        "مرحبا بالعالم",
        "emoji 🦦🌊 and ZWJ 👩‍🔬",
        "e\u0301 combining",
        "tab\tand\nnewline",
    ],
)
def test_unicode_round_trips_unchanged(content: str) -> None:
    ex = _one(_jsonl({"instruction": content, "input": "", "output": content}), "u.jsonl")
    assert ex.messages[0].content == content and ex.messages[1].content == content
    canonical = ex.canonical_json()
    assert json.loads(canonical)["messages"][0]["content"] == content
    assert "\\u" not in canonical  # non-ASCII is written as UTF-8, not \u-escaped


def test_format_override_beats_detection() -> None:
    data = _jsonl({"text": "a json line"})
    assert _one(data, "x.jsonl", "txt").text == data.decode().strip()
    assert _one(b"plain words\n", "no-suffix").kind == "text"  # sniffed as txt


def test_canonical_json_shape_and_pinned_hash() -> None:
    chat = Example.of_chat([("user", "Hi"), ("assistant", "Hello!")])
    assert chat.canonical_json() == (
        '{"kind":"chat","messages":[{"content":"Hi","role":"user"},{"content":"Hello!","role":"assistant"}]}'
    )
    assert Example.of_text("café").canonical_json() == '{"kind":"text","text":"café"}'
    assert chat.sha256() == hashlib.sha256(chat.canonical_json().encode()).digest()
    assert chat.sha256().hex() == "2eafecf833857930cea5d856502e7a945e5a0dc56174ae5b5bd324c0b10248a4"


def test_example_shape_is_enforced() -> None:
    with pytest.raises(ValidationError):
        Example(kind="chat")
    with pytest.raises(ValidationError):
        Example(kind="text", text="x", messages=(Message(role="user", content="x"),))
    with pytest.raises(ValidationError):
        Message(role="tool", content="x")  # type: ignore[arg-type]


def test_normalize_text() -> None:
    assert (
        normalize_text("  \uff28\uff25\uff2c\uff2c\uff2f\t\nWorld  ") == "hello world"
    )  # NFKC full width, casefold, spaces
    assert normalize_text("Straße") == normalize_text("STRASSE")
    a = Example.of_text("Hello   World")
    assert a.dedup_key() == Example.of_text("hello world").dedup_key()
    assert a.dedup_key() != Example.of_chat([("user", "hello"), ("assistant", "world")]).dedup_key()


def test_to_example_rejects_non_objects_with_format_hint() -> None:
    ex, problems = to_example([1, 2], DataFormat.OPENAI)
    assert ex is None and "JSON object" in problems[0].message and '"messages"' in problems[0].hint


_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            _text.map(Example.of_text),
            st.lists(st.tuples(_text, _text), min_size=1, max_size=3).map(
                lambda pairs: Example.of_chat([t for u, a in pairs for t in (("user", u), ("assistant", a))])
            ),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda e: e.dedup_key(),
    )
)
def test_canonical_bytes_reload_to_the_same_examples(examples: list[Example]) -> None:
    data = canonical_bytes(examples)
    assert canonical_bytes(examples) == data
    kinds = {e.kind for e in examples}
    if len(kinds) == 1:  # a file holds one format; mixed sets are written as two files
        assert [r.example for r in load_bytes(data, "c.jsonl")] == examples
