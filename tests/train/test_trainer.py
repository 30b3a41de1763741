"""The trainer on a real tiny Llama: LoRA and QLoRA (4-bit on CPU) learn, save standard PEFT
adapters, are deterministic, resume exactly after a crash, and run under DDP (2 processes)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from node.data.records import Example
from node.train.card import ModelCard
from node.train.checkpoint import CheckpointError, checkpoints
from node.train.config import JobConfig, Progress, TrainConfig, TrainConfigError
from node.train.formatting import tokenize_example
from node.train.packing import collate, pack
from node.train.replay import replay_interval
from node.train.snapshots import load_all
from node.train.trainer import LoraTrainer, TrainDataError, _LossSum, train

REPO = Path(__file__).resolve().parents[2]
FACTS = [
    Example.of_chat([("user", f"What is the capital of Region{i}?"), ("assistant", f"The capital is Town{i * 7}.")])
    for i in range(24)
] + [Example.of_text(f"Farmers in Town{i} grow glassberries.") for i in range(8)]
FAST = {"max_seq_len": 128, "batch_size": 4, "lora_r": 8, "learning_rate": 5e-3, "warmup_ratio": 0.0}


def _mean_loss(model: torch.nn.Module, tok, examples: list[Example]) -> float:  # type: ignore[no-untyped-def]
    fn = _LossSum(model if isinstance(model, PeftModel) else PeftModel(model, _noop_lora())).eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            b = collate(pack([tokenize_example(tok, ex)]), pad_id=0)
            total += float(fn(b.input_ids, b.position_ids, b.labels))
            n += b.targets
    return total / n


def _noop_lora():  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    return LoraConfig(r=1, target_modules=["q_proj"], init_lora_weights=True)  # B=0: the base model's outputs


def test_lora_learns_and_saves_a_standard_peft_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    seen: list[Progress] = []
    card = ModelCard(base_model="datanet/tiny", base_model_hash="0x" + "ab" * 32, job_id=7, datanet_ids=[1, 2],
                     data_root="0x" + "cd" * 32)  # fmt: skip
    cfg = TrainConfig(method="lora", epochs=15, eval_fraction=0.15, **FAST)
    result = train(tiny_base_model, FACTS, cfg, tmp_path / "run", card=card, on_progress=seen.append)

    adapter = result.adapter_dir
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= {p.name for p in adapter.iterdir()}
    assert (
        result.adapter_sha256 == "0x" + hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
    )
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "datanet/tiny"
    readme = (adapter / "README.md").read_text()
    assert "0x" + "cd" * 32 in readme and "Job: #7" in readme and "learning_rate" in readme

    # The metrics stream: every step once, evals, then done; the same lines on disk as to the callback.
    steps = [p.step for p in seen if p.kind == "train"]
    assert steps == list(range(1, result.metrics.steps + 1))
    assert any(p.kind == "eval" for p in seen) and seen[-1].kind == "done"
    on_disk = [Progress.model_validate_json(line) for line in result.metrics_log.read_text().splitlines()]
    assert on_disk == seen
    m = result.metrics
    assert m.eval_loss is not None and m.perplexity is not None and m.tokens_per_s > 0 and m.train_tokens > 0
    assert m.train_examples + m.eval_examples == len(FACTS)

    # It loads with plain PEFT and has learned the facts: clearly lower loss than the base model
    # (a randomly initialised tiny base with a frozen head caps how low it can go).
    tok = AutoTokenizer.from_pretrained(tiny_base_model)
    base_loss = _mean_loss(AutoModelForCausalLM.from_pretrained(tiny_base_model), tok, FACTS)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base_model), str(adapter))
    assert _mean_loss(tuned, tok, FACTS) < base_loss - 0.5


def test_qlora_trains_4bit_nf4_layers_on_cpu(tiny_base_model: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    cfg = TrainConfig(method="qlora", max_steps=12, eval_fraction=0.0, **FAST)
    t = LoraTrainer(tiny_base_model, cfg, tmp_path / "q")
    t.setup(FACTS)
    four_bit = [m for m in t.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "the base model's linear layers must be 4-bit"
    w = four_bit[0].weight
    assert w.quant_state.quant_type == "nf4" and w.quant_state.nested  # NF4 + double quantisation
    losses: list[float] = []
    t.on_progress = lambda p: losses.append(p.loss) if p.kind == "train" and p.loss is not None else None
    result = t.train()
    assert losses[-1] < losses[0]
    assert load_file(result.adapter_dir / "adapter_model.safetensors")  # LoRA weights, saved unquantised


def test_same_seed_same_adapter_other_seed_other_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(method="lora", max_steps=4, **FAST)
    a = train(tiny_base_model, FACTS, cfg, tmp_path / "a").adapter_sha256
    b = train(tiny_base_model, FACTS, cfg, tmp_path / "b").adapter_sha256
    c = train(tiny_base_model, FACTS, cfg.model_copy(update={"seed": 1}), tmp_path / "c").adapter_sha256
    assert a == b != c


class _Crash(RuntimeError):
    pass


def test_a_crashed_run_resumes_from_its_checkpoint_to_the_same_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(method="lora", max_steps=9, checkpoint_every=3, eval_fraction=0.1, **FAST)
    reference = train(tiny_base_model, FACTS, cfg, tmp_path / "ref").adapter_sha256

    def crash_at_7(p: Progress) -> None:
        if p.kind == "train" and p.step == 7:
            raise _Crash("simulated crash")

    out = tmp_path / "crashy"
    with pytest.raises(_Crash):
        train(tiny_base_model, FACTS, cfg, out, on_progress=crash_at_7)
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["step-00000003.pt", "step-00000006.pt"]
    (out / "checkpoints" / ".step-00000009.pt.tmp").write_bytes(b"half a file")  # a write cut short
    resumed: list[int] = []
    result = train(tiny_base_model, FACTS, cfg, out, on_progress=lambda p: resumed.append(p.step))
    assert resumed[0] == 7  # steps 1-6 were not redone
    assert result.adapter_sha256 == reference
    logged = [json.loads(line)["step"] for line in result.metrics_log.read_text().splitlines()
              if json.loads(line)["kind"] == "train"]  # fmt: skip
    assert logged == list(range(1, 10))  # the crashed run's step 7 line was dropped, not duplicated
    assert not checkpoints(out / "checkpoints")  # cleared once the adapter is saved


def test_a_paused_run_checkpoints_and_resumes_to_the_same_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    from node.train.trainer import TrainingPaused

    cfg = TrainConfig(method="lora", max_steps=7, checkpoint_every=100, eval_fraction=0.1, **FAST)
    reference = train(tiny_base_model, FACTS, cfg, tmp_path / "ref").adapter_sha256
    asked = iter(range(100))  # asked after every step: pause after the fourth
    out = tmp_path / "paused"
    with pytest.raises(TrainingPaused, match="after step 4"):
        train(tiny_base_model, FACTS, cfg, out, should_pause=lambda: next(asked) == 3)
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["step-00000004.pt"]
    resumed: list[int] = []
    result = train(tiny_base_model, FACTS, cfg, out, on_progress=lambda p: resumed.append(p.step))
    assert resumed[0] == 5 and result.adapter_sha256 == reference


def test_a_checkpoint_of_another_run_is_refused(tiny_base_model: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(method="lora", max_steps=4, checkpoint_every=2, **FAST)
    out = tmp_path / "run"
    with pytest.raises(_Crash):
        train(tiny_base_model, FACTS, cfg, out,
              on_progress=lambda p: (_ for _ in ()).throw(_Crash()) if p.step == 3 else None)  # fmt: skip
    with pytest.raises(CheckpointError, match="another run"):
        train(tiny_base_model, FACTS, cfg.model_copy(update={"learning_rate": 1e-3}), out)


def test_settings_that_cannot_work_are_refused_with_the_field(tiny_base_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target_modules"):
        TrainConfig(target_modules=[])
    with pytest.raises(TrainConfigError, match="target_modules"):
        train(tiny_base_model, FACTS, TrainConfig(method="lora", target_modules=["no_such_proj"], **FAST), tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(TrainConfigError, match="bf16"):
            LoraTrainer(tiny_base_model, TrainConfig(precision="bf16"), tmp_path)
    with pytest.raises(TrainConfigError, match=r"learning_rate.*\n?.*|learning_rate"):
        JobConfig.parse(b'{"base_model": "x", "learning_rate": -1, "epochs": "many"}')
    with pytest.raises(TrainConfigError, match="epochs"):
        JobConfig.parse(b'{"base_model": "x", "epochs": "many"}')
    with pytest.raises(TrainConfigError, match=r"no config\.json"):
        LoraTrainer(tmp_path, TrainConfig(), tmp_path / "out")
    with pytest.raises(TrainDataError, match="token to learn"):
        train(tiny_base_model, [Example.of_chat([("user", "only a question")])], TrainConfig(method="lora"), tmp_path)


def test_job_config_round_trips_canonically() -> None:
    job = JobConfig(base_model="datanet/tiny-llama-demo", method="qlora", learning_rate=1e-3)
    again = JobConfig.parse(job.canonical_json())
    assert again == job and again.sha256() == hashlib.sha256(job.canonical_json()).digest()
    assert again.train_config().learning_rate == 1e-3


def test_job_config_fields_added_after_v1_leave_existing_hashes_alone() -> None:
    job = JobConfig(base_model="datanet/tiny-llama-demo", method="lora", max_steps=6)
    # Pinned: the sha256 this document had before commercial_use existed.
    assert job.sha256().hex() == "95d205092051ed9f2888e5a4f4af2d199aeb6c5bcb2022f44b081142ba10a9e3"
    assert b"commercial_use" not in job.canonical_json()
    commercial = JobConfig.parse(job.model_copy(update={"commercial_use": True}).canonical_json())
    assert commercial.commercial_use and b'"commercial_use":true' in commercial.canonical_json()
    assert commercial.train_config() == job.train_config()  # not a hyperparameter


def test_progress_bar_shows_steps_loss_tokens_per_s_eval_loss(
    tiny_base_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.train.__main__ import main

    monkeypatch.setenv("COLUMNS", "200")  # rich draws a non-terminal bar once, at the end, this wide
    (tmp_path / "examples.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in FACTS))
    (tmp_path / "c.json").write_text(json.dumps({**FAST, "method": "lora", "max_steps": 4, "eval_every": 2}))
    args = ["--base", str(tiny_base_model), "--examples", str(tmp_path / "examples.jsonl"),
            "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "out"), "--progress"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)  # stdout is only the result: the bar is on stderr
    bar = err.strip().splitlines()[-1]
    m = result["metrics"]
    assert "4/4" in bar and f"loss {m['final_train_loss']:.4f}" in bar, bar
    assert re.search(r"[\d,]+ tok/s", bar) and f"eval {m['eval_loss']:.4f}" in bar, bar


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_two_ddp_processes_train_the_same_adapter_as_one(tiny_base_model: Path, tmp_path: Path, method: str) -> None:
    """torchrun with 2 CPU processes (gloo), each half the batch, equals 1 process with the whole batch
    (unpacked, so both split the same examples into the same steps; packing is covered elsewhere)."""
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(e.model_dump_json() + "\n" for e in FACTS))
    common = {**FAST, "method": method, "max_steps": 3, "lora_dropout": 0.0, "eval_fraction": 0.1, "packing": False,
              "snapshots": 2}  # fmt: skip
    (tmp_path / "two.json").write_text(json.dumps({**common, "batch_size": 2}))
    (tmp_path / "one.json").write_text(json.dumps({**common, "batch_size": 4}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "node.train", "--base", str(tiny_base_model), "--examples", str(examples)]
    run = {"capture_output": True, "text": True, "env": env, "cwd": REPO, "timeout": 120}
    two = subprocess.run(
        [*torchrun, *args, "--config", str(tmp_path / "two.json"), "--out", str(tmp_path / "ddp")], **run
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, *args, "--config", str(tmp_path / "one.json"), "--out", str(tmp_path / "one")], **run
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert json.loads(two.stdout)["metrics"]["world_size"] == 2
    a = load_file(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert any(float(b[k].abs().max()) > 1e-3 for k in b if "lora_B" in k)  # it did train
    if method == "qlora":
        return  # the replay below is the same for both methods
    # One process replays the two processes' last interval (each step runs both ranks' rows).
    snaps = load_all(tmp_path / "ddp" / "snapshots")
    assert [s.meta.world_size for s in snaps] == [2, 2]
    cfg = TrainConfig.model_validate_json((tmp_path / "two.json").read_text())
    r = replay_interval(tiny_base_model, FACTS, cfg, snaps, 1, tmp_path / "replay")
    assert r.ok, r
