"""Replaying a training interval (`node.train.replay`): an honest run's every interval lands on its
next snapshot, with LoRA dropout on; a trajectory trained on other data than the committed set
does not; the dropout masks are a pure function of (seed, step, micro-batch, rank, module)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from node.data.records import Example
from node.train.config import TrainConfig
from node.train.dropout import DropoutClock, PortableDropout, hash32, stream_key, uniform
from node.train.replay import REPLAY_TOLERANCE, ReplayError, replay_interval
from node.train.snapshots import SnapshotError, load, load_all
from node.train.trainer import train

FACTS = [
    Example.of_chat([("user", f"What is the capital of Region{i}?"), ("assistant", f"The capital is Town{i * 7}.")])
    for i in range(24)
]
# What a dishonest node trains on while it commits FACTS: the same questions, other answers.
OTHER = [
    Example.of_chat([("user", f"What is the capital of Region{i}?"), ("assistant", f"It is Village{i * 3 + 1}.")])
    for i in range(24)
]
# Dropout on, gradients clipped at some steps, warm-up then cosine: everything a replay must redo.
CFG = TrainConfig(method="lora", max_steps=9, snapshots=3, eval_fraction=0.1, max_seq_len=128, batch_size=4,
                  lora_r=8, learning_rate=5e-3, warmup_ratio=0.2, max_grad_norm=0.5, lora_dropout=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, examples in (("honest", FACTS), ("other", OTHER)):
        result = train(tiny_base_model, examples, CFG, tmp_path_factory.mktemp(name))
        assert result.snapshots_dir is not None
        out[name] = result.snapshots_dir
    return out


def test_every_interval_of_an_honest_run_replays_onto_its_snapshot(
    tiny_base_model: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    snaps = load_all(runs["honest"])
    assert [s.meta.step for s in snaps] == [3, 6, 9] and all(s.replayable for s in snaps)
    for k in range(len(snaps)):
        r = replay_interval(tiny_base_model, FACTS, CFG, snaps, k, tmp_path / f"replay-{k}")
        assert (r.start, r.end) == (snaps[k].meta.start, snaps[k].meta.step)
        assert r.moved > 0
        # Same machine, same process: the float noise is far below the tolerance (not merely below it).
        assert r.relative <= REPLAY_TOLERANCE / 10, r
        assert r.ok


def test_float_noise_far_beyond_another_cpus_stays_within_the_tolerance(
    tiny_base_model: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    """Other CPUs round float32 differently (about 1e-7 relative per operation). Start each interval
    from weights and moments perturbed by 1e-4 relative, a thousand times that: still a match."""
    snaps = load_all(runs["honest"])
    g = torch.Generator().manual_seed(0)

    def noisy(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: t * (1 + 1e-4 * torch.randn(t.shape, generator=g)) for n, t in d.items()}

    for k in (1, 2):
        s = snaps[k - 1]
        start = s.model_copy(update={"lora": noisy(s.lora), "exp_avg": noisy(s.exp_avg),
                                     "exp_avg_sq": noisy(s.exp_avg_sq)})  # fmt: skip
        r = replay_interval(tiny_base_model, FACTS, CFG, [*snaps[: k - 1], start, *snaps[k:]], k, tmp_path / f"n{k}")
        assert 0 < r.relative <= r.tolerance == REPLAY_TOLERANCE, r


def test_a_trajectory_trained_on_other_data_does_not_replay(
    tiny_base_model: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    """The node trained on OTHER but commits FACTS (its data root) and OTHER's snapshots: from any
    of those snapshots, FACTS's steps lead somewhere else than the next one."""
    forged = load_all(runs["other"])
    for k in range(len(forged)):
        r = replay_interval(tiny_base_model, FACTS, CFG, forged, k, tmp_path / f"forged-{k}")
        assert not r.ok and r.relative > 3 * REPLAY_TOLERANCE, r


def test_a_snapshot_of_another_run_shape_is_refused(
    tiny_base_model: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    snaps = load_all(runs["honest"])
    longer = CFG.model_copy(update={"max_steps": 12})
    with pytest.raises(ReplayError, match="give 12 steps, the snapshots 9"):
        replay_interval(tiny_base_model, FACTS, longer, snaps, 1, tmp_path / "a")
    with pytest.raises(ReplayError, match="no interval 3"):
        replay_interval(tiny_base_model, FACTS, CFG, snaps, 3, tmp_path / "b")
    v1 = snaps[0].model_copy(update={"exp_avg": {}})
    with pytest.raises(ReplayError, match="cannot be replayed"):
        replay_interval(tiny_base_model, FACTS, CFG, [v1, *snaps[1:]], 1, tmp_path / "c")
    junk = tmp_path / "snapshot-000.safetensors"  # a snapshot CID whose content is something else
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load(junk)


def test_dropout_masks_are_a_pure_function_of_where_training_is() -> None:
    shape = torch.Size([4, 33, 64])
    a = uniform(stream_key(0, 5, 1, 0, 7), shape, torch.device("cpu"))
    assert torch.equal(a, uniform(stream_key(0, 5, 1, 0, 7), shape, torch.device("cpu")))
    assert a.dtype == torch.float32 and float(a.min()) >= 0 and float(a.max()) < 1
    assert abs(float(a.mean()) - 0.5) < 0.02  # 8448 draws: the standard error of the mean is 0.003
    for other in ((1, 5, 1, 0, 7), (0, 6, 1, 0, 7), (0, 5, 2, 0, 7), (0, 5, 1, 1, 7), (0, 5, 1, 0, 8)):
        b = uniform(stream_key(*other), shape, torch.device("cpu"))
        assert float((a - b).abs().mean()) > 0.2, other  # unrelated streams, not shifted copies
    # The hash is exact integer arithmetic: pinned values hold on any machine and device.
    x = torch.tensor([0, 1, 2, 0xFFFFFFFF], dtype=torch.int64)
    assert hash32(x).tolist() == [_hash32_reference(int(v)) for v in x]

    clock = DropoutClock(seed=3)
    drop = PortableDropout(0.25, module=2, clock=clock)
    x = torch.ones(shape)
    clock.at(step=4, micro=0, rank=0)
    first, again = drop(x), drop(x)
    assert torch.equal(first, again)  # gradient checkpointing's recompute sees the same mask
    assert set(first.unique().tolist()) <= {0.0, float(torch.tensor(1 / 0.75))}
    assert 0.15 < float((first == 0).float().mean()) < 0.35
    clock.at(step=5, micro=0, rank=0)
    assert not torch.equal(first, drop(x))
    drop.eval()
    assert torch.equal(drop(x), x)


def _hash32_reference(x: int) -> int:
    """The same hash in Python's unbounded integers."""
    m = 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & m
    x = ((x >> 16) ^ x) * 0x45D9F3B & m
    return (x >> 16) ^ x
