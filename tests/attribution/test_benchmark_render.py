"""The attribution benchmark judges only seeds whose training learned the eval (the issue: "make
sure the model can learn what the eval asks before judging any method")."""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks import attribution as bench

LABELS = bench.LABELS


def _report() -> bench.SetupReport:
    good = dict(zip(LABELS, [0.5, 0.4, 0.1, 0.0, 0.0], strict=True))
    bad = dict(zip(LABELS, [0.0, 0.0, 0.3, 0.7, 0.0], strict=True))
    return bench.SetupReport(
        name="tiny", world="colours", method_id="tracin-adam-fisher-v1;dtype=float64", snapshots=3, examples=72,
        queries=16, lora_parameters=17_408, gradient_dim=16_384, steps=240, seeds=[0, 1], base_eval_loss=0.30,
        trained_eval_loss=[0.20, 0.72], train_seconds=[2.0, 2.0], attribution_seconds=[6.0, 6.0],
        attribution_compute_seconds=[3.0, 3.0], ours=[good, bad], auc=[0.96, 0.40],
        loo={c: [good[c] - 0.01 * i, -0.5] for i, c in enumerate(LABELS)}, ablation_shares={}, ablation_auc={},
        engine_vs_harness=0.0, every_step_s=float("nan"), every_step_steps=0,
    )  # fmt: skip


def test_a_seed_whose_training_did_not_learn_the_eval_is_not_judged() -> None:
    r = _report()
    assert bench.judged_seeds(r) == [0]  # seed 1 raised the eval loss 0.30 -> 0.72
    text = bench.render([r], "test", None, datetime(2026, 12, 4, tzinfo=UTC))
    assert "**Not judged: seed(s) [1]**" in text
    [row] = [line for line in text.splitlines() if line.startswith("| tiny | colours (1 of 2 seeds judged) |")]
    assert row.split(" | ")[4] == "0.960"  # seed 1's AUC of 0.40 is left out of the mean
    assert "(examples whose facts the eval asks; per judged seed) | 0.960 |" in text
