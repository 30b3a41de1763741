"""LoRA / QLoRA fine-tuning of a base model on a job's permitted training set.

- `config`: `TrainConfig` (every hyperparameter), `JobConfig` (the on-chain job config
  document), `Progress` / `TrainMetrics` / `TrainResult` (what a run hands on).
- `base_model`: resolving a base model reference to a local directory, its on-chain identity
  (a hash of its weight files), and the tiny demo/test model built offline.
- `trainer`: `train(base_model_dir, examples, config, out_dir, card=..., on_progress=...)`
  -> `TrainResult`; resumes from `out_dir/checkpoints` after a crash.
"""

import warnings

# peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model;
# the FutureWarning is about peft's code, not ours or the operator's, so it is not shown.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
