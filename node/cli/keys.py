"""`datanet keys publish|show` and `datanet grant`: the keys of private Datanets.

A private Datanet's files are encrypted to its key; only the owner and curators hold it. A node
that claims a job on it gets, by `datanet grant --job N` (run by the owner or a curator), the keys
of exactly the files approved for that job, wrapped to the node's published encryption key.
"""

from __future__ import annotations

from typing import Annotated

import typer

from node.chain.accounts import checksum_address
from node.cli.common import JsonOpt, console, print_json, read_protocol, settings, write_protocol
from node.data.grants import KeyGrantError

keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys for private Datanets.")


@keys_app.command("publish")
def keys_publish(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Publish your wallet's encryption key (derived from it), so keys can be wrapped to you."""
    from node.data.grants import ensure_encryption_key

    p = write_protocol(ctx)
    already = p.encryption_key_of() is not None
    key = ensure_encryption_key(p)
    changed = not already or p.client.last_receipt is not None
    out = {"account": p.address, "encryption_key": "0x" + key.hex(), "published_now": changed}
    if json_out:
        print_json(out)
    else:
        console.print(f"{p.address}: encryption key 0x{key.hex()} {'published' if changed else 'already published'}")


@keys_app.command("show")
def keys_show(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Argument(help="Account (default: your wallet).")] = None,
    datanet: Annotated[int | None, typer.Option(help="Also show this private Datanet's current key.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """An account's published encryption key, and a Datanet's key version."""
    p = read_protocol(ctx)
    who = checksum_address(account, "ACCOUNT") if account else write_protocol(ctx).address
    key = p.encryption_key_of(who)
    out: dict[str, object] = {"account": who, "encryption_key": "0x" + key.hex() if key else None}
    if datanet is not None:
        k = p.datanet_key(datanet)
        out["datanet"] = {"id": datanet, "key_version": k.keyVersion, "public_key": "0x" + k.publicKey.hex(),
                          "key_grants": k.keyGrantsCID}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"{who}: " + (f"encryption key {out['encryption_key']}" if key else "no encryption key published"))
    if datanet is not None:
        console.print(f"Datanet #{datanet}: {out['datanet']}")


def grant_cmd(
    ctx: typer.Context,
    job: Annotated[int | None, typer.Option("--job", help="Grant the node that claimed this job its keys.")] = None,
    datanet: Annotated[int | None, typer.Option(help="Only this Datanet (default: all private ones yours).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="With --datanet, no --job: a standing grant of the Datanet "
                                                        "key to this account (a curator added later).")] = None,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Grant read access to a private Datanet: per job to its node, or a standing grant (owner)."""
    from node.data.grants import grant_job, grant_standing
    from node.storage import open_store

    p = write_protocol(ctx)
    store = open_store(settings(ctx))
    if job is None:
        if datanet is None or to is None:
            raise KeyGrantError("Pass --job N (grant a job's node), or --datanet ID --to ADDRESS (standing grant).")
        g = grant_standing(p, store, datanet, to)
        if json_out:
            print_json(g)
        else:
            console.print(f"standing grant of Datanet #{datanet}'s key to {g.grantee}: {g.grantCID}")
        return
    j = p.job(job)
    targets = [datanet] if datanet is not None else [
        d for d in j.datanetIds
        if p.datanet(d).isPrivate and (p.datanet(d).owner == p.address or p.is_curator(d, p.address))
    ]  # fmt: skip
    if not targets:
        raise KeyGrantError(
            f"Job #{job}'s Datanets {j.datanetIds} include no private Datanet that {p.address} owns or curates."
        )
    results = [grant_job(p, store, d, job) for d in targets]
    if json_out:
        print_json(results)
        return
    for r in results:
        skipped = f"; skipped {sorted(r.skipped)}" if r.skipped else ""
        console.print(f"[green]✓[/] Datanet #{r.datanet_id}, job #{job}: granted {r.grantee} the keys of "
                      f"contributions {r.files} (approved by block {r.block}) in {r.grant_cid}{skipped}")  # fmt: skip
