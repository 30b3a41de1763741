"""`datanet net create|list|show`: Datanets, with metadata and license on IPFS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.chain.accounts import checksum_address
from node.chain.contributions import submitted_ids
from node.chain.deploy import fmt_open
from node.cli.common import (
    DatanetIdArg,
    JsonOpt,
    console,
    jsonable,
    print_json,
    read_protocol,
    settings,
    write_protocol,
)
from node.data.datanet_terms import DatanetTerms, check_terms, datanet_params
from node.data.grants import KeyGrantError
from node.errors import InputError, NodeError

datanet_app = typer.Typer(no_args_is_help=True, help="Create and inspect Datanets.")
_LOCK_HELP = "Days a stake stays bonded after approval; also the curators' window to decide (1/24 to 730)."


@datanet_app.command("create")
def datanet_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Human-readable name (1-128 characters).")],
    description: Annotated[str, typer.Option(help="What data belongs here.")] = "",
    license: Annotated[str, typer.Option(help="SPDX license id of the contributed data.")] = "CC-BY-4.0",
    license_file: Annotated[
        Path | None, typer.Option(help="Full license text to store on IPFS (its CID goes on-chain).")
    ] = None,
    commercial: Annotated[bool, typer.Option(help="May models trained on it be used commercially?")] = True,
    private: Annotated[
        bool, typer.Option(help="Encrypt contributions (readable by curators and grantees only).")
    ] = False,
    restricted: Annotated[bool, typer.Option(help="Only trainers you allow may post jobs on it.")] = False,
    min_stake: Annotated[str, typer.Option(help="OPEN a contributor bonds per contribution (e.g. 10 or 0.5).")] = "10",
    slash_percent: Annotated[float, typer.Option(help="Share of the stake slashed on rejection.")] = 50.0,
    lock_days: Annotated[float, typer.Option(help=_LOCK_HELP)] = 7.0,
    curator: Annotated[list[str] | None, typer.Option(help="Curator address (repeatable; default: you).")] = None,
    treasury: Annotated[str | None, typer.Option(help="Receives slashes and fees (default: you).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a Datanet owned by your wallet; metadata (and license text) go to IPFS first."""
    from node.storage import open_store  # the storage layer loads only for commands that need it

    if license_file is not None and not license_file.is_file():
        raise InputError(f"--license-file {license_file} is not a readable file; give the path of the license text.")
    terms = DatanetTerms(
        name=name, description=description, license=license, commercial=commercial, private=private,
        restricted=restricted, min_stake=min_stake, slash_percent=slash_percent, lock_days=lock_days,
        curators=curator or [], treasury=treasury,
        license_text=license_file.read_bytes() if license_file is not None else None,
    )  # fmt: skip
    check_terms(terms)  # before the wallet is unlocked: nothing is stored or sent for terms the chain refuses
    s = settings(ctx)
    proto = write_protocol(ctx)
    store = open_store(s)
    params = datanet_params(terms, proto.address, store)
    metadata_cid, license_ref = params.metadataCID, params.license
    if private:  # every key holder must have an encryption key before the Datanet exists
        from node.data.grants import ensure_encryption_key, missing_encryption_keys

        ensure_encryption_key(proto)
        missing = missing_encryption_keys(proto, [c for c in params.curators if c != proto.address])
        if missing:
            raise KeyGrantError(
                f"Curator(s) {', '.join(missing)} have not published an encryption key, so the Datanet key cannot "
                "be wrapped to them. Each runs `datanet keys publish` first; nothing was created."
            )
    datanet_id = proto.create_datanet(params)
    tx = proto.client.last_tx
    out: dict[str, object] = {"datanet_id": datanet_id, "metadata_cid": metadata_cid, "license": license_ref, "tx": tx}
    if private:
        from node.data.grants import publish_datanet_key

        key = publish_datanet_key(proto, store, datanet_id, holders=params.curators)
        out |= {"key_version": key.keyVersion, "public_key": "0x" + key.publicKey.hex(), "key_grants": key.keyGrantsCID}
    if json_out:
        print_json(out)
    else:
        console.print(f"created Datanet #{datanet_id} '{name}' (metadata {metadata_cid}) in tx {tx}")
        if private:
            console.print(f"private: files are encrypted to key v{out['key_version']} {out['public_key']}; the "
                          f"owner and {len(params.curators)} curator(s) can decrypt ({out['key_grants']})")  # fmt: skip


@datanet_app.command("list")
def datanet_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """All Datanets."""
    p = read_protocol(ctx)
    items = [p.datanet(i) for i in range(1, p.datanet_count() + 1)]
    if json_out:
        print_json(items)
        return
    t = Table("#", "name", "owner", "contributions", "approved", "min stake", "license", "private")
    for d in items:
        t.add_row(str(d.id), d.name, d.owner, str(d.contributionCount), str(d.approvedCount),
                  fmt_open(d.minStake), d.license, "yes" if d.isPrivate else "")  # fmt: skip
    console.print(t)


@datanet_app.command("show")
def datanet_show(ctx: typer.Context, datanet_id: DatanetIdArg, json_out: JsonOpt = False) -> None:
    """One Datanet, its metadata and its contributions."""
    p = read_protocol(ctx)
    d = p.datanet(datanet_id)
    contribs = [p.contribution(i) for i in submitted_ids(p, datanetId=datanet_id)]
    trusted = p.trusted_nodes(datanet_id)
    if json_out:
        print_json(
            {
                "datanet": jsonable(d),
                "trusted_nodes": trusted,
                "contributions": [jsonable(c) for c in contribs],
            }
        )
        return
    console.print(f"[bold]Datanet #{d.id} {d.name}[/] owner {d.owner}, treasury {d.treasury}")
    console.print(
        f"license {d.license} (commercial use: {'yes' if d.commercialUse else 'no'}), "
        f"{'private' if d.isPrivate else 'public'}{', restricted' if d.restricted else ''}, "
        f"min stake {fmt_open(d.minStake)}, slash {d.slashBps / 100:g}%, lock {d.lockPeriod / 86400:g} days, "
        f"metadata {d.metadataCID}"
    )
    if d.isPrivate or d.restricted:
        nodes = ", ".join(trusted) or "none yet (`datanet net trust-node`)"
        console.print(f"nodes it trusts to claim its jobs: {nodes}")
    t = Table("#", "contributor", "CID", "records", "stake", "status")
    for c in contribs:
        t.add_row(str(c.id), c.contributor, c.cid, str(c.recordCount), fmt_open(c.stake), c.status.name.lower())
    console.print(t)


@datanet_app.command("trust-node")
def datanet_trust_node(
    ctx: typer.Context,
    datanet_id: Annotated[int, typer.Argument(help="A Datanet you own.")],
    node: Annotated[str, typer.Argument(help="The node operator's address.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Stop trusting it (jobs it holds are unaffected).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Trust a node to claim jobs on your private or restricted Datanet (only such Datanets check):
    the node that claims a job is the one curators grant the data keys to, so no other node can."""
    proto = write_protocol(ctx)
    d = proto.datanet(datanet_id)
    if d.owner != proto.address:
        raise NodeError(f"Datanet #{datanet_id} is owned by {d.owner}, not this wallet ({proto.address}); "
                        "only its owner can change which nodes it trusts.")  # fmt: skip
    address = checksum_address(node, "NODE")
    proto.set_trusted_node(datanet_id, address, not revoke)
    out = {"datanet_id": datanet_id, "node": address, "trusted": not revoke, "checked": d.isPrivate or d.restricted,
           "tx": proto.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    verb = "no longer trusts" if revoke else "trusts"
    note = "" if out["checked"] else " (it is public and unrestricted, so any staked node may claim its jobs anyway)"
    console.print(f"Datanet #{datanet_id} {verb} node {address}{note}; tx {out['tx']}")
