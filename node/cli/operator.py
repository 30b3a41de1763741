"""`datanet node stake|unbond|withdraw|show`: a training node's bond in NodeStaking.

A node needs an active stake of at least `NodeStaking.minStake` to claim jobs, and each claim
reserves a bond out of its free stake (the contributors' part of the job's pool, at least the
minimum) until the job ends; `datanet daemon` checks both before every claim. Unbonding takes only
free stake out of `active` at once; `withdraw` pays it out after the unbonding period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from web3 import Web3

from node.chain.deploy import fmt_open
from node.chain.protocol import Protocol
from node.chain.units import parse_open
from node.cli.common import JsonOpt, console, print_json, read_protocol, settings, signer, write_protocol
from node.errors import NodeError

node_app = typer.Typer(no_args_is_help=True, help="Stake OPEN as a training node (NodeStaking).")

PERMIT_TTL = 3600  # seconds a stake permit stays valid; it is used in the very next transaction


class StakingError(NodeError, ValueError):
    """A staking command that cannot work as asked (the message says why and what to run instead)."""


def open_units(amount: str, what: str) -> int:
    """`amount` OPEN ("1000", "0.5") as base units, exactly (no float rounding): `units.parse_open`."""
    return parse_open(amount, what)


def chain_now(p: Protocol) -> int:
    """The latest block's timestamp: what the contracts compare deadlines with."""
    return int(p.client.rpc(lambda: p.client.w3.eth.get_block("latest")["timestamp"], "get latest block"))


def fmt_when(ts: int, now: int) -> str:
    """A chain timestamp as UTC, with how far it is from `now` (chain time)."""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    left = ts - now
    if left <= 0:
        return f"{stamp} (passed)"
    days, rest = divmod(left, 86_400)
    return f"{stamp} (in {f'{days}d ' if days else ''}{rest // 3600}h {rest % 3600 // 60}m)"


@node_app.command("stake")
def node_stake(
    ctx: typer.Context,
    amount: Annotated[
        str | None, typer.Argument(help="OPEN to bond (default: what is missing to the minimum node stake).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Bond OPEN as this wallet's node stake (one transaction: EIP-2612 permit, no approve)."""
    p = write_protocol(ctx)
    before, minimum = p.node_stake(), p.min_node_stake()
    value = open_units(amount, "AMOUNT") if amount is not None else max(minimum - before.active, 0)
    if value == 0:  # idempotent: a setup script may run `datanet node stake` every time
        _print_stake_result(p, 0, None, json_out, note="already at or above the minimum; nothing staked")
        return
    balance = p.balance()
    if balance < value:
        raise StakingError(
            f"Wallet {p.address} holds {fmt_open(balance)}, staking needs {fmt_open(value)}. Get OPEN "
            "sent to it (on the dev chain, `datanet deploy` funds dev accounts 1..9)."
        )
    deadline = chain_now(p) + PERMIT_TTL
    p.stake(value, p.permit(p.staking.address, value, deadline))
    _print_stake_result(p, value, p.client.last_tx, json_out)


def _print_stake_result(p: Protocol, staked: int, tx: str | None, json_out: bool, note: str = "") -> None:
    st, minimum = p.node_stake(), p.min_node_stake()
    eligible = p.is_eligible_node()
    if json_out:
        print_json({"node": p.address, "staked": staked, "active": st.active, "min_stake": minimum,
                    "eligible": eligible, "tx": tx})  # fmt: skip
        return
    head = f"staked {fmt_open(staked)} in tx {tx}" if tx else note
    console.print(f"{p.address}: {head}; active stake {fmt_open(st.active)} (minimum {fmt_open(minimum)}), "
                  f"{'eligible to claim jobs' if eligible else 'not yet eligible to claim jobs'}")  # fmt: skip


@node_app.command("unbond")
def node_unbond(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="OPEN to move from active stake to unbonding.")],
    json_out: JsonOpt = False,
) -> None:
    """Start unbonding part of the active stake (restarts the unbonding clock for all of it)."""
    p = write_protocol(ctx)
    value = open_units(amount, "AMOUNT")
    st = p.node_stake()
    if st.free < value:
        raise StakingError(
            f"Node {p.address} has {fmt_open(st.free)} free ({fmt_open(st.active)} active, {fmt_open(st.reserved)} "
            f"reserved as the bonds of {st.jobs} claimed job(s)), cannot unbond {fmt_open(value)}; "
            "see `datanet node show`."
        )
    p.request_unbond(value)
    tx = p.client.last_tx
    st = p.node_stake()
    if json_out:
        print_json({"node": p.address, "unbonded": value, "active": st.active, "unbonding": st.unbonding,
                    "unbonding_ends_at": st.unbondingEndsAt, "tx": tx})  # fmt: skip
        return
    console.print(f"{p.address}: unbonding {fmt_open(st.unbonding)} in tx {tx}; withdraw it with "
                  f"`datanet node withdraw` after {fmt_when(st.unbondingEndsAt, chain_now(p))}; "
                  f"active stake now {fmt_open(st.active)}"
                  f"{'' if p.is_eligible_node() else ', below the minimum: this node cannot claim jobs'}")  # fmt: skip


@node_app.command("withdraw")
def node_withdraw(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Withdraw all unbonded stake once the unbonding period has passed."""
    p = write_protocol(ctx)
    st, now = p.node_stake(), chain_now(p)
    if st.unbonding == 0:
        raise StakingError(f"Node {p.address} has nothing unbonding; start with `datanet node unbond AMOUNT`.")
    if now < st.unbondingEndsAt:
        raise StakingError(
            f"Node {p.address}'s {fmt_open(st.unbonding)} is still unbonding until "
            f"{fmt_when(st.unbondingEndsAt, now)}; run `datanet node withdraw` again after that."
        )
    p.withdraw_stake()
    tx = p.client.last_tx
    if json_out:
        print_json({"node": p.address, "withdrawn": st.unbonding, "tx": tx})
        return
    console.print(f"{p.address}: withdrew {fmt_open(st.unbonding)} in tx {tx}")


@node_app.command("show")
def node_show(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="Node address (default: your wallet).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A node's stake: active, reserved as claimed jobs' bonds, free, unbonding and when it can be
    withdrawn, eligibility."""
    p = read_protocol(ctx)
    if address is not None and not Web3.is_address(address):
        raise StakingError(f"'{address}' is not an address (0x followed by 40 hex digits).")
    who = Web3.to_checksum_address(address or signer(settings(ctx), p.chain_id)[0].address)
    st, now, minimum = p.node_stake(who), chain_now(p), p.min_node_stake()
    withdrawable = st.unbonding > 0 and now >= st.unbondingEndsAt
    balance, eligible = p.balance(who), p.is_eligible_node(who)
    info = {
        "node": who,
        "balance": balance,
        "active": st.active,
        "reserved": st.reserved,
        "free": st.free,
        "jobs": st.jobs,
        "unbonding": st.unbonding,
        "unbonding_ends_at": st.unbondingEndsAt if st.unbonding else None,
        "withdrawable_now": withdrawable,
        "min_stake": minimum,
        "unbonding_period": p.unbonding_period(),
        "eligible": eligible,
    }
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]node {who}[/] (wallet balance {fmt_open(balance)})")
    console.print(f"  active stake  {fmt_open(st.active)} (minimum {fmt_open(minimum)}): "
                  f"{'eligible' if eligible else 'not eligible'} to claim jobs")  # fmt: skip
    console.print(f"  reserved      {fmt_open(st.reserved)}: the bonds of {st.jobs} claimed job(s) in flight")
    console.print(f"  free          {fmt_open(st.free)}: what new claims' bonds and unbonding can use")
    console.print(f"  unbonding     {_unbonding_line(st.unbonding, st.unbondingEndsAt, now)}")


def _unbonding_line(unbonding: int, ends_at: int, now: int) -> str:
    if not unbonding:
        return "none"
    if now < ends_at:
        return f"{fmt_open(unbonding)}, withdrawable after {fmt_when(ends_at, now)}"
    return f"{fmt_open(unbonding)}, withdrawable now (`datanet node withdraw`)"
