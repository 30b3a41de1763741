"""Answering with a base model and, optionally, a trained adapter: the same chat rendering as
training (`formatting.render_prompt`), greedy decoding, stop at end of turn. The demo uses it to
show what fine-tuning taught; the chat API will serve through the same path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def answer(
    base_dir: Path, adapter_dir: Path | None, questions: Sequence[str], max_new_tokens: int = 48
) -> list[str]:
    """One greedy answer per question (a one-turn chat each)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from node.data.records import Message
    from node.train.formatting import render_prompt

    tok = AutoTokenizer.from_pretrained(base_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    out = []
    for q in questions:
        prompt = render_prompt(tok, [Message(role="user", content=q)])
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )  # fmt: skip
        out.append(str(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)).strip())
    return out
