"""The attribution maths on small sizes, against direct computations: the hash-derived
count-sketch, Adam's preconditioner, the damped Fisher kernel (push-through and direct), the
query weights of a held-out split, and score quantisation."""

from __future__ import annotations

import math

import pytest
import torch

from node.attribution.engine import query_weights
from node.attribution.kernel import damping_lambda, dense_reference, kernel_scores, preconditioner_sqrt
from node.attribution.quantise import choose_scale, dequantise, quantise
from node.attribution.request import AttributionError, QueryExample, TrainingExample
from node.attribution.sketch import (
    CountSketch,
    buckets_and_signs,
    projection_seed,
    snapshot_seed,
    splitmix64,
    splitmix64_reference,
)
from node.data.records import Example
from node.train.formatting import Tokenized


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_splitmix64_vectorised_equals_the_reference_and_seeds_depend_on_every_input() -> None:
    for state in (0, 1, 0x0123456789ABCDEF, (1 << 64) - 1):
        assert [int(x) for x in splitmix64(state, 50)] == splitmix64_reference(state, 50)
    # The published SplitMix64 test vector (state 1234567): its first output.
    assert splitmix64_reference(1234567, 1)[0] == 6457827717110365317
    root = "0x" + "ab" * 32
    seeds = {projection_seed(root, 1), projection_seed(root, 2), projection_seed("0x" + "ac" * 32, 1)}
    assert len(seeds) == 3 and all(len(s) == 32 for s in seeds)
    s = projection_seed(root, 1)
    assert snapshot_seed(s, 0) != snapshot_seed(s, 1)
    with pytest.raises(ValueError, match="32 bytes"):
        projection_seed("0x1234", 1)


def test_count_sketch_is_a_signed_bucket_matrix_and_keeps_inner_products() -> None:
    p, d = 5000, 512
    bucket, sign = buckets_and_signs(99, p, d)
    assert bucket.min() >= 0 and bucket.max() < d and set(sign.tolist()) == {-1.0, 1.0}
    assert len(set(bucket.tolist())) > 0.9 * d  # spread over (nearly) every bucket
    sk = CountSketch(99, p, d)
    g = torch.randn(3, p, dtype=torch.float64, generator=_gen(0))
    assert torch.allclose(sk(g), g @ sk.dense(), rtol=0, atol=1e-12)
    assert torch.equal(sk(g[1]), sk(g)[1])
    # Inner products survive in expectation: averaged over 20 hash seeds, within a few std errors.
    a, b = g[0], g[0] + 0.5 * g[1]
    est = torch.tensor([float(CountSketch(k, p, d)(a) @ CountSketch(k, p, d)(b)) for k in range(20)])
    assert abs(float(est.mean()) - float(a @ b)) < 4 * float(est.std()) / math.sqrt(20) + 1e-9
    identity = CountSketch(99, p, None)
    assert identity.out_dim == p and identity(g) is g


def test_preconditioner_is_adams_bias_corrected_denominator() -> None:
    v = torch.tensor([0.0, 1e-6, 4.0])
    got = preconditioner_sqrt(v, adam_step=10, beta2=0.999, eps=1e-8)
    v_hat = v.double() / (1 - 0.999**10)
    assert torch.allclose(got * got, 1 / (v_hat.sqrt() + 1e-8), rtol=1e-12)


@pytest.mark.parametrize(("n", "d"), [(6, 40), (40, 6), (10, 10)])
def test_kernel_scores_equal_the_dense_definition(n: int, d: int) -> None:
    phi = torch.randn(n, d, dtype=torch.float64, generator=_gen(n))
    phi[:, 0] += 3.0  # a direction every example shares (the "answer template")
    psi = torch.randn(4, d, dtype=torch.float64, generator=_gen(d))
    for damping in (1e-3, 0.1, 10.0):
        got, want = kernel_scores(phi, psi, damping), dense_reference(phi, psi, damping)
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-10 * float(want.abs().max()))
    # Damping is relative, so the scores do not depend on the gradients' units.
    assert torch.allclose(kernel_scores(7 * phi, 7 * psi, 0.1), kernel_scores(phi, psi, 0.1), rtol=1e-9)
    assert damping_lambda(phi, 0.1) == pytest.approx(0.1 * float((phi**2).sum()) / (n * min(n, d)))


def test_the_kernel_shrinks_a_shared_direction_that_plain_tracin_pays_in_full() -> None:
    # Ten examples share one big direction; example 0 alone also moves a direction the query asks.
    d = 12
    phi = torch.zeros(10, d, dtype=torch.float64)
    phi[:, 0] = 5.0
    phi[:, 1:11] = 0.3 * torch.eye(10, dtype=torch.float64)
    psi = torch.zeros(1, d, dtype=torch.float64)
    psi[0, 0], psi[0, 1] = 1.0, 1.0
    plain = (phi @ psi.T).squeeze(1)
    kern = kernel_scores(phi, psi, 0.01).squeeze(1)
    assert plain[1] / plain[0] > 0.9  # plain TracIn: example 1 earns about as much as example 0
    assert kern[1] / kern[0] < 0.2  # the kernel: example 0, which taught what the query asks, earns most


def test_zero_gradients_score_zero() -> None:
    zeros, ones = torch.zeros(3, 5, dtype=torch.float64), torch.ones(2, 5, dtype=torch.float64)
    assert torch.equal(kernel_scores(zeros, ones, 0.1), torch.zeros(3, 2, dtype=torch.float64))


def test_held_out_queries_never_count_for_their_own_contributor() -> None:
    a, b = "0x" + "a" * 40, "0x" + "B" * 40
    ex = Example.of_text("x")
    examples = [TrainingExample(example=ex, contributor=a), TrainingExample(example=ex, contributor=b.lower())]
    queries = [QueryExample(example=ex, contributor=a), QueryExample(example=ex, contributor=b),
               QueryExample(example=ex, contributor=None)]  # fmt: skip
    toks = [Tokenized([1] * 3, [-100, 5, 5]), Tokenized([1] * 4, [-100, 5, 5, 5]), Tokenized([1] * 2, [-100, 5])]
    w = query_weights(examples, queries, toks)
    assert w[0].tolist() == [0.0, 1 / 4, 1 / 4]  # a's own query is out; b's 3 tokens + the poster's 1
    assert w[1].tolist() == [1 / 3, 0.0, 1 / 3]  # case of the address does not matter


def test_quantise_with_a_committed_power_of_two_scale() -> None:
    scores = [0.0, 1.5e-3, -2.25e-3, 7.0e-4]
    e = choose_scale(scores)
    q = quantise(scores, e)
    assert 2**23 <= max(abs(x) for x in q) < 2**24
    assert q[2] == round(-2.25e-3 * 2**e) and q[0] == 0
    assert all(abs(x - s) <= 2.0 ** -(e + 1) for x, s in zip(dequantise(q, e), scores, strict=True))
    # A verifier's recomputed scores, off in the last bits, give the same integers with the committed e.
    noisy = [s * (1 + 1e-13) for s in scores]
    assert quantise(noisy, e) == q
    assert choose_scale([1e9, 3.0]) < 0 and choose_scale([0.0, 0.0]) == 0
    assert max(abs(x) for x in quantise([1e9, 3.0], choose_scale([1e9, 3.0]))) < 2**24
    with pytest.raises(ValueError, match="NaN"):
        choose_scale([float("nan")])


def test_per_example_gradients_refuse_a_parameter_that_is_not_a_bias_free_linear_weight() -> None:
    """The batched per-example gradients are outer products of a linear layer's input and output
    gradient: a bias (PEFT's bias='lora_only'), a linear layer with a bias, or an embedding
    (modules_to_save) would be silently wrong, so each is refused with the fix."""
    from node.attribution.gradients import BatchedGradients

    model = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 3, bias=False), "b": torch.nn.Linear(4, 3),
                                 "emb": torch.nn.Embedding(5, 4)})  # fmt: skip
    ok = BatchedGradients(model, [("a.weight", model["a"].weight)], batch_tokens=64)
    assert ok.n_params == 12
    for name in ("b.weight", "b.bias", "emb.weight"):
        param = dict(model.named_parameters())[name]
        with pytest.raises(AttributionError, match=rf"{name} is not the weight of a bias-free linear layer.*"
                                                   r"modules_to_save unset and bias='none'"):  # fmt: skip
            BatchedGradients(model, [("a.weight", model["a"].weight), (name, param)], batch_tokens=64)
