"""Inference-time attribution for served models: which contributions an answer repeats.

Each registered model gets a span index over the examples it was trained on
(`node.attribution.span_index`), built once, on first use, from the training set this node
holds for the job (its job directory: the manifest, the examples, and the train split saved
with the adapter) and checked against the model's on-chain ``dataRoot`` first, so credits are
only ever paid from the set the registry commits. A model this node did not train has no local
training set yet: its answers carry no attribution (the log says so once).

Matching follows `node.attribution.spans`: the answer's longest rare runs of at least
``min_tokens`` tokens found in training examples, minus anything the request itself contained
(a user cannot make the model echo a colluder's text for credit).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from node.attribution.span_index import SpanIndexError, build_span_index
from node.attribution.spans import AttributedSpan, SpanIndex, SpanPolicy, credits_from_spans
from node.data.manifest import Manifest, TrainingSet
from node.data.records import Example
from node.serve.app import Attribution
from node.serve.catalog import ServedModel
from node.serve.openai_types import SpanCredit
from node.train.config import TrainConfig

log = logging.getLogger(__name__)


class SpanAttributor:
    """The server's `Attributor`: one span index per model, built lazily and cached on disk.
    `jobs_dir` holds the daemon's ``job-<id>`` directories for the served deployment
    (`node.daemon.steps.jobs_root`)."""

    def __init__(self, jobs_dir: Path, index_dir: Path, adapters_dir: Path, policy: SpanPolicy | None = None):
        self.jobs_dir, self.index_dir, self.adapters_dir = jobs_dir, index_dir, adapters_dir
        self.policy = policy or SpanPolicy()
        self._indexes: dict[int, SpanIndex | None] = {}
        self._lock = threading.Lock()

    def __call__(
        self, model: ServedModel, prompt_ids: list[int], answer_ids: list[int], text: str, tok: Any
    ) -> Attribution:
        if model.model_id is None:
            return Attribution()
        index = self.index_for(model, tok)
        if index is None:
            return Attribution()
        # The answer's text, tokenised as training data was: a model may emit the same words as another
        # (non-canonical) id sequence, which would otherwise miss the index.
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = index.attribute(prompt_ids, list(enc["input_ids"]), self.policy)
        return Attribution(
            spans=char_spans(spans, enc["offset_mapping"], text), credits=dict(credits_from_spans(spans))
        )

    def index_for(self, model: ServedModel, tok: Any) -> SpanIndex | None:
        assert model.model_id is not None
        with self._lock:
            if model.model_id not in self._indexes:
                self._indexes[model.model_id] = self._open_or_build(model, tok)
            return self._indexes[model.model_id]

    def _open_or_build(self, model: ServedModel, tok: Any) -> SpanIndex | None:
        job = self.jobs_dir / f"job-{model.job_id}" / "data"
        adapter = self.adapters_dir / str(model.adapter_cid)
        if not (job / "manifest.json").is_file():
            log.info("%s: no local training set (job #%s was trained elsewhere); answers carry no attribution",
                     model.id, model.job_id)  # fmt: skip
            return None
        try:
            manifest = Manifest.from_json((job / "manifest.json").read_bytes())
            if model.data_root is not None and manifest.data_root.lower() != model.data_root.lower():
                log.warning("%s: the local training set's data root %s is not the registered %s; no attribution",
                            model.id, manifest.data_root, model.data_root)  # fmt: skip
                return None
            examples = [Example.model_validate_json(x) for x in (job / "examples.jsonl").read_text().splitlines()]
            split = json.loads((adapter / "split.json").read_text()) if (adapter / "split.json").is_file() else {}
            config = TrainConfig.model_validate(model.config) if model.config else TrainConfig()
            out = self.index_dir / f"model-{model.model_id}"
            built = build_span_index(
                TrainingSet(manifest=manifest, examples=examples), tok, out, train_on_prompt=config.train_on_prompt,
                max_seq_len=config.max_seq_len, train_indices=split.get("train"),
            )  # fmt: skip
            log.info("%s: span index %s in %.2f s", model.id, "reused" if built.reused else "built", built.seconds)
            return SpanIndex.open(out, tok)
        except (SpanIndexError, OSError, ValueError) as e:
            log.warning("%s: no span index (%s); answers carry no attribution", model.id, e)
            return None


def char_spans(spans: list[AttributedSpan], offsets: list[tuple[int, int]], text: str) -> list[SpanCredit]:
    """The spans as API rows, with character offsets into the answer (from the tokenizer's
    offset mapping of the answer text)."""
    out: list[SpanCredit] = []
    for span in spans:
        for row in span.rows():
            start, end = offsets[row.start][0], offsets[row.end - 1][1]
            out.append(
                SpanCredit(
                    span=text[start:end], start=start, end=end, contributor=row.contributor,
                    contribution_id=row.contribution_id, example_index=row.example_index,
                )
            )  # fmt: skip
    return out
