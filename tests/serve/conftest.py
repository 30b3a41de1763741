"""Fixtures for the serving tests: the tiny base model and real PEFT adapters made on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.serve.engine import ModelHandle
from node.train.base_model import weights_hash


def make_adapter(base_dir: Path, out: Path, seed: int, r: int = 4, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
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
    return ModelHandle(
        name=key or "base", base_dir=base, base_hash=base_hash, adapter_key=key, adapter_dir=adapter
    )
