"""QLoRA's LoRA gradients survive the trainer's evaluation pass.

On CPUs with AVX-512 BF16, bitsandbytes repacks a 4-bit layer's weights the first time it runs in
eval mode without grad, and from then on its forward has no backward through the frozen base
weight: every LoRA gradient upstream of it goes wrong while the loss stays the same. So the test
runs the trainer's own eval first (where the CPU has that path, it is exercised; elsewhere the
test still checks the gradients against an ordinary fp32 model) and then compares gradients:
equal to the ones before the eval, and close to those of the same model with its 4-bit weights
dequantised into plain `nn.Linear` layers.
"""

from __future__ import annotations

from pathlib import Path

import bitsandbytes as bnb
import torch
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn
from transformers import AutoModelForCausalLM

from node.data.records import Example
from node.train.config import TrainConfig
from node.train.packing import Batch
from node.train.trainer import LoraTrainer, _LossSum

FACTS = [
    Example.of_chat([("user", f"What is the capital of Region{i}?"), ("assistant", f"The capital is Town{i * 7}.")])
    for i in range(16)
]
# No dropout, so a train-mode forward is a deterministic function of the weights; every linear layer
# but the head is adapted (the head stays full precision in transformers' 4-bit loading).
CFG = TrainConfig(method="qlora", lora_dropout=0.0, target_modules="all-linear", max_seq_len=128, batch_size=4,
                  lora_r=8, eval_fraction=0.25)  # fmt: skip


def _grads(model: nn.Module, loss_fn: nn.Module, b: Batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss_fn(b.input_ids, b.position_ids, b.labels).backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _dequantised_copy(t: LoraTrainer, base_dir: Path) -> nn.Module:
    """The same PEFT model on an fp32 base whose linear weights are the 4-bit ones, dequantised."""
    fp = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    n4 = 0
    for name, m in t.model.get_base_model().named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state  # type: ignore[attr-defined]
            w = bnb.functional.dequantize_4bit(m.weight.data, qs).to(torch.float32)
            target = fp.get_submodule(name.removesuffix(".base_layer"))
            assert type(target) is nn.Linear and target.weight.shape == w.shape
            target.weight.data = w.contiguous()
            n4 += 1
    assert n4 == 2 * 7, "every linear layer of both decoder layers must be 4-bit"
    peft = get_peft_model(fp, t.model.peft_config["default"])
    set_peft_model_state_dict(peft, get_peft_model_state_dict(t.model))
    return peft.train()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def test_qlora_gradients_are_unchanged_by_evaluation_and_match_the_dequantised_model(
    tiny_base_model: Path, tmp_path: Path
) -> None:
    t = LoraTrainer(tiny_base_model, CFG, tmp_path / "run")
    t.setup(FACTS)
    assert t.eval_ex, "the eval split must not be empty, or the eval pass proves nothing"
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero, which would zero every lora_A gradient
        for p in t.model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    batch = t._micro_batches(0)[0][0]
    before = _grads(t.model, t.loss_sum, batch)
    assert len(before) == 2 * 7 * 2 and all(float(g.norm()) > 0 for g in before.values())
    reference = _dequantised_copy(t, tiny_base_model)

    eval_loss = t._evaluate(0, 0, 0.0, emit=False)  # the trainer's own eval, as at each epoch's end
    assert eval_loss is not None and t.model.training
    after = _grads(t.model, t.loss_sum, batch)

    changed = {n: _rel(after[n], before[n]) for n in before if not torch.equal(after[n], before[n])}
    worst = max(changed.items(), key=lambda kv: kv[1], default=None)
    assert not changed, f"{len(changed)} of {len(before)} LoRA gradients changed after an eval pass; worst: {worst}"
    expected = _grads(reference, _LossSum(reference), batch)
    assert expected.keys() == before.keys()
    off = {n: r for n in before if (r := _rel(before[n], expected[n])) > 1e-3}
    assert not off, f"QLoRA gradients differ from the dequantised fp32 model's (relative norm): {off}"
    four_bit = [m.weight for m in t.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert not any(getattr(w.quant_state, "packing_format_for_cpu", False) for w in four_bit)  # type: ignore[attr-defined]
