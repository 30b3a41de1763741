"""`datanet params show|propose|execute`: the protocol's parameters and the timelocked way to change them.

Most parameters are fixed at deployment (the challenge window, the challenge bond, the maximum
training time, the claim window). NodeStaking's `minStake` and `unbondingPeriod` stay adjustable,
but only through the ProtocolTimelock: its proposer schedules a change, and anyone executes it
after the delay, which is at least the unbonding period plus the challenge window, so every node
can unbond and every result in flight can be finalized before the change applies.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from node.chain.deploy import fmt_open
from node.chain.protocol import Protocol
from node.cli.common import JsonOpt, console, print_json, read_protocol, write_protocol
from node.cli.operator import chain_now, fmt_when, open_units
from node.errors import NodeError

params_app = typer.Typer(no_args_is_help=True, help="Protocol parameters and timelocked changes to them.")
DAY = 86_400


class ParamsError(NodeError, ValueError):
    """A parameter change that cannot be proposed or executed now (says why)."""


MinStakeOpt = Annotated[str, typer.Option("--min-stake", help="New minimum node stake, in OPEN.")]
UnbondingOpt = Annotated[float, typer.Option("--unbonding-days", help="New unbonding period, in days.")]
SaltOpt = Annotated[str, typer.Option("--salt", help="0x-hex salt (32 bytes) telling apart equal proposals.")]


def _salt(hex_salt: str) -> bytes:
    try:
        salt = bytes.fromhex(hex_salt.removeprefix("0x"))
    except ValueError:
        salt = b""
    if len(salt) > 32 or not hex_salt:
        raise ParamsError(f"--salt {hex_salt!r} is not 0x-hex of at most 32 bytes.")
    return salt.rjust(32, b"\0")


def _values(min_stake: str, unbonding_days: float) -> tuple[int, int]:
    if unbonding_days < 0:
        raise ParamsError(f"--unbonding-days must not be negative, got {unbonding_days}.")
    return open_units(min_stake, "--min-stake"), round(unbonding_days * DAY)


def parameters(p: Protocol) -> dict[str, Any]:
    call, c = p.client.call, p.challenges.functions
    commit, reveal, answer = p.challenge_periods()
    return {
        "min_node_stake": p.min_node_stake(),
        "unbonding_period": p.unbonding_period(),
        "timelock": p.timelock.address,
        "timelock_delay": int(call(p.timelock.functions.getMinDelay())),
        "max_training_time": p.max_training_time(),
        "claim_window": int(call(p.rewards.functions.claimWindow())),
        "challenge_bond": int(call(c.challengeBond())),
        "challenge_periods": {"commit": commit, "reveal": reveal, "answer": answer},
        "challenger_bps": int(call(p.models.functions.CHALLENGER_BPS())),
        "burn_bps": int(call(p.models.functions.BURN_BPS())),
        "verifier_fee_bps": int(call(p.models.functions.VERIFIER_FEE_BPS())),
        "court": _court(p) if "VerifierCourt" in p.deployment.contracts else None,
    }


def _court(p: Protocol) -> dict[str, int]:
    call, f = p.client.call, p.court.functions
    return {
        "min_verifier_stake": int(call(f.minVerifierStake())),
        "committee_size": int(call(f.committeeSize())),
        "appeal_bond": int(call(f.appealBond())),
        "vote_period": int(call(f.votePeriod())),
        "reveal_vote_period": int(call(f.revealVotePeriod())),
        "appeal_period": int(call(f.appealPeriod())),
        "leave_delay": int(call(f.leaveDelay())),
        "committee_bps": int(call(f.COMMITTEE_BPS())),
        "no_vote_slash_bps": int(call(f.NO_VOTE_SLASH_BPS())),
    }


@params_app.command("show")
def params_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The protocol's parameters: staking, timelock delay, challenge window and bond, windows."""
    out = parameters(read_protocol(ctx))
    if json_out:
        print_json(out)
        return
    w = out["challenge_periods"]
    console.print(
        f"minimum node stake   {fmt_open(out['min_node_stake'])}\n"
        f"unbonding period     {out['unbonding_period'] / DAY:g} days\n"
        f"timelock delay       {out['timelock_delay'] / DAY:g} days  ({out['timelock']}: changes the two above)\n"
        f"max training time    {out['max_training_time'] / DAY:g} days\n"
        f"challenge window     commit {w['commit']} s, reveal {w['reveal']} s, answer {w['answer']} s\n"
        f"challenge bond       {fmt_open(out['challenge_bond'])}; an upheld challenge pays "
        f"{out['challenger_bps'] / 100:g} % of the node's bond, burns {out['burn_bps'] / 100:g} %\n"
        f"reward claim window  {out['claim_window'] / DAY:g} days\n"
        f"verifier fee         {out['verifier_fee_bps'] / 100:g} % of each pool, paid by the poster on top of it"
    )
    if (court := out["court"]) is not None:
        console.print(
            f"verifier court       committees of {court['committee_size']} (appeal: "
            f"{2 * court['committee_size'] + 1}), minimum stake {fmt_open(court['min_verifier_stake'])}, "
            f"appeal bond {fmt_open(court['appeal_bond'])}\n"
            f"court periods        vote {court['vote_period']} s, reveal {court['reveal_vote_period']} s, appeal "
            f"{court['appeal_period']} s, leave {court['leave_delay']} s; a silent member loses "
            f"{court['no_vote_slash_bps'] / 100:g} % of its stake"
        )


@params_app.command("propose")
def params_propose(
    ctx: typer.Context, min_stake: MinStakeOpt, unbonding_days: UnbondingOpt, salt: SaltOpt = "0x00",
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Schedule new staking parameters in the timelock (its proposer only); executable after the delay."""
    p = write_protocol(ctx)
    stake, unbonding = _values(min_stake, unbonding_days)
    op = p.propose_staking_parameters(stake, unbonding, _salt(salt))
    ready = p.operation_ready_at(op)
    out = {"operation": "0x" + op.hex(), "min_stake": stake, "unbonding_period": unbonding, "ready_at": ready,
           "tx": p.client.last_tx}  # fmt: skip
    if json_out:
        print_json(out)
        return
    console.print(f"proposed (operation {out['operation']}): minimum stake {fmt_open(stake)}, unbonding "
                  f"{unbonding / DAY:g} days; anyone may execute it from {fmt_when(ready, chain_now(p))} with "
                  f"`datanet params execute --min-stake {min_stake} --unbonding-days {unbonding_days:g}`")  # fmt: skip


@params_app.command("execute")
def params_execute(
    ctx: typer.Context, min_stake: MinStakeOpt, unbonding_days: UnbondingOpt, salt: SaltOpt = "0x00",
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Apply a proposed staking-parameter change whose delay has passed (anyone may)."""
    p = write_protocol(ctx)
    stake, unbonding = _values(min_stake, unbonding_days)
    s = _salt(salt)
    ready = p.operation_ready_at(p.parameter_change_id(stake, unbonding, s))
    if ready == 0:
        raise ParamsError("No such change was proposed (same values and salt as `datanet params propose`).")
    if ready == 1:
        raise ParamsError("This change was already executed.")
    if p.pending_time() < ready:
        raise ParamsError(f"The change is timelocked until {fmt_when(ready, chain_now(p))}; execute it after that.")
    p.execute_staking_parameters(stake, unbonding, s)
    out = {"min_stake": stake, "unbonding_period": unbonding, "tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    console.print(f"executed in tx {out['tx']}: minimum stake {fmt_open(stake)}, unbonding {unbonding / DAY:g} days")
