"""KeyRegistry: encryption keys, private Datanets' key versions, and grants. Every function,
every revert path, and the events; no secret ever reaches the chain (only public keys and CIDs)."""

from __future__ import annotations

from web3 import Web3

from node.chain.models import DatanetParams
from node.chain.protocol import Protocol
from tests.conftest import World
from tests.contracts.helpers_jobs import events, reverts, treasury_address

KEY_A, KEY_B = b"\xaa" * 32, b"\xbb" * 32
ZERO = b"\0" * 32


def private_datanet(owner: Protocol, curators: list[str], private: bool = True) -> int:
    params = DatanetParams(name="private", treasury=treasury_address(77), isPrivate=private,
                           curators=[Web3.to_checksum_address(c) for c in curators])  # fmt: skip
    return owner.create_datanet(params)


def test_accounts_publish_and_replace_their_encryption_key(world: World) -> None:
    node = world.node
    assert node.encryption_key_of() is None
    receipt = node.set_encryption_key(KEY_A)
    assert events(node.keys, receipt, "EncryptionKeySet") == [{"account": node.address, "publicKey": KEY_A}]
    node.set_encryption_key(KEY_B)
    assert node.encryption_key_of() == KEY_B
    assert world.outsider.encryption_key_of(node.address) == KEY_B
    with reverts("KeyRegistryInvalidKey"):
        node.set_encryption_key(ZERO)


def test_the_owner_publishes_versions_and_rotation_starts_a_new_one(world: World) -> None:
    owner = world.contributors[0]
    d = private_datanet(owner, [world.curator.address])
    assert owner.datanet_key(d).keyVersion == 0
    assert owner.set_datanet_key(d, KEY_A, "bafy-grants-1") == 1
    assert owner.set_datanet_key(d, KEY_A, "bafy-grants-1b") == 1  # same key: only the document changes
    assert owner.datanet_key(d).keyGrantsCID == "bafy-grants-1b"
    receipt_version = owner.set_datanet_key(d, KEY_B, "bafy-grants-2")
    assert receipt_version == 2
    current = owner.datanet_key(d)
    assert (current.publicKey, current.keyVersion, current.keyGrantsCID) == (KEY_B, 2, "bafy-grants-2")
    old = owner.datanet_key(d, key_version=1)
    assert (old.publicKey, old.keyGrantsCID) == (KEY_A, "bafy-grants-1b")
    assert owner.client.call(owner.keys.functions.keyVersionOf(d)) == 2
    assert owner.datanet_key(d, key_version=9).publicKey == ZERO  # no such version: empty


def test_only_the_owner_publishes_a_valid_key_of_an_existing_private_datanet(world: World) -> None:
    owner = world.contributors[0]
    d = private_datanet(owner, [world.curator.address])
    with reverts("KeyRegistryNotOwner", datanetId=d, account=world.curator.address):
        world.curator.set_datanet_key(d, KEY_A, "cid")
    with reverts("KeyRegistryInvalidKey"):
        owner.set_datanet_key(d, ZERO, "cid")
    with reverts("KeyRegistryEmptyCID"):
        owner.set_datanet_key(d, KEY_A, "")
    with reverts("KeyRegistryUnknownDatanet", datanetId=999):
        owner.set_datanet_key(999, KEY_A, "cid")
    public = private_datanet(owner, [], private=False)
    with reverts("KeyRegistryNotPrivate", datanetId=public):
        owner.set_datanet_key(public, KEY_A, "cid")


def test_grants_by_owner_and_curators_are_recorded_and_replaced(world: World) -> None:
    owner, curator, node = world.contributors[0], world.curator, world.node
    d = private_datanet(owner, [curator.address])
    owner.set_datanet_key(d, KEY_A, "grants")
    receipt = curator.grant_access(d, node.address, 5, "bafy-job-grant")
    assert events(owner.keys, receipt, "AccessGranted") == [
        {"datanetId": d, "grantee": node.address, "jobId": 5, "grantCID": "bafy-job-grant", "keyVersion": 1}
    ]
    owner.grant_access(d, node.address, 5, "bafy-job-grant-2")
    g = node.grant_of(d, node.address, 5)
    assert g is not None and (g.grantCID, g.keyVersion) == ("bafy-job-grant-2", 1)
    assert node.grant_of(d, node.address, 6) is None  # a grant is for one job only
    owner.grant_access(d, world.contributors[1].address, 0, "bafy-standing")  # standing: owner only
    owner.set_datanet_key(d, KEY_B, "grants-2")
    owner.grant_access(d, node.address, 7, "bafy-after-rotation")
    assert [(g.jobId, g.keyVersion) for g in owner.access_grants(datanet_id=d, grantee=node.address)] == [
        (5, 1), (5, 1), (7, 2)
    ]  # fmt: skip


def test_who_may_grant_what(world: World) -> None:
    owner, curator, node = world.contributors[0], world.curator, world.node
    d = private_datanet(owner, [curator.address])
    with reverts("KeyRegistryNoDatanetKey", datanetId=d):
        owner.grant_access(d, node.address, 1, "cid")
    owner.set_datanet_key(d, KEY_A, "grants")
    with reverts("KeyRegistryNotGranter", datanetId=d, account=world.outsider.address):
        world.outsider.grant_access(d, node.address, 1, "cid")
    with reverts("KeyRegistryNotOwner", datanetId=d, account=curator.address):
        curator.grant_access(d, node.address, 0, "cid")  # the Datanet key itself is the owner's to give
    with reverts("KeyRegistryInvalidGrantee"):
        owner.grant_access(d, "0x" + "00" * 20, 1, "cid")
    with reverts("KeyRegistryEmptyCID"):
        owner.grant_access(d, node.address, 1, "")
    with reverts("KeyRegistryUnknownDatanet", datanetId=4242):
        owner.grant_access(4242, node.address, 1, "cid")
    public = private_datanet(owner, [curator.address], private=False)
    with reverts("KeyRegistryNotPrivate", datanetId=public):
        owner.grant_access(public, node.address, 1, "cid")
    owner.set_curator(d, curator.address, False)  # a removed curator can no longer grant
    with reverts("KeyRegistryNotGranter", datanetId=d, account=curator.address):
        curator.grant_access(d, node.address, 1, "cid")
