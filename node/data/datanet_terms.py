"""A new Datanet's terms, checked and made ready to create: what `datanet net create` and the web
app's "New Datanet" page both do before anything is sent.

The checks say, in the caller's own words (`names`: an option or a form field per setting), what
DatanetRegistry would refuse; the metadata document (and the licence text, when given) goes to
the content store first, so the `metadataCID` and `license` the chain records point at content
that exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from eth_typing import ChecksumAddress
from pydantic import BaseModel, Field

from node.chain.accounts import checksum_address
from node.chain.models import MAX_LOCK_PERIOD, MIN_LOCK_PERIOD, DatanetParams
from node.chain.units import parse_open
from node.errors import InputError
from node.storage.base import ContentStore

FORMATS = ["alpaca", "sharegpt", "openai", "text", "txt"]


class DatanetTerms(BaseModel):
    """What a creator chooses, as typed (amounts in OPEN, the lock in days)."""

    name: str
    description: str = ""
    license: str = Field("CC-BY-4.0", description="SPDX id of the data's licence.")
    license_text: bytes | None = Field(None, description="The full licence text (stored; its CID goes on-chain).")
    commercial: bool = True
    private: bool = False
    restricted: bool = False
    min_stake: str = "10"
    slash_percent: float = 50.0
    lock_days: float = 7.0
    curators: list[str] = Field(default_factory=list)
    treasury: str | None = None


CLI_NAMES = {
    "name": "--name", "min_stake": "--min-stake", "slash_percent": "--slash-percent", "lock_days": "--lock-days",
    "curators": "--curator", "treasury": "--treasury", "license": "--license",
}  # fmt: skip


def check_terms(
    t: DatanetTerms, names: Mapping[str, str] = CLI_NAMES
) -> tuple[int, int, list[ChecksumAddress], ChecksumAddress | None]:
    """(min stake in base units, lock period in seconds, curators, treasury) or `InputError`
    naming the setting as the caller shows it and what it must be."""
    n = dict(CLI_NAMES) | dict(names)
    if not 1 <= len(t.name) <= 128:
        raise InputError(f"{n['name']} must be 1 to 128 characters, got {len(t.name)}; shorten it (the description "
                         "holds the long text).")  # fmt: skip
    if not 0 <= t.slash_percent <= 100:
        raise InputError(f"{n['slash_percent']} {t.slash_percent:g} is out of range: the share of a rejected stake "
                         "that is slashed is from 0 to 100.")  # fmt: skip
    lock = round(t.lock_days * 86400)
    if not MIN_LOCK_PERIOD <= lock <= MAX_LOCK_PERIOD:
        raise InputError(
            f"{n['lock_days']} {t.lock_days:g} is out of range: it must be from {MIN_LOCK_PERIOD / 86400:.4f} (one "
            f"hour) to {MAX_LOCK_PERIOD // 86400}. It is also how long curators have to decide a contribution, so it "
            "cannot be 0; nothing was created."
        )
    if not t.license.strip():
        raise InputError(f"{n['license']} is empty: give the data's SPDX licence id (e.g. CC-BY-4.0).")
    stake = parse_open(t.min_stake, n["min_stake"], allow_zero=True)
    curators = [checksum_address(c, n["curators"]) for c in t.curators]
    treasury = checksum_address(t.treasury, n["treasury"]) if t.treasury else None
    return stake, lock, curators, treasury


def datanet_params(
    t: DatanetTerms, owner: str, store: ContentStore, names: Mapping[str, str] = CLI_NAMES
) -> DatanetParams:
    """The checked terms as DatanetParams, the metadata (and licence text) stored first; the
    owner is the default treasury and sole curator."""
    stake, lock, curators, treasury = check_terms(t, names)
    license_ref = store.add_bytes(t.license_text) if t.license_text is not None else t.license
    metadata = {"name": t.name, "description": t.description, "license": t.license, "license_cid": license_ref,
                "formats": FORMATS, "version": 1}  # fmt: skip
    metadata_cid = store.add_bytes(json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode())
    return DatanetParams(
        name=t.name, metadataCID=metadata_cid, license=license_ref, commercialUse=t.commercial, isPrivate=t.private,
        restricted=t.restricted, minStake=stake, slashBps=round(t.slash_percent * 100), lockPeriod=lock,
        treasury=treasury or owner, curators=curators or [owner],
    )  # fmt: skip
