"""Builds the server's `Services` from the node's settings: the deployed protocol (read-only),
the content store, the catalog, the engine, the API keys. `datanet serve` and the demo call it."""

from __future__ import annotations

import logging
from pathlib import Path

from node.chain.accounts import resolve_account
from node.chain.client import ChainClient
from node.chain.deploy import load_deployment
from node.chain.protocol import Protocol
from node.chain.units import parse_open
from node.config import Settings
from node.daemon.steps import jobs_root
from node.errors import ConfigError, NodeError
from node.serve.adapters import AdapterPolicy
from node.serve.app import Services
from node.serve.attribution import SpanAttributor
from node.serve.catalog import Catalog
from node.serve.config import ServeSettings
from node.serve.engine import Engine
from node.serve.fees import BalanceCache, FeePolicy
from node.serve.keys import ApiKeyStore
from node.serve.responses import ResponseLog
from node.storage import open_store

log = logging.getLogger(__name__)


def keys_path(settings: Settings) -> Path:
    """Where the API keys live (hashed): beside the node's other state."""
    return settings.data_dir / "serve" / "api_keys.sqlite"


def responses_path(settings: Settings) -> Path:
    """Where answers' spans, credits and (for the retention period) text are kept."""
    return settings.data_dir / "serve" / "responses.sqlite"


def fee_policy(settings: Settings, serve: ServeSettings, protocol: Protocol | None) -> FeePolicy:
    """The price, and the node account whose escrow deposits pay it (its signing account, read
    without prompting: no account means no paid keys)."""
    price = parse_open(serve.fee_per_1k_tokens, "DATANET_SERVE_FEE_PER_1K_TOKENS", allow_zero=True)
    node = None
    if protocol is not None and price > 0:
        try:
            password = settings.keystore_password.get_secret_value() if settings.keystore_password else None
            key = settings.private_key.get_secret_value() if settings.private_key else None
            account, _ = resolve_account(settings.keystore, password, key, protocol.chain_id, prompt=False)
            node = account.address
        except NodeError as e:
            log.warning("no node account for paid keys (%s): requests with paying keys will fail", e)
    return FeePolicy(per_1k_tokens=price, node=node)


def build_engine(serve: ServeSettings, settings: Settings | None = None) -> Engine:
    policy = AdapterPolicy(max_rank=serve.max_rank)
    if serve.engine == "vllm":
        from node.serve.vllm_engine import VllmEngine, VllmSettings

        try:
            vllm = VllmSettings(
                url=None if serve.vllm_command else serve.vllm_url, command=serve.vllm_command,
                api_key=serve.vllm_api_key, max_adapters=serve.max_adapters, max_loras=serve.vllm_max_loras,
                max_lora_rank=serve.vllm_max_lora_rank, gpu_memory_utilization=serve.vllm_gpu_memory_utilization,
                extra_args=serve.vllm_args, log_dir=settings.data_dir / "serve" / "vllm" if settings else None,
            )  # fmt: skip
            return VllmEngine(vllm, policy)
        except ValueError as e:
            raise ConfigError(f"--engine vllm: {e}") from None
    from node.serve.peft_engine import PeftEngine

    return PeftEngine(
        device=serve.device, max_adapters=serve.max_adapters, max_batch=serve.max_batch, policy=policy,
        merge_uniform=serve.merge_adapter_weights,
    )  # fmt: skip


def read_protocol(settings: Settings) -> Protocol | None:
    """The deployed protocol, read-only; None without a deployment file."""
    deployment_file = settings.deployment_file()
    if not deployment_file.exists():
        return None
    deployment = load_deployment(deployment_file)
    rpc = settings.rpc_url if "rpc_url" in settings.model_fields_set else deployment.rpc_url
    return Protocol(ChainClient(rpc, timeout=settings.rpc_timeout, retries=settings.rpc_retries), deployment)


def build_catalog(
    settings: Settings, serve: ServeSettings, protocol: Protocol | None, bases: list[str] | None = None
) -> Catalog:
    return Catalog(
        protocol, open_store(settings), models_dir=settings.models_path,
        adapters_dir=settings.data_dir / "serve" / "adapters", bases=list(bases or []),
        policy=AdapterPolicy(max_rank=serve.max_rank),
    )  # fmt: skip


def build_services(settings: Settings, serve: ServeSettings, bases: list[str] = ()) -> Services:  # type: ignore[assignment]
    """Everything `create_app` needs. Without a deployment file the node still serves the base
    models named in `bases` (no registry models until one is deployed)."""
    protocol = read_protocol(settings)
    if protocol is None:
        log.warning("no deployment at %s: serving base models only", settings.deployment_file())
    catalog = build_catalog(settings, serve, protocol, bases)
    store = catalog.store
    return Services(
        settings=serve, catalog=catalog, engine=build_engine(serve, settings), keys=ApiKeyStore(keys_path(settings)),
        node=settings, protocol=protocol, store=store,
        responses=ResponseLog(
            responses_path(settings), retention_days=serve.retention_days, epoch_seconds=serve.epoch_seconds
        ),
        fees=fee_policy(settings, serve, protocol),
        balances=BalanceCache(protocol),
        attributor=SpanAttributor(
            jobs_root(settings, protocol.deployment) if protocol else settings.jobs_path,
            settings.data_dir / "serve" / "span-index", catalog.adapters_dir,
        ),
    )  # fmt: skip
