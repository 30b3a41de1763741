"""Check a data file before anything is uploaded or staked, and parse it into `Example`s.

Checks, in order (a failed step stops the later ones when they could only repeat it):
size limit (before reading) -> not empty -> UTF-8 (byte offset, line and column of the first bad
byte; a leading BOM is dropped with a warning) -> container and format -> per record: JSON,
schema (missing field, wrong type, blank text, empty conversation, no or misplaced assistant
turn), characters per record, duplicate of an earlier record (exact after `normalize_text`) ->
record count limits.

Containers: JSON Lines (one record per line; blank lines are skipped), a JSON array of records
(``.json`` files starting with ``[``, as alpaca and ShareGPT sets are usually shipped), or plain
text. A ``.txt`` file (and any input that does not start with ``[`` or ``{``) is split into
records at blank lines (lines holding only whitespace): each paragraph is one ``text`` example,
its inner line breaks kept, and its line is the paragraph's first line.

Every error names the file, the 1-based line (None for whole-file errors), the field (a JSON
path such as ``messages[1].content``; None for whole-record errors), what is wrong, and a hint
how to fix it. `load_file`/`load_bytes` raise `DataValidationError` carrying the report.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node import safe_json
from node.data.records import (
    KNOWN_KEYS,
    DataFormat,
    Example,
    SourceRecord,
    detect_format,
    json_type,
    to_example,
)
from node.errors import DataValidationError

TXT_SUFFIXES = frozenset({".txt", ".text", ".md"})
JSON_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})
_BOM = "\ufeff"


class Limits(BaseModel):
    """Per-file limits; a file over any of them fails validation."""

    max_file_bytes: int = Field(64 * 2**20, ge=1, description="Largest accepted file, in bytes (64 MiB).")
    max_records: int = Field(500_000, ge=1, description="Most records in one file.")
    min_records: int = Field(1, ge=0, description="Fewest records in one file.")
    max_record_chars: int = Field(
        50_000, ge=1, description="Most characters in one record (all turns together): ~12k tokens."
    )
    max_errors: int = Field(100, ge=1, description="Errors kept in a report; the rest are only counted.")


class Issue(BaseModel):
    """One problem: where it is, what is wrong, how to fix it."""

    file: str
    line: int | None = Field(None, description="1-based line; None for the whole file.")
    field: str | None = Field(None, description="JSON path of the field; None for the whole record.")
    message: str
    hint: str = ""

    def render(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        what = f"field '{self.field}' {self.message}" if self.field else self.message
        return f"{where}: {what}." + (f" Fix: {self.hint}" if self.hint else "")


class ValidationReport(BaseModel):
    """The outcome of validating one file; `ok` only when there are no errors."""

    file: str
    format: DataFormat | None = None
    byte_size: int = 0
    sha256: str = Field("", description="0x-hex sha256 of the file's bytes (the on-chain contentHash).")
    record_count: int = 0
    char_count: int = 0
    errors: list[Issue] = Field(default_factory=list, description="The first `Limits.max_errors` errors.")
    error_count: int = 0
    warnings: list[Issue] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def render(self, max_listed: int = 10) -> str:
        """A multi-line summary listing the first `max_listed` errors."""
        fmt = f" ({self.format})" if self.format else ""
        n, records = self.error_count, self.record_count
        head = f"{self.file}{fmt}: {n} error(s) in {records} record(s); nothing to stake"
        lines = [head, *("  " + e.render() for e in self.errors[:max_listed])]
        if self.error_count > max_listed:
            lines.append(f"  ... and {self.error_count - max_listed} more")
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        if not self.ok:
            raise DataValidationError(self)


class _Collector:
    """Accumulates a report's issues, keeping at most `max_errors`."""

    def __init__(self, report: ValidationReport, limits: Limits):
        self.report, self.limits = report, limits

    def error(self, line: int | None, field: str | None, message: str, hint: str = "") -> None:
        self.report.error_count += 1
        if len(self.report.errors) < self.limits.max_errors:
            self.report.errors.append(
                Issue(file=self.report.file, line=line, field=field, message=message, hint=hint)
            )

    def warn(self, line: int | None, field: str | None, message: str, hint: str = "") -> None:
        if len(self.report.warnings) < self.limits.max_errors:
            self.report.warnings.append(
                Issue(file=self.report.file, line=line, field=field, message=message, hint=hint)
            )


# --------------------------------------------------------------------------- public API


def validate_file(
    path: str | os.PathLike[str], fmt: DataFormat | str | None = None, limits: Limits | None = None
) -> ValidationReport:
    """Validate a file on disk (its size is checked before it is read)."""
    return _check_file(path, fmt, limits or Limits())[0]


def validate_bytes(
    data: bytes, name: str, fmt: DataFormat | str | None = None, limits: Limits | None = None
) -> ValidationReport:
    """Validate in-memory content; `name` is used in messages and its suffix for detection."""
    return _check(data, name, fmt, limits or Limits())[0]


def load_file(
    path: str | os.PathLike[str], fmt: DataFormat | str | None = None, limits: Limits | None = None
) -> list[SourceRecord]:
    """Parse a file into records; raises `DataValidationError` if it fails validation."""
    report, records = _check_file(path, fmt, limits or Limits())
    report.raise_for_errors()
    return records


def load_bytes(
    data: bytes, name: str, fmt: DataFormat | str | None = None, limits: Limits | None = None
) -> list[SourceRecord]:
    """Parse content (e.g. fetched by CID) into records; raises `DataValidationError` on failure."""
    report, records = _check(data, name, fmt, limits or Limits())
    report.raise_for_errors()
    return records


def canonical_bytes(records: Iterable[Example | SourceRecord]) -> bytes:
    """Canonical JSONL (one `Example.canonical_json` per line, each ending in a newline).

    Deterministic and re-loadable with `load_bytes` (detected as ``openai``/``text``); useful to
    store a normalised copy of a training set.
    """
    out = []
    for r in records:
        ex = r.example if isinstance(r, SourceRecord) else r
        out.append(ex.canonical_json() + "\n")
    return "".join(out).encode()


# --------------------------------------------------------------------------- steps


def _check_file(
    path: str | os.PathLike[str], fmt: DataFormat | str | None, limits: Limits
) -> tuple[ValidationReport, list[SourceRecord]]:
    p = Path(path)
    report = ValidationReport(file=str(path))
    out = _Collector(report, limits)
    try:
        size = p.stat().st_size
    except OSError as e:
        out.error(None, None, f"cannot be read: {e.strerror or e}", "Check the path and its permissions.")
        return report, []
    if size > limits.max_file_bytes:
        report.byte_size = size
        out.error(None, None, *_too_big(size, limits))
        return report, []
    return _check(p.read_bytes(), str(path), fmt, limits)


def _too_big(size: int, limits: Limits) -> tuple[str, str]:
    return (
        f"is {size:,} bytes, over the limit of {limits.max_file_bytes:,}",
        "Split it into several files and contribute each on its own.",
    )


def _check(
    data: bytes, name: str, fmt_in: DataFormat | str | None, limits: Limits
) -> tuple[ValidationReport, list[SourceRecord]]:
    report = ValidationReport(file=name, byte_size=len(data), sha256="0x" + hashlib.sha256(data).hexdigest())
    out = _Collector(report, limits)
    if len(data) > limits.max_file_bytes:
        out.error(None, None, *_too_big(len(data), limits))
        return report, []
    text = _decode(data, out)
    if text is None:
        return report, []
    if not text.strip():
        out.error(None, None, "is empty", "Add at least one record.")
        return report, []
    fmt = _resolve_format(text, name, fmt_in, out)
    if fmt is None:
        return report, []
    report.format = fmt
    raw = _txt_records(text) if fmt is DataFormat.TXT else _json_records(text)
    records = _examples(raw, fmt, out, limits)
    if report.record_count < limits.min_records:
        out.error(
            None,
            None,
            f"has {report.record_count} record(s), fewer than the minimum of {limits.min_records}",
            "Add records.",
        )
    return report, records if report.ok else []


def _decode(data: bytes, out: _Collector) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        out.error(
            line,
            None,
            f"is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"(line {line}, byte {col} of the line)",
            "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.jsonl > out.jsonl`).",
        )
        return None
    if text.startswith(_BOM):
        out.warn(1, None, "starts with a UTF-8 byte-order mark; it was ignored")
        text = text[1:]
    return text


def _resolve_format(
    text: str, name: str, fmt_in: DataFormat | str | None, out: _Collector
) -> DataFormat | None:
    """The explicit format if given, else by suffix (.txt/.text/.md) and the first record's keys."""
    if fmt_in is not None:
        try:
            return DataFormat(fmt_in)
        except ValueError:
            choices = ", ".join(f.value for f in DataFormat)
            out.error(None, None, f"format {fmt_in!r} is not supported", f"Use one of: {choices}.")
            return None
    suffix = Path(name).suffix.lower()
    if suffix in TXT_SUFFIXES or (suffix not in JSON_SUFFIXES and not text.lstrip().startswith(("{", "["))):
        return DataFormat.TXT
    first, line = _first_record(text)
    if isinstance(first, _BadJson):
        out.error(line, None, first.message, first.hint)
        return None
    fmt = detect_format(first)
    if fmt is None:
        keys = sorted(first) if isinstance(first, dict) else json_type(first)
        out.error(
            line,
            None,
            f"cannot tell the format from the first record (keys: {keys})",
            "Use alpaca (instruction/input/output), sharegpt (conversations), openai (messages) or "
            'text ({"text": ...}) records, or name the format explicitly.',
        )
    return fmt


def _first_record(text: str) -> tuple[Any, int]:
    for line, obj in _json_records(text):
        return obj, line
    return None, 1


def _txt_records(text: str) -> Iterator[tuple[int, Any]]:
    """Paragraphs separated by blank lines: (first line, text)."""
    para: list[str] = []
    start = 0
    for i, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.strip():
            if not para:
                start = i
            para.append(line)
        elif para:
            yield start, "\n".join(para)
            para = []
    if para:
        yield start, "\n".join(para)


class _BadJson:
    """A record that did not parse, kept in the stream so the error gets its line."""

    def __init__(self, message: str, array: bool = False, hint: str | None = None):
        self.message = message
        self.hint = hint or (
            "Fix the JSON syntax: the file must be one array of objects separated by commas."
            if array
            else "Write one complete JSON object per line."
        )


_DECODER = safe_json.DECODER  # refuses NaN/Infinity, duplicate keys and over-long numbers
_RECORD_DEPTH = safe_json.MAX_DEPTH
_FLATTEN = "Records are flat objects (alpaca, sharegpt, openai or text): remove the extra nesting."


def _too_deep(text: str, wrapper: int = 0) -> str | None:
    """An error if a record nests deeper than the limit (`wrapper`: levels around the records)."""
    depth = safe_json.too_deep(text, _RECORD_DEPTH + wrapper)
    if depth is None:
        return None
    return (f"nests {depth - wrapper:,} levels deep, over the limit of {_RECORD_DEPTH} (no training record nests "
            "that deep)")  # fmt: skip


def _json_records(text: str) -> Iterator[tuple[int, Any]]:
    """(line, parsed object or `_BadJson`) for JSON Lines or a top-level JSON array.

    The nesting depth is checked before the (recursive) decoder sees the text: a hostile
    file of 100,000 brackets would otherwise overflow the stack."""
    if text.lstrip().startswith("["):
        deep = _too_deep(text, wrapper=1)
        if deep:
            yield 1, _BadJson(deep, array=True, hint=_FLATTEN)
            return
        yield from _json_array(text)
        return
    for i, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        deep = _too_deep(raw)
        if deep:
            yield i, _BadJson(deep, hint=_FLATTEN)
            continue
        try:
            yield i, _DECODER.decode(raw)
        except json.JSONDecodeError as e:
            yield i, _BadJson(f"is not valid JSON: {e.msg} at column {e.colno}")
        except (ValueError, RecursionError) as e:
            yield i, _BadJson(f"is not valid JSON: {e}")


def _json_array(text: str) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array with the line each starts on; stops at the first syntax error."""
    pos, line, end = text.index("[") + 1, 1, len(text)
    counted = 0  # text[:counted] has been scanned for newlines

    def skip_ws(p: int) -> int:
        while p < end and text[p] in " \t\r\n":
            p += 1
        return p

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    pos = skip_ws(pos)
    if pos < end and text[pos] == "]":
        return
    while True:
        try:
            obj, nxt = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as e:  # its lineno counts from the start of the file
            yield e.lineno, _BadJson(f"is not valid JSON: {e.msg} at column {e.colno}", array=True)
            return
        except (ValueError, RecursionError) as e:  # NaN/Infinity, a duplicate key, an over-long number
            yield line_at(pos), _BadJson(f"is not valid JSON: {e}", array=True)
            return
        yield line_at(pos), obj
        pos = skip_ws(nxt)
        if pos < end and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < end and text[pos] == "]" and not text[pos + 1 :].strip():
            return
        yield (
            line_at(min(pos, end)),
            _BadJson("is not valid JSON: expected ',' or a final ']' after the record", True),
        )
        return


def _examples(
    raw: Iterable[tuple[int, Any]], fmt: DataFormat, out: _Collector, limits: Limits
) -> list[SourceRecord]:
    """Convert raw records, checking schema, size and within-file duplicates."""
    report = out.report
    records: list[SourceRecord] = []
    first_line_of: dict[bytes, int] = {}
    unknown_warned: set[str] = set()
    for line, obj in raw:
        report.record_count += 1
        if report.record_count > limits.max_records:
            out.error(
                line, None, f"is past the limit of {limits.max_records:,} records per file", "Split the file."
            )
            break
        if isinstance(obj, _BadJson):
            out.error(line, None, obj.message, obj.hint)
            continue
        if fmt is DataFormat.TXT:
            ex: Example | None = Example.of_text(obj)
        else:
            ex, problems = to_example(obj, fmt)
            for p in problems:
                out.error(line, p.field, p.message, p.hint)
            if isinstance(obj, dict):
                for key in sorted(set(obj) - KNOWN_KEYS[fmt] - unknown_warned):
                    unknown_warned.add(key)
                    out.warn(line, key, f"is not a {fmt} field and is ignored (reported once)")
        if ex is None:
            continue
        chars = ex.char_count()
        report.char_count += chars
        if chars > limits.max_record_chars:
            what = "paragraph" if fmt is DataFormat.TXT else "record"
            hint = "Separate records with a blank line." if fmt is DataFormat.TXT else "Shorten or split it."
            out.error(
                line,
                None,
                f"{what} has {chars:,} characters, over the limit of {limits.max_record_chars:,}",
                hint,
            )
            continue
        key = ex.dedup_key()
        if key in first_line_of:
            out.error(
                line,
                None,
                f"duplicates the record on line {first_line_of[key]} (same text up to case and spacing)",
                "Remove one of them.",
            )
            continue
        first_line_of[key] = line
        records.append(SourceRecord(line=line, example=ex))
    return records
