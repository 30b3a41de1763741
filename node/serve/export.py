"""Export: a trained adapter merged into its full-precision base, as a standard Hugging Face model
directory anyone can load with `AutoModelForCausalLM.from_pretrained` — no PEFT, no node.

QLoRA trains against a 4-bit copy of the base, but the merge is into the full-precision weights
(the base directory the job's ``baseModelHash`` names): merging into dequantised 4-bit weights
would bake the quantisation error into every layer. The directory carries a model card whose
front matter names the licence, and the text of each training Datanet's licence terms beside it,
so whoever receives the files receives the terms the contributors set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from node.errors import NodeError
from node.serve.adapters import AdapterPolicy, check_adapter


class ExportExistsError(NodeError, FileExistsError):
    """The output directory already holds files (export never overwrites them silently)."""


class DatanetTerms(BaseModel):
    id: int
    name: str
    license: str = Field(description="An SPDX id, or the CID of the licence text.")
    commercial_use: bool
    license_text: str | None = Field(None, description="The licence text when `license` is a CID in the store.")


class ExportProvenance(BaseModel):
    """Where the exported weights come from (written as datanet-export.json and in the card)."""

    model: str = Field(description="The served id, e.g. datanet-7.")
    model_id: int | None = None
    job_id: int | None = None
    base_model: str
    base_model_hash: str
    adapter_cid: str | None = None
    adapter_sha256: str | None = None
    chain_id: int | None = None
    model_registry: str | None = None
    datanets: list[DatanetTerms] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)


def card_license(datanets: list[DatanetTerms]) -> str:
    """The card's `license:` value: the Datanets' common SPDX id, else `other` (each listed)."""
    ids = {d.license for d in datanets}
    if len(ids) == 1 and not next(iter(ids)).startswith(("bafy", "Qm")):
        return next(iter(ids)).lower()
    return "other"


def render_card(p: ExportProvenance) -> str:
    commercial = all(d.commercial_use for d in p.datanets)
    lines = [
        "---", f"license: {card_license(p.datanets)}", f"base_model: {json.dumps(p.base_model)}",
        "tags: [datanet, merged-lora]", "library_name: transformers", "---", "",
        f"# {p.model}", "",
        f"A LoRA fine-tune of `{p.base_model}` on Datanets {', '.join(f'#{d.id}' for d in p.datanets) or 'n/a'}, "
        "merged into the full-precision base weights.", "",
        "## Licences of the training data", "",
        "The contributors of these Datanets set these terms; they travel with the weights.", "",
        "| Datanet | name | licence | commercial use |", "|---|---|---|---|",
        *(f"| #{d.id} | {d.name} | `{d.license}` | {'yes' if d.commercial_use else 'no'} |" for d in p.datanets),
        "",
        "**Commercial use is not permitted**: at least one Datanet's licence forbids it." if not commercial else "",
        "", "## Provenance", "",
        f"- Base model weights hash: `{p.base_model_hash}`",
        f"- Adapter: `{p.adapter_cid}` (sha256 `{p.adapter_sha256}`)" if p.adapter_cid else "- Adapter: n/a",
        f"- Model #{p.model_id}, job #{p.job_id}" + (f", chain {p.chain_id}, ModelRegistry `{p.model_registry}`"
                                                     if p.chain_id else ""),
        "", "## Training settings", "", "```json", json.dumps(p.training, indent=2, sort_keys=True), "```", "",
    ]  # fmt: skip
    return "\n".join(lines)


def export_merged(
    base_dir: Path, adapter_dir: Path, out: Path, provenance: ExportProvenance, *, force: bool = False,
    policy: AdapterPolicy | None = None,
) -> Path:  # fmt: skip
    """Writes the merged model to `out` (atomically: a failed export leaves nothing behind). The
    adapter passes the same untrusted-input checks as for serving (`node.serve.adapters`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists() and any(out.iterdir()) and not force:
        raise ExportExistsError(f"{out} exists and is not empty; choose another directory or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        check_adapter(adapter_dir, model, policy or AdapterPolicy(), provenance.adapter_sha256)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
        (tmp / "README.md").write_text(render_card(provenance))
        (tmp / "datanet-export.json").write_text(provenance.model_dump_json(indent=2) + "\n")
        for d in provenance.datanets:
            if d.license_text is not None:
                (tmp / f"LICENSE-datanet-{d.id}.txt").write_text(d.license_text)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
