"""Classification fine-tuning from a pretrained or retrieval-fine-tuned model (paper 3.5).

    python finetune/classification.py --init runs/vab/model --mode audio-visual \
        data.path=[data/vggsound] train.max_steps=20000 [--linear-probe] [--balanced]
    accelerate launch finetune/classification.py --init DIR --mode audio data.path=[data/audioset] --balanced

The model config comes from --init; Table 8's classification settings (lr 1e-4, no
warm-up) are applied, then the key=value overrides.  The loss follows the data's
metadata (BCE when multi-label, else CE) unless --loss says otherwise.  Writes
RUN (= train.output_dir, default runs/classify-<mode>) and a classifier directory
(RUN/model or --model-out): a VAB model directory plus classifier.safetensors /
classifier.yaml, read by eval/classification.py.
"""

from __future__ import annotations

import sys

from vab.cli import run_script
from vab.errors import VabError
from vab.finetuning.classification import finetune_classifier
from vab.finetuning.classification_objective import LOSSES
from vab.finetuning.pooling import MODES
from vab.training.run import recipe_parser, resume_arg


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__)
    parser.add_argument("--init", required=True, help="model directory or Hugging Face Hub id (org/name[@revision]) "
                        "to start from (pretrained or retrieval-fine-tuned)")
    parser.add_argument("--mode", choices=MODES, default="audio-visual")
    parser.add_argument("--linear-probe", action="store_true", help="train the head only (backbone frozen)")
    parser.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    parser.add_argument("--loss", choices=LOSSES, default="auto", help="auto: BCE for multi-label data, else CE")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    return run_script(parser, train, argv)


def train(args) -> int:
    if args.config is not None:
        raise VabError("--config is not used here: the model config comes from --init (override keys with key=value)")
    out = finetune_classifier(
        args.init, args.mode, args.overrides, linear_probe=args.linear_probe, balanced=args.balanced,
        loss=args.loss, smoothing=args.label_smoothing, resume=resume_arg(args.resume), model_out=args.model_out,
    )
    print(f"classifier written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
