"""Contributors' rewards: `datanet rewards` (what each job pays you, and why) and `datanet claim`.

Everything comes from public artifacts: the model registry and RewardDistributor on-chain, the
attribution document in the content store (`node.rewards.claims` checks its tree against the
on-chain root). `RewardDistributor.claim` pays the account named in the leaf whoever sends it,
so a claim can be relayed (`--relayer`: that wallet pays the gas) or sent for another account.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from web3 import Web3

from node.chain.deploy import fmt_open
from node.chain.protocol import Protocol
from node.cli import epochs as epoch_cli
from node.cli.common import JsonOpt, console, err_console, print_json, read_protocol, settings, signer, write_protocol
from node.cli.operator import chain_now, fmt_when
from node.errors import NodeError
from node.rewards.claims import JobReward, job_rewards, rewarded_models
from node.storage import open_store


class ClaimError(NodeError, ValueError):
    """A claim that cannot be sent as asked (the message says why and what to run instead)."""


AddressOpt = Annotated[str | None, typer.Option("--address", help="Whose rewards (default: your wallet).")]


def _account(ctx: typer.Context, p: Protocol, address: str | None) -> str:
    if address is None:
        return signer(settings(ctx), p.chain_id)[0].address
    if not Web3.is_address(address):
        raise ClaimError(f"--address '{address}' is not an address (0x followed by 40 hex digits).")
    return Web3.to_checksum_address(address)


def _rewards(ctx: typer.Context, p: Protocol, account: str, job: int | None) -> list[JobReward]:
    store, now = open_store(settings(ctx)), chain_now(p)
    models = [m for m in rewarded_models(p) if job is None or m.jobId == job]
    if job is not None and not models:
        raise ClaimError(
            f"Job #{job} has no registered model, so it pays no rewards yet (`datanet job show {job}`: its status)."
        )
    return [job_rewards(p, store, m, account, now) for m in models]


def rewards_cmd(
    ctx: typer.Context,
    address: AddressOpt = None,
    job: Annotated[int | None, typer.Option("--job", help="Only this job.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Per job with a registered model: your weight, share and amount, claimed or not, the claim
    deadline, and per contribution why it earned what it did; then your inference rewards (epoch
    rounds; `--json`: items with "kind": "epoch"). Proofs are checked on-chain."""
    p = read_protocol(ctx)
    who = _account(ctx, p, address)
    items = _rewards(ctx, p, who, job)
    epochs = epoch_cli.epoch_items(ctx, p, who) if job is None else []
    if json_out:
        print_json([*items, *epochs])
        return
    if not items:
        if epochs:
            epoch_cli.print_epoch_table(p, epochs, who)
        else:
            console.print("no job has a registered model yet, so nothing pays rewards")
        return
    now = chain_now(p)
    t = Table("job", "model", "method", "weight", "share", "amount", "status", "claim by", title=f"rewards of {who}")
    for r in items:
        t.add_row(
            f"#{r.job_id}",
            f"#{r.model_id}",
            r.method,
            f"{r.weight}/{r.total_weight}",
            f"{r.share:.2%}",
            fmt_open(r.amount),
            r.status,
            fmt_when(r.claim_deadline, now),
        )
    console.print(t)
    for r in items:
        for c in r.contributions:
            best = ", ".join(f"#{e.index} ({e.score:+d})" for e in c.best) or "-"
            worst = ", ".join(f"#{e.index} ({e.score:+d})" for e in c.worst) or "-"
            console.print(
                f"  job #{r.job_id}, contribution #{c.contribution_id}: {c.examples} examples, score "
                f"{c.score_sum:+d} -> weight {c.weight}; best examples {best}; worst {worst}"
            )
    if any(r.status == "claimable" for r in items):
        console.print(
            "claim with `datanet claim --all` (or `--job N`); unclaimed rewards go back to the poster "
            "after the deadline (`datanet job sweep N`)"
        )
    if epochs:
        epoch_cli.print_epoch_table(p, epochs, who)


def claim_cmd(
    ctx: typer.Context,
    job: Annotated[int | None, typer.Option("--job", help="Claim this job's reward.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Claim every reward not claimed yet (jobs and inference epochs).")
    ] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="Claim for this account (anyone may; the OPEN goes to it).")
    ] = None,
    relayer: Annotated[
        str | None, typer.Option(help="Wallet that sends the claim and pays gas (the OPEN still goes to you).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Claim your OPEN from the RewardDistributor, with proofs from the published reward tree."""
    if (job is None) == (not all_):
        raise ClaimError("Say which rewards to claim: `--job N` for one job, or `--all`.")
    p = read_protocol(ctx)
    who = _account(ctx, p, address)
    sender = _sender(ctx, p, relayer)
    items = _rewards(ctx, p, who, job)
    if job is not None:
        _check_claimable(items[0], chain_now(p))
    todo = [r for r in items if r.status == "claimable"]
    epochs = epoch_cli.epoch_items(ctx, p, who) if all_ else []
    before = p.balance(who)
    results: list[dict[str, Any]] = []
    for r in todo:
        for leaf in (x for x in r.leaves if not x.claimed and x.amount):
            proof = [bytes.fromhex(h[2:]) for h in leaf.proof]
            sender.claim_reward(leaf.job_id, leaf.index, leaf.account, leaf.amount, proof)
            results.append(
                {
                    "job_id": leaf.job_id,
                    "index": leaf.index,
                    "account": leaf.account,
                    "amount": leaf.amount,
                    "tx": sender.client.last_tx,
                }
            )
    results += epoch_cli.claim_epochs(sender, epochs)
    after = p.balance(who)
    out = {
        "account": who,
        "sender": sender.address,
        "claims": results,
        "claimed": sum(c["amount"] for c in results),
        "balance_before": before,
        "balance_after": after,
    }
    if json_out:
        print_json(out)
        return
    if not results:
        console.print(f"{who}: nothing to claim (`datanet rewards` shows each job's status)")
        return
    for c in results:
        console.print(
            f"claimed {fmt_open(c['amount'])} for {who} from {_source(c)} in tx {c['tx']}"
            f"{f' (sent by {sender.address})' if sender.address != who else ''}"
        )
    console.print(f"balance {fmt_open(before)} -> {fmt_open(after)}")


def _source(claim: dict[str, Any]) -> str:
    if claim.get("kind") == "epoch":
        return f"inference epoch {claim['node_epoch']} of node {claim['node']}"
    return f"job #{claim['job_id']}"


def _sender(ctx: typer.Context, p: Protocol, relayer: str | None) -> Protocol:
    if relayer is None:
        return write_protocol(ctx)
    from node.cli.wallet import wallet_path

    s = settings(ctx).model_copy(update={"keystore": wallet_path(settings(ctx), relayer)})
    account, _ = signer(s, p.chain_id)
    err_console.print(f"[dim]sending as relayer {account.address}[/]")
    return p.as_account(account)


def _check_claimable(r: JobReward, now: int) -> None:
    """For `--job N`: why there is nothing to claim, as an error (with `--all` it is a skip)."""
    if r.status == "claimable":
        return
    why = {
        "none": f"{r.account} has no reward in job #{r.job_id} (weight {r.weight} of {r.total_weight})",
        "claimed": f"job #{r.job_id}'s reward of {fmt_open(r.amount)} for {r.account} is already claimed",
        "swept": f"job #{r.job_id}'s claim window closed and its unclaimed rewards were swept back to the poster",
        "window-closed": f"job #{r.job_id}'s claim window closed {fmt_when(r.claim_deadline, now)}; the unclaimed rest "
        "goes back to the poster with `datanet job sweep`",
    }[r.status]
    raise ClaimError(f"Nothing to claim: {why}. `datanet rewards --job {r.job_id}` shows it.")
