"""Every validation failure names the file, the line and the field, and says how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.records import DataFormat
from node.data.validate import Issue, Limits, ValidationReport, load_bytes, load_file, validate_bytes, validate_file
from node.errors import DataValidationError, NodeError

GOOD = {"instruction": "What do farmers grow in Kalo?", "input": "", "output": "Glassberries."}


def _write(tmp_path: Path, name: str, lines: list[object] | bytes) -> Path:
    p = tmp_path / name
    if isinstance(lines, bytes):
        p.write_bytes(lines)
    else:
        p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8")
    return p


def _only_error(report: ValidationReport) -> Issue:
    assert not report.ok
    assert report.error_count == len(report.errors) == 1, [e.render() for e in report.errors]
    return report.errors[0]


def test_valid_file_reports_size_hash_and_counts(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.jsonl", [GOOD, {**GOOD, "output": "Salt-oats."}])
    r = validate_file(p)
    assert r.ok and r.errors == [] and r.format is DataFormat.ALPACA
    assert r.record_count == 2 and r.byte_size == p.stat().st_size
    import hashlib

    assert r.sha256 == "0x" + hashlib.sha256(p.read_bytes()).hexdigest()
    assert [rec.line for rec in load_file(p)] == [1, 2]


def test_bad_utf8_names_line_and_byte_offset(tmp_path: Path) -> None:
    data = json.dumps(GOOD).encode() + b"\n" + b'{"text": "caf\xe9"}\n'
    e = _only_error(validate_file(_write(tmp_path, "latin1.jsonl", data)))
    assert e.file.endswith("latin1.jsonl") and e.line == 2
    offset = data.index(b"\xe9")
    assert f"offset {offset}" in e.message and "0xe9" in e.message and "UTF-8" in e.hint


def test_bad_json_names_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.jsonl", [GOOD, '{"instruction": "x", "output": "y"', {**GOOD, "output": "z"}])
    e = _only_error(validate_file(p))
    assert (e.line, e.field) == (2, None) and "not valid JSON" in e.message and e.hint


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({"instruction": "x"}, "output", "missing required field"),
        ({"instruction": "x", "output": 5}, "output", "expected a string, got number"),
        ({"instruction": ["x"], "output": "y"}, "instruction", "got array"),
        ({"instruction": "x", "input": None, "output": "y"}, "input", "got null"),
        ({"instruction": "   ", "output": "y"}, "instruction", "empty"),
    ],
)
def test_alpaca_schema_errors_name_the_field(
    tmp_path: Path, record: dict[str, object], field: str, words: str
) -> None:
    e = _only_error(validate_file(_write(tmp_path, "a.jsonl", [GOOD, record])))
    assert e.file.endswith("a.jsonl") and e.line == 2 and e.field == field
    assert words in e.message and e.hint


TURN = {"role": "user", "content": "Where is Senmir?"}
ANSWER = {"role": "assistant", "content": "East."}


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({"messages": []}, "messages", "empty conversation"),
        ({"messages": "hi"}, "messages", "expected an array"),
        ({"msgs": [TURN, ANSWER]}, "messages", "missing required field"),
        ({"messages": [TURN]}, "messages", "no assistant turn"),
        ({"messages": [TURN, ANSWER, TURN]}, "messages[2]", "ends with a user turn"),
        ({"messages": [TURN, TURN, ANSWER]}, "messages[1]", "expected an assistant turn"),
        ({"messages": [ANSWER, TURN]}, "messages[0]", "expected a user turn"),
        ({"messages": [TURN, ANSWER, {"role": "system", "content": "s"}]}, "messages[2]", "only come first"),
        ({"messages": [TURN, {"role": "assistant", "content": ""}]}, "messages[1].content", "empty"),
        ({"messages": [TURN, {"role": "tool", "content": "x"}]}, "messages[1].role", "must be one of"),
        (
            {"messages": [TURN, {"role": "assistant", "content": {"a": 1}}]},
            "messages[1].content",
            "got object",
        ),
        ({"messages": [TURN, 7]}, "messages[1]", "expected an object"),
    ],
)
def test_conversation_errors_name_the_turn(
    tmp_path: Path, record: dict[str, object], field: str, words: str
) -> None:
    good = {"messages": [TURN, ANSWER]}
    e = _only_error(validate_file(_write(tmp_path, "chat.jsonl", [good, record]), "openai"))
    assert (e.line, e.field) == (2, field) and words in e.message and e.hint


def test_sharegpt_errors_use_sharegpt_paths(tmp_path: Path) -> None:
    good = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    bad = {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}
    e = _only_error(validate_file(_write(tmp_path, "s.jsonl", [good, bad])))
    assert (e.line, e.field) == (2, "conversations[1].from") and '"gpt"' in e.hint


def test_json_array_errors_point_at_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "set.json", b'[\n {"text": "a"},\n {"text": 1},\n {"text": "c"\n]\n')
    r = validate_file(p)
    assert [(e.line, e.field) for e in r.errors] == [(3, "text"), (5, None)]
    assert "not valid JSON" in r.errors[1].message


def test_duplicates_within_a_file_name_the_first_copy(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "a.jsonl", [GOOD, {**GOOD, "output": "Other."}, {**GOOD, "output": "  GLASSBERRIES. "}]
    )
    e = _only_error(validate_file(p))
    assert e.line == 3 and "line 1" in e.message and e.field is None


def test_limits(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.jsonl", [GOOD, {**GOOD, "output": "x" * 200}, {**GOOD, "output": "Fine."}])
    size = p.stat().st_size
    e = _only_error(validate_file(p, limits=Limits(max_file_bytes=size - 1)))
    assert e.line is None and f"{size:,} bytes" in e.message and "Split" in e.hint
    e = _only_error(validate_file(p, limits=Limits(max_record_chars=100)))
    assert e.line == 2 and "characters" in e.message
    e = _only_error(validate_file(p, limits=Limits(max_records=2)))
    assert e.line == 3 and "limit of 2 records" in e.message
    e = _only_error(validate_file(p, limits=Limits(min_records=4)))
    assert e.line is None and "fewer than the minimum of 4" in e.message


def test_empty_and_unreadable_and_undetectable(tmp_path: Path) -> None:
    assert "empty" in _only_error(validate_file(_write(tmp_path, "e.jsonl", b" \n\n"))).message
    assert "cannot be read" in _only_error(validate_file(tmp_path / "missing.jsonl")).message
    e = _only_error(validate_file(_write(tmp_path, "x.jsonl", [{"prompt": "a", "completion": "b"}])))
    assert e.line == 1 and "cannot tell the format" in e.message and "prompt" in e.message
    e = _only_error(validate_file(_write(tmp_path, "x.jsonl", [GOOD]), "csv"))
    assert "not supported" in e.message and "alpaca" in e.hint


def test_txt_split_at_blank_lines(tmp_path: Path) -> None:
    data = b"  indented first\r\nsecond line\r\n \t \r\nnext para\n\n\n\nlast\n"
    recs = load_file(_write(tmp_path, "notes.txt", data))
    assert [(r.line, r.example.text) for r in recs] == [
        (1, "  indented first\nsecond line"),
        (4, "next para"),
        (8, "last"),
    ]


def test_txt_paragraph_over_limit_hints_at_blank_lines(tmp_path: Path) -> None:
    e = _only_error(
        validate_file(_write(tmp_path, "book.txt", b"word " * 50), limits=Limits(max_record_chars=100))
    )
    assert e.line == 1 and "paragraph" in e.message and "blank line" in e.hint


def test_bom_is_dropped_with_a_warning_and_surrogates_rejected() -> None:
    r = validate_bytes(b'\xef\xbb\xbf{"text": "ok"}\n{"text": "\\ud800"}\n', "b.jsonl")
    assert r.warnings and "byte-order mark" in r.warnings[0].message
    e = _only_error(r)
    assert (e.line, e.field) == (2, "text") and "surrogate" in e.message


def test_unknown_fields_warn_once() -> None:
    data = "".join(json.dumps({**GOOD, "output": f"o{i}", "source": "web"}) + "\n" for i in range(3)).encode()
    r = validate_bytes(data, "a.jsonl")
    assert r.ok and [(w.line, w.field) for w in r.warnings] == [(1, "source")]


def test_load_raises_data_validation_error_listing_errors(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.jsonl", [{"instruction": "x"}] * 15)
    with pytest.raises(DataValidationError) as info:
        load_file(p)
    err = info.value
    assert isinstance(err, NodeError) and isinstance(err, ValueError)
    assert err.report.error_count == 15
    text = str(err)
    assert text.splitlines()[0].startswith(f"{p} (alpaca): 15 error(s)")
    assert f"{p}:1: field 'output' missing required field 'output'" in text
    assert text.count("\n  ") == 11 and text.endswith("... and 5 more")


def test_error_list_is_capped_but_counted() -> None:
    data = b'{"instruction": "x"}\n' * 30
    r = validate_bytes(data, "a.jsonl", limits=Limits(max_errors=5))
    assert len(r.errors) == 5 and r.error_count == 30


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["f.jsonl", "f.json", "f.txt", "f"]))
def test_arbitrary_bytes_never_crash_and_errors_are_located(data: bytes, name: str) -> None:
    r = validate_bytes(data, name)
    if r.ok:  # what validation passed loads, every record of it
        assert len(load_bytes(data, name)) == r.record_count
    else:
        with pytest.raises(DataValidationError):
            load_bytes(data, name)
    for e in r.errors:
        assert e.file == name and e.message
        assert e.line is None or 1 <= e.line <= data.count(b"\n") + 1
