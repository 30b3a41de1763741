"""The model attribution differentiates, and one example's LoRA gradient of the trainer's loss.

The model is the job's base with the run's LoRA shape, in `float64` (or float32), eager attention,
eval mode (no dropout). For a QLoRA job the base is what training actually saw: the fp weights
quantised to NF4 with double quantisation by bitsandbytes itself (loaded exactly as the trainer
loads them) and dequantised back into ordinary linear layers, so gradients flow through plain
matmuls (no 4-bit kernels, none of their CPU repacking) and in float64.

The loss is the trainer's (`node.train.trainer._LossSum`): next-token cross-entropy summed over
the answer tokens only, of the example tokenised exactly as the trainer does
(`tokenize_example` + `truncate`), here one example per forward with positions 0..T-1 (what
packing's position restarts give each example in training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from node.data.records import Example
from node.train.config import Method, TrainConfig
from node.train.formatting import IGNORE, Tokenized, tokenize_example, truncate

from .request import AttributionError

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_dir)


def tokenize(tokenizer: Any, examples: Sequence[Example], cfg: TrainConfig) -> list[Tokenized]:
    return [truncate(tokenize_example(tokenizer, ex, cfg.train_on_prompt), cfg.max_seq_len) for ex in examples]


def load_model(base_dir: Path, cfg: TrainConfig, dtype: str, base_dtype: str = "float32") -> nn.Module:
    """The PEFT model (LoRA weights still at their init: each snapshot overwrites them)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    load_dtype = _DTYPES[base_dtype]
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=load_dtype, attn_implementation="eager", device_map={"": "cpu"}
    )
    if cfg.method == Method.QLORA:
        _put_nf4_weights(model, _dequantised_nf4(base_dir, load_dtype))
    model = model.to(_DTYPES[dtype])  # type: ignore[arg-type]
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        target_modules=cfg.target_modules, task_type="CAUSAL_LM",
    )  # fmt: skip
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as e:
        raise AttributionError(f"LoRA target_modules={cfg.target_modules!r} do not fit this model: {e}") from e
    peft_model.to(_DTYPES[dtype])
    peft_model.eval()  # no dropout: the gradient of the example, not of one dropout mask
    return peft_model


def _dequantised_nf4(base_dir: Path, load_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Name -> weight of every layer the trainer's 4-bit load quantises, as bitsandbytes
    quantised it (NF4, double quant) and dequantised again, in the load dtype."""
    try:
        import bitsandbytes as bnb
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    except ImportError as e:
        raise AttributionError(
            f"attributing a QLoRA job needs bitsandbytes ({e}): `pip install bitsandbytes==0.50.2`"
        ) from e
    q = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=load_dtype
    )
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=load_dtype, quantization_config=q, device_map={"": "cpu"}
    )
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w: Any = module.weight  # bnb's Params4bit: packed data and its quant_state
            # Dequantised before any forward pass: no CPU repacking has touched the 4-bit data.
            out[name] = bnb.functional.dequantize_4bit(w.data, w.quant_state).to(load_dtype).clone()
    if not out:
        raise AttributionError(f"{base_dir}: the 4-bit load quantised no layer, so this is not what QLoRA trained")
    return out


def _put_nf4_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for name, w in weights.items():
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear) or layer.weight.shape != w.shape:
            raise AttributionError(f"the 4-bit layer {name} has no matching linear layer in the fp base model")
        with torch.no_grad():
            layer.weight.copy_(w)


def lora_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters, sorted by name: the order of every flattened gradient."""
    return sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda t: t[0])


def set_lora(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    params = dict(lora_parameters(model))
    if set(params) != set(weights):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise AttributionError(
            "the snapshots do not hold this run's LoRA parameters "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unknown {extra[:3]}): were they written "
            "by a run with this base model and config?"
        )
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != weights[name].shape:
                raise AttributionError(f"snapshot parameter {name} has shape {tuple(weights[name].shape)}, "
                                       f"the model's is {tuple(p.shape)}: another LoRA rank or model?")  # fmt: skip
            p.copy_(weights[name])


class LossSum(nn.Module):
    """The trainer's loss on one example: summed cross-entropy at the learned positions."""

    def __init__(self, model: nn.Module):
        super().__init__()
        base = model.get_base_model()  # type: ignore[operator]
        self.decoder, self.head = base.get_decoder(), base.get_output_embeddings()
        self.softcap: float | None = getattr(base.config, "final_logit_softcapping", None)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)  # (1, T)
        h = self.decoder(input_ids=input_ids, position_ids=positions, use_cache=False).last_hidden_state
        h, target = h[:, :-1], labels[:, 1:]  # (1, T-1, H): position t predicts token t+1
        keep = target != IGNORE
        logits = self.head(h[keep])  # (n, V), n = learned positions
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits, target[keep], reduction="sum")


class BatchedGradients:
    """Per-example LoRA gradients of a whole padded batch from one forward and one backward.

    Every LoRA parameter is the weight of a bias-free `nn.Linear` (PEFT's `lora_A`/`lora_B`), and
    the gradient of a linear weight is a sum over positions of outer products, so example b's
    gradient is `einsum("to,ti->oi", dL/dy[b], x[b])` from the layer's input `x` and output
    gradient `dL/dy`, both captured by hooks (the method of Opacus and of Goodfellow's per-example
    trick). The loss is a sum of per-example losses and in eval mode nothing mixes examples, so
    this is exactly each example's own gradient. Examples are right-padded: under the causal mask
    a real token never sees the padding after it, and padding carries no label, so its output
    gradient is zero. The outer products are accumulated in float64 in a fixed order.
    """

    def __init__(self, model: nn.Module, named: Sequence[tuple[str, nn.Parameter]], batch_tokens: int):
        modules = dict(model.named_modules())
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.layers: dict[str, nn.Linear] = {}
        for n, _ in named:
            layer = modules.get(n.removesuffix(".weight"))
            if not n.endswith(".weight") or not isinstance(layer, nn.Linear) or layer.bias is not None:
                raise AttributionError(
                    f"trainable parameter {n} is not the weight of a bias-free linear layer: only LoRA's A and B "
                    "matrices are attributed (train with modules_to_save unset and bias='none')"
                )
            self.layers[n] = layer
        self.n_params = sum(p.numel() for p in self.params)
        self.batch_tokens = batch_tokens
        self.max_rows = max(1, _GRADIENT_BYTES // (8 * self.n_params))

    def batches(self, items: Sequence[Tokenized]) -> list[list[int]]:
        return batches(items, self.batch_tokens, self.max_rows)

    def __call__(self, loss_fn: LossSum, batch: Sequence[Tokenized]) -> torch.Tensor:
        """(len(batch), p) float64 gradients, flattened in `lora_parameters` order."""
        inputs: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}

        def capture(name: str) -> Any:
            def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
                inputs[name] = args[0].detach()

                def store(g: torch.Tensor) -> None:
                    outputs[name] = g.detach()

                out.register_hook(store)

            return hook

        handles = [layer.register_forward_hook(capture(n)) for n, layer in self.layers.items()]
        try:
            ids, labels = pad_batch(batch)
            loss = loss_fn(ids, labels)
            torch.autograd.grad(loss, self.params)
        finally:
            for h in handles:
                h.remove()
        rows = []
        for n in self.names:
            x, g = inputs[n].to(torch.float64), outputs[n].to(torch.float64)  # (B, T, in), (B, T, out)
            rows.append(torch.einsum("bto,bti->boi", g, x).reshape(len(batch), -1))
        return torch.cat(rows, dim=1)


_GRADIENT_BYTES = 1 << 28
"""Memory for one batch of flattened float64 gradients (256 MiB): caps the rows of a batch."""


def pad_batch(batch: Sequence[Tokenized]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids right-padded with token 0 and labels padded with IGNORE."""
    width = max(len(t) for t in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for b, t in enumerate(batch):
        ids[b, : len(t)] = torch.tensor(t.input_ids)
        labels[b, : len(t)] = torch.tensor(t.labels)
    return ids, labels


def batches(items: Sequence[Tokenized], batch_tokens: int, max_rows: int) -> list[list[int]]:
    """Indices grouped by length (ties by index) into batches of at most `batch_tokens` padded
    tokens and `max_rows` rows: a pure function of the lengths, so a verifier forms the same ones."""
    order = sorted(range(len(items)), key=lambda i: (len(items[i]), i))
    out: list[list[int]] = []
    for i in order:  # ascending length: the new item is the batch's longest
        if out and len(out[-1]) < max_rows and (len(out[-1]) + 1) * len(items[i]) <= batch_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def example_gradient(loss_fn: LossSum, params: list[nn.Parameter], t: Tokenized) -> torch.Tensor:
    """(p,) flattened gradient of one example's summed loss, in the model's dtype."""
    ids = torch.tensor([t.input_ids])
    labels = torch.tensor([t.labels])
    loss = loss_fn(ids, labels)
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads])


__all__ = [
    "BatchedGradients", "LossSum", "batches", "example_gradient", "load_model", "load_tokenizer", "lora_parameters",
    "pad_batch", "set_lora", "tokenize",
]  # fmt: skip
