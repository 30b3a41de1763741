"""Base models: where they are, what they are on-chain, and the tiny one built offline.

A job names its base model by a reference (a local Hugging Face directory, a name cached under
the node's models directory, or a hub id) and by `baseModelHash`, a hash of the weight files
(`weights_hash`): two nodes train the same base only if these bytes are the same, whatever the
directory is called. Config and tokenizer files are left out on purpose: they are text that tools
rewrite (key order, added fields) without changing the model.

Offline, `build_tiny_llama` makes a Llama-architecture model and a byte-level BPE tokenizer from
a corpus, and `demo_base_model` caches one pretrained for a few minutes on text generated from
the demo world, so that the demo's chat after fine-tuning is readable, not noise. Hidden and
intermediate sizes are multiples of 64 (bitsandbytes' 4-bit CPU path needs it; see STACK.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from node.errors import NodeError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DEMO_MODEL = "datanet/tiny-llama-demo"
CHAT_TEMPLATE = (  # the template the demo model is pretrained with and fine-tuned through
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{{ '\\n' }}{% endif %}"
)
_READY = ".datanet-ready"  # written last: a directory without it is an interrupted build


class BaseModelError(NodeError, LookupError):
    """A base model that is not available here, or not a usable model directory."""


class PretrainReport(BaseModel):
    steps: int
    seconds: float
    first_loss: float
    final_loss: float
    tokens: int


def weights_hash(model_dir: Path) -> bytes:
    """sha256 over the canonical listing ``path\\0size\\0sha256(file)\\n`` of every weight file
    (sorted relative POSIX paths). Any weight byte changes it; config/tokenizer edits do not."""
    root = Path(model_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES and _NOT_HIDDEN(p, root))
    if not files:
        raise BaseModelError(
            f"{root} has no weight files ({', '.join(WEIGHT_SUFFIXES)}); is it a Hugging Face model directory?"
        )
    listing = hashlib.sha256()
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        rel = path.relative_to(root).as_posix()
        listing.update(f"{rel}\0{path.stat().st_size}\0{digest.hexdigest()}\n".encode())
    return listing.digest()


def _NOT_HIDDEN(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def cached_path(ref: str, models_dir: Path) -> Path:
    """Where a named model lives in the cache: ``org/name`` -> ``models_dir/org--name``."""
    return Path(models_dir) / ref.replace("/", "--")


def resolve_base_model(ref: str, models_dir: Path, *, allow_download: bool = False) -> Path:
    """The local directory of base model `ref`: a directory path, a cached name, or (only with
    `allow_download` and a reachable hub) a hub id fetched into the cache."""
    direct = Path(ref).expanduser()
    if direct.is_dir():
        return _check_dir(direct, ref)
    cached = cached_path(ref, models_dir)
    if (cached / _READY).exists() or (cached / "config.json").is_file():
        return _check_dir(cached, ref)
    if allow_download:
        try:
            from huggingface_hub import snapshot_download

            return _check_dir(Path(snapshot_download(ref, local_dir=cached)), ref)
        except Exception as e:  # any hub failure: offline, unknown id, gated model
            raise BaseModelError(f"Could not download base model '{ref}' ({type(e).__name__}: {e}).") from e
    raise BaseModelError(
        f"Base model '{ref}' is not available on this node: not a directory, and not cached at {cached}. "
        f"Put the Hugging Face model directory there (or pass its path), or enable downloads on a node with "
        f"internet access."
    )


def _check_dir(path: Path, ref: str) -> Path:
    missing = [n for n in ("config.json",) if not (path / n).is_file()]
    if not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        missing.append("a tokenizer (tokenizer.json / tokenizer.model)")
    if missing:
        raise BaseModelError(f"Base model '{ref}' at {path} is incomplete: missing {', '.join(missing)}.")
    weights_hash(path)  # raises if there are no weights
    return path


def build_tiny_llama(
    out_dir: Path,
    corpus: Sequence[str],
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab: int = 512,
    intermediate: int = 128,
    max_position: int = 1024,
    seed: int = 0,
) -> Path:
    """A randomly initialised Llama and a byte-level BPE tokenizer trained on `corpus`, saved
    with `save_pretrained` (safetensors) and a chat template. Deterministic under `seed`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if hidden % 64 or intermediate % 64:
        raise ValueError(f"hidden ({hidden}) and intermediate ({intermediate}) must be multiples of 64")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    bpe.train_from_iterator(list(corpus), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_position,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out


def pretrain(
    model_dir: Path,
    corpus: Sequence[str],
    *,
    max_steps: int = 2000,
    budget_s: float | None = None,
    seq_len: int = 256,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> PretrainReport:
    """Causal-LM pretraining of every weight on `corpus` (packed into `seq_len` rows), until
    `max_steps` or `budget_s` seconds, then saves the weights back atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids: list[int] = []
    for text in corpus:
        ids += [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    data = torch.tensor(ids[: len(ids) // seq_len * seq_len]).view(-1, seq_len)  # (rows, seq_len)
    if len(data) == 0:
        raise ValueError(f"the corpus has {len(ids)} tokens, fewer than one row of {seq_len}")
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()

    def step_once() -> float:
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)]  # (B, seq_len)
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    t0 = time.perf_counter()
    total = max_steps
    if budget_s is not None:  # time a few steps, then size the schedule to the budget
        for g in opt.param_groups:
            g["lr"] = learning_rate * 0.1
        losses = [step_once()]  # the first step pays one-off allocation costs: not timed
        t1 = time.perf_counter()
        losses += [step_once() for _ in range(3)]
        per_step = (time.perf_counter() - t1) / 3
        total = max(5, min(max_steps, int((budget_s - (time.perf_counter() - t0)) / per_step) + 4))
        for g in opt.param_groups:
            g["lr"] = learning_rate
    else:
        losses = []
    sched = get_scheduler("cosine", opt, num_warmup_steps=max(4, total // 20), num_training_steps=total)
    for _ in range(len(losses), total):
        losses.append(step_once())
        sched.step()
    step = len(losses)
    _save_atomically(model, Path(model_dir))
    tail = losses[-20:]
    return PretrainReport(steps=step, seconds=time.perf_counter() - t0, first_loss=losses[0],
                          final_loss=sum(tail) / len(tail), tokens=step * batch_size * seq_len)  # fmt: skip


def _save_atomically(model: object, model_dir: Path) -> None:
    tmp = model_dir.parent / f".{model_dir.name}.weights.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # type: ignore[attr-defined]
    for f in tmp.iterdir():
        os.replace(f, model_dir / f.name)
    tmp.rmdir()


def demo_corpus(n_regions: int = 400, seed_offset: int = 10_000) -> list[str]:
    """Chat-formatted Q/A and plain sentences about invented regions of Quillmarsh. The seeds
    differ from the demo contributors' (`node.demo.run.CONTRIBUTOR_REGIONS`), so the model learns
    the language and the format, never the facts that fine-tuning is meant to teach."""
    from node.demo.world import region_facts

    rng = random.Random(seed_offset)
    texts: list[str] = []
    for k in range(n_regions):
        _, records = region_facts(seed_offset + k)
        for r in records:
            texts.append(f"<|user|>\n{r.instruction}\n<|assistant|>\n{r.output}")  # eos added by pretrain
        texts.append(" ".join(r.output for r in rng.sample(records, min(6, len(records)))))
    rng.shuffle(texts)
    return texts


def demo_base_model(
    models_dir: Path,
    *,
    steps: int = 80,
    budget_s: float | None = None,
    hidden: int = 256,
    layers: int = 4,
    vocab: int = 2048,
) -> Path:
    """The cached demo base model, built and pretrained the first time: `steps` optimizer steps
    (about two minutes on two CPU cores), or fewer if `budget_s` seconds run out first. A fixed
    step count, not a time budget, by default: the same bytes (so the same `baseModelHash`) however
    busy the machine is. Safe when several processes ask at once (a file lock), and after a crash
    mid-build (no ready marker: rebuilt)."""
    path = cached_path(DEMO_MODEL, models_dir)
    if (path / _READY).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.parent / f".{path.name}.lock"):
        if (path / _READY).exists():
            return path
        tmp = path.parent / f".{path.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        corpus = demo_corpus()
        build_tiny_llama(tmp, corpus, hidden=hidden, layers=layers, heads=max(1, hidden // 64), vocab=vocab,
                         intermediate=hidden * 3, seed=0)  # fmt: skip
        report = pretrain(tmp, corpus, budget_s=budget_s, max_steps=steps)
        (tmp / "pretrain.json").write_text(report.model_dump_json(indent=2))
        (tmp / _READY).write_text(json.dumps({"model": DEMO_MODEL, "weights_sha256": weights_hash(tmp).hex()}))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    return path


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
