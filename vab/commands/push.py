"""`vab push DIR org/name [--private] [--revision BRANCH]`: publish a model directory on the Hugging Face Hub."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console

from vab.checkpoint import load_codec, load_model
from vab.checkpoint.card import render_card
from vab.checkpoint.hub import UploadPlan, plan_upload, upload
from vab.filenames import CARD_FILE, CODEC_FILE, HEAD_CONFIG, HEAD_WEIGHTS
from vab.finetuning.classifier import load_classifier
from vab.finetuning.contrastive import load_temperature
from vab.model import TokenModel

EPILOG = """\
examples:
  vab push runs/vab/model my-org/vab-encodec
  vab push runs/retrieval/model my-org/vab-retrieval --private --revision v1
  vab push runs/vab/model my-org/vab-encodec --dry-run          # list what would be sent, contact nothing

Before anything is sent the directory is loaded as `vab generate` and the fine-tuning scripts
load it (config.yaml, model.safetensors and its checksum, the fitted codec, a classification
head or retrieval temperature when present); a directory that does not load is refused.
Only the files a model directory holds are uploaded (config.yaml, model.safetensors,
codec.safetensors, README.md, retrieval.safetensors, classifier.safetensors, classifier.yaml),
in one commit; other files are listed as skipped.  A directory without a model card
(README.md) gets one made from the model; the directory itself is never written to.

The repository is created when missing (private with --private; an existing one keeps its
visibility); --revision names a branch, created when missing.  Log in first with
`hf auth login`, or set HF_TOKEN.  Others then use the model by its id:
  vab generate clip.mp4 --checkpoint my-org/vab-encodec
"""


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "push", help=help,
        description="Check that a model directory loads, then upload it to a Hugging Face Hub model repository.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", metavar="DIR", help="model directory (config.yaml + model.safetensors)")
    p.add_argument("repo_id", metavar="ORG/NAME", help="Hugging Face Hub model repository, e.g. my-org/vab-encodec")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", metavar="BRANCH", help="upload to this branch (default: main)")
    p.add_argument("--message", help="commit message (default: lists the files)")
    p.add_argument("--dry-run", action="store_true", help="check and list what would be uploaded; contact nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    plan = prepare(Path(args.directory).expanduser(), args.repo_id, revision=args.revision, private=args.private)
    for line in describe(plan):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if args.dry_run:
        console.print("dry run: nothing was sent")
        return 0
    url = upload(plan, message=args.message)
    console.print(f"uploaded: {url}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"use it with: vab generate clip.mp4 --checkpoint {plan.repo_id}"
                  + (f"@{plan.revision}" if plan.revision else ""), markup=False, highlight=False, soft_wrap=True)
    return 0


def prepare(directory: Path, repo_id: str, *, revision: str | None = None, private: bool = False):
    """The :class:`vab.checkpoint.hub.UploadPlan` for `directory`, after checking that it loads;
    a card is made from the model when the directory has none.  Contacts nothing."""
    plan = plan_upload(directory, repo_id, revision=revision, private=private)  # names and files first: cheap refusals
    model = check_loads(directory)
    if plan.card is None and CARD_FILE not in plan.files:
        plan.card = render_card(model)
    return plan


def check_loads(directory: Path) -> TokenModel:
    """Load everything the directory holds, as its users will; returns the model.  VabError
    names the file that does not load."""
    if (directory / HEAD_CONFIG).exists() or (directory / HEAD_WEIGHTS).exists():
        model = load_classifier(directory)[0].backbone  # loads the backbone too
    else:
        model = load_model(directory)
    if (directory / CODEC_FILE).exists():
        load_codec(model, directory)
    load_temperature(directory)  # None when absent; VabError naming the file when it does not load
    return model


def describe(plan: UploadPlan) -> list[str]:
    """One line per file of the plan (uploaded with its size, or skipped)."""
    where = f"branch {plan.revision}" if plan.revision else "main"
    lines = [f"push {plan.directory} -> {plan.repo_id} ({where}, {'private' if plan.private else 'public'} "
             "when created)"]
    for name in plan.files:
        lines.append(f"  upload  {name}  ({_size((plan.directory / name).stat().st_size)})")
    if plan.card is not None:
        lines.append(f"  upload  {CARD_FILE}  (model card made from the model; the directory has none)")
    lines += [f"  skip    {name}  (" + ("a symbolic link: only regular files inside the folder are sent"
                                        if name in plan.links else "not part of a model directory") + ")"
              for name in plan.skipped]
    return lines


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exponent = min(3, int(math.log(n, 1024)))
    return f"{n / 1024 ** exponent:.1f} {'KMG'[exponent - 1]}B"
