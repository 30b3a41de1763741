"""Packing: order, limits, and no attention across examples (packed logits equal separate ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from node.data.records import Example
from node.train.formatting import IGNORE, Tokenized, tokenize_example
from node.train.packing import collate, epoch_order, pack, plan_rows


def _tok(n: int, start: int = 1) -> Tokenized:
    ids = list(range(start, start + n))
    return Tokenized(ids, [IGNORE, *ids[1:]])


def test_rows_are_filled_in_order_and_never_wider_than_the_width() -> None:
    rows = pack([_tok(5), _tok(4), _tok(3), _tok(8), _tok(1), _tok(2)])  # width: the longest, 8
    assert [r.sources for r in rows] == [(0,), (1, 2), (3,), (4, 5)]
    assert all(len(r) <= 8 for r in rows)
    assert rows[1].position_ids == [0, 1, 2, 3, 0, 1, 2]
    assert [r.sources for r in pack([_tok(2), _tok(2)], packing=False)] == [(0,), (1,)]
    assert [r.sources for r in pack([_tok(2), _tok(2)], width=10)] == [(0, 1)]
    assert plan_rows([3, 0, 4, 4], order=[3, 2, 1, 0], width=8) == [(3, 2), (0,)]  # empty examples skipped
    with pytest.raises(ValueError, match="row width"):
        pack([_tok(11)], width=10)


def test_collate_pads_with_its_own_positions_and_ignored_labels() -> None:
    rows = pack([_tok(3), _tok(5)])
    b = collate(rows, pad_id=0)
    assert b.input_ids.shape == (2, 5) and b.tokens == 8
    assert b.position_ids[0].tolist() == [0, 1, 2, 0, 1]
    assert b.labels[0, 3:].tolist() == [IGNORE, IGNORE]
    assert b.targets == 2 + 4


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    assert epoch_order(50, 7, 3) == epoch_order(50, 7, 3)
    assert epoch_order(50, 7, 3) != epoch_order(50, 7, 4)
    assert sorted(epoch_order(50, 7, 3)) == list(range(50))


def test_packed_examples_do_not_attend_to_each_other(tiny_base_model: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model, dtype=torch.float32).eval()
    examples = [
        tokenize_example(tok, Example.of_text("The capital of Kalo is Mirsen.")),
        tokenize_example(tok, Example.of_chat([("user", "Where is Tavqui?"), ("assistant", "In Dorel.")])),
        tokenize_example(tok, Example.of_text("Farmers grow frost figs.")),
    ]
    (row,) = pack(examples, width=512)
    b = collate([row], pad_id=tok.pad_token_id or 0, pad_to=len(row) + 7)
    with torch.no_grad():
        # use_cache=False as in training: with a cache transformers skips the packed-sequence mask.
        packed = model(input_ids=b.input_ids, position_ids=b.position_ids, use_cache=False).logits[0]
        start = 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex.input_ids])).logits[0]
            torch.testing.assert_close(packed[start : start + len(ex)], alone, atol=1e-4, rtol=1e-4)
            start += len(ex)
    # With a KV cache transformers ignores the restarts and the second example sees the first:
    # the check above can fail.
    with torch.no_grad():
        leaky = model(input_ids=b.input_ids, position_ids=b.position_ids, use_cache=True).logits[0]
    second = slice(len(examples[0]), len(examples[0]) + len(examples[1]))
    assert not torch.allclose(leaky[second], packed[second], atol=1e-4)


def test_training_loss_of_a_packed_row_is_the_sum_of_each_example_alone(tiny_base_model: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from node.train.trainer import _LossSum

    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_base_model, dtype=torch.float32),
        LoraConfig(r=4, lora_dropout=0.0, target_modules="all-linear"),
    )
    loss_sum = _LossSum(model).eval()
    examples = [
        tokenize_example(tok, Example.of_chat([("user", f"Where is town {i}?"), ("assistant", f"In region {i}.")]))
        for i in range(4)
    ]
    (row,) = pack(examples, width=512)
    with torch.no_grad():
        b = collate([row], pad_id=0, pad_to=len(row) + 5)
        packed = loss_sum(b.input_ids, b.position_ids, b.labels)
        alone = sum(
            loss_sum(*(lambda c: (c.input_ids, c.position_ids, c.labels))(collate(pack([ex]), 0)))
            for ex in examples
        )
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-5)
