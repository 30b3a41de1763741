"""Packing tokenised examples into rows, and rows into padded batches.

Several short examples share one row of `max_seq_len` tokens, so no compute is spent on padding.
Attention must not cross examples: every example's `position_ids` restart at 0, and with no 2-D
attention mask transformers turns those restarts into a block-diagonal causal mask (its
`find_packed_sequence_indices`; `tests/train/test_packing.py` checks packed logits equal the
examples' own). Padding at a row's end is one more "example" of its own positions with ignored
labels, so it never attends to, nor is attended by, real tokens either. The forward must pass
`use_cache=False`: with a KV cache transformers skips that detection and examples leak.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from node.train.formatting import IGNORE, Tokenized


@dataclass(frozen=True)
class Row:
    """Examples laid end to end; `sources` are their indices in the training split."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    sources: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE where nothing is learned
    position_ids: torch.Tensor  # (B, T), restarting at 0 per example
    tokens: int  # real (non-padding) tokens in the batch

    @property
    def targets(self) -> int:
        """Label positions that contribute to the loss (after the one-token shift)."""
        return int((self.labels[:, 1:] != IGNORE).sum())


def pack(examples: Sequence[Tokenized], max_seq_len: int, packing: bool = True) -> list[Row]:
    """Greedy, order-preserving packing (deterministic: same input, same rows). Without packing
    each example is a row of its own."""
    rows: list[Row] = []
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    src: list[int] = []
    for k, ex in enumerate(examples):
        n = len(ex)
        if n == 0:
            continue
        if n > max_seq_len:
            raise ValueError(f"example {k} has {n} tokens, more than max_seq_len={max_seq_len}; truncate first")
        if ids and (not packing or len(ids) + n > max_seq_len):
            rows.append(Row(ids, labels, pos, tuple(src)))
            ids, labels, pos, src = [], [], [], []
        ids += ex.input_ids
        labels += ex.labels
        pos += range(n)
        src.append(k)
    if ids:
        rows.append(Row(ids, labels, pos, tuple(src)))
    return rows


def collate(rows: Sequence[Row], pad_id: int, pad_to: int | None = None) -> Batch:
    """Pads rows to the longest (or `pad_to`) with a separate run of positions."""
    width = max(pad_to or 0, *(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r)
        ids[b, :n] = torch.tensor(r.input_ids)
        labels[b, :n] = torch.tensor(r.labels)
        pos[b, :n] = torch.tensor(r.position_ids)
        pos[b, n:] = torch.arange(width - n)  # the padding is its own sequence
    return Batch(ids, labels, pos, tokens=sum(len(r) for r in rows))


def epoch_order(n_rows: int, seed: int, epoch: int) -> list[int]:
    """The rows' order in `epoch`: a shuffle that depends only on (seed, epoch), so a resumed
    run sees the same batches as an uninterrupted one."""
    order = list(range(n_rows))
    random.Random(f"{seed}/{epoch}").shuffle(order)
    return order
