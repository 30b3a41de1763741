"""One training-record schema for every accepted input format.

Every record becomes an `Example`, which is one of two kinds:

* ``chat``: a conversation, ``messages = [Message(role, content), ...]`` with roles
  ``system | user | assistant``. Alpaca, ShareGPT and OpenAI ``messages`` records all become
  this: alpaca gives an optional system turn (its ``system`` field, where present), one user
  turn ``instruction`` (or ``instruction + "\\n\\n" + input`` when ``input`` is not blank) and one
  assistant turn ``output``.
* ``text``: plain text for language modelling, ``text = "..."``, from ``{"text": ...}`` JSONL
  records and from paragraphs of ``.txt`` files.

The unused field stays empty (``text == ""`` for chat, ``messages == ()`` for text) and is left
out of the canonical JSON, so an example hashes the same whichever way it was built:

    {"kind":"chat","messages":[{"content":"Hi","role":"user"},{"content":"Hello!","role":"assistant"}]}
    {"kind":"text","text":"Once upon a time"}

(sorted keys, no spaces, UTF-8 without escapes). Its sha256 is the ``exampleHash`` of the
manifest's Merkle leaves. Turning a raw JSON object into an `Example` (`to_example`) collects
every problem with the JSON path of the field, what was expected, and how to fix it; the file
and line are added by `node.data.validate`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["system", "user", "assistant"]


class DataFormat(StrEnum):
    """Input formats a contributor may upload (the record schema; the container is detected)."""

    ALPACA = "alpaca"  # {"instruction", "input"?, "output", "system"?}
    SHAREGPT = "sharegpt"  # {"conversations": [{"from": human|gpt|system, "value"}], "system"?}
    OPENAI = "openai"  # {"messages": [{"role": system|user|assistant, "content"}]}
    TEXT = "text"  # {"text": ...} per JSON line
    TXT = "txt"  # plain text; records are separated by blank lines


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str


class Example(BaseModel):
    """One training example: a conversation (``kind="chat"``) or plain text (``kind="text"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["chat", "text"]
    messages: tuple[Message, ...] = Field(default=(), description="The turns (chat only).")
    text: str = Field(default="", description="The text (text only).")

    @model_validator(mode="after")
    def _one_shape(self) -> Example:
        if self.kind == "chat" and (not self.messages or self.text):
            raise ValueError("a chat example needs messages and no text")
        if self.kind == "text" and self.messages:
            raise ValueError("a text example has no messages; put the content in `text`")
        return self

    @classmethod
    def of_text(cls, text: str) -> Example:
        return cls(kind="text", text=text)

    @classmethod
    def of_chat(cls, turns: list[tuple[Role, str]]) -> Example:
        return cls(kind="chat", messages=tuple(Message(role=r, content=c) for r, c in turns))

    def contents(self) -> list[str]:
        """The strings a model is trained on, in order."""
        return [m.content for m in self.messages] if self.kind == "chat" else [self.text]

    def char_count(self) -> int:
        return sum(len(c) for c in self.contents())

    def jsonable(self) -> dict[str, Any]:
        if self.kind == "chat":
            return {
                "kind": "chat",
                "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            }
        return {"kind": "text", "text": self.text}

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, non-ASCII kept: the bytes that `sha256` hashes."""
        return json.dumps(self.jsonable(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def sha256(self) -> bytes:
        return hashlib.sha256(self.canonical_json().encode()).digest()

    def dedup_key(self) -> bytes:
        """Hash of the normalised example: equal for records differing only in case/spacing/width."""
        norm: list[Any] = [self.kind, [[m.role, normalize_text(m.content)] for m in self.messages]]
        if self.kind == "text":
            norm = [self.kind, normalize_text(self.text)]
        return hashlib.sha256(json.dumps(norm, ensure_ascii=False).encode()).digest()


class SourceRecord(BaseModel):
    """An example and the 1-based line of its file where the record begins."""

    model_config = ConfigDict(frozen=True)

    line: int = Field(ge=1)
    example: Example


_WS = re.compile(r"\s+")


def normalize_text(s: str) -> str:
    """Unicode NFKC, casefolded, whitespace runs collapsed to one space, trimmed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", s).casefold()).strip()


# --------------------------------------------------------------------------- raw -> Example


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field of a record (the JSON path, e.g. ``messages[2].content``)."""

    field: str | None
    message: str
    hint: str


KNOWN_KEYS: dict[DataFormat, frozenset[str]] = {
    DataFormat.ALPACA: frozenset({"instruction", "input", "output", "system"}),
    DataFormat.SHAREGPT: frozenset({"conversations", "system"}),
    DataFormat.OPENAI: frozenset({"messages", "kind"}),  # "kind": our own canonical JSONL reads back
    DataFormat.TEXT: frozenset({"text", "kind"}),
}

_SHAREGPT_ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def json_type(v: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), type(v).__name__)


def to_example(obj: Any, fmt: DataFormat) -> tuple[Example | None, list[Problem]]:
    """Convert one parsed JSON record; on any problem the example is None and all are listed."""
    if not isinstance(obj, dict):
        return None, [Problem(None, f"expected a JSON object, got {json_type(obj)}", _OBJECT_HINT[fmt])]
    problems: list[Problem] = []
    if fmt is DataFormat.ALPACA:
        turns = _alpaca(obj, problems)
    elif fmt is DataFormat.SHAREGPT:
        turns = _conversation(obj, "conversations", "from", "value", problems)
    elif fmt is DataFormat.OPENAI:
        turns = _conversation(obj, "messages", "role", "content", problems)
    elif fmt is DataFormat.TEXT:
        text = _string(obj, "text", "text", problems, hint='Write the record as {"text": "<your text>"}.')
        return (Example.of_text(text) if text is not None and not problems else None), problems
    else:
        raise ValueError(f"format {fmt!r} has no JSON records")
    if problems or turns is None:
        return None, problems
    return Example.of_chat(turns), problems


_OBJECT_HINT = {
    DataFormat.ALPACA: 'Write each record as {"instruction": "...", "input": "", "output": "..."}.',
    DataFormat.SHAREGPT: 'Write each record as {"conversations": [{"from": "human", "value": "..."}, ...]}.',
    DataFormat.OPENAI: 'Write each record as {"messages": [{"role": "user", "content": "..."}, ...]}.',
    DataFormat.TEXT: 'Write each record as {"text": "..."}.',
    DataFormat.TXT: "",
}


def _string(
    obj: dict[str, Any],
    key: str,
    path: str,
    problems: list[Problem],
    hint: str,
    required: bool = True,
    allow_blank: bool = False,
) -> str | None:
    """Read `obj[key]` as a string, recording a problem (at `path`) if absent, mistyped or blank."""
    if key not in obj:
        if required:
            problems.append(Problem(path, f"missing required field {key!r}", hint))
        return None
    v = obj[key]
    if not isinstance(v, str):
        got = f"expected a string, got {json_type(v)} ({_short(v)})"
        problems.append(Problem(path, got, f'Make it a JSON string: "{key}": "...".'))
        return None
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(
            Problem(path, "contains an unpaired UTF-16 surrogate escape (like \\ud800)", "Remove the escape.")
        )
        return None
    if not allow_blank and not v.strip():
        problems.append(
            Problem(path, "is empty (blank string)", f"Give {path} some text, or drop the record.")
        )
        return None
    return v


def _short(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 40 else s[:37] + "..."


def _alpaca(obj: dict[str, Any], problems: list[Problem]) -> list[tuple[Role, str]] | None:
    instruction = _string(obj, "instruction", "instruction", problems, 'Add "instruction": "<the task>".')
    inp = _string(obj, "input", "input", problems, 'Use "input": "" when there is none.', False, True)
    output = _string(obj, "output", "output", problems, 'Add "output": "<the answer>".')
    system = _string(obj, "system", "system", problems, 'Use "system": "<instructions>".', False, True)
    if instruction is None or output is None:
        return None
    user = f"{instruction}\n\n{inp}" if inp and inp.strip() else instruction
    turns: list[tuple[Role, str]] = [("system", system)] if system and system.strip() else []
    return [*turns, ("user", user), ("assistant", output)]


def _conversation(
    obj: dict[str, Any], key: str, role_key: str, text_key: str, problems: list[Problem]
) -> list[tuple[Role, str]] | None:
    """ShareGPT (`conversations`/`from`/`value`) and OpenAI (`messages`/`role`/`content`) turns."""
    sharegpt = key == "conversations"
    example_turn = '{"from": "human", "value": "..."}' if sharegpt else '{"role": "user", "content": "..."}'
    if key not in obj:
        problems.append(
            Problem(key, f"missing required field {key!r}", f'Add "{key}": [{example_turn}, ...].')
        )
        return None
    raw = obj[key]
    if not isinstance(raw, list):
        problems.append(
            Problem(key, f"expected an array of turns, got {json_type(raw)}", f"Use [{example_turn}].")
        )
        return None
    if not raw:
        problems.append(Problem(key, "is an empty conversation", "Add a user turn and an assistant turn."))
        return None
    turns: list[tuple[Role, str]] = []
    if sharegpt:
        system = _string(obj, "system", "system", problems, 'Use "system": "<instructions>".', False, True)
        if system and system.strip():
            turns.append(("system", system))
    allowed = _SHAREGPT_ROLES if sharegpt else {r: r for r in ("system", "user", "assistant")}
    for i, turn in enumerate(raw):
        path = f"{key}[{i}]"
        if not isinstance(turn, dict):
            problems.append(
                Problem(path, f"expected an object, got {json_type(turn)}", f"Use {example_turn}.")
            )
            continue
        role_raw = turn.get(role_key)
        if role_key not in turn or not isinstance(role_raw, str) or role_raw not in allowed:
            got = "missing" if role_key not in turn else f"got {_short(role_raw)}"
            problems.append(
                Problem(
                    f"{path}.{role_key}", f"must be one of {', '.join(allowed)} ({got})", _ROLE_HINT[sharegpt]
                )
            )
            continue
        content = _string(turn, text_key, f"{path}.{text_key}", problems, f'Use "{text_key}": "<the text>".')
        if content is not None:
            turns.append((allowed[role_raw], content))
    if problems:
        return None
    structure = _turn_order(turns, key, offset=len(turns) - len(raw))
    if structure:
        problems.append(structure)
        return None
    return turns


_ROLE_HINT = {
    True: 'Use "from": "human" for the user, "gpt" for the assistant, "system" for instructions.',
    False: 'Use "role": "user", "assistant" or "system" (tool and function turns are not supported).',
}


def _turn_order(turns: list[tuple[Role, str]], key: str, offset: int) -> Problem | None:
    """Optional system first, then user/assistant alternating, ending with the assistant.

    Chat templates of most base models reject anything else, so it is caught here, before a stake,
    rather than at training time. `offset` maps a turn back to its array index (an added
    top-level ShareGPT system turn has none).
    """

    def at(i: int) -> str:
        return f"{key}[{i - offset}]" if i >= offset else "system"

    start = 1 if turns and turns[0][0] == "system" else 0
    for i in range(start, len(turns)):
        role = turns[i][0]
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if role == "system":
            return Problem(at(i), "a system turn may only come first", "Move it to the start or drop it.")
        if role != expected:
            return Problem(
                at(i),
                f"expected {'a user' if expected == 'user' else 'an assistant'} turn here, got {role} "
                "(turns must alternate, starting with user)",
                f"Merge consecutive {role} turns or add the missing {expected} turn.",
            )
    if not any(r == "assistant" for r, _ in turns):
        return Problem(key, "has no assistant turn: nothing to learn", "Add the assistant's answer.")
    if turns[-1][0] != "assistant":
        return Problem(
            at(len(turns) - 1),
            "the conversation ends with a user turn",
            "End it with the assistant's answer.",
        )
    return None


def detect_format(first: Any) -> DataFormat | None:
    """The format a first JSON record is written in, by its keys; None if it is none of ours."""
    if not isinstance(first, dict):
        return None
    if "conversations" in first:
        return DataFormat.SHAREGPT
    if "messages" in first:
        return DataFormat.OPENAI
    if "instruction" in first or "output" in first:
        return DataFormat.ALPACA
    if "text" in first:
        return DataFormat.TEXT
    return None
