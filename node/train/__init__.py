"""LoRA / QLoRA fine-tuning of a base model on a job's permitted training set.

- `config`: `TrainConfig` (every hyperparameter), `JobConfig` (the on-chain job config
  document), `Progress` / `TrainMetrics` / `TrainResult` (what a run hands on).
- `base_model`: resolving a base model reference to a local directory, its on-chain identity
  (a hash of its weight files), and the tiny demo/test model built offline.
- `trainer`: `train(base_model_dir, examples, config, out_dir, card=..., on_progress=...)`
  -> `TrainResult`; resumes from `out_dir/checkpoints` after a crash.
"""
