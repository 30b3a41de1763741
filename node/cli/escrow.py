"""`datanet escrow deposit|balance|withdraw`: a payer's prepaid inference fees (InferenceEscrow).

The account behind API keys prepays OPEN for one serving node; at the end of each epoch the node
charges what it served and the charge funds the contributors' epoch round directly (never the
node's wallet). Unspent funds leave in two steps, `withdraw AMOUNT` (a request) and, after the
escrow's withdraw delay, `withdraw` again (takes it), so the node can still settle usage it served
before the request; charges in between reduce what is taken.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from web3 import Web3

from node.chain import inference
from node.chain.deploy import fmt_open
from node.chain.protocol import Protocol
from node.cli.common import JsonOpt, console, print_json, read_protocol, settings, signer, write_protocol
from node.cli.operator import chain_now, fmt_when, open_units
from node.errors import NodeError

escrow_app = typer.Typer(
    no_args_is_help=True, help="Prepay inference fees for a serving node (InferenceEscrow), and take them back."
)

NodeArg = Annotated[str, typer.Argument(help="The serving node's address (its wallet, as its API says).")]


class EscrowError(NodeError, ValueError):
    """An escrow command that cannot work as asked (the message says why and what to run instead)."""


def _node(node: str) -> str:
    if not Web3.is_address(node):
        raise EscrowError(f"NODE '{node}' is not an address (0x followed by 40 hex digits).")
    return Web3.to_checksum_address(node)


def _state(p: Protocol, node: str, payer: str) -> dict[str, Any]:
    a = inference.escrow_account(p, node, payer)
    return {"payer": payer, "node": node, **a.model_dump(), "withdraw_delay": inference.withdraw_delay(p)}


@escrow_app.command("deposit")
def escrow_deposit(
    ctx: typer.Context,
    node: NodeArg,
    amount: Annotated[str, typer.Argument(help="OPEN to prepay (e.g. 100 or 0.5).")],
    json_out: JsonOpt = False,
) -> None:
    """Prepay AMOUNT OPEN of inference fees for NODE (approves the escrow, then deposits)."""
    p = write_protocol(ctx)
    who, value = _node(node), open_units(amount, "AMOUNT")
    balance = p.balance()
    if balance < value:
        raise EscrowError(f"Wallet {p.address} holds {fmt_open(balance)}, the deposit needs {fmt_open(value)}.")
    inference.deposit(p, who, value)
    out = {**_state(p, who, p.address), "deposited": value, "tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    console.print(f"deposited {fmt_open(value)} for node {who}: balance {fmt_open(out['balance'])} (tx {out['tx']})")


@escrow_app.command("balance")
def escrow_balance(
    ctx: typer.Context,
    node: NodeArg,
    address: Annotated[str | None, typer.Option("--address", help="Whose funds (default: your wallet).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Your prepaid balance for NODE and any pending withdrawal."""
    p = read_protocol(ctx)
    if address is not None and not Web3.is_address(address):
        raise EscrowError(f"--address '{address}' is not an address (0x followed by 40 hex digits).")
    payer = Web3.to_checksum_address(address) if address else signer(settings(ctx), p.chain_id)[0].address
    out = _state(p, _node(node), payer)
    if json_out:
        print_json(out)
        return
    console.print(f"{payer} has {fmt_open(out['balance'])} prepaid for node {out['node']}")
    if out["requested"]:
        console.print(
            f"withdrawal of {fmt_open(out['requested'])} pending, ready {fmt_when(out['readyAt'], chain_now(p))}"
        )


@escrow_app.command("withdraw")
def escrow_withdraw(
    ctx: typer.Context,
    node: NodeArg,
    amount: Annotated[
        str | None,
        typer.Argument(help="OPEN to request (starts the wait); leave out to take a request whose wait is over."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Request the whole balance.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Take unspent funds back in two steps: `withdraw NODE AMOUNT` (or `--all`) requests, and after
    the escrow's withdraw delay `withdraw NODE` pays out (at most what charges since have left)."""
    p = write_protocol(ctx)
    who = _node(node)
    before = inference.escrow_account(p, who)
    if amount is not None or all_:
        value = before.balance if all_ else open_units(str(amount), "AMOUNT")
        if value == 0 or value > before.balance:
            raise EscrowError(
                f"{p.address} has {fmt_open(before.balance)} prepaid for node {who}; request at most that "
                f"(`datanet escrow balance {who}`)."
            )
        inference.request_withdraw(p, who, value)
        out = {**_state(p, who, p.address), "step": "requested", "tx": p.client.last_tx}
        message = f"requested {fmt_open(value)}: take it with `datanet escrow withdraw {who}` after " + fmt_when(
            out["readyAt"], chain_now(p)
        )
    else:
        if before.requested == 0:
            raise EscrowError(
                f"No withdrawal is pending for node {who}; request one first: `datanet escrow withdraw {who} AMOUNT` "
                "(or --all)."
            )
        now = chain_now(p)
        if now < before.readyAt:
            raise EscrowError(f"The withdrawal is not ready yet: take it after {fmt_when(before.readyAt, now)}.")
        paid = p.balance()
        inference.withdraw(p, who)
        paid = p.balance() - paid
        out = {**_state(p, who, p.address), "step": "withdrawn", "withdrawn": paid, "tx": p.client.last_tx}
        message = f"withdrew {fmt_open(paid)} from node {who}'s escrow; {fmt_open(out['balance'])} left"
    if json_out:
        print_json(out)
        return
    console.print(message)
