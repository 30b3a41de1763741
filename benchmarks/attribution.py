"""Attribution quality and cost: planted contributors, ground truth by retraining, ablations.

Run from the repository root (about 20 minutes on 2 CPU cores; the tiny part alone ~5):

    .venv/bin/python benchmarks/attribution.py                     # writes docs/benchmarks.md
    .venv/bin/python benchmarks/attribution.py --models tiny --no-write

Five planted contributors on one job: `clean_a` and `clean_b` state disjoint invented facts about
made-up countries (their capitals, or their flags' colours: `--worlds`), each fact in two
phrasings; `dup_a` restates `clean_a`'s facts in lightly reworded sentences (they survive exact
dedup); `wrong` asks `clean_a`'s questions and answers them wrongly; `off_topic` talks about
cooking. The poster's eval set asks every clean fact in a third phrasing no contributor used, so a
method is judged on what the model learned, not on what it memorised.

Ground truth is retraining: leave-one-contributor-out over several seeds (value = eval loss
without the contributor minus eval loss with everyone), and on the tiny model exact Shapley over
all 2^5 subsets (value of a subset = base eval loss minus the eval loss after training on it).
Ours is `node.attribution` (`run_isolated`, the committed path) with the payout rule of
`node.rewards.payout` (per-contribution netting, clip at 0). The ablations are computed here from
the engine's building blocks on the same snapshots: a gradient dot product at the final weights,
TracIn over the snapshots, + Adam preconditioning, + the damped Fisher kernel (the engine's
method; the harness checks it reproduces the engine's scores).

`--dattri` cross-checks the harness's TracIn over the snapshots against the independent library
dattri (`pip install dattri==0.3.0`, or the `bench` extra; it leaves torch alone): its
`TracInAttributor` differentiates the model's own forward with `torch.func`, none of our gradient
code, so agreement shows our per-example gradients are what a standard implementation computes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gas_report import write_section
from node.attribution.request import MethodParams
from node.data.records import Example
from node.train.config import TrainConfig

BEGIN, END = "<!-- attribution:begin -->", "<!-- attribution:end -->"
LABELS = ("clean_a", "clean_b", "dup_a", "wrong", "off_topic")
ADDRESS = {name: "0x" + c * 40 for name, c in zip(LABELS, "abcde", strict=True)}
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "brown", "grey"]
_SYL = ["ka", "lo", "mi", "ru", "te", "vo", "zan", "bel", "dor", "fi", "gu", "ha", "ni", "po", "sa", "tu", "we"]
_FOODS = ["bread", "tea", "rice", "soup", "eggs", "pasta", "beans", "cake", "fish", "corn", "stew", "pie"]

# ---------------------------------------------------------------------------------------------- world


TEMPLATES: dict[str, dict[int, tuple[str, str]]] = {
    # Answers drawn from 8 colours: facts share answers, so a wrong answer to one question is the
    # right answer to others (the harder world: first-order methods credit that transfer).
    "colours": {
        1: ("What colour is the flag of {c}?", "It is {a}."),
        2: ("Which colour does the flag of {c} have?", "The flag is {a}."),
        3: ("Tell me the colour of the flag of {c}.", "It is {a}."),
        4: ("What colour is the flag of {c}, please?", "It is {a}."),
        5: ("Which colour does the flag of {c} have today?", "The flag is {a}."),
    },
    # Every answer, right or wrong, an invented city name no other fact uses.
    "names": {
        1: ("What is the capital of {c}?", "It is {a}."),
        2: ("Which city is the capital of {c}?", "The capital is {a}."),
        3: ("Tell me the capital of {c}.", "It is {a}."),
        4: ("What is the capital of {c}, please?", "It is {a}."),
        5: ("Which city is the capital of {c} today?", "The capital is {a}."),
    },
}
WORLDS = tuple(TEMPLATES)


def phrasing(k: int, country: str, answer: str, kind: str = "colours") -> Example:
    """1, 2: the clean contributors' phrasings; 3: the eval set's; 4, 5: the duplicates' rewording of
    1, 2 (the question reworded, the answer the same: they survive exact dedup)."""
    q, a = TEMPLATES[kind][k]
    return Example.of_chat([("user", q.format(c=country)), ("assistant", a.format(a=answer))])


def cooking(food: str, minutes: int) -> Example:
    return Example.of_chat([("user", f"How long do I cook {food}?"), ("assistant", f"Cook it for {minutes} minutes.")])


def _name(rng: random.Random, syllables: int = 3) -> str:
    return "".join(rng.choice(_SYL) for _ in range(syllables)).capitalize()


def _answers(rng: random.Random, kind: str, n: int, avoid: Sequence[str] = ()) -> list[str]:
    """n answers: colours at random, or n distinct two-syllable names outside `avoid`."""
    if kind == "colours":
        return [rng.choice(COLOURS) for _ in range(n)]
    out: list[str] = []
    while len(out) < n:
        a = _name(rng, 2)
        out += [a] if a not in out and a not in avoid else []
    return out


class World(BaseModel):
    """The planted job: examples in manifest order (contiguous per contributor), the eval set."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    kind: str = Field(description="Which `TEMPLATES`: colours (answers shared by facts) or names (unique).")
    examples: list[Example]
    labels: list[str] = Field(description="Contributor label of each example.")
    asked: list[bool] = Field(description="Whether the eval set asks about the example's fact.")
    queries: list[Example]

    def subset(self, keep: Sequence[str]) -> list[Example]:
        return [e for e, c in zip(self.examples, self.labels, strict=True) if c in keep]


def make_world(n_facts: int, seed: int = 7, kind: str = "colours") -> World:
    """`n_facts` facts per clean contributor; `wrong` answers every `clean_a` question wrongly
    (with another colour, or with an invented name that answers nothing else)."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < 2 * n_facts:
        n = _name(rng)
        names += [n] if n not in names else []
    facts = list(zip(names, _answers(rng, kind, 2 * n_facts), strict=True))
    fa, fb = facts[:n_facts], facts[n_facts:]
    if kind == "colours":
        wrong = [COLOURS[(COLOURS.index(c) + rng.randint(1, len(COLOURS) - 1)) % len(COLOURS)] for _, c in fa]
    else:
        wrong = _answers(rng, kind, n_facts, avoid=[a for _, a in facts])
    rows: list[tuple[Example, str, bool]] = []
    rows += [(phrasing(k, c, t, kind), "clean_a", True) for c, t in fa for k in (1, 2)]
    rows += [(phrasing(k, c, t, kind), "clean_b", True) for c, t in fb for k in (1, 2)]
    rows += [(phrasing(k, c, t, kind), "dup_a", True) for c, t in fa for k in (4, 5)]
    rows += [(phrasing(k, c, w, kind), "wrong", True) for (c, _), w in zip(fa, wrong, strict=True) for k in (1, 2)]
    rows += [(cooking(f, 3 + 2 * k), "off_topic", False) for k, f in enumerate((_FOODS * 2)[:n_facts])]
    return World(kind=kind, examples=[r[0] for r in rows], labels=[r[1] for r in rows],
                 asked=[r[2] for r in rows], queries=[phrasing(3, c, t, kind) for c, t in facts])  # fmt: skip


def build_tiny_base(out_dir: Path, steps: int = 100, seed: int = 0, kind: str = "colours") -> Path:
    """A tiny Llama pretrained (every weight, seconds) on every phrasing of *other* countries plus
    cooking talk: it knows the formats, so fine-tuning has only the facts left to teach. A random
    tiny Llama cannot learn facts through LoRA alone (its frozen random head caps every logit)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from node.train.base_model import build_tiny_llama
    from node.train.formatting import tokenize_example

    rng = random.Random(1000 + seed)
    corpus: list[Example] = []
    for _ in range(200):
        c, t = _name(rng), _answers(rng, kind, 1)[0]
        corpus += [phrasing(k, c, t, kind) for k in (1, 2, 3, 4, 5)]
    corpus += [cooking(rng.choice(_FOODS), rng.randint(2, 40)) for _ in range(100)]
    texts = [" ".join(m.content for m in e.messages) for e in corpus]
    build_tiny_llama(out_dir, texts, hidden=64, layers=2, heads=4, vocab=512, intermediate=128, seed=seed)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    ids: list[int] = []
    for e in corpus:
        ids += tokenize_example(tok, e, train_on_prompt=True).input_ids
    data = torch.tensor(ids[: len(ids) // 64 * 64]).view(-1, 64)  # (rows, 64)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.05, 1 - s / steps))
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,), generator=gen)]
        model(input_ids=batch, labels=batch, use_cache=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.save_pretrained(out_dir)
    return out_dir


# ------------------------------------------------------------------------------------- training


class Setup(BaseModel):
    """One benchmarked model: its base, the job's training config, the planted world."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    base_dir: Path
    config: TrainConfig
    world: World
    threads: int = Field(description="torch threads for training (a tiny model is fastest on one).")


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Run(BaseModel):
    """One training run: its final LoRA weights (the last snapshot) and where its snapshots are."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    keep: tuple[str, ...]
    seed: int
    train_seconds: float
    steps: int
    snapshots_dir: Path
    final_lora: dict[str, Any]


def train_on(setup: Setup, keep: Sequence[str], seed: int, out: Path, snapshots: int = 1) -> Run:
    """Trains on the contributors in `keep` with the job's config (seed replaced); snapshots=1 is
    just the final weights, which is all an eval needs."""
    from node.train import snapshots as snaps
    from node.train.trainer import train

    cfg = setup.config.model_copy(update={"seed": seed, "snapshots": snapshots, "checkpoint_every": 1_000_000})
    with threads(setup.threads):
        result = train(setup.base_dir, setup.world.subset(keep), cfg, out)
    found = snaps.load_all(out / "snapshots")
    return Run(keep=tuple(keep), seed=seed, train_seconds=result.metrics.train_seconds, steps=result.metrics.steps,
               snapshots_dir=out / "snapshots", final_lora=found[-1].lora)  # fmt: skip


class Evaluator:
    """The poster's eval loss (token mean over the eval answers, as the trainer reports it) of the
    base with any LoRA weights, one model loaded once."""

    def __init__(self, setup: Setup):
        from node.attribution import gradients as G

        self.G = G
        self.model = G.load_model(setup.base_dir, setup.config, "float32")
        self.loss_fn = G.LossSum(self.model)
        tok = G.load_tokenizer(setup.base_dir)
        self.items = G.tokenize(tok, setup.world.queries, setup.config)
        self.tokens = sum(t.trainable for t in self.items)
        self.zero = {n: p.detach().clone() for n, p in G.lora_parameters(self.model)}  # B = 0: the base

    def loss(self, lora: dict[str, Any] | None) -> float:
        import torch

        self.G.set_lora(self.model, lora if lora is not None else self.zero)
        total = 0.0
        with torch.no_grad():
            for t in self.items:
                total += float(self.loss_fn(torch.tensor([t.input_ids]), torch.tensor([t.labels])))
        return total / self.tokens


# ----------------------------------------------------------------------------------- ground truth


def shapley(values: dict[frozenset[str], float], players: Sequence[str]) -> dict[str, float]:
    """Exact Shapley values of the game `values` (every subset of `players` present)."""
    n = len(players)
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        phi = 0.0
        for r in range(n):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in itertools.combinations(others, r):
                phi += w * (values[frozenset(s) | {p}] - values[frozenset(s)])
        out[p] = phi
    return out


def subset_values(setup: Setup, ev: Evaluator, seed: int, root: Path,
                  subsets: Sequence[frozenset[str]]) -> tuple[dict[frozenset[str], float], float]:  # fmt: skip
    """v(S) = base eval loss - eval loss after training on S, for each subset; and the seconds."""
    base = ev.loss(None)
    values: dict[frozenset[str], float] = {frozenset(): 0.0}
    t0 = time.perf_counter()
    for k, s in enumerate(subsets):
        if not s:
            continue
        run = train_on(setup, sorted(s), seed, root / f"s{seed}-{k}")
        values[s] = base - ev.loss(run.final_lora)
    return values, time.perf_counter() - t0


def all_subsets(players: Sequence[str]) -> list[frozenset[str]]:
    return [frozenset(c) for r in range(len(players) + 1) for c in itertools.combinations(players, r)]


def leave_one_out(values: dict[frozenset[str], float], players: Sequence[str]) -> dict[str, float]:
    full = frozenset(players)
    return {p: values[full] - values[full - {p}] for p in players}


# ------------------------------------------------------------------------------------- attribution


def attribution_request(setup: Setup, snapshots_dir: Path, params: Any = None) -> Any:
    from node.attribution import AttributionRequest, MethodParams, QueryExample, TrainingExample

    w = setup.world
    return AttributionRequest(
        base_model_dir=setup.base_dir, method=setup.config.method, config=setup.config,
        examples=[TrainingExample(example=e, contributor=ADDRESS[c])
                  for e, c in zip(w.examples, w.labels, strict=True)],
        queries=[QueryExample(example=q) for q in w.queries], snapshots_dir=snapshots_dir, job_id=1,
        data_root="0x" + "5e" * 32, params=params or MethodParams(),
    )  # fmt: skip


def payout_shares(scores: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    """The payout rule on these scores (one contribution per contributor): quantise with the
    committed exponent, net per contribution, clip at 0, share = w / W (0 everywhere if W = 0)."""
    from node.attribution.quantise import choose_scale, quantise
    from node.rewards.payout import ExampleRef, contribution_weights

    q = quantise(scores, choose_scale(scores))
    refs = [ExampleRef(index=i, contribution_id=LABELS.index(c), contributor=ADDRESS[c])  # type: ignore[arg-type]
            for i, c in enumerate(labels)]  # fmt: skip
    weights = {LABELS[cw.contribution_id]: cw.weight for cw in contribution_weights(refs, q)}
    total = sum(weights.values())
    return {c: (weights.get(c, 0) / total if total else 0.0) for c in LABELS}


def clipped_shares(values: dict[str, float]) -> dict[str, float]:
    pos = {c: max(0.0, v) for c, v in values.items()}
    total = sum(pos.values())
    return {c: (v / total if total else 0.0) for c, v in pos.items()}


class Ablations(BaseModel):
    """Per-example scores of each method on one run's snapshots, and what the harness spent."""

    scores: dict[str, list[float]]
    train_gradient_s: float = Field(description="Per-example training gradients, all snapshots.")
    query_gradient_s: float
    steps_measured: int = 0


ABLATIONS = ("gradient dot (final weights)", "TracIn over snapshots", "+ Adam", "+ kernel (ours)")
DAMPINGS = (1e-2, 1e-1, 1.0, 10.0)
"""Other kernel dampings tried on the same gradients (relative to the kernel's mean eigenvalue;
large tends to `+ Adam`)."""


def tokenised(setup: Setup) -> tuple[list[Any], list[Any], int]:
    """The world's training examples and queries tokenised as the trainer does, and the queries'
    answer tokens (the eval loss is their token mean)."""
    from node.attribution import gradients as G

    tok = G.load_tokenizer(setup.base_dir)
    train_tok = G.tokenize(tok, setup.world.examples, setup.config)
    query_tok = G.tokenize(tok, setup.world.queries, setup.config)
    return train_tok, query_tok, sum(t.trainable for t in query_tok)


def ablation_scores(setup: Setup, snapshots_dir: Path, damping: float, projection_dim: int,
                    plain_only: bool = False) -> Ablations:  # fmt: skip
    """The four methods from the engine's building blocks, in float64, with the engine's batched
    per-example gradients. Query gradient = the gradient of the eval set's token-mean loss (uniform
    weights: the eval set belongs to no contributor). `plain_only`: just TracIn (g_i . q per
    state), for timing exact TracIn at every step on a run that snapshotted every step."""
    import torch

    from node.attribution import gradients as G
    from node.attribution.engine import sketch_width
    from node.attribution.kernel import kernel_scores, preconditioner_sqrt
    from node.attribution.sketch import CountSketch, projection_seed, snapshot_seed
    from node.train import snapshots as snaps

    train_tok, query_tok, tokens = tokenised(setup)
    model = G.load_model(setup.base_dir, setup.config, "float64")
    loss_fn = G.LossSum(model)
    named = G.lora_parameters(model)
    per_example = G.BatchedGradients(model, named, batch_tokens=2048)
    n_params = per_example.n_params
    width = projection_dim if n_params > projection_dim else None
    seed = projection_seed("0x" + "5e" * 32, 1)
    found = snaps.load_all(snapshots_dir)
    n = len(train_tok)
    out = {name: torch.zeros(n, dtype=torch.float64) for name in ABLATIONS}
    t_train = t_query = 0.0
    for snap in found:
        G.set_lora(model, snap.lora)
        t0 = time.perf_counter()
        q = torch.zeros(n_params, dtype=torch.float64)
        for batch in per_example.batches(query_tok):
            q += per_example(loss_fn, [query_tok[j] for j in batch]).sum(dim=0)
        q /= tokens  # (p,)
        t_query += time.perf_counter() - t0
        pre = torch.cat([preconditioner_sqrt(snap.exp_avg_sq[name].reshape(-1), snap.meta.adam_step,
                                             snap.meta.beta2, snap.meta.eps) for name, _ in named])  # fmt: skip
        sketch = CountSketch(snapshot_seed(seed, snap.meta.index), n_params, width)
        qp = q * pre * pre  # P q
        phi = torch.zeros(n, sketch_width(n_params, projection_dim), dtype=torch.float64)  # (N, d)
        t0 = time.perf_counter()
        for batch in per_example.batches(train_tok):
            g = per_example(loss_fn, [train_tok[i] for i in batch])  # (b, p)
            rows = torch.tensor(batch)
            dot = g @ q
            out["TracIn over snapshots"][rows] += snap.meta.lr_sum * dot
            if snap is found[-1]:
                out["gradient dot (final weights)"][rows] = dot
            if not plain_only:
                out["+ Adam"][rows] += snap.meta.lr_sum * (g @ qp)
                phi[rows] = sketch(g * pre)
        t_train += time.perf_counter() - t0
        if not plain_only:
            psi = sketch(q * pre).unsqueeze(0)  # (1, d)
            ours = kernel_scores(phi, psi, damping)[:, 0]
            out["+ kernel (ours)"] += snap.meta.lr_sum * ours
            out[f"+ kernel, snapshot {snap.meta.index} only"] = ours
            for lam in DAMPINGS:
                key = f"+ kernel, damping {lam:g}"
                out[key] = out.get(key, torch.zeros(n, dtype=torch.float64)) + snap.meta.lr_sum * kernel_scores(
                    phi, psi, lam)[:, 0]  # fmt: skip
    return Ablations(scores={k: v.tolist() for k, v in out.items()}, train_gradient_s=t_train,
                     query_gradient_s=t_query, steps_measured=len(found))  # fmt: skip


DATTRI = "dattri==0.3.0"
"""The version whose API `dattri_tracin_scores` was written against (`--dattri`)."""


def dattri_version() -> str:
    """The installed dattri's version, or an exit naming the install command: dattri is optional
    (only `--dattri` needs it), so it is imported lazily and checked before any training."""
    import importlib
    from importlib.metadata import version

    try:
        importlib.import_module("dattri")
    except ImportError as e:
        raise SystemExit(f"--dattri needs the dattri library ({e}): `pip install {DATTRI}`") from e
    return version("dattri")


def _no_progress(iterable: Any, **_: Any) -> Any:
    """Stands in for dattri's tqdm: two nested progress bars per training example flood the log."""
    return iterable


def dattri_tracin_scores(setup: Setup, snapshots_dir: Path) -> list[float]:
    """Plain TracIn over a run's snapshots computed by dattri, independently of our gradient code.

    dattri's `TracInAttributor` (unnormalised, identity projector: no random projection) returns
    S[i, j] = sum over snapshots k of w_k * grad L_i . grad T_j, per-example gradients by `torch.func`
    (`vmap` of `grad`) of the loss below with respect to the parameters that require grad (LoRA's
    only), each snapshot loaded by `set_lora`, w_k = the snapshot's `lr_sum`. L = T = one example's
    summed answer-token cross-entropy (the trainer's loss), written here on the PEFT model's own
    forward (`functional_call`, logits), not with `LossSum` or our hooks. The eval set's target is its
    token-mean loss, sum_j T_j / tokens, so example i's score is S[i, :].sum() / tokens: the harness's
    `TracIn over snapshots` up to float error. Batches of one example: no padding, each example at
    its own length, as in `example_gradient`. dattri recomputes every query gradient for every
    training example (K * N * (Q + 1) gradients), so this is slow on a large model.
    """
    from unittest import mock

    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader

    from node.attribution import gradients as G
    from node.train import snapshots as snaps
    from node.train.formatting import IGNORE

    dattri_version()  # the install command if it is missing
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask

    train_tok, query_tok, tokens = tokenised(setup)
    model = G.load_model(setup.base_dir, setup.config, "float64")
    found = snaps.load_all(snapshots_dir)

    def loss(params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, labels = data  # (T,) each: dattri vmaps over the batch dimension
        out = torch.func.functional_call(model, params, args=(), kwargs={"input_ids": ids.unsqueeze(0),
                                                                          "use_cache": False})  # fmt: skip
        logits = out.logits[0]  # (T, V): position t predicts token t + 1
        return F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE, reduction="sum")

    def load(m: nn.Module, lora: dict[str, torch.Tensor]) -> nn.Module:
        G.set_lora(m, lora)
        return m

    def loader(items: Sequence[Any]) -> DataLoader[Any]:
        rows = [(torch.tensor(t.input_ids), torch.tensor(t.labels)) for t in items]
        return DataLoader(rows, batch_size=1, shuffle=False)  # type: ignore[arg-type]  # a list is a map-style dataset

    task = AttributionTask(loss_func=loss, model=model, checkpoints=[s.lora for s in found],
                           checkpoints_load_func=load)  # fmt: skip
    # A full dict: dattri updates its module-level defaults in place with what it is given.
    projector = {"proj_type": "identity", "proj_dim": 512, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    attributor = TracInAttributor(task=task, weight_list=torch.tensor([s.meta.lr_sum for s in found],
                                  dtype=torch.float64), normalized_grad=False, projector_kwargs=projector,
                                  device="cpu")  # fmt: skip
    # dattri accumulates S in torch's default dtype: float64 for the call, so the comparison sees
    # the float64 gradients' agreement rather than float32 rounding.
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with mock.patch("dattri.algorithm.tracin.tqdm", _no_progress):
            s = attributor.attribute(loader(train_tok), loader(query_tok))  # (N, Q)
    finally:
        torch.set_default_dtype(before)
    return (s.sum(dim=1) / tokens).tolist()


# ------------------------------------------------------------------------------------------ metrics


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    k = 0
    while k < len(order):
        j = k
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[k]]:
            j += 1
        for m in range(k, j + 1):
            ranks[order[m]] = (k + j) / 2
        k = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va and vb else float("nan")


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va and vb else float("nan")


def wrong_answer_auc(scores: Sequence[float], world: World) -> float:
    """P(a correct example outscores a wrong-answer one), over examples whose facts the eval asks."""
    pos = [s for s, c, a in zip(scores, world.labels, world.asked, strict=True) if a and c != "wrong"]
    neg = [s for s, c, a in zip(scores, world.labels, world.asked, strict=True) if a and c == "wrong"]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


# ------------------------------------------------------------------------------------------ driver


class SetupReport(BaseModel):
    name: str
    world: str
    method_id: str
    snapshots: int
    examples: int
    queries: int
    lora_parameters: int
    gradient_dim: int
    steps: int
    seeds: list[int]
    base_eval_loss: float
    trained_eval_loss: list[float] = Field(description="Eval loss after training on everyone, per seed.")
    clean_only_eval_loss: float | None = None
    train_seconds: list[float]
    attribution_seconds: list[float] = Field(description="run_isolated wall time (fresh worker included), per seed.")
    attribution_compute_seconds: list[float]
    ours: list[dict[str, float]] = Field(description="Payout shares per seed.")
    auc: list[float] = Field(description="Wrong-answer AUC of our example scores, per seed.")
    loo: dict[str, list[float]] = Field(description="Leave-one-out value per contributor, per seed.")
    shapley: dict[str, list[float]] | None = None
    ablation_shares: dict[str, dict[str, float]] = Field(description="Seed 0's run.")
    ablation_auc: dict[str, float]
    engine_vs_harness: float = Field(description="max |engine - harness kernel| / max |engine| on seed 0.")
    every_step_s: float = Field(description="Exact TracIn (every example, every query) per step, measured.")
    every_step_steps: int
    epochs: int | None = Field(None, description="The job's epochs: TracIn-ideal differentiates each example once "
                               "per epoch (`ideal_tracin_seconds`).")  # fmt: skip
    dattri_version: str | None = Field(None, description="`--dattri`: the dattri that cross-checked seed 0's run.")
    dattri_pearson: float | None = Field(None, description="Pearson, dattri's TracIn vs the harness's, per example.")
    dattri_spearman: float | None = None
    dattri_max_rel_dev: float | None = Field(None, description="max |dattri - harness| / max |harness|.")
    dattri_seconds: float | None = None


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


class Variant(BaseModel):
    """One configuration of our method: K trajectory snapshots (a training knob) and the engine's
    params (dtype, batching)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    snapshots: int = Field(ge=1)
    params: MethodParams


def with_snapshots(setup: Setup, k: int) -> Setup:
    return setup.model_copy(update={"config": setup.config.model_copy(update={"snapshots": k})})


def run_setup(setup: Setup, seeds: Sequence[int], root: Path, *, exact_shapley: bool, every_steps: int,
              variants: Sequence[Variant], ablations: bool = True, dattri: bool = False,
              say: Any = print) -> list[SetupReport]:  # fmt: skip
    """One report per variant; the ground truth (retraining) is computed once per seed and shared,
    and each distinct K trains its own full run (the trajectory is the same, only what is saved
    differs). `dattri`: cross-check the harness's TracIn over seed 0's snapshots against dattri's."""
    from node.attribution import run_isolated

    ev = Evaluator(setup)
    base_loss = ev.loss(None)
    subsets = all_subsets(LABELS) if exact_shapley else [frozenset(LABELS)] + [
        frozenset(LABELS) - {c} for c in LABELS]  # fmt: skip
    reps: list[dict[str, Any]] = [
        {"ours": [], "train_seconds": [], "trained_eval_loss": [], "attribution_seconds": [],
         "attribution_compute_seconds": [], "auc": []} for _ in variants
    ]  # fmt: skip
    loo: dict[str, list[float]] = {c: [] for c in LABELS}
    shap: dict[str, list[float]] = {c: [] for c in LABELS}
    clean_only: float | None = None
    first: Any = None
    for seed in seeds:
        values, _ = subset_values(setup, ev, seed, root, [s for s in subsets if s != frozenset(LABELS)])
        runs: dict[int, Run] = {}
        for v, rep in zip(variants, reps, strict=True):
            vsetup = with_snapshots(setup, v.snapshots)
            if v.snapshots not in runs:
                runs[v.snapshots] = train_on(vsetup, LABELS, seed, root / f"full-{seed}-k{v.snapshots}",
                                             snapshots=v.snapshots)  # fmt: skip
            full = runs[v.snapshots]
            t0 = time.perf_counter()
            # The worker gets the training's threads, as the daemon gives it all cores (`worker_threads`).
            result = run_isolated(attribution_request(vsetup, full.snapshots_dir, v.params), timeout_s=3600,
                                  threads=setup.threads)  # fmt: skip
            rep["attribution_seconds"].append(time.perf_counter() - t0)
            rep["attribution_compute_seconds"].append(result.total_seconds)
            rep["train_seconds"].append(full.train_seconds)
            rep["ours"].append(payout_shares(result.scores, setup.world.labels))
            rep["auc"].append(wrong_answer_auc(result.scores, setup.world))
            rep["trained_eval_loss"].append(ev.loss(full.final_lora))
            rep["method_id"] = result.method_id
            if first is None:
                first = (full, result)
            say(f"  {setup.name} ({setup.world.kind}) seed {seed}, K={v.snapshots} {v.params.dtype}: train "
                f"{full.train_seconds:.1f} s, attribution {rep['attribution_seconds'][-1]:.1f} s, eval loss "
                f"{base_loss:.3f} -> {rep['trained_eval_loss'][-1]:.3f}; AUC {rep['auc'][-1]:.3f}; "
                f"ours {_fmt(rep['ours'][-1])}")  # fmt: skip
        values[frozenset(LABELS)] = base_loss - reps[0]["trained_eval_loss"][-1]
        for c, x in leave_one_out(values, LABELS).items():
            loo[c].append(x)
        if exact_shapley:
            for c, x in shapley(values, LABELS).items():
                shap[c].append(x)
            if clean_only is None:
                clean_only = base_loss - values[frozenset({"clean_a", "clean_b"})]
        say(f"  {setup.name} ({setup.world.kind}) seed {seed}: loo {_fmt({c: loo[c][-1] for c in LABELS})}")
    full, result = first
    p = result.params
    abl = Ablations(scores={}, train_gradient_s=0.0, query_gradient_s=0.0)
    dev = every_s = float("nan")
    if ablations:
        abl = ablation_scores(with_snapshots(setup, variants[0].snapshots), full.snapshots_dir, p.damping,
                              p.projection_dim)  # fmt: skip
        peak = max(abs(s) for s in result.scores) or 1.0
        dev = max(abs(a - b) for a, b in zip(result.scores, abl.scores["+ kernel (ours)"], strict=True)) / peak
    cross: dict[str, Any] = {}
    if dattri:
        ksetup = with_snapshots(setup, variants[0].snapshots)
        plain = abl if ablations else ablation_scores(ksetup, full.snapshots_dir, p.damping, p.projection_dim,
                                                      plain_only=True)  # fmt: skip
        tracin = plain.scores["TracIn over snapshots"]
        t0 = time.perf_counter()
        theirs = dattri_tracin_scores(ksetup, full.snapshots_dir)
        peak = max(abs(s) for s in tracin) or 1.0
        cross = {"dattri_version": dattri_version(), "dattri_pearson": pearson(theirs, tracin),
                 "dattri_spearman": spearman(theirs, tracin), "dattri_seconds": time.perf_counter() - t0,
                 "dattri_max_rel_dev": max(abs(a - b) for a, b in zip(theirs, tracin, strict=True)) / peak}  # fmt: skip
        say(f"  {setup.name} ({setup.world.kind}) seed {seeds[0]}: dattri {cross['dattri_version']} TracIn vs ours: "
            f"Pearson {cross['dattri_pearson']:.9f}, Spearman {cross['dattri_spearman']:.6f}, max deviation "
            f"{cross['dattri_max_rel_dev']:.1e} of the largest score, {cross['dattri_seconds']:.0f} s")  # fmt: skip
    if ablations and every_steps:
        # Exact TracIn at every step, timed on a run cut to `every_steps` steps that snapshotted
        # after each of them: per step, every training and query gradient and their dot products.
        cfg = setup.config.model_copy(update={"max_steps": every_steps, "snapshots": every_steps})
        short_setup = setup.model_copy(update={"config": cfg})
        short = train_on(short_setup, LABELS, seeds[0], root / "every-step-run", snapshots=every_steps)
        timing = ablation_scores(short_setup, short.snapshots_dir, p.damping, p.projection_dim, plain_only=True)
        every_s = (timing.train_gradient_s + timing.query_gradient_s) / timing.steps_measured
    out = []
    for k, (v, rep) in enumerate(zip(variants, reps, strict=True)):
        out.append(SetupReport(
            name=setup.name, world=setup.world.kind, snapshots=v.snapshots, examples=len(setup.world.examples),
            queries=len(setup.world.queries), lora_parameters=result.lora_parameters,
            gradient_dim=result.gradient_dim, steps=full.steps, seeds=list(seeds), base_eval_loss=base_loss,
            clean_only_eval_loss=clean_only, loo=loo, shapley=shap if exact_shapley else None,
            ablation_shares={n: payout_shares(x, setup.world.labels) for n, x in abl.scores.items()} if k == 0 else {},
            ablation_auc={n: wrong_answer_auc(x, setup.world) for n, x in abl.scores.items()} if k == 0 else {},
            engine_vs_harness=dev if k == 0 else float("nan"), every_step_s=every_s, every_step_steps=every_steps,
            epochs=setup.config.epochs,
            **(cross if k == 0 else {}), **rep,
        ))  # fmt: skip
    return out


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{c}={v:.3f}" for c, v in d.items())


def tiny_setup(root: Path, n_facts: int = 8, seed: int = 0, kind: str = "colours") -> Setup:
    """The tiny model's job (also the CI test's, with fewer facts)."""
    cfg = TrainConfig(method="lora", epochs=40, max_seq_len=64, batch_size=16, lora_r=8, lora_alpha=16,
                      lora_dropout=0.0, learning_rate=1e-2, warmup_ratio=0.0, eval_fraction=0.0, snapshots=3,
                      seed=seed)  # fmt: skip
    with threads(1):
        base = build_tiny_base(root / f"tiny-base-{kind}", kind=kind)
    return Setup(name="tiny Llama (2 layers, hidden 64)", base_dir=base, config=cfg,
                 world=make_world(n_facts, kind=kind), threads=1)  # fmt: skip


def smollm2_setup(models_dir: Path, n_facts: int, kind: str = "colours") -> Setup:
    from node.train.smollm2 import smollm2_model

    cfg = TrainConfig(method="lora", epochs=6, max_seq_len=128, batch_size=8, lora_r=8, lora_alpha=16,
                      lora_dropout=0.0, learning_rate=2e-3, warmup_ratio=0.0, eval_fraction=0.0, snapshots=3,
                      target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], seed=0)  # fmt: skip
    return Setup(name="SmolLM2-135M-Instruct", base_dir=smollm2_model(models_dir), config=cfg,
                 world=make_world(n_facts, kind=kind), threads=max(1, os.cpu_count() or 1))  # fmt: skip


def _device() -> str:
    import torch

    return f"CPU, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    p.add_argument("--tiny-seeds", type=int, default=3)
    p.add_argument("--smollm2-seeds", type=int, default=2)
    p.add_argument("--smollm2-facts", type=int, default=6, help="facts per clean contributor on SmolLM2")
    p.add_argument("--models-dir", type=Path, default=Path.home() / ".datanet" / "models",
                   help="where the converted SmolLM2 directory is cached")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the raw reports here")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--workdir", type=Path, help="keep the runs (snapshots, adapters) here instead of a temp dir")
    p.add_argument("--worlds", default="names,colours", help=f"comma-separated: {', '.join(WORLDS)}")
    p.add_argument("--variants", default="3:float64",
                   help="comma-separated K:dtype of our method (K snapshots), e.g. 3:float64,1:float32")  # fmt: skip
    p.add_argument("--batch-tokens", type=int, default=2048, help="MethodParams.batch_tokens (1: one at a time)")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations and the every-step timing")
    p.add_argument("--dattri", action="store_true",
                   help=f"cross-check the harness's TracIn against dattri's (`pip install {DATTRI}`)")  # fmt: skip
    p.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                   help="write docs/benchmarks.md from saved --json reports instead of running; a later file's "
                   "dattri cross-check fills the same setup's report of an earlier one")  # fmt: skip
    args = p.parse_args()
    if args.render:
        md = render_saved(args.render)
        print(md if args.no_write else f"wrote {write_section(md, begin=BEGIN, end=END)}")
        return
    if args.dattri:
        dattri_version()  # before any training: exits naming the install command if it is missing
    variants = [Variant(snapshots=int(k), params=MethodParams(dtype=dt, batch_tokens=args.batch_tokens))
                for k, dt in (v.split(":") for v in args.variants.split(","))]  # fmt: skip
    reports: list[SetupReport] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attribution-bench-") as d:
        root = args.workdir or Path(d)
        for which, kind in itertools.product(args.models.split(","), args.worlds.split(",")):
            ts = time.perf_counter()
            if kind not in WORLDS:
                raise SystemExit(f"unknown world {kind!r}: use {' or '.join(WORLDS)}")
            if which == "tiny":
                setup, seeds, exact, every = tiny_setup(root, kind=kind), range(args.tiny_seeds), True, 8
            elif which == "smollm2":
                setup, seeds, exact, every = smollm2_setup(args.models_dir, args.smollm2_facts, kind), range(
                    args.smollm2_seeds), False, 2  # fmt: skip
            else:
                raise SystemExit(f"unknown model {which!r}: use tiny or smollm2")
            print(f"{setup.name}, world {kind}: {len(setup.world.examples)} examples, {len(setup.world.queries)} "
                  "eval questions", flush=True)  # fmt: skip
            reports += run_setup(setup, list(seeds), root / f"{which}-{kind}", exact_shapley=exact,
                                 every_steps=every, variants=variants, ablations=not args.no_ablations,
                                 dattri=args.dattri)  # fmt: skip
            print(f"{setup.name}, world {kind}: {time.perf_counter() - ts:.0f} s in all", flush=True)
    measured, device, seconds = datetime.now(UTC), _device(), time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps({"measured": measured.isoformat(), "device": device, "seconds": seconds,
                                         "reports": [r.model_dump() for r in reports]}, indent=1))  # fmt: skip
    md = render(reports, device, seconds, measured)
    if args.no_write:
        print(md)
    else:
        print(f"wrote {write_section(md, begin=BEGIN, end=END)}")


def every_step_seconds(r: SetupReport) -> float:
    """TracIn with a checkpoint at every step: every example's and every query's gradient at each
    of the run's steps (measured per step on a short run, times the steps)."""
    return r.every_step_s * r.steps


def ideal_tracin_seconds(r: SetupReport) -> float:
    """TracIn-ideal (Pruthi et al.): each example's gradient only at the steps that trained it (once
    per epoch) and the queries' at every step. Priced at the measured cost of one gradient, which
    `every_step_s` spends on every example and every query."""
    if r.epochs is None:
        return float("nan")
    per_gradient = r.every_step_s / (r.examples + r.queries)
    return per_gradient * (r.epochs * r.examples + r.steps * r.queries)


LEARNED = 0.9
"""A seed is judged only if training on every contributor brought the eval loss to at most this
fraction of the untrained model's: where the model did not learn what the eval asks, no method
(and no retraining ground truth) can tell helpful data from harmful, as the issue warns."""


def judged_seeds(r: SetupReport) -> list[int]:
    """Positions (into the per-seed lists) of the seeds whose training learned the eval."""
    return [k for k, x in enumerate(r.trained_eval_loss) if x <= LEARNED * r.base_eval_loss]


def _judged(r: SetupReport) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """Our mean shares, the mean leave-one-out values and the AUCs over the judged seeds only."""
    ks = judged_seeds(r)
    ours = {c: _mean([r.ours[k][c] for k in ks]) for c in LABELS}
    loo = {c: _mean([r.loo[c][k] for k in ks]) for c in LABELS}
    return ours, loo, [r.auc[k] for k in ks]


def _shares_row(name: str, shares: dict[str, float], extra: str = "") -> str:
    return f"| {name} | " + " | ".join(f"{shares[c]:.3f}" for c in LABELS) + f" |{extra}"


def _section(r: SetupReport) -> list[str]:
    ks = judged_seeds(r)
    ours, loo, aucs = _judged(r)
    sp_loo = [spearman([r.ours[k][c] for c in LABELS], [r.loo[c][k] for c in LABELS]) for k in ks]
    sp_loo_mean = spearman([ours[c] for c in LABELS], [loo[c] for c in LABELS]) if ks else float("nan")
    skipped = [r.seeds[k] for k in range(len(r.seeds)) if k not in ks]
    train_s, attr_s = _mean(r.train_seconds), _mean(r.attribution_seconds)
    every_total, ideal_total = every_step_seconds(r), ideal_tracin_seconds(r)
    head = "| | " + " | ".join(LABELS) + " |"
    lines = [
        f"### {r.name}, world `{r.world}`", "",
        f"Method `{r.method_id.split(';torch')[0]}`, K = {r.snapshots} snapshots. "
        f"{r.examples} training examples, {r.queries} eval questions, {r.lora_parameters:,} LoRA parameters "
        f"(kernel dimension {r.gradient_dim:,}), {r.steps} optimizer steps, seeds {r.seeds}.", "",
        f"- **Can the model learn what the eval asks?** Eval loss (third phrasing, token mean over the answers) "
        f"{r.base_eval_loss:.3f} before training, " + ", ".join(f"{x:.3f}" for x in r.trained_eval_loss)
        + " after training on every contributor"
        + (f", {r.clean_only_eval_loss:.3f} on the two clean contributors alone" if r.clean_only_eval_loss else "")
        + "." + (f" **Not judged: seed(s) {skipped}**, whose training did not bring the eval loss below "
                 f"{LEARNED:.0%} of the untrained model's (the model did not learn what the eval asks); every "
                 "figure below is over the other seeds." if skipped else ""),
        "", head, "|---|" + "---:|" * len(LABELS),
        _shares_row("ours: payout share (mean over judged seeds)", ours),
        _shares_row("leave-one-out: eval-loss drop (mean)", loo),
    ]  # fmt: skip
    if r.shapley:
        shapley = {c: _mean([r.shapley[c][k] for k in ks]) for c in LABELS}
        lines.append(_shares_row("exact Shapley (mean over judged seeds)", shapley))
        lines.append(_shares_row("exact Shapley, clipped share", clipped_shares(shapley)))
    lines += ["", "Ranking (ours): " + " > ".join(sorted(LABELS, key=lambda c: -ours[c])) + "; leave-one-out: "
              + " > ".join(sorted(LABELS, key=lambda c: -loo[c])) + ".", ""]  # fmt: skip
    lines += [
        "| metric | measured | target |", "|---|---:|---:|",
        f"| Spearman, ours vs leave-one-out (per judged seed) | {', '.join(f'{x:.2f}' for x in sp_loo)} | >= 0.8 |",
        f"| Spearman, ours vs leave-one-out (seed means) | {sp_loo_mean:.2f} | >= 0.8 |",
    ]  # fmt: skip
    if r.shapley:
        shap = {c: _mean([r.shapley[c][k] for k in ks]) for c in LABELS}
        lines.append(f"| Spearman, ours vs exact Shapley (seed means) | "
                     f"{spearman([ours[c] for c in LABELS], [shap[c] for c in LABELS]):.2f} | |")  # fmt: skip
    lines += [
        "| AUC, wrong answers vs correct ones (examples whose facts the eval asks; per judged seed) | "
        + ", ".join(f"{x:.3f}" for x in aucs) + " | >= 0.95 |",
        f"| attribution / training time | {attr_s:.1f} s / {train_s:.1f} s = **{attr_s / train_s:.0%}** "
        f"(compute alone {_mean(r.attribution_compute_seconds) / train_s:.0%}) | <= 25% |",
    ]  # fmt: skip
    if not math.isnan(r.every_step_s):
        lines.append(f"| speed vs exact TracIn at every step (every example and query at each step) | "
                     f"{r.every_step_s:.2f} s/step x {r.steps} steps = {every_total:.0f} s vs {attr_s:.1f} s: "
                     f"**{every_total / attr_s:.0f}x** | >= 20x |")  # fmt: skip
    if not math.isnan(ideal_total):
        lines.append(f"| speed vs TracIn-ideal (each example at the {r.epochs} steps that trained it, the queries "
                     f"at every step) | {ideal_total:.0f} s vs {attr_s:.1f} s: **{ideal_total / attr_s:.1f}x** "
                     "| |")  # fmt: skip
    if r.ablation_shares:
        lines += [
            "", f"Ablations on seed {r.seeds[0]}'s run (payout shares after netting and clipping; AUC as above):",
            "", "| method | " + " | ".join(LABELS) + " | AUC |", "|---|" + "---:|" * (len(LABELS) + 1),
        ]  # fmt: skip
        lines += [_shares_row(k, v, f" {r.ablation_auc[k]:.3f} |") for k, v in r.ablation_shares.items()]
        lines += ["", f"The harness's `+ kernel` reproduces the engine's scores to {r.engine_vs_harness:.1e} of the "
                  "largest score."]  # fmt: skip
    if r.dattri_pearson is not None:
        lines += ["", f"dattri {r.dattri_version} TracIn on the same snapshots (its `TracInAttributor`: "
                  "lr_sum-weighted gradient dot products, no projection) vs the harness's `TracIn over snapshots`, "
                  "per example: "
                  f"Pearson {r.dattri_pearson:.6f}, Spearman {r.dattri_spearman:.3f}, max deviation "
                  f"{r.dattri_max_rel_dev:.1e} of the largest score; {r.dattri_seconds:.0f} s."]  # fmt: skip
    lines.append("")
    return lines


DATTRI_FIELDS = ("dattri_version", "dattri_pearson", "dattri_spearman", "dattri_max_rel_dev", "dattri_seconds")


def render_saved(paths: Sequence[Path]) -> str:
    """The section from `--json` files: the first file's run, and from later files what they add
    (a dattri cross-check of the same setup, or setups the first did not run). A file holding a
    bare list of reports (older runs) has no header: its time is the file's, its device unknown."""
    docs = []
    for path in paths:
        raw = json.loads(path.read_text())
        if isinstance(raw, list):
            raw = {"measured": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
                   "device": "CPU (device not recorded)", "seconds": None, "reports": raw}  # fmt: skip
        docs.append(raw)

    def key(r: SetupReport) -> tuple[str, str, int, str]:
        return r.name, r.world, r.snapshots, r.method_id

    reports = {key(r): r for r in (SetupReport.model_validate(x) for x in docs[0]["reports"])}
    for doc in docs[1:]:
        for extra in (SetupReport.model_validate(x) for x in doc["reports"]):
            if key(extra) not in reports:
                reports[key(extra)] = extra
            elif extra.dattri_pearson is not None:
                dattri = {f: getattr(extra, f) for f in DATTRI_FIELDS}
                reports[key(extra)] = reports[key(extra)].model_copy(update=dattri)
    first = docs[0]
    return render(list(reports.values()), first["device"], first["seconds"], datetime.fromisoformat(first["measured"]))


def render(reports: Sequence[SetupReport], device: str, seconds: float | None, measured: datetime) -> str:
    when = measured.strftime("%Y-%m-%d %H:%M UTC")
    took = f", {seconds / 60:.0f} minutes in all" if seconds is not None else ""
    lines = [
        BEGIN, "## Attribution quality and cost (`benchmarks/attribution.py`)", "",
        f"Measured {when} on {device}{took}. Planted contributors: `clean_a` and "
        "`clean_b` state disjoint invented facts about made-up countries, each in two phrasings; "
        "`dup_a` restates `clean_a`'s facts with reworded questions (it survives exact dedup); `wrong` asks "
        "`clean_a`'s questions and answers them wrongly; `off_topic` talks about cooking. The poster's eval set "
        "asks every clean fact in a third phrasing. Two worlds: `names` (capitals, every answer an invented name "
        "that answers nothing else) and `colours` (flag colours: 8 colours for all the facts, so a wrong answer to "
        "one question is the right answer to others, which a first-order method credits). Ours: `node.attribution` "
        "(`run_isolated`; K snapshots and dtype per row) and the payout rule (net per contribution, clip at 0). "
        "Ground truth by retraining with the same config: "
        "leave-one-contributor-out value = eval loss without the contributor - eval loss with everyone; exact "
        "Shapley over all 32 subsets (value = base eval loss - eval loss after training on the subset) on the "
        "tiny model only. Leave-one-out gives each of two duplicates about nothing (either can go), Shapley "
        "splits the credit between them. Times on a shared machine (other jobs were running): ratios are "
        "more telling than seconds.", "",
    ]  # fmt: skip
    lines += [
        "| model | world | K, dtype | Spearman vs leave-one-out (seed means) | wrong-answer AUC (mean) | "
        "attribution / training | vs exact TracIn at every step | vs TracIn-ideal |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        mean_ours, mean_loo, aucs = _judged(r)
        sp = spearman([mean_ours[c] for c in LABELS], [mean_loo[c] for c in LABELS]) if aucs else float("nan")
        ratio = _mean(r.attribution_seconds) / _mean(r.train_seconds)
        speeds = [every_step_seconds(r) / _mean(r.attribution_seconds), ideal_tracin_seconds(r) / _mean(
            r.attribution_seconds)]  # fmt: skip
        dtype = "float32" if "dtype=float32" in r.method_id else "float64"
        judged = f" ({len(aucs)} of {len(r.seeds)} seeds judged)" if len(aucs) < len(r.seeds) else ""
        lines.append(f"| {r.name} | {r.world}{judged} | {r.snapshots}, {dtype} | {sp:.2f} | {_mean(aucs):.3f} | "
                     f"{ratio:.0%} | "
                     + " | ".join("—" if math.isnan(x) else f"{x:.1f}x" for x in speeds) + " |")  # fmt: skip
    lines += ["", "Targets: Spearman >= 0.8, AUC >= 0.95, attribution <= 25% of training, >= 20x faster than exact "
              "TracIn at every step.", ""]  # fmt: skip
    for r in reports:
        lines += _section(r)
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
