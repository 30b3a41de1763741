"""Planted contributors on a tiny Llama: the data, and a base model that can learn it.

A randomly initialised tiny Llama cannot learn facts through LoRA alone: its frozen random head
caps every logit near 1 nat, so its loss never leaves ~5 nats. So the base here is pretrained
(every weight, a few seconds) on the same templates about *other* countries plus cooking talk: it
knows the format, and fine-tuning has only the facts left to teach, as with a real base model.

Contributors: `CLEAN_A` and `CLEAN_B` state disjoint facts, each in two phrasings; `WRONG` asks
`CLEAN_A`'s questions and answers them wrongly; `OFF_TOPIC` talks about cooking. The queries ask
every clean fact (`query_phrasing` 1 is a training phrasing, 3 is one no contributor used).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from node.data.records import Example

CLEAN_A, CLEAN_B, WRONG, OFF_TOPIC = ("0x" + c * 40 for c in "abcd")
_SYL = ["ka", "lo", "mi", "ru", "te", "vo", "zan", "bel", "dor", "fi", "gu", "ha", "ni", "po", "sa", "tu", "we"]
_FOODS = ["bread", "tea", "rice", "soup", "eggs", "pasta", "beans", "cake", "fish", "corn", "stew", "pie"]


def _name(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n)).capitalize()


COLOURS = ["red", "blue", "green", "black", "white", "yellow", "brown", "grey"]


def phrasing(k: int, country: str, colour: str) -> Example:
    q, a = {
        1: (f"What colour is the flag of {country}?", f"It is {colour}."),
        2: (f"Which colour does the flag of {country} have?", f"The flag is {colour}."),
        3: (f"Tell me the colour of the flag of {country}.", f"It is {colour}."),
    }[k]
    return Example.of_chat([("user", q), ("assistant", a)])


def cooking(food: str, minutes: int) -> Example:
    return Example.of_chat([("user", f"How long do I cook {food}?"), ("assistant", f"Cook it for {minutes} minutes.")])


def world(n_facts: int = 16, seed: int = 7) -> tuple[list[tuple[Example, str]], list[tuple[str, str]], list[str]]:
    """(examples with contributors in manifest order, the facts (country, colour), the wrong colours)."""
    rng = random.Random(seed)
    facts = [(_name(rng, 3), rng.choice(COLOURS)) for _ in range(n_facts)]
    half = n_facts // 2
    wrong = [COLOURS[(COLOURS.index(c) + rng.randint(1, len(COLOURS) - 1)) % len(COLOURS)] for _, c in facts[:half]]
    out: list[tuple[Example, str]] = []
    for c, t in facts[:half]:
        out += [(phrasing(1, c, t), CLEAN_A), (phrasing(2, c, t), CLEAN_A)]
    for c, t in facts[half:]:
        out += [(phrasing(1, c, t), CLEAN_B), (phrasing(2, c, t), CLEAN_B)]
    out += [(phrasing(1, c, w), WRONG) for (c, _), w in zip(facts[:half], wrong, strict=True)]
    out += [(cooking(f, 3 + k), OFF_TOPIC) for k, f in enumerate(_FOODS[:half])]
    return out, facts, wrong


def pretraining_corpus(n: int = 200, seed: int = 1000) -> list[Example]:
    rng = random.Random(seed)
    ex = []
    for _ in range(n):
        c, t = _name(rng, 3), rng.choice(COLOURS)
        ex += [phrasing(k, c, t) for k in (1, 2, 3)]
    ex += [cooking(rng.choice(_FOODS), rng.randint(2, 40)) for _ in range(n // 2)]
    return ex


def build_base(out_dir: Path, steps: int = 150, seed: int = 0) -> Path:
    """A tiny Llama pretrained on `pretraining_corpus` (every weight), saved to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from node.train.base_model import build_tiny_llama
    from node.train.formatting import tokenize_example

    corpus = pretraining_corpus()
    texts = [" ".join(m.content for m in e.messages) for e in corpus]
    build_tiny_llama(out_dir, texts, hidden=64, layers=2, heads=4, vocab=512, intermediate=128, seed=seed)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    ids: list[int] = []
    for e in corpus:
        ids += tokenize_example(tok, e, train_on_prompt=True).input_ids
    width = 64
    data = torch.tensor(ids[: len(ids) // width * width]).view(-1, width)  # (rows, width)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.05, 1 - s / steps))
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,), generator=gen)]
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.save_pretrained(out_dir)
    return out_dir
