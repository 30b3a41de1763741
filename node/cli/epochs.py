"""Inference rewards (epoch rounds) in `datanet rewards` and `datanet claim`.

`datanet rewards` lists them after the job rewards (in `--json`, as items with `"kind": "epoch"`);
`datanet claim --all` claims them too. Everything comes from `node.rewards.epoch_claims`, which
reads each round's document from the content store by the CID its `EpochRoundOpened` event names
and checks it against the on-chain root. Rounds are permissionless, so a round whose document is
missing or does not match is skipped with a note, never an error.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from node.chain import inference
from node.chain.deploy import fmt_open
from node.chain.protocol import Protocol
from node.cli.common import console, err_console, settings
from node.cli.operator import chain_now, fmt_when
from node.rewards.epoch_claims import EpochReward, epoch_rewards
from node.storage import open_store


def epoch_items(ctx: typer.Context, p: Protocol, account: str) -> list[EpochReward]:
    """`account`'s epoch-round rewards; a note on stderr for each round skipped."""
    view = epoch_rewards(p, open_store(settings(ctx)), account, chain_now(p))
    for s in view.skipped:
        err_console.print(f"[dim]skipped epoch round {s.epoch} of {s.funder}: {s.reason}[/]")
    return view.rewards


def print_epoch_table(p: Protocol, items: list[EpochReward], who: str) -> None:
    now = chain_now(p)
    t = Table("node", "epoch", "funding", "credit", "amount", "status", "claim by", title=f"inference rewards of {who}")
    for r in items:
        t.add_row(
            r.node,
            str(r.node_epoch),
            r.funding,
            f"{r.credit}/{r.total_credit}",
            fmt_open(r.amount),
            r.status,
            fmt_when(r.claim_deadline, now),
        )
    console.print(t)
    console.print(
        "[dim]epoch roots are attested by the serving node alone (nothing recomputes them on-chain); a round pays "
        "at most what its funder paid in[/]"
    )


def claim_epochs(sender: Protocol, items: list[EpochReward]) -> list[dict[str, Any]]:
    """Claims every unclaimed leaf of the claimable rounds in `items`; one result row per claim."""
    results: list[dict[str, Any]] = []
    for r in (x for x in items if x.status == "claimable"):
        for leaf in (x for x in r.leaves if not x.claimed and x.amount):
            proof = [bytes.fromhex(h[2:]) for h in leaf.proof]
            inference.claim_epoch(sender, leaf.funder, leaf.epoch, leaf.index, leaf.account, leaf.amount, proof)
            results.append(
                {
                    "kind": "epoch",
                    "node": r.node,
                    "node_epoch": r.node_epoch,
                    "funder": leaf.funder,
                    "epoch": leaf.epoch,
                    "index": leaf.index,
                    "account": leaf.account,
                    "amount": leaf.amount,
                    "tx": sender.client.last_tx,
                }
            )
    return results
