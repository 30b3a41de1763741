"""LoRA / QLoRA fine-tuning: `train(base_model_dir, examples, config, out_dir)` -> `TrainResult`.

Life cycle (torchtune's recipe shape): `LoraTrainer(...)` validates → `setup(examples)` loads the
model, tokenises, splits and packs → `train()` runs the steps, checkpointing and evaluating →
`save()` writes the PEFT adapter, model card and metrics. What makes it fast and lean:

- Each micro-batch's examples packed into as few rows as hold them (almost no compute on
  padding), with block-diagonal attention (see `packing`).
- The LM head runs only where a token is learned: hidden states at answer positions are
  gathered first, so prompt tokens never materialise `(T, vocab)` logits.
- No framework loop around it: the batches of step k are a pure function of (seed, k), which
  also makes resumption exact.

QLoRA: 4-bit NF4 base with double quantisation (bitsandbytes), LoRA in fp32, paged AdamW on
CUDA: 8-bit, or 32-bit when the run takes snapshots (8-bit AdamW quantises the second moments
the snapshots hold). Evaluation keeps the 4-bit layers in training mode, or bitsandbytes repacks
them and later gradients go wrong (`quantized.eval_mode`). LoRA: the base in bf16 (CUDA) or
fp32. Several processes (`torchrun`/`accelerate launch`): DDP over the LoRA weights, each rank
taking its share of every step's examples.

Trajectory snapshots (`cfg.snapshots`, format in `snapshots`, taken by `trajectory`) go to
`out_dir/snapshots/` right after their optimizer steps (rank 0 writes), survive a resume exactly,
and stay when the checkpoints are cleared at the end.

Raises `TrainConfigError` (a setting that cannot work here), `TrainDataError` (nothing left to
learn from), `CheckpointError` (a checkpoint of another run in `out_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from node.data.records import Example
from node.errors import NodeError
from node.train import card as model_card
from node.train import checkpoint
from node.train import dropout as portable_dropout
from node.train.card import ModelCard
from node.train.checkpoint import CheckpointError
from node.train.config import Method, Progress, TrainConfig, TrainConfigError, TrainMetrics, TrainResult
from node.train.dropout import DropoutClock
from node.train.formatting import IGNORE, Tokenized, chat_template, tokenize_example, truncate
from node.train.packing import Batch, Row, collate, epoch_order, make_row, pack, plan_rows
from node.train.quantized import check_bitsandbytes, eval_mode, make_optimizer
from node.train.runtime import Runtime, all_sum, peak_memory_bytes, setup_runtime, teardown_runtime
from node.train.snapshots import Snapshot
from node.train.trajectory import SnapshotRecorder

__all__ = ["LoraTrainer", "ModelCard", "TrainDataError", "train"]

OnProgress = Callable[[Progress], None]


class TrainingPaused(Exception):
    """The run stopped because it was asked to pause; its last step is checkpointed."""


class TrainDataError(NodeError, ValueError):
    """The examples leave nothing to train on (all empty, or no answer tokens)."""


class _LossSum(nn.Module):
    """Summed next-token cross-entropy over learned positions only. A module, so DDP can wrap it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        base = model.get_base_model()  # type: ignore[operator]
        self.decoder, self.head = base.get_decoder(), base.get_output_embeddings()
        self.softcap: float | None = getattr(base.config, "final_logit_softcapping", None)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # No attention mask: restarts in position_ids make transformers build the packed mask.
        h = self.decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        h, target = h[:, :-1], labels[:, 1:]  # (B, T-1, H): position t predicts token t+1
        keep = target != IGNORE
        logits = self.head(h[keep]).float()  # (N, V), N = learned positions only
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits, target[keep], reduction="sum")


class LoraTrainer:
    def __init__(
        self,
        base_model_dir: Path,
        config: TrainConfig,
        out_dir: Path,
        *,
        card: ModelCard | None = None,
        on_progress: OnProgress | None = None,
        show_progress: bool = False,
        world_size: int | None = None,
        should_pause: Callable[[], bool] | None = None,
    ):
        """`world_size`: the number of processes whose steps to reproduce, when one process replays
        a run that trained on several (`node.train.replay`); default: this run's own.
        `should_pause`: asked after every step; when it says so, the run checkpoints that step and
        raises `TrainingPaused` (the next `train` on the same directory resumes there)."""
        self.base_dir, self.cfg, self.out = Path(base_model_dir), config, Path(out_dir)
        self.card = card or ModelCard(base_model=str(base_model_dir))
        self.on_progress, self.show_progress = on_progress, show_progress
        self.should_pause = should_pause
        self._bar: OnProgress = _no_bar  # the --progress bar while `_progress_bar` shows one
        if not (self.base_dir / "config.json").is_file():
            raise TrainConfigError(f"{self.base_dir} is not a Hugging Face model directory (no config.json).")
        self.rt: Runtime = setup_runtime(config)
        self.world = world_size or self.rt.world_size
        if self.world != self.rt.world_size and self.rt.distributed:
            raise TrainConfigError(f"{self.rt.world_size} processes cannot stand in for a run on {self.world}")
        if config.method == Method.QLORA:
            check_bitsandbytes()

    # ------------------------------------------------------------------ setup

    def setup(self, examples: Sequence[Example]) -> None:
        self._setup_tokenizer()
        self._setup_data(examples)
        self._setup_model()
        self._setup_optimizer()

    def _setup_tokenizer(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def _setup_data(self, examples: Sequence[Example]) -> None:
        cfg = self.cfg
        tokenized = [
            truncate(tokenize_example(self.tokenizer, ex, cfg.train_on_prompt), cfg.max_seq_len) for ex in examples
        ]
        usable = [k for k, t in enumerate(tokenized) if t.trainable > 0]
        if not usable:
            raise TrainDataError(
                f"None of the {len(examples)} examples has a token to learn within max_seq_len={cfg.max_seq_len}."
            )
        rng = random.Random(f"{cfg.seed}/split")
        shuffled = rng.sample(usable, len(usable))
        n_eval = int(len(usable) * cfg.eval_fraction) if len(usable) > 1 else 0
        self.eval_idx, self.train_idx = sorted(shuffled[:n_eval]), sorted(shuffled[n_eval:])
        self.train_ex = [tokenized[k] for k in self.train_idx]
        self.eval_ex = [tokenized[k] for k in self.eval_idx]
        self._plan_batches()
        self.fingerprint = _fingerprint(cfg, self.base_dir, tokenized)

    def _plan_batches(self) -> None:
        """Row width and rows per micro-batch: about `batch_size` examples' worth of tokens per
        micro-batch, in rows no longer than `max_seq_len` (and no shorter than the longest example)."""
        cfg = self.cfg
        self.lengths = [len(t) for t in self.train_ex]
        budget = cfg.batch_size * sum(self.lengths) / len(self.lengths)  # tokens of batch_size mean examples
        if cfg.packing:
            self.width = min(cfg.max_seq_len, max(max(self.lengths), math.ceil(budget)))
            self.rows_per_micro = max(1, round(budget / self.width))
        else:
            self.width, self.rows_per_micro = cfg.max_seq_len, cfg.batch_size
        self.rows_per_step = self.rows_per_micro * cfg.gradient_accumulation * self.world
        self._epochs: list[list[tuple[int, ...]]] = []  # each epoch's rows, planned on demand
        if cfg.max_steps:
            self.total_steps = cfg.max_steps
        else:
            full, frac = divmod(cfg.epochs, 1)
            self.total_steps = sum(self._steps_in(e) for e in range(int(full)))
            self.total_steps += math.ceil(frac * self._steps_in(int(full))) if frac else 0
            self.total_steps = max(1, self.total_steps)

    def _rows_of(self, epoch: int) -> list[tuple[int, ...]]:
        while len(self._epochs) <= epoch:
            order = epoch_order(len(self.train_ex), self.cfg.seed, len(self._epochs))
            self._epochs.append(plan_rows(self.lengths, order, self.width, self.cfg.packing))
        return self._epochs[epoch]

    def _steps_in(self, epoch: int) -> int:
        return math.ceil(len(self._rows_of(epoch)) / self.rows_per_step)

    def _locate(self, step: int) -> tuple[int, int]:
        """(epoch, step within it) of a global step."""
        epoch = 0
        while step >= self._steps_in(epoch):
            step -= self._steps_in(epoch)
            epoch += 1
        return epoch, step

    def _epoch_float(self, done: int) -> float:
        epoch, within = self._locate(done - 1) if done else (0, -1)
        return epoch + (within + 1) / self._steps_in(epoch)

    def _setup_model(self) -> None:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        cfg, rt = self.cfg, self.rt
        kwargs: dict[str, Any] = {"dtype": rt.dtype, "device_map": {"": rt.device}}
        if cfg.method == Method.QLORA:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=rt.dtype,
            )  # fmt: skip
        model = AutoModelForCausalLM.from_pretrained(self.base_dir, **kwargs)
        if cfg.method == Method.QLORA:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        elif cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        torch.manual_seed(cfg.seed)  # the LoRA init
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
            target_modules=cfg.target_modules, task_type="CAUSAL_LM",
        )  # fmt: skip
        try:
            self.model = get_peft_model(model, lora)
        except ValueError as e:
            raise TrainConfigError(f"LoRA target_modules={cfg.target_modules!r} do not fit this model: {e}") from e
        self.dropout_clock = DropoutClock(seed=cfg.seed)  # masks any machine can redraw: replayable steps
        portable_dropout.install(self.model, self.dropout_clock)
        self.model.train()  # peft may leave it in eval mode (STACK.md)
        self.loss_sum = _LossSum(self.model)  # eval calls it directly: no collective inside
        self.loss_fn: nn.Module = self.loss_sum
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [rt.device.index] if rt.device.type == "cuda" else None
            # The only buffers are constants (rotary frequencies): no per-forward broadcast, which
            # would also deadlock evals where ranks run different numbers of batches.
            self.loss_fn = DistributedDataParallel(self.loss_sum, device_ids=ids, broadcast_buffers=False)

    def _make_scheduler(self) -> Any:
        from transformers import get_scheduler

        cfg = self.cfg
        name = "constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler
        return get_scheduler(
            name, self.optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )  # fmt: skip

    def _setup_optimizer(self) -> None:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(cfg, params, cuda=self.rt.device.type == "cuda")
        self.scheduler = self._make_scheduler()
        self.snapshots: SnapshotRecorder | None = None
        if cfg.snapshots:
            self.snapshots = SnapshotRecorder(
                self.out / "snapshots", self.total_steps, cfg.snapshots, max_grad_norm=cfg.max_grad_norm,
                lora_scale=cfg.lora_scale, world_size=self.world, write=self.rt.is_main,
                compute_dtype=str(self.rt.dtype).removeprefix("torch."),
            )  # fmt: skip

    def restore(self, snapshot: Snapshot | None) -> int:
        """Puts the run in the state right after `snapshot`'s step (None: before step 1, where
        `setup` leaves it), with torch's AdamW whatever optimizer trained it (bitsandbytes' 32-bit
        paged AdamW makes the same update), and returns the step to run next. For replaying an
        interval (`node.train.replay`): what `_step` does from here is what training did."""
        cfg = self.cfg
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        meta = snapshot.meta if snapshot else None
        betas, eps = ((meta.beta1, meta.beta2), meta.eps) if meta else ((0.9, 0.999), 1e-8)
        self.optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.learning_rate, betas=betas, eps=eps,
                                           weight_decay=cfg.weight_decay)  # fmt: skip
        self.snapshots = None
        start = 0
        if snapshot is not None:
            assert meta is not None
            if set(snapshot.lora) != set(params) or not snapshot.replayable:
                raise TrainConfigError(
                    f"snapshot {meta.index} does not hold this run's parameters and both Adam moments "
                    f"({len(snapshot.lora)} tensors, format {meta.format}; this model trains {len(params)})"
                )
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(snapshot.lora[name].to(p.device, p.dtype))
                    self.optimizer.state[p] = {
                        "step": torch.tensor(float(meta.adam_step)),
                        "exp_avg": snapshot.exp_avg[name].to(p.device, torch.float32).clone(),
                        "exp_avg_sq": snapshot.exp_avg_sq[name].to(p.device, torch.float32).clone(),
                    }
            start = meta.step
        self.scheduler = self._make_scheduler()
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": on purpose
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):
                self.scheduler.step()
        return start

    # ------------------------------------------------------------------ train

    def train(self) -> TrainResult:
        """Runs (or resumes) every step, then saves the adapter. Returns what `save` wrote."""
        start_step, tokens = self._resume()
        history_loss: float | None = None
        t0, tokens0 = time.perf_counter(), tokens
        train_seconds = 0.0
        with self._progress_bar(start_step):
            for step in range(start_step, self.total_steps):
                ts = time.perf_counter()
                loss, step_tokens = self._step(step)
                train_seconds += time.perf_counter() - ts
                tokens += step_tokens
                history_loss = loss
                done = step + 1
                elapsed = time.perf_counter() - t0
                rate = (tokens - tokens0) / elapsed if elapsed > 0 else None
                eta = (self.total_steps - done) * elapsed / (done - start_step)
                self._emit(Progress(
                    kind="train", step=done, total_steps=self.total_steps, epoch=self._epoch_float(done),
                    loss=loss, learning_rate=self.scheduler.get_last_lr()[0], tokens=tokens,
                    tokens_per_s=rate, elapsed_s=elapsed, eta_s=eta,
                ))  # fmt: skip
                if self._eval_due(done):
                    self._evaluate(done, tokens, elapsed)
                if done % self.cfg.checkpoint_every == 0 and done < self.total_steps:
                    self._checkpoint(done, tokens)
                elif done < self.total_steps and self._pause_asked():
                    self._checkpoint(done, tokens)
                    raise TrainingPaused(f"paused after step {done} of {self.total_steps} (checkpoint saved)")
            eval_loss = self._evaluate(self.total_steps, tokens, time.perf_counter() - t0, emit=False)
            metrics = TrainMetrics(
                method=self.cfg.method, steps=self.total_steps, epochs=self._epoch_float(self.total_steps),
                train_examples=len(self.train_idx), eval_examples=len(self.eval_idx), train_tokens=tokens,
                final_train_loss=history_loss, eval_loss=eval_loss,
                perplexity=math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
                tokens_per_s=(tokens - tokens0) / train_seconds if train_seconds else 0.0,
                train_seconds=train_seconds, peak_memory_bytes=peak_memory_bytes(self.rt), device=self.rt.name,
                world_size=self.rt.world_size,
            )  # fmt: skip
            self._emit(Progress(kind="done", step=self.total_steps, total_steps=self.total_steps,
                                epoch=metrics.epochs, loss=history_loss, eval_loss=eval_loss,
                                perplexity=metrics.perplexity, tokens=tokens, tokens_per_s=metrics.tokens_per_s,
                                elapsed_s=time.perf_counter() - t0, eta_s=0.0))  # fmt: skip
        return self.save(metrics)

    def _pause_asked(self) -> bool:
        """Whether to pause now: every process decides the same (one asked, all pause together)."""
        if self.should_pause is None:
            return False
        asked, _ = all_sum(self.rt, 1.0 if self.should_pause() else 0.0, 0)
        return asked > 0

    def _step(self, step: int) -> tuple[float, int]:
        """One optimizer step: gradient accumulation over micro-batches; returns (mean loss, tokens).
        This process runs its rank's share of each micro-batch; one process replaying a
        several-process run (`self.world` > processes) runs every rank's share in turn."""
        rt, cfg = self.rt, self.cfg
        micro = self._micro_batches(step)
        targets = sum(b.targets for group in micro for b in group)  # every rank knows every row
        scale = rt.world_size / max(targets, 1)  # DDP averages over ranks; we want the global mean
        ranks = [rt.rank] if self.world == rt.world_size else list(range(self.world))
        loss_sum, tokens = 0.0, 0
        for m, group in enumerate(micro):
            for r in ranks:
                batch = group[r]
                last = m == len(micro) - 1 and r == ranks[-1]
                sync = contextlib.nullcontext() if last or not rt.distributed else self.loss_fn.no_sync()  # type: ignore[operator]
                self.dropout_clock.at(step, m, r)
                with sync, self._autocast():
                    loss = self.loss_fn(
                        batch.input_ids.to(rt.device), batch.position_ids.to(rt.device), batch.labels.to(rt.device)
                    )
                    (loss * scale).backward()
                loss_sum += float(loss.detach())
                tokens += batch.tokens
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm
        )
        lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step uses
        self.optimizer.step()
        if self.snapshots:  # the same norm on every rank: DDP has all-reduced the gradients
            self.snapshots.after_step(step + 1, lr, float(norm), self.model, self.optimizer)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, total_tokens = all_sum(rt, loss_sum, tokens)
        return total_loss / max(targets, 1), int(total_tokens)

    def _micro_batches(self, step: int) -> list[list[Batch]]:
        """Step `step`'s micro-batches, each as one batch per rank (pure function of seed, step)."""
        w, rpm = self.world, self.rows_per_micro
        epoch, within = self._locate(step)
        plan = self._rows_of(epoch)[within * self.rows_per_step : (within + 1) * self.rows_per_step]
        rows = [make_row(self.train_ex, sources) for sources in plan]
        out = []
        for m in range(0, len(rows), rpm * w):
            chunk = rows[m : m + rpm * w]
            out.append([collate(_share(chunk, r, rpm), self.pad_id) for r in range(w)])
        return out

    @torch.no_grad()
    def _evaluate(self, step: int, tokens: int, elapsed: float, emit: bool = True) -> float | None:
        if not self.eval_ex:
            return None
        rt, rpm = self.rt, self.rows_per_micro
        width = max(self.width, *(len(t) for t in self.eval_ex))
        rows = pack(self.eval_ex, width, self.cfg.packing)[rt.rank :: rt.world_size]
        loss_sum, targets = 0.0, 0
        with eval_mode(self.model):
            for i in range(0, len(rows), rpm):
                b = collate(rows[i : i + rpm], self.pad_id)
                with self._autocast():
                    loss_sum += float(
                        self.loss_sum(b.input_ids.to(rt.device), b.position_ids.to(rt.device), b.labels.to(rt.device))
                    )
                targets += b.targets
        total, count = all_sum(rt, loss_sum, targets)
        eval_loss = total / max(count, 1)
        if emit:
            self._emit(Progress(kind="eval", step=step, total_steps=self.total_steps,
                                epoch=self._epoch_float(step), eval_loss=eval_loss,
                                perplexity=math.exp(eval_loss) if eval_loss < 50 else None,
                                tokens=tokens, elapsed_s=elapsed))  # fmt: skip
        return eval_loss

    def _eval_due(self, done: int) -> bool:
        if not self.eval_ex or done == self.total_steps:
            return False  # the final eval always runs once, after the loop
        if self.cfg.eval_every:
            return done % self.cfg.eval_every == 0
        epoch, within = self._locate(done - 1)
        return within == self._steps_in(epoch) - 1  # the last step of an epoch

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.rt.device.type == "cuda" and self.rt.dtype == torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------- checkpoint, save

    def _checkpoint(self, step: int, tokens: int) -> None:
        from peft import get_peft_model_state_dict

        if self.rt.is_main:
            checkpoint.save(self.out / "checkpoints", step, {
                "fingerprint": self.fingerprint, "step": step, "tokens": tokens,
                "lora": get_peft_model_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "snapshots": self.snapshots.state_dict() if self.snapshots else None,
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            })  # fmt: skip
        if self.rt.distributed:
            torch.distributed.barrier()

    def _resume(self) -> tuple[int, int]:
        from peft import set_peft_model_state_dict

        state = checkpoint.load_latest(self.out / "checkpoints", self.fingerprint)
        if state is None:
            self._metrics_file().unlink(missing_ok=True)
            if self.rt.is_main:  # another run's, or a crashed one's from before its first checkpoint
                shutil.rmtree(self.out / "snapshots", ignore_errors=True)
            torch.manual_seed(self.cfg.seed + self.rt.rank)  # dropout
            return 0, 0
        step = int(state["step"])
        if self.snapshots:
            if state.get("snapshots") is None:
                raise CheckpointError(
                    f"the checkpoint at step {step} in {self.out / 'checkpoints'} has no snapshot state (written by an "
                    f"older node); delete that directory (`rm -r {self.out / 'checkpoints'}`) to train from the start."
                )
            self.snapshots.load_state_dict(state["snapshots"])
            self.snapshots.discard_after(step)
        set_peft_model_state_dict(self.model, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self._truncate_metrics(step)
        return step, int(state["tokens"])

    def save(self, metrics: TrainMetrics) -> TrainResult:
        """Writes `out/adapter` (PEFT safetensors + config + model card) atomically."""
        adapter, tmp = self.out / "adapter", self.out / ".adapter.tmp"
        if self.rt.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save_pretrained(str(tmp), safe_serialization=True)
            cfg_path = tmp / "adapter_config.json"  # record the reference, not this machine's path
            peft_cfg = json.loads(cfg_path.read_text())
            peft_cfg["base_model_name_or_path"] = self.card.base_model
            cfg_path.write_text(json.dumps(peft_cfg, indent=2, sort_keys=True))
            (tmp / "training_config.json").write_text(self.cfg.model_dump_json(indent=2))
            (tmp / "metrics.json").write_text(metrics.model_dump_json(indent=2))
            (tmp / "split.json").write_text(json.dumps({"train": sorted(self.train_idx), "eval": self.eval_idx}))
            (tmp / "README.md").write_text(
                model_card.render(self.card, self.cfg, metrics, chat_template(self.tokenizer))
            )
            shutil.rmtree(adapter, ignore_errors=True)
            os.replace(tmp, adapter)
            checkpoint.clear(self.out / "checkpoints")
        teardown_runtime(self.rt)
        digest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
        return TrainResult(adapter_dir=adapter, adapter_sha256="0x" + digest, metrics=metrics,
                           metrics_log=self._metrics_file(),
                           snapshots_dir=self.snapshots.directory if self.snapshots else None)  # fmt: skip

    # ------------------------------------------------------------ reporting

    def _metrics_file(self) -> Path:
        return self.out / "metrics.jsonl"

    def _emit(self, p: Progress) -> None:
        if not self.rt.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self._metrics_file(), "a") as f:
            f.write(p.model_dump_json() + "\n")
        self._bar(p)
        if self.on_progress:
            self.on_progress(p)

    def _truncate_metrics(self, step: int) -> None:
        """Drops lines a crashed run wrote after its last checkpoint (they are replayed)."""
        path = self._metrics_file()
        if not self.rt.is_main or not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _progress_bar(self, start: int) -> Iterator[None]:
        """Shows steps, train loss, tokens/s, the latest eval loss and the ETA (rich), fed by `_emit`."""
        if not (self.show_progress and self.rt.is_main):
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cols = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} tok/s"), TextColumn("eval {task.fields[eval]}"),
                TimeRemainingColumn())  # fmt: skip
        with Progress(*cols, console=Console(stderr=True)) as bar:  # stdout stays for the result JSON
            task = bar.add_task("train", total=self.total_steps, completed=start, loss="-", rate="-", eval="-")
            self._bar = lambda p: bar.update(task, completed=p.step, **_bar_fields(p))
            try:
                yield
            finally:
                self._bar = _no_bar


def train(
    base_model_dir: Path,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: Path,
    *,
    card: ModelCard | None = None,
    on_progress: OnProgress | None = None,
    show_progress: bool = False,
    should_pause: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tunes `base_model_dir` on `examples`; resumes from `out_dir/checkpoints` if a run with
    the same config and data was interrupted or paused (`should_pause`: `LoraTrainer`). Writes
    `out_dir/adapter` and `out_dir/metrics.jsonl`."""
    t = LoraTrainer(base_model_dir, config, out_dir, card=card, on_progress=on_progress, show_progress=show_progress,
                    should_pause=should_pause)  # fmt: skip
    t.setup(examples)
    return t.train()


def _no_bar(_p: Progress) -> None:
    return None


def _bar_fields(p: Progress) -> dict[str, Any]:
    """The progress bar's text fields that `p` updates (an eval line changes only the eval loss)."""
    out: dict[str, Any] = {} if p.loss is None else {"loss": f"{p.loss:.4f}"}
    if p.kind == "train" and p.tokens_per_s is not None:
        out["rate"] = f"{p.tokens_per_s:,.0f}"
    if p.eval_loss is not None:
        out["eval"] = f"{p.eval_loss:.4f}"
    return out


def _share(chunk: list[Row], rank: int, rows_per_micro: int) -> list[Row]:
    """Rank `rank`'s rows of a micro-batch. A rank left without rows (the epoch's last, short
    step) gets one row with nothing to learn, so every rank still joins the gradient all-reduce."""
    mine = chunk[rank * rows_per_micro : (rank + 1) * rows_per_micro]
    if mine:
        return mine
    r = chunk[0]
    return [Row(r.input_ids, [IGNORE] * len(r), r.position_ids, ())]


def _fingerprint(cfg: TrainConfig, base_dir: Path, tokenized: Sequence[Tokenized]) -> str:
    h = hashlib.sha256(cfg.model_dump_json().encode())
    h.update(str(base_dir.resolve()).encode())
    for t in tokenized:
        h.update(json.dumps([t.input_ids, t.labels]).encode())
    return h.hexdigest()
