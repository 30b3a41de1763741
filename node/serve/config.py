"""`datanet serve`'s settings: flags, ``DATANET_SERVE_*`` environment variables, defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """How the API server runs. Safe defaults: loopback only, bounded requests."""

    model_config = SettingsConfigDict(env_prefix="DATANET_SERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 exposes the node: mind the keys).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free one).")
    engine: Literal["peft", "vllm"] = Field("peft", description="Inference engine: embedded PEFT, or a vLLM server.")
    vllm_url: str = Field("http://127.0.0.1:8001", description="An operator-run `vllm serve --enable-lora` server.")
    vllm_command: str | None = Field(
        None, description="The `vllm` executable of its own venv: the node starts one server per base (engine vllm)."
    )
    vllm_api_key: SecretStr | None = Field(None, description="The operator-run vLLM server's --api-key.")
    vllm_max_loras: int = Field(4, ge=1, description="vLLM's --max-loras: adapters in one GPU batch.")
    vllm_max_lora_rank: int = Field(64, description="vLLM's --max-lora-rank (1, 8, 16, 32, 64, 128, 256, 320, 512).")
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's --gpu-memory-utilization.")
    vllm_args: str = Field("", description="More `vllm serve` flags for the servers the node starts.")
    device: str | None = Field(
        None, description="torch device of the PEFT engine (default: cuda if present, else cpu)."
    )
    max_adapters: int = Field(8, ge=1, le=1024, description="Adapters kept loaded per base model (LRU beyond).")
    merge_adapter_weights: bool = Field(
        True, description="Run one-adapter batches on merged weights (faster; one copy of the adapted layers)."
    )
    max_batch: int = Field(8, ge=1, le=256, description="Requests decoded together in one batch.")
    max_rank: int = Field(256, ge=1, description="Largest LoRA rank served from the registry.")
    default_max_tokens: int = Field(256, ge=1, description="Tokens generated when a request names no limit.")
    max_tokens: int = Field(2048, ge=1, description="Most tokens one request may ask for.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body.")
    requests_per_minute: int = Field(60, ge=1, description="Rate limit of a new API key.")
    refresh_s: float = Field(5.0, gt=0, description="Seconds between reads of the on-chain model registry.")
    keep_alive_s: float = Field(15.0, gt=0, description="SSE comment line after this many silent seconds.")
    fee_per_1k_tokens: str = Field(
        "0", description="OPEN per 1,000 tokens a paying key's account is charged (0: inference is free)."
    )
    epoch_seconds: int = Field(86_400, ge=60, description="Length of an inference-reward settlement epoch.")
    auto_reveal: bool = Field(
        True, description="Reveal each eval set this node committed (job post --eval-file, the Train page) once "
        "a node has claimed its job, with the node's keystore.",
    )
    retention_days: int = Field(
        30, ge=0, description="Days a prompt and its answer are kept for attribution (0: not kept at all)."
    )
