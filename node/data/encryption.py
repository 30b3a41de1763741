"""Encryption of private Datanets' files: the envelope format and key wrapping.

Content on IPFS is readable by anyone who knows its CID, so a private Datanet's files are
uploaded only as envelopes. Each file gets its own random 256-bit data-encryption key (DEK); the
DEK is wrapped to the Datanet's X25519 public key, and only holders of the Datanet key (owner,
curators) or of a per-job grant of that one DEK can read the file.

Envelope (version 1), every byte before the ciphertext authenticated as associated data::

    MAGIC (8 bytes) | header length (uint32, big-endian) | header (canonical JSON, UTF-8) | ciphertext

    header = {"alg": "X25519-HKDF-SHA256+AES-256-GCM", "chain_id": 31337, "datanet_id": 2,
              "key_registry": "0x…", "key_version": 1, "nonce": "0x…12 bytes", "v": 1,
              "wrapped_dek": {"epk": "0x…32", "nonce": "0x…12", "ct": "0x…48"}}
    ciphertext = AES-256-GCM(DEK, nonce, plaintext, aad = MAGIC | length | header)

Key wrapping (ECIES-style, also used for grants): a fresh ephemeral X25519 key per wrap,
KEK = HKDF-SHA256(shared secret, salt = ephemeral pk | recipient pk, info = WRAP_INFO), then
AES-256-GCM(KEK, key, aad = context). The context names what the key is for (chain, KeyRegistry,
Datanet, version, job, file), so a wrapped key copied into another document, envelope, Datanet or
deployment does not open.

Each account's X25519 key is derived from its wallet's secp256k1 key (HKDF with its own info
string), so there is no second secret to store or lose; its public half is published on-chain.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Annotated, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.signers.local import LocalAccount
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from node import safe_json
from node.chain.models import HexBytes
from node.errors import DecryptionError

MAGIC = b"\x93DNETENC"  # the non-UTF-8 first byte: an envelope never passes as a text or JSONL file
VERSION = 1
ALG = "X25519-HKDF-SHA256+AES-256-GCM"
ACCOUNT_KEY_INFO = b"datanet/x25519/v1"  # wallet key -> X25519 key
WRAP_INFO = b"datanet/wrap/v1"  # shared secret -> key-encryption key
NONCE_SIZE = 12  # AES-GCM's standard nonce
KEY_SIZE = 32  # AES-256 keys, X25519 keys
TAG_SIZE = 16
MAX_HEADER = 16 * 1024  # a v1 header is ~350 bytes; anything larger is not ours
_PREFIX = struct.Struct(">8sI")  # magic, header length


def _sized(n: int) -> AfterValidator:
    def check(v: bytes) -> bytes:
        if len(v) != n:
            raise ValueError(f"must be {n} bytes, got {len(v)}")
        return v

    return AfterValidator(check)


Key32 = Annotated[HexBytes, _sized(KEY_SIZE)]
Nonce = Annotated[HexBytes, _sized(NONCE_SIZE)]


class WrappedKey(BaseModel):
    """A symmetric key encrypted to one X25519 public key (ECIES-style)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epk: Key32 = Field(description="Ephemeral X25519 public key of this wrap (32 bytes).")
    nonce: Nonce = Field(description="AES-GCM nonce (12 bytes).")
    ct: HexBytes = Field(description="AES-256-GCM ciphertext of the key, tag included.")


class EnvelopeHeader(BaseModel):
    """The self-describing part of an envelope: which Datanet key opens it, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    alg: Literal["X25519-HKDF-SHA256+AES-256-GCM"] = "X25519-HKDF-SHA256+AES-256-GCM"
    chain_id: int = Field(ge=1)
    key_registry: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$", description="The KeyRegistry holding the key.")
    datanet_id: int = Field(ge=1)
    key_version: int = Field(ge=1, description="Version of the Datanet key the DEK is wrapped to.")
    wrapped_dek: WrappedKey
    nonce: Nonce = Field(description="AES-GCM nonce of the content (12 bytes).")


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: `aad` is every byte before `ciphertext` (magic, length, header)."""

    header: EnvelopeHeader
    aad: bytes
    ciphertext: bytes


# ------------------------------------------------------------------------- keys


def derive_encryption_key(account: LocalAccount | bytes) -> X25519PrivateKey:
    """The account's X25519 key: HKDF-SHA256 of its secp256k1 private key (deterministic, so
    nothing new to back up; the info string keeps it unrelated to any other use of that key)."""
    secret = account if isinstance(account, bytes) else bytes(account.key)
    if len(secret) != KEY_SIZE:
        raise ValueError(f"a wallet private key is {KEY_SIZE} bytes, got {len(secret)}")
    okm = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=ACCOUNT_KEY_INFO).derive(secret)
    return X25519PrivateKey.from_private_bytes(okm)


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key (what KeyRegistry stores as bytes32)."""
    pk = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of an X25519 private key (only ever stored wrapped)."""
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def load_public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != KEY_SIZE or raw == bytes(KEY_SIZE):
        raise DecryptionError(f"0x{raw.hex()} is not an X25519 public key (need 32 non-zero bytes).")
    return X25519PublicKey.from_public_bytes(raw)


def wrap_key(key: bytes, recipient: X25519PublicKey | bytes, context: bytes) -> WrappedKey:
    """Encrypts `key` so that only `recipient`'s private key opens it, bound to `context`."""
    rpk = recipient if isinstance(recipient, X25519PublicKey) else load_public_key(recipient)
    ephemeral = X25519PrivateKey.generate()
    epk = public_bytes(ephemeral)
    try:
        shared = ephemeral.exchange(rpk)
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise DecryptionError(
            f"Refusing to wrap a key to 0x{public_bytes(rpk).hex()}: it is a low-order X25519 point."
        ) from None
    nonce = os.urandom(NONCE_SIZE)
    ct = AESGCM(_kek(shared, epk, public_bytes(rpk))).encrypt(nonce, key, context)
    return WrappedKey(epk=epk, nonce=nonce, ct=ct)


def unwrap_key(wrapped: WrappedKey, private_key: X25519PrivateKey, context: bytes) -> bytes:
    """The key inside `wrapped`; `DecryptionError` if it is for another key or context."""
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(wrapped.epk))
        kek = _kek(shared, wrapped.epk, public_bytes(private_key))
        return AESGCM(kek).decrypt(wrapped.nonce, wrapped.ct, context)
    except (InvalidTag, ValueError):
        raise DecryptionError(
            f"Could not unwrap a key for '{context.decode(errors='replace')}': it was wrapped to "
            "another X25519 key or for another purpose, or it was modified."
        ) from None


def _kek(shared: bytes, epk: bytes, rpk: bytes) -> bytes:
    # Both public keys in the salt bind the KEK to this exact exchange.
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=epk + rpk, info=WRAP_INFO).derive(shared)


def dek_context(chain_id: int, key_registry: str, datanet_id: int, key_version: int) -> bytes:
    """What a file's DEK is wrapped for inside its envelope."""
    where = f"chain={chain_id}|registry={key_registry.lower()}|datanet={datanet_id}"
    return f"datanet/dek/v1|{where}|key_version={key_version}".encode()


# --------------------------------------------------------------------- envelope


def seal(
    plaintext: bytes, datanet_id: int, key_version: int, datanet_public_key: bytes, chain_id: int, key_registry: str
) -> bytes:
    """Encrypts one file for a private Datanet: a fresh DEK, wrapped to the Datanet's key."""
    dek = AESGCM.generate_key(bit_length=256)
    ctx = dek_context(chain_id, key_registry, datanet_id, key_version)
    header = EnvelopeHeader(
        chain_id=chain_id,
        key_registry=key_registry,
        datanet_id=datanet_id,
        key_version=key_version,
        wrapped_dek=wrap_key(dek, datanet_public_key, ctx),
        nonce=os.urandom(NONCE_SIZE),
    )
    raw = json.dumps(header.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    aad = _PREFIX.pack(MAGIC, len(raw)) + raw
    return aad + AESGCM(dek).encrypt(header.nonce, plaintext, aad)


def is_envelope(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def parse_envelope(envelope: bytes) -> Envelope:
    """Splits an envelope into header, associated data and ciphertext; `DecryptionError` with
    what is wrong when it is not a (supported) envelope."""
    if not is_envelope(envelope):
        raise DecryptionError(
            f"Not a Datanet envelope: it starts with {envelope[:8]!r}, not {MAGIC!r}. Was the file "
            "uploaded unencrypted, or is this the wrong CID?"
        )
    if len(envelope) < _PREFIX.size:
        raise DecryptionError(f"Truncated envelope: {len(envelope)} bytes, shorter than its prefix.")
    _, size = _PREFIX.unpack_from(envelope)
    end = _PREFIX.size + size
    if size > MAX_HEADER or len(envelope) < end + TAG_SIZE:
        raise DecryptionError(
            f"Malformed envelope: header length {size} does not fit a {len(envelope)}-byte file "
            f"(max header {MAX_HEADER}, plus a {TAG_SIZE}-byte tag)."
        )
    raw = envelope[_PREFIX.size : end]
    try:
        fields = safe_json.loads(raw, "envelope header", max_bytes=MAX_HEADER)
    except safe_json.UntrustedJsonError as e:
        raise DecryptionError(f"Malformed envelope header: {e}") from None
    version = fields.get("v") if isinstance(fields, dict) else None
    if version != VERSION:
        raise DecryptionError(
            f"Unsupported envelope version {version!r}; this node reads version {VERSION}. "
            "Upgrade datanet-node if the file is newer."
        )
    try:
        header = EnvelopeHeader.model_validate(fields)
    except ValidationError as e:
        raise DecryptionError(f"Malformed envelope header: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    return Envelope(header=header, aad=envelope[:end], ciphertext=envelope[end:])


def unwrap_dek(envelope: bytes | Envelope, datanet_private_key: X25519PrivateKey) -> bytes:
    """The file's DEK, with the Datanet's private key (owner's and curators' path)."""
    env = envelope if isinstance(envelope, Envelope) else parse_envelope(envelope)
    h = env.header
    ctx = dek_context(h.chain_id, h.key_registry, h.datanet_id, h.key_version)
    return unwrap_key(h.wrapped_dek, datanet_private_key, ctx)


def open_envelope(envelope: bytes | Envelope, dek: bytes) -> bytes:
    """The plaintext; `DecryptionError` if the DEK is not this file's or any byte was changed."""
    env = envelope if isinstance(envelope, Envelope) else parse_envelope(envelope)
    if len(dek) != KEY_SIZE:
        raise DecryptionError(f"A data-encryption key is {KEY_SIZE} bytes, got {len(dek)}.")
    try:
        return AESGCM(dek).decrypt(env.header.nonce, env.ciphertext, env.aad)
    except InvalidTag:
        raise DecryptionError(
            f"Could not decrypt the envelope (Datanet #{env.header.datanet_id}, key version "
            f"{env.header.key_version}): the key is not this file's, or the file was modified."
        ) from None


def open_with_datanet_key(envelope: bytes, datanet_private_key: X25519PrivateKey) -> bytes:
    """Unwraps the DEK and decrypts in one step (a curator's local preview)."""
    env = parse_envelope(envelope)
    return open_envelope(env, unwrap_dek(env, datanet_private_key))
