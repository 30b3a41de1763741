"""Packing examples into rows, and rows into padded batches.

Each epoch's shuffled stream of examples is laid end to end into rows of `width` tokens (the
next example starts a new row when it does not fit), so almost no compute goes to padding. A
micro-batch is as many rows as hold about `batch_size` examples' worth of tokens (see
`LoraTrainer`), so `batch_size` keeps its usual meaning and memory stays below a padded batch's.
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


def plan_rows(lengths: Sequence[int], order: Sequence[int], width: int, packing: bool = True) -> list[tuple[int, ...]]:
    """Which examples (indices into `lengths`) each row holds: greedy and order-preserving, so
    the plan is a pure function of its inputs. Without packing each example is its own row."""
    rows: list[tuple[int, ...]] = []
    current: list[int] = []
    used = 0
    for k in order:
        n = lengths[k]
        if n == 0:
            continue
        if n > width:
            raise ValueError(f"example {k} has {n} tokens, more than the row width {width}; truncate it first")
        if current and (not packing or used + n > width):
            rows.append(tuple(current))
            current, used = [], 0
        current.append(k)
        used += n
    if current:
        rows.append(tuple(current))
    return rows


def make_row(examples: Sequence[Tokenized], sources: Sequence[int]) -> Row:
    return Row(
        input_ids=[t for k in sources for t in examples[k].input_ids],
        labels=[t for k in sources for t in examples[k].labels],
        position_ids=[p for k in sources for p in range(len(examples[k]))],
        sources=tuple(sources),
    )


def pack(examples: Sequence[Tokenized], width: int | None = None, packing: bool = True) -> list[Row]:
    """`examples` in their order, packed into rows of `width` (default: the longest example)."""
    lengths = [len(ex) for ex in examples]
    if not any(lengths):
        return []
    plan = plan_rows(lengths, range(len(examples)), width or max(lengths), packing)
    return [make_row(examples, sources) for sources in plan]


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


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The examples' order in `epoch`: a shuffle that depends only on (seed, epoch), so a resumed
    run sees the same batches as an uninterrupted one."""
    order = list(range(n))
    random.Random(f"{seed}/{epoch}").shuffle(order)
    return order
