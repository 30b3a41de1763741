"""Adapters from the registry are untrusted input: anyone can register a model whose adapter CID
points at anything. Before one is loaded next to other people's adapters, it is fetched,
verified against its on-chain sha256, and checked:

- **safetensors only**: a pickle file (``.bin``, ``.pt``, ``.pkl``, ``.ckpt``) can run code when
  loaded, so a directory holding one is refused, whatever else it holds;
- **LoRA only, and nothing that changes the base**: ``peft_type`` LORA, no ``modules_to_save``
  (full copies of base layers that would replace them), no ``trainable_token_indices``, no
  ``layer_replication``, no ``target_parameters``;
- **a rank cap** (`AdapterPolicy.max_rank`): memory per adapter grows with r;
- **target modules that exist in the base**, with shapes that fit them: every tensor is
  ``base_model.model.<module>.lora_{A,B}.weight`` of a linear module of the base, A is (r, in),
  B is (out, r);
- its **base model hash equals the served base's** (checked where the registry is read: the
  adapter never meets a base it was not trained on).

Each refusal names the rule and the file, so the model's owner can fix it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node.serve.engine import AdapterRefusedError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.weight$")
_FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}


class AdapterPolicy(BaseModel):
    """What this server accepts from the registry."""

    max_rank: int = Field(256, ge=1, description="Largest LoRA rank r served.")
    max_bytes: int = Field(2 << 30, ge=1, description="Largest adapter weights file.")


class AdapterInfo(BaseModel):
    rank: int
    target_modules: list[str] = Field(description="The base's modules this adapter changes.")
    bytes: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "0x" + digest.hexdigest()


def verify_files(adapter_dir: Path, expected_sha256: str | None, policy: AdapterPolicy) -> None:
    """The checks that need no base model: the files present and the weights' hash."""
    if not (adapter_dir / CONFIG).is_file() or not (adapter_dir / WEIGHTS).is_file():
        raise AdapterRefusedError(
            f"{adapter_dir} is not a PEFT adapter directory: it needs {CONFIG} and {WEIGHTS} (safetensors)"
        )
    for path in sorted(adapter_dir.rglob("*")):
        if path.is_symlink():
            raise AdapterRefusedError(f"adapter holds a symbolic link ({path.name}); refused")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise AdapterRefusedError(
                f"adapter holds {path.name}, a pickle file (loading it could run code); only safetensors are served"
            )
    size = (adapter_dir / WEIGHTS).stat().st_size
    if size > policy.max_bytes:
        raise AdapterRefusedError(f"adapter weights are {size} bytes, over this server's cap of {policy.max_bytes}")
    if expected_sha256 is not None:
        got = sha256_file(adapter_dir / WEIGHTS)
        if got != expected_sha256.lower():
            raise AdapterRefusedError(
                f"adapter weights hash {got}, but the registry commits {expected_sha256}: the content is not "
                "what the node registered"
            )


def check_adapter(
    adapter_dir: Path, base_model: Any, policy: AdapterPolicy, expected_sha256: str | None
) -> AdapterInfo:
    """Every rule of the module docstring against the loaded base model `base_model` (an
    `nn.Module`); the adapter's facts if it passes, `AdapterRefusedError` naming the rule if not."""
    verify_files(adapter_dir, expected_sha256, policy)
    config = _read_config(adapter_dir / CONFIG)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise AdapterRefusedError(f"adapter_config.json: peft_type is {peft_type or 'missing'}; only LORA is served")
    for field in ("modules_to_save", "trainable_token_indices", "layer_replication", "target_parameters"):
        if config.get(field):
            raise AdapterRefusedError(
                f"adapter_config.json sets {field}: it would replace or change base-model weights shared with "
                "other adapters; refused"
            )
    rank = config.get("r")
    ranks = [rank, *dict(config.get("rank_pattern") or {}).values()]
    if not all(isinstance(r, int) and r >= 1 for r in ranks):
        raise AdapterRefusedError(f"adapter_config.json: r must be a positive integer, got {rank!r}")
    if max(ranks) > policy.max_rank:
        raise AdapterRefusedError(f"adapter rank {max(ranks)} is over this server's cap of {policy.max_rank}")

    from safetensors import safe_open

    modules = dict(base_model.named_modules())
    touched: set[str] = set()
    try:
        with safe_open(str(adapter_dir / WEIGHTS), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                sl = f.get_slice(key)
                _check_tensor(key, list(sl.get_shape()), str(sl.get_dtype()), modules, max(ranks))
                touched.add(_KEY.match(key).group("module"))  # type: ignore[union-attr]
    except AdapterRefusedError:
        raise
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise AdapterRefusedError(f"{WEIGHTS} is not a readable safetensors file: {e}") from None
    if not touched:
        raise AdapterRefusedError(f"{WEIGHTS} holds no LoRA weights")
    return AdapterInfo(
        rank=int(max(ranks)), target_modules=sorted(touched), bytes=(adapter_dir / WEIGHTS).stat().st_size
    )


def _read_config(path: Path) -> dict[str, Any]:
    from node import safe_json

    try:
        data = safe_json.loads(path.read_bytes(), str(path.name), max_bytes=safe_json.SMALL_BYTES)
    except (safe_json.UntrustedJsonError, ValueError) as e:
        raise AdapterRefusedError(f"adapter_config.json is not a small JSON object: {e}") from None
    if not isinstance(data, dict):
        raise AdapterRefusedError("adapter_config.json is not a JSON object")
    return data


def _check_tensor(key: str, shape: list[int], dtype: str, modules: dict[str, Any], max_rank: int) -> None:
    m = _KEY.match(key)
    if m is None:
        raise AdapterRefusedError(
            f"{WEIGHTS} holds '{key}', which is not a LoRA A/B weight of a base module; refused (an adapter may "
            "only add low-rank deltas)"
        )
    module = modules.get(m.group("module"))
    if module is None:
        raise AdapterRefusedError(f"{WEIGHTS}: '{m.group('module')}' is not a module of the served base model")
    in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if in_f is None or out_f is None:
        raise AdapterRefusedError(f"{WEIGHTS}: '{m.group('module')}' is not a linear layer of the base model")
    if dtype not in _FLOAT_DTYPES or len(shape) != 2:
        raise AdapterRefusedError(f"{WEIGHTS}: '{key}' is {dtype} {shape}; LoRA weights are 2-D floats")
    r = shape[0] if m.group("part") == "lora_A" else shape[1]
    want = [r, in_f] if m.group("part") == "lora_A" else [out_f, r]
    if shape != want or r > max_rank:
        raise AdapterRefusedError(
            f"{WEIGHTS}: '{key}' has shape {shape}, but {m.group('module')} ({in_f} -> {out_f}) needs {want} "
            f"with r <= {max_rank}"
        )
