"""What QLoRA through bitsandbytes needs from the trainer: an eval mode that leaves the 4-bit
weights alone, the optimizer, and a clear error when bitsandbytes is missing.

Kept in one place because each works around a bitsandbytes behaviour (0.50.2) that the trainer
and the attribution engine (which takes per-example gradients of the same models) must both get
right; see `eval_mode` for the one that silently corrupts gradients.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch
from torch import nn

from node.train.config import Method, TrainConfig, TrainConfigError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) for forward passes, with or without grad, except bitsandbytes'
    4-bit layers, which stay in training mode; every module's mode is restored afterwards.

    Why: bitsandbytes 0.50's `Linear4bit.forward` repacks its weight in place for the CPU's AVX-512
    BF16 kernel (`_convert_weight_packed_for_cpu`) the first time it sees `not self.training` and
    an input without grad, which is any eval under `no_grad` on such a CPU. From then on every
    forward, training included, goes through `gemv_4bit`, which has no backward: the gradient
    through the frozen base weight is dropped and every LoRA gradient upstream of it is wrong.
    We avoid the repack rather than undo it: the inverse re-quantises the block scales after a
    round trip through bf16, so the base weights would change with each eval. A `Linear4bit`
    has no dropout, and its `training` flag changes nothing else, so the eval loss is the same.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in _four_bit_layers(model):
        m.train()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _four_bit_layers(model: nn.Module) -> list[nn.Module]:
    bnb = sys.modules.get("bitsandbytes")  # not imported: there can be no 4-bit layer
    if bnb is None:
        return []
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter], *, cuda: bool) -> torch.optim.Optimizer:
    """AdamW; with QLoRA on CUDA bitsandbytes' paged AdamW (optimizer state can page out to host
    memory under pressure). 8-bit AdamW quantises its second moments, and the snapshots hold
    them for attribution, so a run that takes snapshots uses the 32-bit paged AdamW."""
    if cfg.method == Method.QLORA and cuda:
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW if cfg.snapshots else bnb.optim.PagedAdamW8bit
        opt: torch.optim.Optimizer = cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        return opt
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def check_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise TrainConfigError(
            f"QLoRA needs bitsandbytes ({e}); install it (`pip install bitsandbytes==0.50.2`) or use method 'lora'."
        ) from e


__all__ = ["check_bitsandbytes", "eval_mode", "make_optimizer"]
