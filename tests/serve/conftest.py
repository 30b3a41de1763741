"""Fixtures for the serving tests: the tiny base model and real PEFT adapters made on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.serve.engine import ModelHandle
from node.train.base_model import weights_hash


def make_adapter(
    base_dir: Path, out: Path, seed: int, r: int = 4, targets: tuple[str, ...] = ("q_proj", "v_proj")
) -> Path:
    """A real PEFT LoRA adapter on `base_dir` whose B matrices are random (a freshly initialised
    one is a no-op), so it visibly changes the base model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(tiny_base_model, root / f"a{i}", seed=i) for i in range(3)]


@pytest.fixture(scope="session")
def tiny_hash(tiny_base_model: Path) -> str:
    return "0x" + weights_hash(tiny_base_model).hex()


def handle(base: Path, base_hash: str, adapter: Path | None = None, key: str | None = None) -> ModelHandle:
    return ModelHandle(name=key or "base", base_dir=base, base_hash=base_hash, adapter_key=key, adapter_dir=adapter)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port in a background thread; its base URL."""
    import threading
    import time

    import uvicorn

    from node.chain.devchain import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def local_services(tmp: Path, base: Path, base_hash: str, adapters: list[Path], **settings: Any) -> tuple[Any, str]:
    """Services over the tiny base and `adapters` (stored in a real embedded content store and
    served as registered models datanet-1..n, fetched and hash-checked on first use); and a key."""
    from node.serve.adapters import sha256_file
    from node.serve.app import Services
    from node.serve.catalog import Catalog, ServedModel
    from node.serve.config import ServeSettings
    from node.serve.keys import ApiKeyStore
    from node.serve.peft_engine import PeftEngine
    from node.serve.responses import ResponseLog
    from node.storage.embedded import EmbeddedStore

    store = EmbeddedStore(tmp / "ipfs")
    catalog = Catalog(None, store, models_dir=tmp / "models", adapters_dir=tmp / "adapters", bases=[str(base)])
    base_id = base.name
    for i, a in enumerate(adapters, start=1):
        catalog.add(
            ServedModel(
                id=f"datanet-{i}", kind="adapter", status="finalized", base_id=base_id, base_ref=str(base),
                base_hash=base_hash, created=1_700_000_000 + i, owned_by="0x" + "11" * 20, model_id=i, job_id=i,
                adapter_cid=store.add_path(a), adapter_sha256=sha256_file(a / "adapter_model.safetensors"),
                aliases=[f"tiny-{i}"],
            )
        )  # fmt: skip
    keys = ApiKeyStore(tmp / "keys.sqlite")
    _, key = keys.create("tests")
    serve = ServeSettings(**settings)
    engine = PeftEngine(device="cpu", max_adapters=serve.max_adapters)
    responses = ResponseLog(tmp / "responses.sqlite", retention_days=serve.retention_days)
    return Services(settings=serve, catalog=catalog, engine=engine, keys=keys, responses=responses), key
