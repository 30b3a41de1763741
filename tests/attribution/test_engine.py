"""The attribution engine end to end on a tiny pretrained Llama fine-tuned by the real trainer
(which writes the trajectory snapshots), on the CI-sized world of `benchmarks/attribution.py`: a
fresh worker process twice gives bitwise the same scores and gradient hashes; planted contributors
are ranked clean >> duplicates >> wrong answers, off-topic, and agree with exact Shapley values
from retraining on every subset of contributors; bad inputs come back as clear errors; a QLoRA
job's base is the NF4-dequantised one."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import attribution as bench
from node.attribution import (
    AttributionError,
    AttributionRequest,
    AttributionResult,
    MethodParams,
    QueryExample,
    run_isolated,
)

CLEAN_A = bench.ADDRESS["clean_a"]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Training a model this small is fastest on one thread, and much slower on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Planted:
    """The benchmark's tiny job (world `names`: every answer, right or wrong, an invented name that
    answers nothing else) trained once on every contributor with seed 0."""

    def __init__(self, root: Path):
        self.setup = bench.tiny_setup(root, n_facts=8, kind="names")
        self.run = bench.train_on(self.setup, bench.LABELS, 0, root / "run", snapshots=self.setup.config.snapshots)
        assert len(list(self.run.snapshots_dir.glob("snapshot-*.safetensors"))) == self.setup.config.snapshots
        self.request: AttributionRequest = bench.attribution_request(self.setup, self.run.snapshots_dir)
        self.root = root


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    return Planted(tmp_path_factory.mktemp("attribution"))


@pytest.fixture(scope="module")
def first(planted: Planted) -> tuple[AttributionResult, float]:
    """The committed path's run (it also writes each snapshot's query vectors to planted.root/v)."""
    t0 = time.perf_counter()
    result = run_isolated(planted.request.model_copy(update={"query_vectors_dir": planted.root / "v"}), timeout_s=300)
    return result, time.perf_counter() - t0


def test_a_fresh_worker_reproduces_scores_and_gradient_hashes_bitwise(
    planted: Planted, first: tuple[AttributionResult, float]
) -> None:
    again = run_isolated(planted.request, timeout_s=300)
    a = first[0]
    assert again.scores == a.scores  # float equality: bitwise, in the same environment
    assert again.gradients_hashes == a.gradients_hashes
    assert len(set(a.gradients_hashes)) == len(a.scores)  # every example's gradients are its own
    assert a.method_id.startswith("tracin-adam-fisher-v1;dtype=float64;torch=") and "peft=" in a.method_id
    assert [s.index for s in a.snapshots] == [0, 1, 2] and a.total_seconds > 0
    assert a.projection_seed.startswith("0x") and len(a.projection_seed) == 66


def test_planted_contributors_clean_earn_and_wrong_answers_and_off_topic_do_not(
    planted: Planted, first: tuple[AttributionResult, float]
) -> None:
    """The payout rule on the committed path's scores (margins: on training seeds 0-5 here the
    smaller clean share was >= 0.24, the wrong-answer share 0, off-topic <= 0.02, the duplicate <= 0.18)."""
    result, attribution_s = first
    shares = bench.payout_shares(result.scores, planted.setup.world.labels)
    print(f"shares {bench._fmt(shares)}; training {planted.run.train_seconds:.1f} s, attribution "
          f"{attribution_s:.1f} s (worker, {result.total_seconds:.1f} s of it computing)")  # fmt: skip
    clean = min(shares["clean_a"], shares["clean_b"])
    assert clean > max(shares["dup_a"], shares["wrong"], shares["off_topic"])  # the clean contributors earn most
    assert shares["clean_a"] + shares["clean_b"] > 0.6
    assert shares["wrong"] < 0.1 * clean
    assert shares["off_topic"] < 0.1 * clean


def test_payouts_agree_with_exact_shapley_values_from_retraining(
    planted: Planted, first: tuple[AttributionResult, float]
) -> None:
    """Ground truth by retraining on all 31 non-empty subsets of the five contributors (v(S) = the
    base's eval loss minus the eval loss after training on S). Leave-one-out would give each of
    two redundant contributors about nothing; Shapley splits their value, and so must we: whoever
    Shapley values negatively earns (almost) nothing, the two it values most earn most, and the
    duplicate never out-earns what it duplicates. (Training seeds 0-4 here: Shapley clean
    >= 0.19, duplicate 0.07-0.09, wrong -0.10 to -0.07 nats.)"""
    setup, labels = planted.setup, bench.LABELS
    ev = bench.Evaluator(setup)
    everyone = frozenset(labels)
    subsets = [s for s in bench.all_subsets(labels) if s and s != everyone]
    with _one_thread():
        values, seconds = bench.subset_values(setup, ev, 0, planted.root / "subsets", subsets)
    values[everyone] = ev.loss(None) - ev.loss(planted.run.final_lora)
    phi = bench.shapley(values, labels)
    ours = bench.payout_shares(first[0].scores, setup.world.labels)
    print(f"shapley {bench._fmt(phi)} ({seconds:.0f} s of retraining); ours {bench._fmt(ours)}; Spearman "
          f"{bench.spearman([ours[c] for c in labels], [phi[c] for c in labels]):.2f}")  # fmt: skip
    # The world is what it claims to be: both clean sets teach, the duplicate a little, wrong answers harm.
    assert min(phi["clean_a"], phi["clean_b"]) > phi["dup_a"] > 0 > phi["wrong"]
    clean = min(ours["clean_a"], ours["clean_b"])
    assert all(ours[c] < 0.1 * clean for c in labels if phi[c] < 0)
    assert sum(ours[c] for c in labels if phi[c] > 0) > 0.9

    def top_two(v: dict[str, float]) -> set[str]:
        return set(sorted(labels, key=lambda c: -v[c])[:2])

    assert top_two(ours) == top_two(phi)
    assert ours["dup_a"] < ours["clean_a"]


def test_one_examples_score_from_the_committed_query_vectors_is_its_full_run_score(
    planted: Planted, first: tuple[AttributionResult, float], tmp_path: Path
) -> None:
    """A dispute narrowed to one example: with each snapshot's V_k = F_k⁻¹ Psi_kᵀ written by the
    full run, that example's own gradients give its score (no other example's gradient, no solve);
    query vectors of another run (scaled) give another score (files that are not query vectors:
    tests/attribution/test_query_vectors.py)."""
    full = first[0]
    shutil.copytree(planted.root / "v", tmp_path / "v")  # the committed V_k of the full run
    files = sorted((tmp_path / "v").glob("queries-*.safetensors"))
    assert [f.name for f in files] == ["queries-000.safetensors", "queries-001.safetensors", "queries-002.safetensors"]
    peak = max(abs(x) for x in full.scores)
    picks = [i for i, x in enumerate(full.scores) if abs(x) > 0.05 * peak][:2]
    narrowed = run_isolated(planted.request.model_copy(update={"query_vectors_dir": tmp_path / "v", "only": picks}),
                            timeout_s=300)  # fmt: skip
    for i, x in enumerate(narrowed.scores):
        if i in picks:
            assert abs(x - full.scores[i]) <= 1e-9 * peak, (i, x, full.scores[i])
        else:
            assert x == 0.0
    from safetensors.torch import load_file, save_file

    from node.attribution.query_vectors import QueryVectorsMeta

    for f in files:  # another V: the same shape and format, twice as long
        meta = QueryVectorsMeta(snapshot=int(f.stem[-3:]), dim=load_file(f)["v"].shape[0],
                                queries=load_file(f)["v"].shape[1])  # fmt: skip
        save_file({"v": 2 * load_file(f)["v"]}, str(f), metadata={"datanet": meta.model_dump_json()})
    doubled = run_isolated(planted.request.model_copy(update={"query_vectors_dir": tmp_path / "v", "only": picks}),
                           timeout_s=300)  # fmt: skip
    assert all(abs(doubled.scores[i] - 2 * full.scores[i]) <= 1e-9 * peak for i in picks)


def test_untrained_examples_score_zero_and_errors_are_clear(planted: Planted,
                                                            tmp_path: Path) -> None:  # fmt: skip
    request = planted.request
    empty = request.model_copy(update={"snapshots_dir": tmp_path})
    with pytest.raises(AttributionError, match=r"holds no trajectory snapshots .*snapshots: 0") as err:
        run_isolated(empty, timeout_s=120)
    assert "Traceback" not in str(err.value)
    with pytest.raises(ValueError, match="differs from the config"):
        AttributionRequest.model_validate(request.model_dump() | {"method": "qlora"})


def test_in_process_engine_gives_held_out_scores_without_own_queries(
    planted: Planted,
) -> None:
    """The held-out split as the query set: a contributor whose every query is its own earns 0;
    an example the trainer held out scores 0 and hashes nothing."""
    from node.attribution.engine import attribute

    request = planted.request
    few = [*request.examples[:4], request.examples[4].model_copy(update={"trained": False})]
    held_out = [QueryExample(example=e.example, contributor=e.contributor) for e in request.examples[:2]]
    req = request.model_copy(update={"examples": few, "queries": held_out,
                                     "params": MethodParams(projection_dim=1 << 20)})  # fmt: skip
    with _one_thread():
        result = attribute(req)
    assert all(e.contributor == CLEAN_A for e in few)
    assert result.scores == [0.0] * 5  # every query is CLEAN_A's own
    assert result.gradients_hashes[4] == "0x" + hashlib.sha256().hexdigest()
    assert result.gradient_dim == result.lora_parameters  # no projection below projection_dim


def test_a_qlora_job_is_attributed_against_the_nf4_dequantised_base(
    planted: Planted,
) -> None:
    """The float64 base of a QLoRA job computes what the trainer's 4-bit model computes (in train
    mode, where bitsandbytes does not repack), and not what the fp base does."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from node.attribution import gradients as G

    request = planted.request
    base, qcfg = request.base_model_dir, request.config.model_copy(update={"method": "qlora"})
    tok = G.tokenize(G.load_tokenizer(base), [request.examples[0].example], qcfg)[0]
    ids = torch.tensor([tok.input_ids])

    def logits(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False).logits.double()

    deq = logits(G.load_model(base, qcfg, "float64").get_base_model())  # type: ignore[operator]
    fp = logits(G.load_model(base, request.config, "float64").get_base_model())  # type: ignore[operator]
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32)  # fmt: skip
    four_bit = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, quantization_config=q,
                                                    device_map={"": "cpu"}).train()  # fmt: skip
    nf4 = logits(four_bit)
    assert (deq - nf4).abs().max() < 1e-4 < (fp - nf4).abs().max() / 10


def test_batched_per_example_gradients_equal_one_example_at_a_time(
    planted: Planted,
) -> None:
    """The hooks' per-example gradients of a padded batch of mixed lengths are each example's own
    autograd gradient (float64: to 1e-10 relative), and with the batch size the scores change only
    in the last bits."""
    from node.attribution import gradients as G
    from node.attribution.engine import attribute
    from node.train import snapshots as snaps

    request = planted.request
    model = G.load_model(request.base_model_dir, request.config, "float64")
    G.set_lora(model, snaps.load_all(request.snapshots_dir)[-1].lora)
    named = G.lora_parameters(model)
    loss_fn = G.LossSum(model)
    picked = [request.examples[i].example for i in (0, 5, 20, 33, 45)]
    items = G.tokenize(G.load_tokenizer(request.base_model_dir), picked, request.config)
    assert len({len(t) for t in items}) > 1  # padding is exercised
    batched = G.BatchedGradients(model, named, batch_tokens=4096)(loss_fn, items)
    single = torch.stack([G.example_gradient(loss_fn, [p for _, p in named], t) for t in items])
    assert batched.shape == single.shape == (len(items), sum(p.numel() for _, p in named))
    assert ((batched - single).norm(dim=1) / single.norm(dim=1)).max() < 1e-10
    assert G.batches(items, batch_tokens=1, max_rows=8) == [[i] for i in sorted(range(5), key=lambda i: len(items[i]))]

    few = request.model_copy(update={"examples": request.examples[::6]})
    with _one_thread():
        one = attribute(few.model_copy(update={"params": MethodParams(batch_tokens=1)})).scores
        many = attribute(few).scores
    scale = max(abs(s) for s in one)
    assert max(abs(a - b) for a, b in zip(one, many, strict=True)) < 1e-9 * scale
