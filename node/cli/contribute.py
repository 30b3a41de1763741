"""Contributors and curators: `datanet contribute`, `datanet contributions [list|withdraw]`,
`datanet curate`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from web3.logs import DISCARD

from node.chain.accounts import checksum_address
from node.chain.contributions import submitted_ids
from node.chain.deploy import fmt_open
from node.chain.models import Contribution, ContributionStatus
from node.chain.protocol import Protocol
from node.chain.units import parse_open
from node.cli.common import (
    ContributionIdArg,
    JsonOpt,
    console,
    jsonable,
    print_json,
    read_protocol,
    settings,
    signer,
    write_protocol,
)
from node.cli.operator import chain_now, fmt_when
from node.cli.wallet import wallet_path
from node.data.contribute import Journal, contribute_files
from node.data.records import SourceRecord
from node.data.validate import load_bytes, validate_bytes
from node.errors import ContentMismatchError, ContributionError
from node.storage import open_store

curate_app = typer.Typer(no_args_is_help=True, help="Review contributions as a curator.")


def contribute_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Data files: alpaca/sharegpt/openai/text JSONL, JSON or .txt.")],
    datanet: Annotated[int, typer.Option("--datanet", help="Datanet id.")],
    stake: Annotated[
        str | None, typer.Option(help="OPEN to bond per file, e.g. 12.5 (default: the Datanet's minimum).")
    ] = None,
    relayer: Annotated[
        str | None, typer.Option(help="Wallet that sends the transaction and pays gas (you only sign).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate, upload to IPFS, then stake (EIP-2612 permit) and submit each file on-chain."""
    s = settings(ctx)
    given = parse_open(stake, "--stake") if stake is not None else None  # a typo fails before the chain
    proto = write_protocol(ctx)
    relay_proto = _relayer(ctx, proto, relayer) if relayer else None
    d = proto.datanet(datanet)
    amount = given if given is not None else d.minStake
    seal = None
    if d.isPrivate:  # encrypted on this machine, to the Datanet's published key, before upload
        from node.data.grants import sealer

        seal = sealer(proto, datanet)
    results = contribute_files(
        proto, open_store(s), datanet, files, amount, Journal(s.data_dir / "contributions-journal.json"),
        relayer=relay_proto, seal=seal,
    )  # fmt: skip
    statuses = [proto.contribution(r.contribution_id).status.name.lower() for r in results]
    if json_out:
        print_json([jsonable(r) | {"status": st} for r, st in zip(results, statuses, strict=True)])
        return
    for r, st in zip(results, statuses, strict=True):
        note = "already submitted earlier" if r.already_submitted else f"tx {r.tx}"
        console.print(f"[green]✓[/] {r.file}: contribution #{r.contribution_id} ({st}), {r.cid} ({r.records} "
                      f"records, stake {fmt_open(r.stake)}{', relayed' if r.relayed else ''}) {note}")  # fmt: skip


def _relayer(ctx: typer.Context, proto: Protocol, name: str) -> Protocol:
    s = settings(ctx).model_copy(update={"keystore": wallet_path(settings(ctx), name)})
    account, _ = signer(s, proto.chain_id)
    return proto.as_account(account)


contributions_app = typer.Typer(
    invoke_without_command=True, help="Your contributions: list them (the default), withdraw a stake."
)


@contributions_app.callback()
def _contributions_default(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Option(help="Whose contributions (default: your wallet).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Your contributions with their status and stake (`datanet contributions` alone lists them)."""
    if ctx.invoked_subcommand is None:
        contributions_list(ctx, address, json_out)


@contributions_app.command("list")
def contributions_list(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Option(help="Whose contributions (default: your wallet).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Your contributions with their status, stake, and when the stake can be withdrawn."""
    p = read_protocol(ctx)
    who = checksum_address(address, "--address") if address else signer(settings(ctx), p.chain_id)[0].address
    items = [p.contribution(i) for i in submitted_ids(p, contributor=who)]
    unlocks = {c.id: _unlocks_at(p, c) for c in items}
    if json_out:
        print_json([jsonable(c) | {"unlocks_at": unlocks[c.id]} for c in items])
        return
    now = chain_now(p)
    t = Table("#", "datanet", "CID", "records", "stake", "status", "withdrawable", title=f"contributions of {who}")
    for c in items:
        at = unlocks[c.id]
        t.add_row(str(c.id), str(c.datanetId), c.cid, str(c.recordCount), fmt_open(c.stake), c.status.name.lower(),
                  "" if at is None else ("now" if at <= now else fmt_when(at, now)))  # fmt: skip
    console.print(t)


def _unlocks_at(p: Protocol, c: Contribution) -> int | None:
    """When `DatanetRegistry.withdraw` accepts this contribution (None: never, it has no stake left):
    the lock runs from the approval, or from the submission while it is still pending."""
    if c.status not in (ContributionStatus.APPROVED, ContributionStatus.PENDING) or not c.stake:
        return None
    since = c.decidedAt if c.status == ContributionStatus.APPROVED else c.submittedAt
    return since + p.datanet(c.datanetId).lockPeriod


@contributions_app.command("withdraw")
def contributions_withdraw(
    ctx: typer.Context,
    contribution_id: Annotated[int, typer.Argument(help="Contribution id (`datanet contributions`).")],
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a contribution's stake after its lock period (an approved one also leaves the
    Datanet: later jobs no longer train on it)."""
    p = write_protocol(ctx)
    if not 1 <= contribution_id <= p.contribution_count():
        raise ContributionError(f"No contribution #{contribution_id} (`datanet contributions` lists yours).")
    c = p.contribution(contribution_id)
    if c.contributor != p.address:
        raise ContributionError(
            f"Contribution #{contribution_id} was submitted by {c.contributor}; only it can withdraw the stake "
            f"(this wallet is {p.address}; pick the right one with --wallet)."
        )
    at, now = _unlocks_at(p, c), chain_now(p)
    if at is None:
        raise ContributionError(f"Contribution #{contribution_id} is {c.status.name.lower()}: it has no stake left "
                                "to withdraw.")  # fmt: skip
    if now < at:
        raise ContributionError(f"Contribution #{contribution_id}'s stake of {fmt_open(c.stake)} is locked until "
                                f"{fmt_when(at, now)}; run `datanet contributions withdraw {contribution_id}` "
                                "again after that.")  # fmt: skip
    before = p.balance()
    p.withdraw_contribution(contribution_id)
    out = {"contribution_id": contribution_id, "datanet_id": c.datanetId, "withdrawn": c.stake,
           "was": c.status.name.lower(), "status": p.contribution(contribution_id).status.name.lower(),
           "balance_before": before, "balance_after": p.balance(), "tx": p.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"withdrew {fmt_open(c.stake)} of stake from contribution #{contribution_id} (was {out['was']}, "
                  f"now withdrawn) in tx {out['tx']}")  # fmt: skip


@contributions_app.command("cancel-signatures")
def contributions_cancel_signatures(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Void every contribution you signed for a relayer (`contribute --relayer`) that has not been
    sent yet: uses up your signature nonce, so no such signature can be relayed any more."""
    p = write_protocol(ctx)
    before = p.contribution_nonce()
    p.invalidate_nonce()
    out = {"account": p.address, "nonce_before": before, "nonce_after": p.contribution_nonce(),
           "tx": p.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"signatures for nonce {before} of {p.address} can no longer be relayed (tx {out['tx']})")


@curate_app.command("list")
def curate_list(
    ctx: typer.Context,
    datanet: Annotated[int, typer.Option("--datanet", help="Datanet id.")],
    all_: Annotated[bool, typer.Option("--all", help="Show decided ones too, not only pending.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Contributions waiting for a decision."""
    p = read_protocol(ctx)
    items = [p.contribution(i) for i in submitted_ids(p, datanetId=datanet)]
    if not all_:
        items = [c for c in items if c.status == ContributionStatus.PENDING]
    if json_out:
        print_json(items)
        return
    t = Table("#", "contributor", "CID", "records", "bytes", "stake", "status")
    for c in items:
        t.add_row(str(c.id), c.contributor, c.cid, str(c.recordCount), str(c.byteSize), fmt_open(c.stake),
                  c.status.name.lower())  # fmt: skip
    console.print(t)


@curate_app.command("show")
def curate_show(
    ctx: typer.Context,
    contribution_id: ContributionIdArg,
    records: Annotated[int, typer.Option(help="How many records to preview.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a contribution from IPFS, verify it against its CID and on-chain sha256, preview it."""
    p = read_protocol(ctx)
    c = p.contribution(contribution_id)
    data = open_store(settings(ctx)).cat(c.cid)  # verified against the CID
    if hashlib.sha256(data).digest() != c.contentHash:
        raise ContentMismatchError(
            f"Contribution #{c.id}: content of {c.cid} does not match the sha256 recorded on-chain "
            f"(0x{c.contentHash.hex()}); reject it."
        )
    private = p.datanet(c.datanetId).isPrivate
    if private:  # decrypted here, with this wallet's key; the plaintext never leaves the machine
        from node.data.grants import open_as_holder

        data = open_as_holder(write_protocol(ctx), open_store(settings(ctx)), c, envelope=data)
    report = validate_bytes(data, f"contribution-{c.id}")
    preview = [jsonable(r.example) for r in _examples(data, c.id)[:records]]
    if json_out:
        print_json({"contribution": jsonable(c), "validation": jsonable(report),
                    "preview": preview})  # fmt: skip
        return
    console.print(f"[bold]#{c.id}[/] by {c.contributor}: {c.cid}, {c.recordCount} records, {c.byteSize} bytes, "
                  f"status {c.status.name.lower()}; content verified (CID + sha256)"
                  f"{', decrypted locally' if private else ''}")  # fmt: skip
    console.print("validation: " + ("ok" if report.ok else report.render(5)))
    for example in preview:
        console.print(example)


def _examples(data: bytes, contribution_id: int) -> list[SourceRecord]:
    return load_bytes(data, f"contribution-{contribution_id}")


@curate_app.command("approve")
def curate_approve(ctx: typer.Context, contribution_id: ContributionIdArg, json_out: JsonOpt = False) -> None:
    """Approve a pending contribution (curators only)."""
    p = write_protocol(ctx)
    p.approve_contribution(contribution_id)
    c = p.contribution(contribution_id)
    if json_out:
        print_json({"contribution_id": contribution_id, "datanet_id": c.datanetId, "status": c.status.name.lower(),
                    "stake": c.stake, "tx": p.client.last_tx})  # fmt: skip
        return
    console.print(f"approved #{contribution_id} in tx {p.client.last_tx}")


@curate_app.command("reject")
def curate_reject(
    ctx: typer.Context,
    contribution_id: ContributionIdArg,
    reason: Annotated[str, typer.Option(help="Why (recorded on-chain in the event).")],
    json_out: JsonOpt = False,
) -> None:
    """Reject a pending contribution; the Datanet's slash share of the stake goes to its treasury."""
    p = write_protocol(ctx)
    stake = p.contribution(contribution_id).stake
    receipt = p.reject_contribution(contribution_id, reason)
    # The amount the contract slashed, from its event (not recomputed here).
    [event] = p.datanets.events.ContributionRejected().process_receipt(receipt, errors=DISCARD)
    slashed = int(event["args"]["slashed"])
    c = p.contribution(contribution_id)
    if json_out:
        print_json({"contribution_id": contribution_id, "datanet_id": c.datanetId, "status": c.status.name.lower(),
                    "reason": reason, "stake": stake, "slashed": slashed, "refunded": stake - slashed,
                    "treasury": p.datanet(c.datanetId).treasury, "tx": p.client.last_tx})  # fmt: skip
        return
    console.print(f"rejected #{contribution_id} ({reason}); slashed {fmt_open(slashed)} to the treasury, refunded "
                  f"{fmt_open(stake - slashed)} to the contributor")  # fmt: skip
    console.print(f"  tx {p.client.last_tx}")
