"""`datanet serve` (the API and the ModelFactory pages) and `datanet api-key new|list|revoke`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import JsonOpt, console, err_console, print_json, settings
from node.config import Settings
from node.serve.keys import ApiKey, ApiKeyStore


class EngineName(StrEnum):
    PEFT = "peft"
    VLLM = "vllm"


api_key_app = typer.Typer(no_args_is_help=True, help="API keys of this node's server (stored hashed).")


def _keys(s: Settings) -> ApiKeyStore:
    from node.serve.runtime import keys_path

    return ApiKeyStore(keys_path(s))


def _show_new(record: ApiKey, key: str, json_out: bool) -> None:
    if json_out:
        print_json({**record.model_dump(mode="json"), "key": key})
        return
    console.print(f"API key [bold]{record.name}[/] ({record.id}), shown once, keep it:")
    console.print(key, soft_wrap=True, highlight=False)


@api_key_app.command("new")
def api_key_new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A label for the key (who or what uses it).")] = "default",
    rate: Annotated[int, typer.Option("--rate", min=1, help="Requests per minute this key may make.")] = 60,
    account: Annotated[
        str | None,
        typer.Option(help="The OPEN account whose InferenceEscrow deposit pays this key's fees (none: free)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make a key; it is printed once and stored only as a hash."""
    if account is not None:
        from web3 import Web3

        if not Web3.is_address(account):
            raise typer.BadParameter(f"'{account}' is not an address (0x and 40 hex digits)", param_hint="--account")
        account = Web3.to_checksum_address(account)
    record, key = _keys(settings(ctx)).create(name, requests_per_minute=rate, account=account)
    _show_new(record, key, json_out)


@api_key_app.command("list")
def api_key_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every key this node has made (never the keys themselves)."""
    keys = _keys(settings(ctx)).list()
    if json_out:
        print_json(keys)
        return
    from rich.table import Table

    table = Table("id", "name", "state", "rate/min", "created", "last used")
    for k in keys:
        table.add_row(k.shown, k.name, "active" if k.active else "revoked", str(k.requests_per_minute),
                      _when(k.created_at), _when(k.last_used_at))  # fmt: skip
    console.print(table if keys else "no API keys yet: `datanet api-key new`")


@api_key_app.command("revoke")
def api_key_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (from `datanet api-key list`).")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key: requests with it fail with 401 from now on."""
    record = _keys(settings(ctx)).revoke(key_id)
    if json_out:
        print_json(record)
    else:
        console.print(f"revoked {record.shown} ({record.name})")


def _when(ts: int | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the node to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    engine: Annotated[EngineName, typer.Option(help="Inference engine: embedded PEFT, or a vLLM server.")] = (
        EngineName.PEFT
    ),
    vllm_url: Annotated[
        str | None, typer.Option(help="An operator-run `vllm serve BASE --enable-lora` server (engine vllm).")
    ] = None,
    vllm_command: Annotated[
        str | None,
        typer.Option(help="The `vllm` executable of its own venv: the node starts a server per base (engine vllm)."),
    ] = None,
    base: Annotated[
        list[str] | None, typer.Option(help="Also serve this base model (a reference a job could name); repeatable.")
    ] = None,
    max_adapters: Annotated[int | None, typer.Option(help="Adapters kept loaded per base model (LRU beyond).")] = None,
) -> None:
    """Serve the OpenAI-compatible API over every model in the registry, and the web app."""
    import uvicorn

    from node.serve.app import create_app
    from node.serve.config import ServeSettings
    from node.serve.runtime import build_services

    overrides: dict[str, object] = {"host": host, "port": port, "engine": engine.value}
    if vllm_url:
        overrides["vllm_url"] = vllm_url
    if vllm_command:
        overrides["vllm_command"] = vllm_command
    if max_adapters:
        overrides["max_adapters"] = max_adapters
    serve = ServeSettings(**overrides)  # type: ignore[arg-type]
    s = settings(ctx)
    keys = _keys(s)
    if keys.count_active() == 0:
        record, key = keys.create("default", requests_per_minute=serve.requests_per_minute)
        err_console.print("[bold]No API key yet; made one.[/]")
        _show_new(record, key, json_out=False)
    services = build_services(s, serve, bases=base or [])
    err_console.print(f"serving on http://{host}:{port}  (API: /v1, docs: /docs)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print("[yellow]listening beyond this machine: only API-key holders can run models; "
                          "keystore actions stay loopback-only[/]")  # fmt: skip
    uvicorn.run(create_app(services), host=host, port=port, log_level="warning")


responses_app = typer.Typer(no_args_is_help=True, help="What the server keeps of its answers (the retention rule).")


@responses_app.command("show")
def responses_show(
    ctx: typer.Context,
    response_id: Annotated[str, typer.Argument(help="The answer's id (chatcmpl-... or cmpl-...).")],
    json_out: JsonOpt = False,
) -> None:
    """One answer's spans, credits and (within the retention period) text."""
    from node.serve.responses import ResponseLog
    from node.serve.runtime import responses_path

    found = ResponseLog(responses_path(settings(ctx))).get(response_id)
    if found is None:
        raise typer.BadParameter(f"no stored answer {response_id}", param_hint="RESPONSE_ID")
    if json_out:
        print_json(found)
        return
    console.print(
        f"{found.id}  {found.model}  epoch {found.epoch}  tokens {found.prompt_tokens}+{found.completion_tokens}"
    )
    for span in found.spans:
        console.print(
            f"  [{span.start}:{span.end}] {span.contributor} (contribution {span.contribution_id}): {span.span!r}"
        )
    console.print(f"  credits: {found.credits or 'none'}")
    console.print(f"  text: {'erased' if found.answer is None else repr(found.answer)}")


@responses_app.command("purge")
def responses_purge(
    ctx: typer.Context,
    everything: Annotated[
        bool, typer.Option("--all", help="Erase the text of every answer, not only expired ones.")
    ] = False,
    days: Annotated[int, typer.Option(help="Retention period in days (DATANET_SERVE_RETENTION_DAYS).")] = 30,
) -> None:
    """Erase stored prompts and answers past the retention period (spans and credits stay)."""
    from node.serve.responses import ResponseLog
    from node.serve.runtime import responses_path

    n = ResponseLog(responses_path(settings(ctx)), retention_days=days).purge(everything=everything)
    console.print(f"erased the text of {n} answer(s)")


def export_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model: datanet-<id>, its name, or the registry id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the Hugging Face model to.")],
    force: Annotated[bool, typer.Option(help="Replace a non-empty output directory.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Merge a registered adapter into its full-precision base and write a standard Hugging Face
    model directory, with the training Datanets' licences in its model card."""
    from node.serve.config import ServeSettings
    from node.serve.export import DatanetTerms, ExportProvenance, export_merged
    from node.serve.runtime import build_catalog, read_protocol

    s = settings(ctx)
    protocol = read_protocol(s)
    if protocol is None:
        raise typer.BadParameter(f"no deployment at {s.deployment_file()}; deploy first or pass --network")
    catalog = build_catalog(s, ServeSettings(), protocol)
    catalog.refresh()
    name = f"datanet-{model}" if model.isdigit() else model
    found = catalog.get(name)
    if found is None or found.kind != "adapter":
        raise typer.BadParameter(
            f"no registered model '{model}' whose base model is on this node; `datanet model list` shows the registry",
            param_hint="MODEL",
        )
    handle = catalog.handle(found)
    assert handle.adapter_dir is not None and catalog.store is not None
    terms = []
    for d in found.datanet_ids:
        net = protocol.datanet(d)
        text = None
        if net.license.startswith(("bafy", "Qm")):
            try:
                text = catalog.store.cat(net.license).decode("utf-8", "replace")
            except Exception as e:  # the card still names the CID
                err_console.print(f"[yellow]licence text {net.license} of Datanet #{d} not fetched: {e}[/]")
        terms.append(DatanetTerms(id=d, name=net.name, license=net.license, commercial_use=net.commercialUse,
                                  license_text=text))  # fmt: skip
    provenance = ExportProvenance(
        model=found.id, model_id=found.model_id, job_id=found.job_id, base_model=found.base_ref,
        base_model_hash=found.base_hash, adapter_cid=found.adapter_cid, adapter_sha256=found.adapter_sha256,
        chain_id=protocol.chain_id, model_registry=protocol.models.address, datanets=terms, training=found.config,
    )  # fmt: skip
    with console.status(f"merging {found.id} into {found.base_ref} ..."):
        path = export_merged(handle.base_dir, handle.adapter_dir, out, provenance, force=force)
    if json_out:
        print_json({"path": str(path), **provenance.model_dump(mode="json")})
    else:
        console.print(f"exported {found.id} to {path} (load it with AutoModelForCausalLM.from_pretrained)")


epoch_app = typer.Typer(no_args_is_help=True, help="Inference rewards: credits per epoch, and settling them on-chain.")


def _epoch_state(ctx: typer.Context, epoch: int | None) -> tuple[int, dict[str, int], dict[str, int]]:
    from node.serve.config import ServeSettings
    from node.serve.responses import ResponseLog
    from node.serve.runtime import responses_path

    serve = ServeSettings()
    log = ResponseLog(responses_path(settings(ctx)), epoch_seconds=serve.epoch_seconds)
    import time

    n = epoch if epoch is not None else log.epoch_of(time.time()) - 1
    credits: dict[str, int] = {}
    for per_model in log.credits(n).values():
        for who, units in per_model.items():
            credits[who] = credits.get(who, 0) + units
    return n, credits, log.usage(n)


EpochOpt = Annotated[int | None, typer.Option(help="The epoch (default: the last finished one).")]


@epoch_app.command("show")
def epoch_show(ctx: typer.Context, epoch: EpochOpt = None, json_out: JsonOpt = False) -> None:
    """Credits per contributor and tokens per API key in an epoch."""
    n, credits, usage = _epoch_state(ctx, epoch)
    if json_out:
        print_json({"epoch": n, "credits": credits, "usage": usage})
        return
    console.print(f"epoch {n}: {sum(credits.values())} credit units to {len(credits)} contributor(s); "
                  f"{sum(usage.values())} tokens over {len(usage)} key(s)")  # fmt: skip
    for who, units in sorted(credits.items()):
        console.print(f"  {who}  {units}")


@epoch_app.command("settle")
def epoch_settle(
    ctx: typer.Context,
    epoch: EpochOpt = None,
    sponsor: Annotated[
        str | None, typer.Option(help="Fund the epoch from the node's own wallet with this many OPEN (no paying keys).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Post an epoch's inference-reward root on-chain: paying keys' accounts are charged from
    their escrow deposits (each at most its balance), or the node sponsors the round."""
    from node.chain.inference import Charge, escrow_account
    from node.chain.units import parse_open
    from node.cli.common import write_protocol
    from node.rewards.epochs import settle_epoch
    from node.serve import fees
    from node.serve.config import ServeSettings
    from node.storage import open_store

    s = settings(ctx)
    n, credits, usage = _epoch_state(ctx, epoch)
    if not credits:
        console.print(f"epoch {n}: no answer credited any contributor; nothing to settle (no account is charged)")
        return
    p = write_protocol(ctx)
    price = parse_open(ServeSettings().fee_per_1k_tokens, "DATANET_SERVE_FEE_PER_1K_TOKENS", allow_zero=True)
    owed = fees.charges(fees.FeePolicy(per_1k_tokens=price, node=p.address), usage, _keys(s))
    # A deposit can fall short of what admission saw (concurrent requests): charge at most the balance,
    # since one short account would otherwise revert the whole settlement for everyone.
    charges = [Charge(payer=c.payer, amount=min(c.amount, escrow_account(p, p.address, c.payer).balance)) for c in owed]
    charges = [c for c in charges if c.amount > 0]
    total = parse_open(sponsor, "--sponsor") if sponsor is not None and not charges else None
    if not charges and total is None:
        console.print(
            f"epoch {n}: no paying key used this node; pass --sponsor AMOUNT to fund it from the node's wallet"
        )
        return
    done = settle_epoch(p, open_store(s), n, credits, charges=charges, total=total)
    if json_out:
        print_json(done)
    else:
        state = f"tx {done.tx}" if done.tx else "already settled with this root"
        console.print(f"epoch {n} settled: {done.rewards.total} base units to {len(done.rewards.amounts)} "
                      f"contributor(s), root {done.rewards.root}, tree {done.tree_cid} ({state})")  # fmt: skip


@epoch_app.command("close")
def epoch_close(
    ctx: typer.Context,
    epoch: Annotated[int, typer.Argument(help="The settled epoch.")],
    node: Annotated[str | None, typer.Option(help="The node that settled it (default: this wallet).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """After an epoch round's claim window, return what contributors left unclaimed: to the paying
    accounts' escrow balances (pro rata to their charges) or, for a round the node sponsored, to
    the node. Anyone may run it."""
    from web3 import Web3

    from node.chain import inference
    from node.chain.deploy import fmt_open
    from node.cli.common import write_protocol
    from node.cli.operator import chain_now, fmt_when
    from node.errors import NodeError

    if node is not None and not Web3.is_address(node):
        raise typer.BadParameter(f"'{node}' is not an address (0x and 40 hex digits)", param_hint="--node")
    p = write_protocol(ctx)
    who = Web3.to_checksum_address(node or p.address)
    now = chain_now(p)
    charges = inference.settled_charges(p, who, epoch)
    escrowed = bool(charges)
    funder, key = (p.escrow.address, inference.escrow_round_id(who, epoch)) if escrowed else (who, epoch)
    rnd = inference.epoch_round(p, funder, key)
    if int.from_bytes(rnd.root, "big") == 0:
        raise NodeError(f"{who} opened no round for epoch {epoch} (`datanet rewards` lists the rounds).")
    if now <= rnd.claimDeadline:
        raise NodeError(f"Contributors can claim epoch {epoch}'s rewards until {fmt_when(rnd.claimDeadline, now)}; "
                        "close it after that.")  # fmt: skip
    left = rnd.total - rnd.claimed
    if escrowed:
        if inference.is_refunded(p, who, epoch):
            raise NodeError(f"Epoch {epoch}'s unclaimed rest was already credited back to its payers.")
        inference.refund_unclaimed(p, who, epoch, charges)
        to = sorted({c.payer for c in charges})
    else:
        if rnd.swept:
            raise NodeError(f"Epoch {epoch}'s unclaimed rest was already returned to {who}.")
        inference.sweep_epoch(p, who, epoch)
        to = [who]
    out = {"epoch": epoch, "node": who, "returned": left, "to": to, "escrow": escrowed, "tx": p.client.last_tx}
    if json_out:
        print_json(out)
        return
    where = "the payers' escrow balances" if escrowed else f"{who}"
    console.print(f"closed epoch {epoch}: {fmt_open(left)} unclaimed returned to {where} in tx {out['tx']}")
