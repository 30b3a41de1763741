"""JSON written by someone else, parsed within limits.

A node parses other people's JSON all the time: contributions, job configs, eval sets, manifests,
grants, attribution documents, snapshot metadata and metrics fetched by CID. The standard
decoders recurse once per nesting level (CPython's C scanner, pydantic's jiter), so a file of
100,000 nested brackets ends in a RecursionError or, where a library has raised the recursion
limit, a segfault; they also accept duplicate keys (the last wins, so two readers of one document
can disagree), NaN and Infinity, and numbers of any length. Everything here checks the size and
the nesting depth *before* any recursive parser sees the text (a linear, non-recursive scan),
then parses with a decoder that refuses duplicate keys, non-finite constants and over-long
numbers, and raises one `UntrustedJsonError` that names the source and the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from node.errors import NodeError

MAX_DEPTH = 64
"""Nesting levels of arrays and objects. Our own documents nest at most 6 deep, a ShareGPT record 4."""
MAX_BYTES = 64 << 20
"""Default size cap (64 MiB): an attribution document of a 100,000-example job is ~30 MB."""
SMALL_BYTES = 1 << 20
"""For documents that are small by nature (a job config, a grant, metrics, snapshot metadata)."""
MAX_NUMBER_CHARS = 100
"""A uint256 has 78 decimal digits; nothing we read needs more."""

M = TypeVar("M", bound=BaseModel)


class UntrustedJsonError(NodeError, ValueError):
    """Outside JSON was refused before or while parsing: too big, too deep, or not plain JSON."""


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """Deepest nesting of `[`/`{` outside strings, by a linear scan (no recursion, no parse).

    Unbalanced input gives some depth too; the parser then reports the syntax error."""
    if text.count("[") + text.count("{") <= 1:
        return min(1, text.count("[") + text.count("{"))
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r} (readers would disagree on which value counts)")
        out[k] = v
    return out


def _number(kind: type) -> Any:
    def parse(s: str) -> Any:
        if len(s) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(s):,} characters (limit {MAX_NUMBER_CHARS})")
        return kind(s)

    return parse


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_int=_number(int),
    parse_float=_number(float),
    parse_constant=_no_constant,
)
"""The strict decoder: use it only on text that passed `check_text` (it recurses per level)."""


def as_text(data: bytes | str, source: str, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of `data` if it is within `max_bytes`."""
    size = len(data)
    if size > max_bytes:
        raise UntrustedJsonError(
            f"{source}: {size:,} bytes, over the {max_bytes:,}-byte limit for this kind of document; "
            "it is not what it claims to be, or it must be split"
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UntrustedJsonError(
            f"{source}: not UTF-8 (byte {e.start}: {data[e.start : e.start + 1]!r}); JSON must be UTF-8 text"
        ) from None


def too_deep(text: str, max_depth: int = MAX_DEPTH) -> int | None:
    """`text`'s nesting depth if it is over `max_depth`, else None. Text with at most `max_depth`
    opening brackets cannot be deeper, so the common case costs two counts, no scan."""
    if text.count("[") + text.count("{") <= max_depth:
        return None
    depth = nesting_depth(text)
    return depth if depth > max_depth else None


def check_text(text: str, source: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise unless `text` nests at most `max_depth` levels."""
    depth = too_deep(text, max_depth)
    if depth is not None:
        raise UntrustedJsonError(
            f"{source}: JSON nested {depth:,} levels deep, over the limit of {max_depth}; "
            "no document of this protocol nests that deep"
        )


def loads(data: bytes | str, source: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse outside JSON within the limits; `source` names it in every error (a path or a CID)."""
    text = as_text(data, source, max_bytes)
    check_text(text, source, max_depth)
    try:
        return DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise UntrustedJsonError(f"{source}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise UntrustedJsonError(f"{source}: not valid JSON: {e}") from None


def load_model(
    model: type[M], data: bytes | str, source: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH
) -> M:
    """`model` validated from outside JSON: the limits and strict parse of `loads`, then pydantic's
    own JSON mode (its types, e.g. bytes and dates, are read as JSON), its errors named by `source`."""
    loads(data, source, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return model.model_validate_json(data)
    except ValidationError as e:
        raise UntrustedJsonError(f"{source}: not a valid {model.__name__}: {_first_errors(e)}") from None


def _first_errors(e: ValidationError, n: int = 3) -> str:
    parts = []
    for err in e.errors()[:n]:
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{where}: {err['msg']}")
    more = e.error_count() - n
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


__all__ = [
    "DECODER", "MAX_BYTES", "MAX_DEPTH", "SMALL_BYTES", "UntrustedJsonError", "as_text", "check_text", "load_model",
    "loads", "nesting_depth", "too_deep",
]  # fmt: skip
