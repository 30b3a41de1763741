"""DatanetRegistry administration: creating Datanets (every field, every invalid parameter),
curators, trainers and metadata (owner only), and the views for unknown ids."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from node.chain.models import DatanetParams
from node.chain.protocol import Protocol
from tests.conftest import World
from tests.contracts.helpers_datanets import (
    OPEN,
    ZERO_ADDRESS,
    block_time,
    call_as,
    new_datanet,
    send,
)
from tests.contracts.helpers_jobs import events, reverts, treasury_address


def _params(world: World, **overrides: Any) -> dict[str, Any]:
    """A valid DatanetParams struct as a dict, with raw overrides (bypassing pydantic)."""
    base = DatanetParams(name="ds", treasury=treasury_address(1), curators=[world.curator.address])
    return {**base.model_dump(), **overrides}


def _can_train(proto: Protocol, datanet_id: int, account: str) -> bool:
    fn = proto.datanets.functions.canTrain(datanet_id, Web3.to_checksum_address(account))
    return bool(proto.client.call(fn))


# ---------------------------------------------------------------------- creation


def test_create_datanet_records_every_field_and_emits(world: World) -> None:
    """Every chosen parameter is stored as given, the caller is the owner, counters start at zero,
    and DatanetCreated then one CuratorSet per curator are emitted."""
    owner = world.contributors[0]
    before = owner.datanet_count()
    curators = [world.curator.address, world.contributors[1].address]
    params = DatanetParams(
        name="medical-qa",
        metadataCID="bafymeta",
        license="CC-BY-SA-4.0",
        commercialUse=False,
        isPrivate=True,
        restricted=True,
        minStake=3 * OPEN,
        slashBps=1_234,
        lockPeriod=3_600,
        treasury=treasury_address(42),
        curators=curators,
    )
    receipt = send(owner, owner.datanets.functions.createDatanet(params.model_dump()))
    datanet_id = before + 1
    assert owner.datanet_count() == datanet_id
    got = owner.datanet(datanet_id).model_dump()
    assert got == {
        "id": datanet_id,
        "owner": owner.address,
        "treasury": treasury_address(42),
        "name": "medical-qa",
        "metadataCID": "bafymeta",
        "license": "CC-BY-SA-4.0",
        "commercialUse": False,
        "isPrivate": True,
        "restricted": True,
        "slashBps": 1_234,
        "lockPeriod": 3_600,
        "createdAt": block_time(owner, receipt),
        "minStake": 3 * OPEN,
        "contributionCount": 0,
        "approvedCount": 0,
    }
    assert events(owner.datanets, receipt, "DatanetCreated") == [
        {
            "datanetId": datanet_id,
            "owner": owner.address,
            "name": "medical-qa",
            "metadataCID": "bafymeta",
            "license": "CC-BY-SA-4.0",
            "commercialUse": False,
            "isPrivate": True,
            "restricted": True,
            "treasury": treasury_address(42),
            "minStake": 3 * OPEN,
            "slashBps": 1_234,
            "lockPeriod": 3_600,
        }
    ]
    assert events(owner.datanets, receipt, "CuratorSet") == [
        {"datanetId": datanet_id, "account": c, "allowed": True} for c in curators
    ]
    assert [owner.is_curator(datanet_id, c) for c in curators] == [True, True]
    assert not owner.is_curator(datanet_id, owner.address)  # owning is not curating
    d = owner.datanets.functions
    assert d.exists(datanet_id).call() is True
    assert tuple(d.ownerAndTreasury(datanet_id).call()) == (owner.address, treasury_address(42))


def test_datanet_ids_are_sequential_per_registry(world: World) -> None:
    """Ids run 1..datanetCount with no gaps, whoever creates them."""
    first = world.admin.datanet_count()
    a, _ = new_datanet(world.contributors[0])
    b, _ = new_datanet(world.contributors[1])
    assert (a, b) == (first + 1, first + 2)
    assert world.admin.datanet_count() == first + 2
    assert world.admin.datanet(b).owner == world.contributors[1].address


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"slashBps": 10_001}, "slashBps"),
        ({"treasury": ZERO_ADDRESS}, "treasury"),
        ({"curators": [treasury_address(7), ZERO_ADDRESS]}, "curator"),
    ],
    ids=["empty-name", "long-name", "slash-over-100%", "no-treasury", "zero-curator"],
)
def test_create_datanet_rejects_invalid_params(world: World, overrides: dict[str, Any], field: str) -> None:
    """Each invalid parameter reverts with DatanetInvalidParams naming the field; nothing is created."""
    before = world.admin.datanet_count()
    with reverts("DatanetInvalidParams", field=field):
        send(world.admin, world.admin.datanets.functions.createDatanet(_params(world, **overrides)))
    assert world.admin.datanet_count() == before


def test_create_datanet_boundaries_are_inclusive(world: World) -> None:
    """A 128-byte name, slashBps = 100 % and a one-byte name are all accepted."""
    fns = world.admin.datanets.functions
    for overrides in ({"name": "x" * 128}, {"slashBps": 10_000}, {"name": "x", "curators": []}):
        send(world.admin, fns.createDatanet(_params(world, **overrides)))
    last = world.admin.datanet_count()
    assert world.admin.datanet(last - 2).name == "x" * 128
    assert world.admin.datanet(last - 1).slashBps == 10_000
    assert world.admin.datanet(last).name == "x"


def test_views_of_unknown_datanet(world: World) -> None:
    """An id never created: getDatanet reverts DatanetUnknown; the boolean views say no."""
    unknown = world.admin.datanet_count() + 1
    with reverts("DatanetUnknown", datanetId=unknown):
        world.admin.datanet(unknown)
    with reverts("DatanetUnknown", datanetId=0):
        world.admin.datanet(0)
    fns = world.admin.datanets.functions
    assert fns.exists(unknown).call() is False
    assert fns.exists(0).call() is False
    assert tuple(fns.ownerAndTreasury(unknown).call()) == (ZERO_ADDRESS, ZERO_ADDRESS)
    assert _can_train(world.admin, unknown, world.admin.address) is False
    assert world.admin.is_curator(unknown, world.curator.address) is False


# ---------------------------------------------------------------------- curators


def test_owner_sets_and_unsets_curators(world: World) -> None:
    """setCurator toggles isCurator and emits CuratorSet(allowed) each time; per Datanet only."""
    owner = world.contributors[0]
    a, _ = new_datanet(owner)
    b, _ = new_datanet(owner)
    who = world.contributors[2].address
    receipt = owner.set_curator(a, who, True)
    set_event = {"datanetId": a, "account": who, "allowed": True}
    assert events(owner.datanets, receipt, "CuratorSet") == [set_event]
    assert owner.is_curator(a, who) and not owner.is_curator(b, who)
    receipt = owner.set_curator(a, who, False)
    assert events(owner.datanets, receipt, "CuratorSet") == [{**set_event, "allowed": False}]
    assert owner.is_curator(a, who) is False
    with reverts("DatanetInvalidParams", field="curator"):
        owner.set_curator(a, ZERO_ADDRESS, True)


def _admin_calls(proto: Protocol, datanet_id: int) -> dict[str, Any]:
    target = proto.address
    return {
        "setCurator": lambda: proto.set_curator(datanet_id, target, True),
        "setTrainer": lambda: proto.set_trainer(datanet_id, target, True),
        "setMetadata": lambda: proto.set_metadata(datanet_id, "bafyhijack"),
    }


@pytest.mark.parametrize("call", ["setCurator", "setTrainer", "setMetadata"])
def test_admin_calls_are_owner_only(world: World, call: str) -> None:
    """Neither an outsider nor a curator nor the deployer may administer someone's Datanet."""
    owner = world.contributors[0]
    datanet_id, _ = new_datanet(owner, curators=[world.curator.address], restricted=True)
    for intruder in (world.outsider, world.curator, world.admin):
        with reverts("DatanetNotOwner", datanetId=datanet_id, account=intruder.address):
            _admin_calls(intruder, datanet_id)[call]()
    # Nothing changed: no metadata, no new curator, no trainer on the restricted Datanet.
    assert owner.datanet(datanet_id).metadataCID == ""
    for intruder in (world.outsider, world.admin):
        assert not owner.is_curator(datanet_id, intruder.address)
    for intruder in (world.outsider, world.curator, world.admin):
        assert not _can_train(owner, datanet_id, intruder.address)


@pytest.mark.parametrize("call", ["setCurator", "setTrainer", "setMetadata"])
def test_admin_calls_on_unknown_datanet(world: World, call: str) -> None:
    """Administering an id that does not exist says so (DatanetUnknown), not 'not owner'."""
    unknown = world.admin.datanet_count() + 5
    with reverts("DatanetUnknown", datanetId=unknown):
        _admin_calls(world.outsider, unknown)[call]()


def test_owner_updates_metadata(world: World) -> None:
    """setMetadata changes only the metadata CID and emits DatanetMetadataUpdated."""
    owner = world.contributors[0]
    datanet_id, _ = new_datanet(owner)
    before = owner.datanet(datanet_id)
    receipt = owner.set_metadata(datanet_id, "bafynewmeta")
    assert events(owner.datanets, receipt, "DatanetMetadataUpdated") == [
        {"datanetId": datanet_id, "metadataCID": "bafynewmeta"}
    ]
    assert owner.datanet(datanet_id) == before.model_copy(update={"metadataCID": "bafynewmeta"})


# ---------------------------------------------------------------------- trainers


def test_can_train_open_datanet_is_anyone(world: World) -> None:
    """An unrestricted Datanet may be trained on by any address, even one never seen."""
    datanet_id, _ = new_datanet(world.contributors[0], restricted=False)
    for who in (world.outsider.address, treasury_address(99), ZERO_ADDRESS):
        assert _can_train(world.admin, datanet_id, who) is True


def test_restricted_datanet_needs_owner_or_trainer(world: World) -> None:
    """On a restricted Datanet only the owner and allowed trainers can train; setTrainer toggles it
    per Datanet and emits TrainerSet; revoking takes effect at once."""
    owner = world.contributors[0]
    a, _ = new_datanet(owner, restricted=True)
    b, _ = new_datanet(owner, restricted=True)
    poster = world.poster.address
    assert _can_train(owner, a, owner.address) is True
    assert _can_train(owner, a, poster) is False
    receipt = owner.set_trainer(a, poster, True)
    set_event = {"datanetId": a, "account": poster, "allowed": True}
    assert events(owner.datanets, receipt, "TrainerSet") == [set_event]
    assert (_can_train(owner, a, poster), _can_train(owner, b, poster)) == (True, False)
    receipt = owner.set_trainer(a, poster, False)
    assert events(owner.datanets, receipt, "TrainerSet") == [{**set_event, "allowed": False}]
    assert _can_train(owner, a, poster) is False
    assert _can_train(owner, a, world.curator.address) is False  # curating is not training


def test_can_train_is_callable_by_anyone(world: World) -> None:
    """canTrain is a pure view: an eth_call from an arbitrary address gets the same answer."""
    datanet_id, _ = new_datanet(world.contributors[0], restricted=True)
    fn = world.admin.datanets.functions.canTrain(datanet_id, world.contributors[0].address)
    assert call_as(world.admin, treasury_address(5), fn) is True
