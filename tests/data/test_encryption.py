"""Envelopes of private Datanets: round trips, and every way a wrong key or a changed byte is refused."""

from __future__ import annotations

import json
import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from node.data.encryption import (
    MAGIC,
    dek_context,
    derive_encryption_key,
    is_envelope,
    open_envelope,
    open_with_datanet_key,
    parse_envelope,
    public_bytes,
    seal,
    unwrap_dek,
    unwrap_key,
    wrap_key,
)
from node.data.validate import load_bytes
from node.errors import DataValidationError, DecryptionError

DATANET = X25519PrivateKey.generate()
REGISTRY = "0x" + "12" * 20


def _seal(data: bytes, datanet_id: int = 3, version: int = 1) -> bytes:
    return seal(data, datanet_id, version, public_bytes(DATANET), 31337, REGISTRY)


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 2**20 + 7])
def test_round_trip_for_every_size(size: int) -> None:
    data = os.urandom(size)
    env = _seal(data)
    ciphertext = parse_envelope(env).ciphertext
    assert is_envelope(env) and len(ciphertext) == size + 16  # AES-GCM: same length plus a 16-byte tag
    # The plaintext must not appear anywhere; only meaningful where a chance match is impossible
    # (a 1-byte plaintext occurs by chance in any few hundred random bytes).
    if size >= 16:
        assert data not in env
    assert open_with_datanet_key(env, DATANET) == data
    assert _seal(data) != env  # a fresh DEK and nonce each time


def test_the_wallet_derives_a_stable_x25519_key() -> None:
    acct = Account.create()
    assert public_bytes(derive_encryption_key(acct)) == public_bytes(derive_encryption_key(bytes(acct.key)))
    assert public_bytes(derive_encryption_key(acct)) != public_bytes(derive_encryption_key(Account.create()))


def test_a_changed_byte_anywhere_is_refused() -> None:
    env = _seal(b'{"text": "secret facts"}\n')
    header_end = struct.unpack_from(">8sI", env)[1] + 12
    for position in (header_end - 5, header_end + 2, len(env) - 1):  # header, ciphertext, tag
        bad = bytearray(env)
        bad[position] ^= 0x01
        with pytest.raises(DecryptionError):
            open_with_datanet_key(bytes(bad), DATANET)


def test_another_key_does_not_open_it() -> None:
    env = _seal(b"data")
    with pytest.raises(DecryptionError, match="another X25519 key or for another purpose"):
        open_with_datanet_key(env, X25519PrivateKey.generate())
    with pytest.raises(DecryptionError, match="key is not this file's"):
        open_envelope(env, os.urandom(32))


def test_a_wrapped_key_is_bound_to_its_context() -> None:
    ctx = dek_context(31337, REGISTRY, 1, 1)
    wrapped = wrap_key(b"k" * 32, public_bytes(DATANET), ctx)
    assert unwrap_key(wrapped, DATANET, ctx) == b"k" * 32
    for other in (dek_context(31337, REGISTRY, 2, 1), dek_context(1, REGISTRY, 1, 1),
                  dek_context(31337, "0x" + "34" * 20, 1, 1), dek_context(31337, REGISTRY, 1, 2)):  # fmt: skip
        with pytest.raises(DecryptionError):
            unwrap_key(wrapped, DATANET, other)


def test_a_dek_moved_into_another_datanets_envelope_does_not_open() -> None:
    a, b = parse_envelope(_seal(b"A", datanet_id=1)), _seal(b"B", datanet_id=2)
    fields = json.loads(b[12 : 12 + struct.unpack_from(">8sI", b)[1]])
    fields["wrapped_dek"] = a.header.wrapped_dek.model_dump(mode="json")
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    forged = struct.pack(">8sI", MAGIC, len(raw)) + raw + b[12 + struct.unpack_from(">8sI", b)[1] :]
    with pytest.raises(DecryptionError):
        unwrap_dek(forged, DATANET)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"text": "plain"}', "Not a Datanet envelope"),
        (MAGIC + b"\x00", "Truncated envelope"),
        (struct.pack(">8sI", MAGIC, 10**6) + b"x" * 40, "Malformed envelope"),
        (struct.pack(">8sI", MAGIC, 5) + b"notjs" + b"t" * 16, "not valid JSON"),
        (struct.pack(">8sI", MAGIC, 8) + b'{"v": 9}' + b"t" * 16, "Unsupported envelope version 9"),
        (struct.pack(">8sI", MAGIC, 8) + b'{"v": 1}' + b"t" * 16, "Malformed envelope header"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecryptionError, match=message):
        parse_envelope(data)


def test_an_envelope_never_passes_as_a_contribution_file() -> None:
    """Its first byte is not UTF-8, so a sealed file can never be mistaken for plaintext data."""
    with pytest.raises(DataValidationError):
        load_bytes(_seal(b"{\"text\": \"hello\"}\n"), "sealed.jsonl")
