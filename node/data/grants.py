"""Private Datanets: the Datanet key's life cycle and key grants, as JSON documents by CID.

1. Every account publishes its X25519 key (derived from its wallet): `ensure_encryption_key`.
2. The owner creates the Datanet key pair: `publish_datanet_key` wraps the private key to the
   owner's and each curator's encryption key (a `KeyGrants` document), uploads it and calls
   `setDatanetKey`. A rotation also wraps every earlier version to the new key (`previous`), so
   whoever holds the newest key reads every file.
3. Contributors seal each file to the current public key: `sealer(protocol, datanet_id)`.
4. Owner and curators decrypt locally, to preview before approving: `open_as_holder`.
5. When a node claims a job, the owner or a curator runs `grant_job` (or `on_job_claimed` for all
   of a job's Datanets): each approved file's DEK is unwrapped and rewrapped to the node (a
   `JobGrant`), then `grantAccess` records it. The node learns the keys of the files it trains
   on, never the Datanet key, and a grant for one job opens nothing for another.
6. The node reads with `JobKeys` (the `decrypt` hook of `node.data.assemble`) or `open_for_job`.
A curator added later gets the Datanet key by a standing grant (job 0, owner only): `grant_standing`.

Authenticity comes from the chain: the KeyRegistry lets only the owner publish the Datanet key
and only the owner or a curator record a grant, and a CID pins the document's bytes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from typing import Protocol as TypingProtocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_typing import ChecksumAddress
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3 import Web3

from node import safe_json
from node.chain.contributions import approved_contributions
from node.chain.models import AccessGrant, Contribution, Datanet, DatanetKey, HexBytes, JobStatus
from node.chain.protocol import Protocol
from node.data.encryption import (
    Envelope,
    WrappedKey,
    derive_encryption_key,
    open_envelope,
    parse_envelope,
    private_bytes,
    public_bytes,
    seal,
    unwrap_dek,
    unwrap_key,
    wrap_key,
)
from node.errors import AccessDeniedError, DecryptionError, GrantCoverageError, NodeError

log = logging.getLogger(__name__)
D = TypeVar("D", bound="_Doc")


class KeyGrantError(NodeError, ValueError):
    """A key or grant cannot be published as asked (public Datanet, unclaimed job, no key...)."""


class ContentStore(TypingProtocol):
    """What grants need from a content store (`node.storage`'s stores have these)."""

    def add_bytes(self, data: bytes) -> str: ...

    def cat(self, cid: str) -> bytes: ...


# -------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Scope:
    """Where a key or document is valid: one chain, one KeyRegistry, one Datanet. Every wrapped
    key carries its scope and purpose as associated data, so it opens nowhere else."""

    chain_id: int
    key_registry: ChecksumAddress
    datanet_id: int

    @classmethod
    def of(cls, protocol: Protocol, datanet_id: int) -> Scope:
        return cls(protocol.chain_id, protocol.keys.address, datanet_id)

    def fields(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "key_registry": self.key_registry, "datanet_id": self.datanet_id}

    def ctx(self, kind: str, **parts: object) -> bytes:
        tail = "".join(f"|{k}={v}" for k, v in parts.items())
        where = f"chain={self.chain_id}|registry={self.key_registry}|datanet={self.datanet_id}"
        return f"datanet/{kind}/v1|{where}{tail}".encode()

    def datanet_key_ctx(self, version: int, holder: str) -> bytes:
        return self.ctx("datanet-key", version=version, holder=holder)

    def previous_key_ctx(self, version: int, under: int) -> bytes:
        return self.ctx("previous-key", version=version, under=under)

    def file_key_ctx(self, job_id: int, contribution_id: int, sha256: bytes, grantee: str) -> bytes:
        return self.ctx("file-key", job=job_id, contribution=contribution_id, sha256=sha256.hex(), grantee=grantee)


class _Doc(BaseModel):
    """Fields every document carries, checked against the chain before it is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain_id: int
    key_registry: ChecksumAddress
    datanet_id: int = Field(ge=1)


class KeyGrants(_Doc):
    """One version of a Datanet key, wrapped to each holder (published by `setDatanetKey`)."""

    format: Literal["datanet-key-grants-v1"] = "datanet-key-grants-v1"
    key_version: int = Field(ge=1)
    public_key: HexBytes
    holders: dict[ChecksumAddress, WrappedKey] = Field(description="The private key, per holder.")
    previous: dict[int, WrappedKey] = Field(
        default_factory=dict, description="Earlier versions' private keys, wrapped to this version's key."
    )


class FileKey(BaseModel):
    """One file's DEK, wrapped to a job grant's grantee."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contribution_id: int
    cid: str
    sha256: HexBytes = Field(description="The on-chain contentHash (sha256 of the envelope).")
    key: WrappedKey


class JobGrant(_Doc):
    """The DEKs of a Datanet's approved files (as of `block`) for one node and one job."""

    format: Literal["datanet-job-grant-v1"] = "datanet-job-grant-v1"
    job_id: int = Field(ge=1)
    grantee: ChecksumAddress
    grantee_key: HexBytes = Field(description="The grantee's X25519 key the DEKs are wrapped to.")
    granted_by: ChecksumAddress
    block: int
    files: list[FileKey]


class StandingGrant(_Doc):
    """Every Datanet key version up to the grant's, wrapped to one account (a late curator)."""

    format: Literal["datanet-standing-grant-v1"] = "datanet-standing-grant-v1"
    grantee: ChecksumAddress
    grantee_key: HexBytes
    granted_by: ChecksumAddress
    keys: dict[int, WrappedKey]


class GrantResult(BaseModel):
    """What `grant_job` published."""

    datanet_id: int
    job_id: int
    grantee: ChecksumAddress
    grant_cid: str
    block: int
    files: list[int] = Field(description="Contribution ids whose keys were granted.")
    skipped: dict[int, str] = Field(default_factory=dict, description="Contribution id -> why not.")


def _dump(doc: BaseModel) -> bytes:
    return doc.model_dump_json().encode()


def _load(store: ContentStore, cid: str, model: type[D], scope: Scope) -> D:
    """Fetches and validates a document, and checks it is for this chain and Datanet."""
    data = store.cat(cid)
    try:
        safe_json.loads(data, f"{model.__name__} document {cid}")
    except safe_json.UntrustedJsonError as e:
        raise DecryptionError(str(e)) from None
    try:
        doc = model.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise DecryptionError(
            f"{model.__name__} document {cid} is malformed at {first['loc']}: {first['msg']}."
        ) from None
    got = Scope(doc.chain_id, doc.key_registry, doc.datanet_id)
    if got != scope:
        raise DecryptionError(f"{model.__name__} document {cid} is for {got}, not {scope}; refusing it.")
    return doc


# ------------------------------------------------------------------ account keys


def account_key(protocol: Protocol) -> X25519PrivateKey:
    """This account's X25519 private key, derived from its wallet key."""
    if protocol.client.account is None:
        raise AccessDeniedError("Reading private Datanets needs a signing account; configure a keystore.")
    return derive_encryption_key(protocol.client.account)


def ensure_encryption_key(protocol: Protocol) -> bytes:
    """Publishes this account's encryption public key unless the chain already has it."""
    public = public_bytes(account_key(protocol))
    if protocol.encryption_key_of() != public:
        protocol.set_encryption_key(public)
    return public


def _recipient(protocol: Protocol, account: str, role: str) -> bytes:
    key = protocol.encryption_key_of(account)
    if key is None:
        raise KeyGrantError(
            f"The {role} {account} has not published an encryption key, so no key can be wrapped to "
            "it. It must publish one first (`ensure_encryption_key`; a node does it before claiming)."
        )
    return key


def missing_encryption_keys(protocol: Protocol, accounts: Sequence[str]) -> list[ChecksumAddress]:
    """The accounts among `accounts` that have not published an encryption key."""
    return [Web3.to_checksum_address(a) for a in accounts if protocol.encryption_key_of(a) is None]


def curators(protocol: Protocol, datanet_id: int) -> list[ChecksumAddress]:
    """A Datanet's current curators (from `CuratorSet` logs, confirmed by `isCurator`)."""
    event = protocol.datanets.events.CuratorSet
    logs = protocol.client.rpc(
        lambda: event.get_logs(from_block=protocol.deployment.deploy_block, argument_filters={"datanetId": datanet_id}),
        "get CuratorSet logs",
    )
    seen = dict.fromkeys(Web3.to_checksum_address(log["args"]["account"]) for log in logs)
    return [a for a in seen if protocol.is_curator(datanet_id, a)]


# ----------------------------------------------------------------- Datanet keys


def publish_datanet_key(
    owner: Protocol, store: ContentStore, datanet_id: int, holders: Sequence[str] | None = None
) -> DatanetKey:
    """Creates (or rotates) a private Datanet's key pair and publishes it; owner only.

    The private key is wrapped to the owner and to `holders` (default: the current curators).
    On rotation every earlier version is wrapped to the new key, so old files stay readable;
    new files are sealed to the new key, which a removed curator does not get."""
    datanet = owner.datanet(datanet_id)
    if not datanet.isPrivate:
        raise KeyGrantError(f"Datanet #{datanet_id} is public: its files are not encrypted, it needs no key.")
    if datanet.owner != owner.address:
        raise KeyGrantError(f"Only Datanet #{datanet_id}'s owner {datanet.owner} can publish its key.")
    ensure_encryption_key(owner)
    current = owner.datanet_key(datanet_id)
    earlier = datanet_private_keys(owner, store, datanet_id) if current.keyVersion else {}
    version, new, scope = current.keyVersion + 1, X25519PrivateKey.generate(), Scope.of(owner, datanet_id)
    others = curators(owner, datanet_id) if holders is None else holders
    accounts = dict.fromkeys([owner.address, *(Web3.to_checksum_address(a) for a in others)])
    secret = private_bytes(new)
    doc = KeyGrants(
        **scope.fields(),
        key_version=version,
        public_key=public_bytes(new),
        holders={
            a: wrap_key(secret, _recipient(owner, a, "key holder"), scope.datanet_key_ctx(version, a)) for a in accounts
        },
        previous={
            v: wrap_key(private_bytes(k), public_bytes(new), scope.previous_key_ctx(v, version))
            for v, k in earlier.items()
        },
    )
    got = owner.set_datanet_key(datanet_id, public_bytes(new), store.add_bytes(_dump(doc)))
    if got != version:  # another transaction of the owner's published a key in between
        raise KeyGrantError(f"Datanet #{datanet_id}'s key became version {got}, expected {version}; run again.")
    return owner.datanet_key(datanet_id)


def datanet_private_keys(protocol: Protocol, store: ContentStore, datanet_id: int) -> dict[int, X25519PrivateKey]:
    """Every version of the Datanet key this account can unwrap, as a key holder or by a
    standing grant; `AccessDeniedError` if none."""
    me, mine, scope = protocol.address, account_key(protocol), Scope.of(protocol, datanet_id)
    current = protocol.datanet_key(datanet_id)
    if current.keyVersion == 0:
        if not protocol.datanet(datanet_id).isPrivate:
            raise KeyGrantError(f"Datanet #{datanet_id} is public: its files are not encrypted, there is no key.")
        raise AccessDeniedError(f"Datanet #{datanet_id} has no published key yet; its owner must create it.")
    doc = _load(store, current.keyGrantsCID, KeyGrants, scope)
    if (doc.key_version, doc.public_key) != (current.keyVersion, current.publicKey):
        raise DecryptionError(
            f"Key document {current.keyGrantsCID} is for key version {doc.key_version}, but the chain publishes "
            f"version {current.keyVersion} of Datanet #{datanet_id} with another key; refusing it."
        )
    keys: dict[int, X25519PrivateKey] = {}
    if me in doc.holders:
        raw = unwrap_key(doc.holders[me], mine, scope.datanet_key_ctx(doc.key_version, me))
        keys[doc.key_version] = X25519PrivateKey.from_private_bytes(raw)
    standing = protocol.grant_of(datanet_id, me, 0)
    if standing is not None:
        grant = _load(store, standing.grantCID, StandingGrant, scope)
        if grant.grantee != me:
            raise AccessDeniedError(
                f"The standing grant recorded for {me} on Datanet #{datanet_id} ({standing.grantCID}) names "
                f"{grant.grantee} instead; ask the owner to grant this account again."
            )
        for v, wrapped in grant.keys.items():
            raw = unwrap_key(wrapped, mine, scope.datanet_key_ctx(v, me))
            keys.setdefault(v, X25519PrivateKey.from_private_bytes(raw))
    if doc.key_version in keys:  # the newest key opens every earlier one
        for v, wrapped in doc.previous.items():
            raw = unwrap_key(wrapped, keys[doc.key_version], scope.previous_key_ctx(v, doc.key_version))
            keys.setdefault(v, X25519PrivateKey.from_private_bytes(raw))
    if not keys:
        raise AccessDeniedError(
            f"{me} holds no key of private Datanet #{datanet_id}: it is not a key holder of version "
            f"{doc.key_version} and has no standing grant. Ask the Datanet owner to grant it one."
        )
    for v, key in keys.items():  # every key must be the one the chain published for its version
        published = current.publicKey if v == current.keyVersion else protocol.datanet_key(datanet_id, v).publicKey
        if public_bytes(key) != published:
            raise DecryptionError(
                f"The private key unwrapped for version {v} of Datanet #{datanet_id} does not match the public key "
                "published on-chain for that version; a key document was forged or corrupted. Refusing it."
            )
    return keys


def grant_standing(owner: Protocol, store: ContentStore, datanet_id: int, grantee: str) -> AccessGrant:
    """Gives `grantee` (e.g. a curator added after the key was created) every Datanet key
    version the owner holds, as a standing grant (job 0). Owner only (the contract checks)."""
    who, scope = Web3.to_checksum_address(grantee), Scope.of(owner, datanet_id)
    keys = datanet_private_keys(owner, store, datanet_id)
    recipient = _recipient(owner, who, "grantee")
    doc = StandingGrant(
        **scope.fields(),
        grantee=who,
        grantee_key=recipient,
        granted_by=owner.address,
        keys={v: wrap_key(private_bytes(k), recipient, scope.datanet_key_ctx(v, who)) for v, k in keys.items()},
    )
    owner.grant_access(datanet_id, who, 0, store.add_bytes(_dump(doc)))
    grant = owner.grant_of(datanet_id, who, 0)
    assert grant is not None  # just recorded
    return grant


# ----------------------------------------------------------- files: seal, preview


def sealer(protocol: Protocol, datanet_id: int) -> Callable[[bytes], bytes]:
    """The `seal` hook for contributing to a private Datanet: encrypts to its current key."""
    datanet = protocol.datanet(datanet_id)
    if not datanet.isPrivate:
        raise KeyGrantError(f"Datanet #{datanet_id} is public; its files are uploaded unencrypted.")
    key = protocol.datanet_key(datanet_id)
    if key.keyVersion == 0:
        raise KeyGrantError(
            f"Datanet #{datanet_id} is private but its owner {datanet.owner} has not published its "
            "encryption key yet, so nothing can be contributed to it. Ask the owner to create it."
        )
    scope = Scope.of(protocol, datanet_id)
    return lambda plaintext: seal(
        plaintext, datanet_id, key.keyVersion, key.publicKey, scope.chain_id, scope.key_registry
    )


def _verified_envelope(store: ContentStore, c: Contribution, envelope: bytes | None, scope: Scope) -> Envelope:
    data = store.cat(c.cid) if envelope is None else envelope
    digest = hashlib.sha256(data).digest()
    if digest != c.contentHash:
        raise DecryptionError(
            f"Contribution #{c.id} ({c.cid}) has sha256 {digest.hex()}, but the chain records "
            f"{c.contentHash.hex()}; refusing to decrypt it."
        )
    env = parse_envelope(data)
    h = env.header
    if (h.chain_id, h.key_registry.lower(), h.datanet_id) != (scope.chain_id, scope.key_registry.lower(), c.datanetId):
        raise DecryptionError(
            f"Contribution #{c.id} (Datanet #{c.datanetId}, chain {scope.chain_id}) has an envelope sealed for "
            f"Datanet #{h.datanet_id} on chain {h.chain_id}, KeyRegistry {h.key_registry}; refusing it."
        )
    return env


def _contribution(protocol: Protocol, contribution: Contribution | int) -> Contribution:
    return protocol.contribution(contribution) if isinstance(contribution, int) else contribution


def open_as_holder(
    protocol: Protocol, store: ContentStore, contribution: Contribution | int, envelope: bytes | None = None
) -> bytes:
    """Decrypts a contribution locally with the Datanet key: the owner's or a curator's
    preview before approving. Nothing leaves the machine."""
    c = _contribution(protocol, contribution)
    env = _verified_envelope(store, c, envelope, Scope.of(protocol, c.datanetId))
    keys = datanet_private_keys(protocol, store, c.datanetId)
    version = env.header.key_version
    if version not in keys:
        raise AccessDeniedError(
            f"Contribution #{c.id} is sealed to key version {version} of Datanet #{c.datanetId}, which "
            f"{protocol.address} does not hold (it holds {sorted(keys)}). Ask the owner for a standing grant."
        )
    return open_envelope(env, unwrap_dek(env, keys[version]))


# ---------------------------------------------------------------------- jobs


def grant_job(
    granter: Protocol,
    store: ContentStore,
    datanet_id: int,
    job_id: int,
    grantee: str | None = None,
    block: int | None = None,
) -> GrantResult:
    """Grants the node of `job_id` (or `grantee`) the DEKs of the Datanet's files approved at
    `block` (default latest): unwrap each with the Datanet key, rewrap to the node's encryption
    key, upload the `JobGrant`, call `grantAccess`. Owner or a curator. Files that cannot be
    opened (hash mismatch, corrupt envelope) are skipped and listed: the node excludes them too."""
    job = granter.job(job_id)
    if datanet_id not in job.datanetIds:
        raise KeyGrantError(f"Job #{job_id} trains on Datanets {job.datanetIds}, not #{datanet_id}.")
    if grantee is None and job.status != JobStatus.CLAIMED:
        raise KeyGrantError(
            f"Job #{job_id} is {job.status.name.lower()}, not claimed: there is no node to grant to yet."
        )
    who = Web3.to_checksum_address(grantee or job.node)
    recipient = _recipient(granter, who, "node")
    at = granter.client.block_number() if block is None else block
    keys = datanet_private_keys(granter, store, datanet_id)
    scope = Scope.of(granter, datanet_id)
    files: list[FileKey] = []
    skipped: dict[int, str] = {}
    for c in approved_contributions(granter, datanet_id, at):
        try:
            env = _verified_envelope(store, c, None, scope)
            if env.header.key_version not in keys:
                raise AccessDeniedError(
                    f"{granter.address} lacks key version {env.header.key_version} of Datanet #{datanet_id} "
                    f"(needed for contribution #{c.id}); the owner should grant the job instead."
                )
            dek = unwrap_dek(env, keys[env.header.key_version])
        except DecryptionError as e:
            log.error("grant for job %d: contribution #%d skipped: %s", job_id, c.id, e)
            skipped[c.id] = str(e)
            continue
        ctx = scope.file_key_ctx(job_id, c.id, c.contentHash, who)
        files.append(FileKey(contribution_id=c.id, cid=c.cid, sha256=c.contentHash, key=wrap_key(dek, recipient, ctx)))
    doc = JobGrant(
        **scope.fields(), job_id=job_id, grantee=who, grantee_key=recipient, granted_by=granter.address,
        block=at, files=files,
    )  # fmt: skip
    cid = store.add_bytes(_dump(doc))
    granter.grant_access(datanet_id, who, job_id, cid)
    return GrantResult(
        datanet_id=datanet_id, job_id=job_id, grantee=who, grant_cid=cid, block=at,
        files=[f.contribution_id for f in files], skipped=skipped,
    )  # fmt: skip


def on_job_claimed(granter: Protocol, store: ContentStore, job_id: int) -> list[GrantResult]:
    """The owner's node, automatically: grants a claimed job's node every private Datanet of
    the job that `granter` owns or curates and has not granted yet (idempotent)."""
    job = granter.job(job_id)
    if job.status != JobStatus.CLAIMED:
        return []
    results = []
    for datanet_id in job.datanetIds:
        d: Datanet = granter.datanet(datanet_id)
        mine = d.owner == granter.address or granter.is_curator(datanet_id, granter.address)
        if d.isPrivate and mine and granter.grant_of(datanet_id, job.node, job_id) is None:
            results.append(grant_job(granter, store, datanet_id, job_id))
    return results


class JobKeys:
    """A node's key grants for one job, each Datanet's grant loaded once. Callable as the
    `decrypt` hook of `node.data.assemble` (`(datanet, contribution, envelope) -> plaintext`)."""

    def __init__(self, node: Protocol, store: ContentStore, job_id: int):
        self.node, self.store, self.job_id = node, store, job_id
        self._key = account_key(node)
        self._grants: dict[int, dict[int, FileKey]] = {}

    def __call__(self, datanet: Datanet, contribution: Contribution, envelope: bytes) -> bytes:
        return self.open(datanet.id, contribution, envelope)

    def open(self, datanet_id: int, contribution: Contribution | int, envelope: bytes | None = None) -> bytes:
        """The plaintext of one contribution; `AccessDeniedError` without a grant covering it,
        `DecryptionError` if the file, the grant or a key was tampered with."""
        c = _contribution(self.node, contribution)
        if c.datanetId != datanet_id:
            raise DecryptionError(f"Contribution #{c.id} is in Datanet #{c.datanetId}, not #{datanet_id}.")
        files = self._files(datanet_id)
        entry = files.get(c.id)
        if entry is None:
            raise GrantCoverageError(
                f"The key grant for job #{self.job_id} on Datanet #{datanet_id} does not cover contribution "
                f"#{c.id} (approved after the grant was made?); ask the Datanet owner to run "
                f"`datanet grant --job {self.job_id}` again."
            )
        if entry.sha256 != c.contentHash or entry.cid != c.cid:
            raise DecryptionError(f"The grant's entry for contribution #{c.id} does not match the chain's record.")
        scope = Scope.of(self.node, datanet_id)
        dek = unwrap_key(entry.key, self._key, scope.file_key_ctx(self.job_id, c.id, c.contentHash, self.node.address))
        return open_envelope(_verified_envelope(self.store, c, envelope, scope), dek)

    def _files(self, datanet_id: int) -> dict[int, FileKey]:
        if datanet_id not in self._grants:
            me = self.node.address
            grant = self.node.grant_of(datanet_id, me, self.job_id)
            if grant is None:
                raise AccessDeniedError(
                    f"Datanet #{datanet_id} is private and no key grant for job #{self.job_id} to {me} was "
                    f"published; ask the Datanet owner to run `datanet grant --job {self.job_id}`."
                )
            doc = _load(self.store, grant.grantCID, JobGrant, Scope.of(self.node, datanet_id))
            if doc.job_id != self.job_id or doc.grantee != me:
                raise DecryptionError(
                    f"Grant document {grant.grantCID} is for job #{doc.job_id} and {doc.grantee}, "
                    f"not job #{self.job_id} and {me}; refusing it."
                )
            if doc.grantee_key != public_bytes(self._key):
                raise AccessDeniedError(
                    f"The grant for job #{self.job_id} on Datanet #{datanet_id} is wrapped to key "
                    f"0x{doc.grantee_key.hex()}, not this account's; publish the key with "
                    f"`ensure_encryption_key` and ask the owner to run `datanet grant --job {self.job_id}`."
                )
            self._grants[datanet_id] = {f.contribution_id: f for f in doc.files}
        return self._grants[datanet_id]


def open_for_job(
    node: Protocol,
    store: ContentStore,
    datanet_id: int,
    job_id: int,
    contribution: Contribution | int,
    envelope: bytes | None = None,
) -> bytes:
    """One contribution's plaintext for `job_id`, through this node's grant (see `JobKeys`)."""
    return JobKeys(node, store, job_id).open(datanet_id, contribution, envelope)
