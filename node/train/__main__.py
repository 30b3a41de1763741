"""Train an adapter from files, in one process or several:

    python -m node.train --base BASE_DIR --examples examples.jsonl --config train.json --out OUT_DIR
    torchrun --nproc_per_node 2 -m node.train --base ... (DDP; gloo on CPU, nccl on GPUs)
    accelerate launch -m node.train --base ...

`examples.jsonl` holds canonical `Example` lines (what `AssembledSet.write` produces); the config is
a `TrainConfig` or `JobConfig` JSON document (unknown fields are refused). Prints the
`TrainResult` as JSON on the main process; `--progress` draws its bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.data.records import Example
from node.errors import NodeError
from node.train.card import ModelCard
from node.train.config import JobConfig, TrainConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="Base model directory (Hugging Face format).")
    p.add_argument("--examples", type=Path, required=True, help="JSON lines of examples.")
    p.add_argument("--config", type=Path, required=True, help="TrainConfig or JobConfig JSON.")
    p.add_argument("--out", type=Path, required=True, help="Output directory (adapter/, metrics.jsonl).")
    p.add_argument("--progress", action="store_true",
                   help="Show a progress bar on stderr: steps, loss, tokens/s, latest eval loss, ETA.")  # fmt: skip
    args = p.parse_args(argv)
    from node.train.trainer import train

    try:
        raw = json.loads(args.config.read_text())
        config = JobConfig.parse(json.dumps(raw)).train_config() if "base_model" in raw else TrainConfig(**raw)
        examples = [Example.model_validate_json(ln) for ln in args.examples.read_text().splitlines() if ln.strip()]
        result = train(args.base, examples, config, args.out, card=ModelCard(base_model=str(args.base)),
                       show_progress=args.progress)  # fmt: skip
    except (NodeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import os

    if os.environ.get("RANK", "0") == "0":
        print(result.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
