"""Contrastive fine-tuning for audio-visual retrieval (paper 3.4, Table 8).

    python finetune/retrieval.py --init runs/vab/model data.path=[data/vggsound] \
        train.output_dir=runs/retrieval train.lr=1e-4 train.max_steps=20000
    accelerate launch finetune/retrieval.py --config my.yaml --init runs/vab/model ...

Trains the embeddings, the first expert layers and a temperature (init 0.07,
clamped to [0.01, 1]) with symmetric InfoNCE; the upper layers and heads stay
as they were, so RUN/model (or --model-out) still generates.  Validation
reports R@1/5/10 and median rank in both directions on the valid split.
--config defaults to the --init model directory (its config.yaml).  --init may be a
Hugging Face Hub id (org/name or org/name@revision) instead of a folder.
"""

from __future__ import annotations

import sys

from vab.cli import run_script
from vab.config import load_config
from vab.finetuning.contrastive import finetune_retrieval
from vab.checkpoint.hub import resolve_model_dir
from vab.training.run import recipe_parser, resume_arg


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__)
    parser.add_argument("--init", required=True,
                        help="model directory or Hugging Face Hub id (org/name[@revision]) to start from (pretrained VAB)")
    return run_script(parser, train, argv)


def train(args) -> int:
    cfg = load_config(args.config or resolve_model_dir(args.init), args.overrides)
    out = finetune_retrieval(cfg, args.init, resume=resume_arg(args.resume), model_out=args.model_out)
    print(f"model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
