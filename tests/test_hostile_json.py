"""Hostile JSON at every parser a node feeds with other people's bytes.

A contribution file of one array nested 100,000 deep made `datanet contribute` die with a
segfault, and `validate_file` raise an uncaught RecursionError. Every parser below reads JSON
that someone else wrote (a contributor, a poster, another node); each must answer any input
with a `NodeError` that names the source, never crash or let another exception out."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from node import safe_json
from node.attribution.document import AttributionDocument
from node.data.encryption import MAGIC, TAG_SIZE, parse_envelope
from node.data.manifest import Manifest
from node.data.validate import validate_bytes
from node.errors import NodeError
from node.rewards.claims import _document as reward_document
from node.storage.embedded import EmbeddedStore
from node.train import snapshots
from node.train.config import JobConfig

DEEP = 100_000
HOSTILE: dict[str, bytes] = {
    "deep array": b"[" * DEEP + b"]" * DEEP,
    "deep object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep inside a record": b'{"instruction": "q", "output": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "invalid UTF-8": b'{"instruction": "\xff\xfe", "output": "a"}',
    "NUL byte": b'{"instruction": "q\x00", "output": "a"}',
    "duplicate keys": b'{"instruction": "q", "output": "a", "output": "b"}',
    "million-digit number": b'{"instruction": "q", "output": "a", "n": ' + b"9" * 1_000_000 + b"}",
    "NaN": b'{"instruction": "q", "output": "a", "n": NaN}',
    "unterminated": b'{"instruction": "q", "output": "' + b"[" * 1000,
    "binary": bytes(range(256)) * 64,
}
"""Each names what it is; the expected error text is checked per parser below."""


def _envelope(header: bytes) -> bytes:
    return struct.pack(">8sI", MAGIC, len(header)) + header + b"t" * TAG_SIZE


def _snapshot_meta(tmp: Path) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        path = tmp / "snapshot-000.safetensors"
        import torch

        save_file({"x": torch.zeros(1)}, str(path), metadata={"datanet": data.decode("utf-8", "replace")})
        return snapshots.load(path)

    return parse


def _parsers(tmp: Path) -> dict[str, Callable[[bytes], Any]]:
    store = EmbeddedStore(tmp / "store")
    return {
        "manifest": lambda b: Manifest.from_json(b, "manifest Qm-test"),
        "attribution document": lambda b: AttributionDocument.from_json(b, "attribution document Qm-test"),
        "job config": lambda b: JobConfig.parse(b, "config Qm-test of job #1"),
        "envelope header": lambda b: parse_envelope(_envelope(b)),
        "reward document": lambda b: reward_document(store, store.add_bytes(b), 1),
        "snapshot metadata": _snapshot_meta(tmp),
        "safe_json.loads": lambda b: safe_json.loads(b, "test document"),
    }


PARSERS = list(_parsers(Path("/nonexistent")))


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_parser_refuses_hostile_json_with_a_node_error(tmp_path: Path, parser: str, case: str) -> None:
    data = HOSTILE[case]
    with pytest.raises(NodeError) as e:
        _parsers(tmp_path)[parser](data)
    message = str(e.value)
    assert message and "Traceback" not in message
    if case.startswith("deep") and parser not in ("envelope header", "snapshot metadata"):
        assert f"{DEEP:,} levels deep" in message or "nested" in message, message


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_contribution_file_is_reported_not_raised(case: str) -> None:
    report = validate_bytes(HOSTILE[case], "hostile.jsonl")
    assert not report.ok and report.errors
    text = report.render()
    assert "hostile.jsonl" in text and "nothing to stake" in text


def test_the_limits_name_the_source_and_the_limit() -> None:
    with pytest.raises(safe_json.UntrustedJsonError, match=r"doc Qm1: JSON nested 65 levels deep, over the limit of 64"):  # noqa: E501
        safe_json.loads("[" * 65 + "]" * 65, "doc Qm1")
    assert safe_json.loads("[" * 64 + "]" * 64, "doc Qm1") is not None  # the limit itself is fine
    with pytest.raises(safe_json.UntrustedJsonError, match=r"doc Qm2: 11 bytes, over the 10-byte limit"):
        safe_json.loads(b'"' + b"x" * 9 + b'"', "doc Qm2", max_bytes=10)
    with pytest.raises(safe_json.UntrustedJsonError, match=r"duplicate key 'a'"):
        safe_json.loads('{"a": 1, "a": 2}', "doc Qm3")
    with pytest.raises(safe_json.UntrustedJsonError, match=r"a number of 101 characters"):
        safe_json.loads("1" * 101, "doc Qm4")
    brackets_in_strings = json.dumps({"q": "[[[[" * 100, "a": ["{" * 100]})
    assert safe_json.loads(brackets_in_strings, "doc") == json.loads(brackets_in_strings)


def _nested(depth: int, inner: Any) -> str:
    text = json.dumps(inner)
    for k in range(depth):
        text = f"[{text}]" if k % 2 else '{"k": ' + text + "}"
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(safe_json.MAX_DEPTH + 1, 5_000), inner=st.one_of(st.text(max_size=20), st.integers()))
def test_any_nesting_over_the_limit_is_refused_before_parsing(depth: int, inner: Any) -> None:
    with pytest.raises(safe_json.UntrustedJsonError, match="levels deep"):
        safe_json.loads(_nested(depth, inner), "nested")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**255), 2**255) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES)
def test_plain_json_within_the_limits_parses_as_the_standard_decoder_does(value: Any) -> None:
    text = json.dumps(value)
    assert safe_json.loads(text, "doc") == json.loads(text)
    assert safe_json.nesting_depth(text) <= 31


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_get_a_result_or_a_node_error(tmp_path: Path, parser: str, data: bytes) -> None:
    try:
        _parsers(tmp_path)[parser](data)
    except NodeError as e:
        assert str(e)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400), junk=st.sampled_from(list(HOSTILE.values())[:3]))
def test_arbitrary_contribution_bytes_give_a_report(data: bytes, junk: bytes) -> None:
    for blob in (data, data + b"\n" + junk):
        report = validate_bytes(blob, "x.jsonl")
        assert report.ok or report.errors


def test_datanet_contribute_of_a_deep_file_exits_cleanly_and_stakes_nothing(world: Any, tmp_path: Path) -> None:
    """The reported crash, as a user met it: the real CLI in its own process (a segfault is exit 139)."""
    from node.chain.accounts import dev_account, save_keystore
    from node.chain.deploy import save_deployment
    from node.chain.models import DatanetParams
    from tests.conftest import CONTRIBUTORS

    save_deployment(world.deployment, tmp_path / "deployments" / "localhost.json")
    save_keystore(dev_account(CONTRIBUTORS[0]), tmp_path / ".datanet" / "keystores" / "alice.json", "pw")
    deep = tmp_path / "deep.json"
    deep.write_bytes(HOSTILE["deep array"] + b"\n")
    datanet = world.curator.create_datanet(DatanetParams(name="open", treasury=world.curator.address))
    before = world.admin.contribution_count()
    alice = dev_account(CONTRIBUTORS[0]).address
    balance = world.admin.balance(alice)
    # COLUMNS: rich wraps at 80 without a terminal, and a long temporary path would split the file name.
    env = {"DATANET_KEYSTORE_PASSWORD": "pw", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "1000"}
    run = subprocess.run(
        [sys.executable, "-c", "from node.cli import main; main()", "--rpc-url", world.rpc_url, "--wallet", "alice",
         "contribute", "--datanet", str(datanet), str(deep)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, (run.returncode, out[-2000:])
    assert "deep.json:1" in out and "levels deep, over the limit of 64" in out, out[-2000:]
    assert "Nothing was uploaded or staked" in out and "Traceback" not in out
    assert world.admin.contribution_count() == before
    assert world.admin.balance(alice) == balance
