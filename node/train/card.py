"""The model card saved as README.md next to every adapter: what it was trained from and how."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from node.train.config import TrainConfig, TrainMetrics


class ModelCard(BaseModel):
    """Provenance of an adapter, as far as the caller knows it (a job run knows all of it)."""

    base_model: str = Field(description="The base model reference as the job names it.")
    base_model_hash: str | None = Field(None, description="0x-sha256 of the base model's weight files.")
    job_id: int | None = None
    datanet_ids: list[int] = Field(default_factory=list)
    data_root: str | None = Field(None, description="Merkle root of the training manifest (on-chain).")
    chain_id: int | None = None
    model_registry: str | None = None


def render(card: ModelCard, config: TrainConfig, metrics: TrainMetrics, chat_template: str) -> str:
    """Markdown with YAML front matter (the Hugging Face model-card convention)."""
    front = ["---", "library_name: peft", f"base_model: {json.dumps(card.base_model)}",
             "tags: [datanet, lora" + (", qlora" if config.method == "qlora" else "") + "]", "---"]  # fmt: skip
    hp = "\n".join(f"| {k} | `{json.dumps(v)}` |" for k, v in config.model_dump(mode="json").items())
    m = metrics.model_dump(mode="json")
    mt = "\n".join(f"| {k} | {v} |" for k, v in m.items())
    lineage = [
        f"- Base model: `{card.base_model}`"
        + (f" (weights sha256 `{card.base_model_hash}`)" if card.base_model_hash else ""),
        f"- Datanets: {', '.join(f'#{d}' for d in card.datanet_ids) or 'n/a'}",
        f"- Data root (Merkle root of the training manifest): `{card.data_root or 'n/a'}`",
    ]
    if card.job_id is not None:
        where = f" on chain {card.chain_id}, ModelRegistry `{card.model_registry}`" if card.chain_id else ""
        lineage.insert(0, f"- Job: #{card.job_id}{where}")
    return "\n".join([
        *front, "",
        f"# {config.method.value.upper()} adapter trained by a Datanet node", "",
        "## Lineage", *lineage, "",
        "## Use",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)",
        "model = PeftModel.from_pretrained(base, ADAPTER_DIR)",
        "```", "",
        "Prompts were rendered with this chat template (answers only were learned unless `train_on_prompt`):", "",
        "```jinja", chat_template, "```", "",
        "## Hyperparameters", "", "| name | value |", "|---|---|", hp, "",
        "## Metrics", "", "| name | value |", "|---|---|", mt, "",
    ])  # fmt: skip
