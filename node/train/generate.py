"""Answering with a base model and, optionally, a trained adapter: the same chat rendering as
training (`formatting.render_prompt`), greedy decoding, stop at end of turn. The demo uses it to
show what fine-tuning taught; the chat API will serve through the same path.

`answer_loglik` scores known answers instead of generating: the mean log-likelihood per answer
token, teacher-forced, over exactly the tokens training learns (`formatting.tokenize_example`).
Unlike "does the greedy answer contain the expected text", it moves smoothly with what a model
has learned, so a comparison of two models by it holds on any machine, not only on this one's
floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

QA = tuple[str, str]  # (question, contributed answer)


class Comparison(BaseModel):
    """The base model and the fine-tuned one on the same questions."""

    base: list[str] = Field(description="The base model's greedy answers to the questions asked.")
    fine_tuned: list[str] = Field(description="The fine-tuned model's greedy answers to them.")
    base_loglik: float = Field(description="Mean log-likelihood per answer token of the given answers, base model.")
    fine_tuned_loglik: float = Field(description="Likewise under the fine-tuned model.")


def load(base_dir: Path, adapter_dir: Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in fp32 eval mode; with an adapter, merged into the weights (faster)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = _with_adapter(model, adapter_dir)
    return model.eval(), tok


def _with_adapter(model: Any, adapter_dir: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()


def compare(
    base_dir: Path, adapter_dir: Path, pairs: Sequence[QA], ask: Sequence[str], max_new_tokens: int = 32
) -> Comparison:
    """The answer log-likelihoods of every pair, and greedy answers to the questions `ask`, under
    the base model and then base + adapter (one load: the adapter is merged into the same weights
    after the base model's turn). Scoring is one forward pass per pair; generating costs a pass per
    new token, so callers generate only what they show."""
    model, tok = load(base_dir)
    base, base_ll = generate(model, tok, ask, max_new_tokens), answer_loglik(model, tok, pairs)
    model = _with_adapter(model, adapter_dir)
    tuned, tuned_ll = generate(model, tok, ask, max_new_tokens), answer_loglik(model, tok, pairs)
    return Comparison(base=base, fine_tuned=tuned, base_loglik=base_ll, fine_tuned_loglik=tuned_ll)


def answer(
    base_dir: Path, adapter_dir: Path | None, questions: Sequence[str], max_new_tokens: int = 48
) -> list[str]:
    """One greedy answer per question (a one-turn chat each)."""
    model, tok = load(base_dir, adapter_dir)
    return generate(model, tok, questions, max_new_tokens)


def generate(
    model: Any, tok: Any, questions: Sequence[str], max_new_tokens: int = 48, batch_size: int = 16
) -> list[str]:
    """Greedy answers, `batch_size` questions at a time (left-padded prompts)."""
    import torch

    from node.data.records import Message
    from node.train.formatting import render_prompt

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    for i in range(0, len(questions), batch_size):
        prompts = [render_prompt(tok, [Message(role="user", content=q)]) for q in questions[i : i + batch_size]]
        rows = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # (B, T), left-padded
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=tok.eos_token_id, pad_token_id=pad,
            )  # fmt: skip
        out += [str(tok.decode(g[width:], skip_special_tokens=True)).strip() for g in gen]
    return out


def answer_loglik(model: Any, tok: Any, pairs: Sequence[QA]) -> float:
    """Mean log-likelihood per answer token of `pairs` (question, answer) under `model`: each
    pair a one-turn chat, teacher-forced, over the answer tokens training learns (the reply and
    its end-of-turn marker), pooled over all pairs. 0 is certainty; -ln(vocab) is a uniform guess."""
    import torch

    from node.data.records import Example
    from node.train.formatting import IGNORE, tokenize_example

    total, count = 0.0, 0
    for q, a in pairs:
        ex = Example.of_chat([("user", q), ("assistant", a)])
        t = tokenize_example(tok, ex)
        ids, labels = torch.tensor([t.input_ids]), torch.tensor(t.labels[1:])  # (1, T), (T-1,)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()  # (T-1, V): position t predicts t+1
        keep = labels != IGNORE
        logp = torch.log_softmax(logits[keep], dim=-1).gather(1, labels[keep, None])  # (N, 1)
        total, count = total + float(logp.sum()), count + int(keep.sum())
    return total / max(count, 1)
