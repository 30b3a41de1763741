"""Trajectory snapshots taken by the trainer: each holds the state right after its step (LoRA
weights, Adam's second moments and step) and the step size of its interval; a run killed with
SIGKILL and resumed writes byte-for-byte the files of an uninterrupted run; they outlive the
checkpoints; QLoRA on CUDA stores 32-bit second moments."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from statistics import fmean

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from node.data.records import Example
from node.train.checkpoint import checkpoints
from node.train.config import Progress, TrainConfig
from node.train.quantized import make_optimizer
from node.train.snapshots import file_name, load, load_all, snapshot_steps
from node.train.trainer import LoraTrainer, train
from node.train.trajectory import SnapshotRecorder

REPO = Path(__file__).resolve().parents[2]
FACTS = [
    Example.of_chat([("user", f"What is the capital of Region{i}?"), ("assistant", f"The capital is Town{i * 7}.")])
    for i in range(24)
]
# 10 steps, snapshots after steps 3, 7 and 10, checkpoints every 2: the resumed intervals start
# mid-way, so the sums kept in the checkpoint matter. Some steps are clipped at this norm.
CFG = TrainConfig(method="lora", max_steps=10, checkpoint_every=2, snapshots=3, eval_fraction=0.1, max_seq_len=128,
                  batch_size=4, lora_r=8, learning_rate=5e-3, warmup_ratio=0.2, max_grad_norm=0.5)  # fmt: skip


def _trainable(t: LoraTrainer) -> dict[str, nn.Parameter]:
    return {n: p for n, p in t.model.named_parameters() if p.requires_grad}


def test_each_snapshot_is_the_state_right_after_its_step(
    tiny_base_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    norms: list[float] = []  # what clip_grad_norm_ returned at each step
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(*args: object, **kwargs: object) -> torch.Tensor:
        norm = clip(*args, **kwargs)  # type: ignore[arg-type]
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    t = LoraTrainer(tiny_base_model, CFG, tmp_path / "run")
    t.setup(FACTS)
    lrs = {1: t.optimizer.param_groups[0]["lr"]}  # the rate step s uses
    seen: dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}

    def on_progress(p: Progress) -> None:  # called right after step p.step, before eval/checkpoint
        if p.kind != "train":
            return
        lrs[p.step + 1] = t.optimizer.param_groups[0]["lr"]
        params = _trainable(t)
        seen[p.step] = ({n: q.detach().clone() for n, q in params.items()},
                        {n: t.optimizer.state[q]["exp_avg_sq"].clone() for n, q in params.items()})  # fmt: skip

    t.on_progress = on_progress
    result = t.train()

    assert result.snapshots_dir == tmp_path / "run" / "snapshots"
    snaps = load_all(result.snapshots_dir)
    assert [s.meta.step for s in snaps] == snapshot_steps(10, 3) == [3, 7, 10]
    assert [s.meta.start for s in snaps] == [0, 3, 7]
    assert len(norms) == 10 and any(n > CFG.max_grad_norm for n in norms), "the test should see clipped steps"
    for s in snaps:
        weights, second = seen[s.meta.step]
        assert s.lora.keys() == weights.keys() == s.exp_avg_sq.keys() and len(weights) == 2 * 7 * 2
        assert all(torch.equal(s.lora[n], weights[n]) for n in weights)
        assert all(torch.equal(s.exp_avg_sq[n], second[n]) for n in second)
        steps = range(s.meta.start + 1, s.meta.step + 1)
        factors = [min(1.0, CFG.max_grad_norm / norms[i - 1]) for i in steps]
        assert s.meta.lr_sum == pytest.approx(sum(lrs[i] * f for i, f in zip(steps, factors, strict=True)), rel=1e-9)
        assert s.meta.clip_mean == pytest.approx(fmean(factors), rel=1e-9)
        assert s.meta.adam_step == s.meta.step and s.meta.total_steps == 10
        assert (s.meta.beta1, s.meta.beta2, s.meta.eps) == (0.9, 0.999, 1e-8)
        assert s.meta.lora_scale == CFG.lora_alpha / CFG.lora_r
    assert not checkpoints(tmp_path / "run" / "checkpoints")  # cleared at the end; the snapshots stay


_KILL_AT_8 = """
import os, signal, sys
from pathlib import Path
from node.data.records import Example
from node.train.config import TrainConfig
from node.train.trainer import train
base, examples, cfg, out = sys.argv[1:]
facts = [Example.model_validate_json(line) for line in Path(examples).read_text().splitlines()]
def kill_at_8(p):
    if p.kind == "train" and p.step == 8:
        os.kill(os.getpid(), signal.SIGKILL)
train(Path(base), facts, TrainConfig.model_validate_json(Path(cfg).read_text()), Path(out), on_progress=kill_at_8)
"""


def test_a_run_killed_and_resumed_writes_the_same_snapshot_files(tiny_base_model: Path, tmp_path: Path) -> None:
    reference = train(tiny_base_model, FACTS, CFG, tmp_path / "ref")

    examples, cfg, out = tmp_path / "examples.jsonl", tmp_path / "config.json", tmp_path / "killed"
    examples.write_text("".join(e.model_dump_json() + "\n" for e in FACTS))
    cfg.write_text(CFG.model_dump_json())
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_AT_8), str(tiny_base_model), str(examples),
                             str(cfg), str(out)], cwd=REPO, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    # Killed right after step 8: the newest checkpoint is step 6, snapshot 1 (step 7) is already on disk.
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["step-00000004.pt", "step-00000006.pt"]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [file_name(0), file_name(1)]
    (out / "snapshots" / f".{file_name(2)}.tmp").write_bytes(b"half a file")  # a write cut short

    steps: list[int] = []
    result = train(tiny_base_model, FACTS, CFG, out, on_progress=lambda p: steps.append(p.step))
    assert steps[0] == 7  # resumed from the step-6 checkpoint
    assert result.adapter_sha256 == reference.adapter_sha256
    assert result.snapshots_dir is not None and reference.snapshots_dir is not None
    names = sorted(p.name for p in result.snapshots_dir.iterdir())
    assert names == sorted(p.name for p in reference.snapshots_dir.iterdir()) == [file_name(k) for k in range(3)]
    for name in names:
        assert (result.snapshots_dir / name).read_bytes() == (reference.snapshots_dir / name).read_bytes(), name


def test_no_snapshots_when_turned_off_and_none_left_from_another_run(tiny_base_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    stale = out / "snapshots" / file_name(0)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's")
    result = train(tiny_base_model, FACTS, CFG.model_copy(update={"snapshots": 0, "max_steps": 2}), out)
    assert result.snapshots_dir is None and not (out / "snapshots").exists()


def test_qlora_on_cuda_uses_32bit_paged_adamw_when_snapshots_are_taken(tmp_path: Path) -> None:
    """The optimizer the trainer picks for QLoRA on CUDA. bitsandbytes' optimizers also step on the
    CPU, so the snapshot of its second moments can be checked here against torch's AdamW."""
    qlora = TrainConfig(method="qlora", learning_rate=1e-2, weight_decay=0.0, snapshots=1)
    torch.manual_seed(0)
    model, twin = nn.Linear(64, 32), nn.Linear(64, 32)
    twin.load_state_dict(model.state_dict())
    opt = make_optimizer(qlora, list(model.parameters()), cuda=True)
    assert type(opt) is bnb.optim.PagedAdamW and opt.args.optim_bits == 32  # type: ignore[attr-defined]
    eight = make_optimizer(qlora.model_copy(update={"snapshots": 0}), list(twin.parameters()), cuda=True)
    assert type(eight) is bnb.optim.PagedAdamW8bit
    ref = make_optimizer(qlora, list(twin.parameters()), cuda=False)
    assert type(ref) is torch.optim.AdamW

    rec = SnapshotRecorder(tmp_path / "s", total_steps=3, count=1, max_grad_norm=1.0, lora_scale=2.0)
    for step in range(1, 4):
        grad = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        for m, o in ((model, opt), (twin, ref)):
            for n, p in m.named_parameters():
                p.grad = grad[n].clone()
            o.step()
        rec.after_step(step, 1e-2, 0.5, model, opt)
    snap = load(tmp_path / "s" / file_name(0))
    assert snap.meta.adam_step == 3 and snap.meta.lr_sum == pytest.approx(3e-2) and snap.meta.clip_mean == 1.0
    for n, p in twin.named_parameters():
        torch.testing.assert_close(snap.exp_avg_sq[n], ref.state[p]["exp_avg_sq"])
        torch.testing.assert_close(snap.lora[n], p.detach())
