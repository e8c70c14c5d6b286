"""Generation evaluation (paper Table 1): FAD, KL and speed of one or more models on held-out clips.

    python eval/generation.py --checkpoint runs/tiny/model data.path=[data/mine] --split test --out eval/gen
    python eval/generation.py --checkpoint runs/vab/model --checkpoint runs/foleygen/model \
        data.path=[data/vggsound] --embedder vggish:/weights/vggish-10086976.pth \
        --classifier panns:/weights/Cnn14_mAP=0.431.pth --out eval/table1
    python eval/generation.py --checkpoint runs/tiny/model --videos clips.csv --duration 10 \
        --classifier own:runs/classify-audio/model
    python eval/generation.py --table field --checkpoint runs/vab/model --videos vggsound-test.csv --duration 8 \
        --passt /weights/passt-s-f128-p16-s10-ap.476-swa.pt --panns /weights/Cnn14_16k_mAP=0.438.pth \
        --vggish /weights/vggish-10086976.pth --imagebind /weights/imagebind_huge.pth \
        --synchformer /weights/synchformer_state_dict.pth --out eval/field

Clips come from an extracted data set (`data.path=...`, `--split`; generated from the stored
frame features) or from a manifest / folder of videos (`--videos`; frames read and encoded,
so that time counts in the speed).  Every `--checkpoint` (repeat it to compare models, e.g.
VAB and the autoregressive baseline) is scored against the same real audio in one table.
Autoregressive models (model.type=foleygen) sample with --ar-cfg / --ar-top-k (FoleyGen's
3 and 256), the others with --steps / --cfg / --mask-temperature (the paper's 16, 5, 22.5).

Real audio (`--real`): `auto` takes the original media file when it exists, else the
codec's decoding of the clip's stored tokens (an upper bound, not the truth); the output
says which was used.  Scorers: `--embedder` for FAD, `--classifier` for KL:
  logmel          weights-free log-mel statistics / band distribution (default; offline, but
                  not comparable with published numbers)
  vggish:PATH     VGGish (the paper's FAD embedder), weights file vggish-10086976.pth
  panns:PATH      PANNs Cnn14, Cnn14_mAP=0.431.pth: 2048-d embedding and 527 AudioSet classes
  own:DIR         a classifier directory (or Hub id) from finetune/classification.py --mode audio
  passt:PATH      PaSST (passt-s-f128-p16-s10-ap.476-swa.pt): 768-d embedding and 527 AudioSet classes

`--table field` writes the field's table instead (MMAudio's columns, in its order): FD_PaSST,
FD_PANNs, FD_VGG, KL_PANNs, KL_PaSST, IS (PANNs), IB-score, DeSync, one scorer per option:
  --passt PATH           PaSST, as av-benchmark (clips padded or cut to 10 s at 32 kHz)
  --panns PATH           PANNs Cnn14; av-benchmark uses the 16-kHz Cnn14_16k_mAP=0.438.pth
  --vggish PATH          VGGish, vggish-10086976.pth
  --imagebind PATH       ImageBind, imagebind_huge.pth: IB-score, the cosine (x 100) of the clip's video
                         embedding (frames at 0.5 fps, 3 crops) and its audio embedding (three 2-s clips)
  --synchformer PATH     Synchformer, synchformer_state_dict.pth: DeSync (s), the offset it predicts for
                         the first and last 4.8 s of each clip (frames at 25 fps, audio at 16 kHz)
Each also takes `download`: the published file, fetched once into the torch hub cache (the
16-kHz Cnn14 for --panns).  A column whose scorer is not given is n/a.  Every table also has the weights-free sync score
(sound change against picture change, and the audio delay where they agree best), the mean
generated audio length per clip, and the number format and device generation ran in.

The scorers download nothing unless told `download`; a --checkpoint or own: given as a Hugging Face Hub id is
fetched into the Hugging Face cache as `vab generate` does (HF_HUB_OFFLINE=1: cache only).  Writes OUT/generation.json,
OUT/generation.md and OUT/generation.csv (and with
--save-audio the generated wavs under OUT/audio/<model>/).  Exit code 1 when clips failed.

Each clip's scores are recorded under OUT/records/ as soon as they exist: a killed run,
re-run with the same command, scores only the clips that have no record (records made
with other settings are never reused; delete OUT/records/ to start over).  Many processes
or GPUs: `accelerate launch --num_processes 8 eval/generation.py ...`; each process takes a
block of the clips, the main process merges every clip's records (FAD over all clips'
embeddings, the mean of per-clip KL) into the table one process would make.  `--device
auto` picks a GPU when there is one (each process its own under the launcher), else the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from vab.cli import run_script
from vab.generation.sampling import add_sampling_arguments, sampling_from_args
from vab.precision import add_precision_option, check_generation_precision
from vab.utils import add_batch_size_option, add_device_option


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True,
                   help="model directory or Hugging Face Hub id (org/name[@revision]); repeat to score several "
                   "models in one table")
    p.add_argument("--label", action="append", help="table name per --checkpoint (default: the directory)")
    p.add_argument("--videos", help="manifest or folder of videos (instead of an extracted data set)")
    p.add_argument("--root", help="folder that relative manifest paths are resolved against")
    p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' for every clip)")
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--duration", type=float, help="seconds per video with --videos (default: the model's window)")
    p.add_argument("--source", default="auto", choices=["auto", "features", "video"],
                   help="generate from stored features (data sets; default) or from the video files")
    p.add_argument("--real", default="auto", choices=["auto", "media", "tokens"],
                   help="real audio: media file, decoded stored tokens, or media when it exists (default)")
    p.add_argument("--embedder", default="logmel", help="FAD embedder: logmel | vggish:PATH | panns:PATH | own:DIR")
    p.add_argument("--classifier", default="logmel",
                   help="KL label model: logmel | panns:PATH | passt:PATH | own:DIR | none (default logmel)")
    t = p.add_argument_group("the field's table (--table field)")
    t.add_argument("--table", default="paper", choices=["paper", "field"],
                   help="paper: FAD / KL of --embedder / --classifier (default); field: MMAudio's columns")
    t.add_argument("--passt", help="PaSST weights file (FD_PaSST, KL_PaSST), or 'download'")
    t.add_argument("--panns", help="PANNs Cnn14 weights file (FD_PANNs, KL_PANNs, IS), or 'download'")
    t.add_argument("--vggish", help="VGGish weights file (FD_VGG), or 'download'")
    t.add_argument("--imagebind", help="ImageBind weights file, imagebind_huge.pth (IB-score), or 'download'")
    t.add_argument("--synchformer", help="Synchformer weights file, synchformer_state_dict.pth (DeSync), or 'download'")
    s = p.add_argument_group("sampling (as vab generate)")
    add_sampling_arguments(s)
    s.add_argument("--ar-cfg", type=float, default=3.0, dest="ar_guidance",
                   help="guidance for autoregressive models (FoleyGen: 3)")
    s.add_argument("--ar-top-k", type=int, default=256, help="top-k for autoregressive models (FoleyGen: 256)")
    add_batch_size_option(s, 1)
    add_device_option(s, "cpu")
    add_precision_option(s)
    o = p.add_argument_group("outputs")
    o.add_argument("--out", default="eval-generation", help="folder for generation.json / generation.md")
    o.add_argument("--save-audio", action="store_true", help="also write the generated wavs to OUT/audio/")
    p.set_defaults(overrides=[])
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vab.evaluation import soundtracks as ge
    from vab.evaluation.scorers import build_classifier, build_scorer
    from vab.evaluation.scorers.weights import weights_file
    from vab.config import load_config
    from vab.errors import VabError
    from vab.checkpoint.hub import resolve_model_dir
    from vab.filenames import CONFIG_FILE
    from vab.training.run import data_paths
    from vab.sharding import Shard
    from vab.utils import atomic_path, check_writable_dir, pick_device

    console = Console(stderr=True)
    split = None if args.split == "all" else args.split
    # every option before any real audio is scored or any record written
    if args.limit is not None and args.limit < 1:
        raise VabError(f"--limit must be >= 1, got {args.limit}")
    check_generation_precision(args.precision)
    sampling = sampling_from_args(args)
    ar_sampling = dataclasses.replace(sampling, guidance=args.ar_guidance, top_k=args.ar_top_k)
    sampling.validate()
    ar_sampling.validate()
    check_writable_dir(args.out, "the evaluation")
    cfg = load_config(None, args.overrides)
    # every model is found (a Hub id fetched) before any clip is scored
    folders = [resolve_model_dir(checkpoint) for checkpoint in args.checkpoint]
    for checkpoint, folder in zip(args.checkpoint, folders):
        if not (folder / CONFIG_FILE).is_file():
            raise VabError(f"{checkpoint}: not a model directory (no {CONFIG_FILE})")
    if args.videos:
        if args.source == "features":
            raise VabError("--source features needs an extracted data set (data.path=...), not --videos")
        duration = args.duration or float(load_config(folders[0] / CONFIG_FILE).data.duration)
        clips = ge.manifest_clips(args.videos, split, duration, root=args.root, limit=args.limit)
    else:
        clips = ge.dataset_clips(data_paths(cfg), split, args.limit)
    # a decoding setting the data set does not record, for its stored real tokens
    decode = {}
    if any(o.startswith("codec.griffin_lim_iters=") for o in args.overrides):
        decode["griffin_lim_iters"] = int(cfg.codec.griffin_lim_iters)
    shard = Shard.current()  # under `accelerate launch`: this process's block of the clips
    scoring_device = str(pick_device(shard.device(args.device)))  # `auto`: this process's GPU, else the CPU
    field_specs = {"passt": args.passt, "panns": args.panns, "vggish": args.vggish}
    video_specs = {"imagebind": args.imagebind, "synchformer": args.synchformer}
    given = [f"--{k}" for k, v in {**field_specs, **video_specs}.items() if v]
    if given and args.table != "field":
        raise VabError(f"{', '.join(given)} fill the field's table: add --table field")
    embedder = build_scorer(args.embedder, scoring_device)
    classifier = None if args.classifier == "none" else build_classifier(args.classifier, scoring_device)
    extra = {k: build_scorer(f"{k}:{v}", scoring_device) for k, v in field_specs.items() if v}
    desync = imagebind = None
    if args.synchformer:
        from vab.evaluation.scorers.synchformer import SynchformerScorer

        desync = SynchformerScorer.from_file(weights_file(args.synchformer, "synchformer"), scoring_device)
    if args.imagebind:
        from vab.evaluation.scorers.imagebind import ImageBindScorer

        imagebind = ImageBindScorer.from_file(weights_file(args.imagebind, "imagebind"), scoring_device)

    out = Path(args.out)
    if shard.world_size > 1:
        console.print(shard.describe(len(clips.clips), "clips"), highlight=False)
    with _Bar(console) as bar:
        report = ge.evaluate(
            args.checkpoint, clips, sampling, embedder, classifier,
            embedder_name=args.embedder, classifier_name=None if classifier is None else args.classifier,
            labels=args.label, real_mode=args.real, real_codec=decode, source=args.source, device=args.device,
            precision=args.precision, batch_size=args.batch_size,
            save_audio=out / "audio" if args.save_audio else None, progress=bar.update, ar_sampling=ar_sampling,
            records=out, shard=shard, table=args.table, extra=extra,
            extra_names={**field_specs, **video_specs}, desync=desync, imagebind=imagebind,
        )
    shard.close()  # every process is past its work; the group is not needed to write the report
    if report is None:  # not the main process: it wrote its clips' records, the main one merged them
        return 0
    with atomic_path(out / "generation.json") as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2))
    with atomic_path(out / "generation.md") as tmp:
        tmp.write_text(report.markdown())
    with atomic_path(out / "generation.csv") as tmp:
        tmp.write_text(report.csv())
    print_table(console, report)
    console.print(f"wrote {out / 'generation.json'}, {out / 'generation.md'} and {out / 'generation.csv'}",
                  markup=False)
    return 1 if report.failures else 0


def print_table(console, report) -> None:
    from rich.table import Table

    from vab.safetext import plain

    caption = (f"FAD: {report.embedder}; KL: {report.classifier or 'none'}" if report.table == "paper" else
               "; ".join(f"{k}: {v or 'not given'}" for k, v in report.scorers.items()))
    table = Table(title=f"generation: {report.clips} clips, real audio = {report.real_audio}", caption=caption)
    header, rows = report.rows()
    for name in header:
        table.add_column(name, justify="left" if name in ("model", "type", "precision", "device") else "right",
                         overflow="fold")
    for row in rows:
        table.add_row(plain(row[0]), *row[1:])
    console.print(table)
    for m in report.models:
        if m.note:
            console.print(plain(f"{m.name}: {m.note}"), style="yellow")
    if report.failures:
        console.print(f"[red]{len(report.failures)} clip(s) failed:")
        for f in report.failures:
            console.print(f"  {f['model'] or 'real audio'} {f['clip']}: {f['problem']}", markup=False, soft_wrap=True)


class _Bar:
    """One rich progress line per stage (real audio, then each model's generation)."""

    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console)
        self.tasks: dict[str, int] = {}

    def update(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done, total=total)

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def main(argv: list[str] | None = None) -> int:
    return run_script(parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
