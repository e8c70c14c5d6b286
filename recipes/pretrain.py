"""Masked audio-token pretraining (paper section 3.2).

    accelerate launch recipes/pretrain.py --config vab/configs/vab-encodec.yaml \
        data.path=[data/audioset,data/vggsound] train.batch_size=60
    python recipes/pretrain.py --config tiny data.path=data/mine train.max_steps=500   # one process

Writes RUN (= train.output_dir: config.yaml, logs/, checkpoints/) and a model
directory (RUN/model, or --model-out) that `vab generate` and the fine-tuning
scripts read.  `--resume` continues an interrupted run exactly.
"""

from __future__ import annotations

import sys

from vab.cli import run_script
from vab.config import load_config
from vab.training.run import pretrain, recipe_parser, resume_arg


def train(args) -> int:
    cfg = load_config(args.config, args.overrides)
    out = pretrain(cfg, resume=resume_arg(args.resume), model_out=args.model_out)
    print(f"model written to {out}")
    return 0


def main(default_config: str | None = None, doc: str = __doc__, argv: list[str] | None = None) -> int:
    return run_script(recipe_parser(doc, default_config), train, argv)


if __name__ == "__main__":
    sys.exit(main())
