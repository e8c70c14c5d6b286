"""`vab extract MANIFEST --out DIR`: videos -> audio tokens + frame features."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vab.config import load_config
from vab.data.extract import extract
from vab.data.manifest import read_manifest
from vab.data.store import FAILURES_FILE, META_FILE
from vab.filenames import CODEC_FILE
from vab.files import InputGuard
from vab.safetext import plain
from vab.utils import add_batch_size_option, add_device_option

EPILOG = """\
examples:
  vab extract clips.csv --out data/mine                  # offline default: spectral codec + hog-colour encoder
  vab extract videos/ --out data/mine --duration 4 --fps 2
  vab extract vggsound.csv --root /data/vggsound --out data/vgg --config vab-encodec
  vab extract balanced_train_segments.csv --class-index class_labels_indices.csv \\
      --root /data/audioset --out data/as20k --config vab-dac visual.path=/weights/eva02_l14.bin
  accelerate launch recipes/extract.py clips.csv --out data/mine --config vab-encodec   # many GPUs

manifests: CSV (header with `path`, optional `id`, `label` or `labels` (a;b), `split`, `start`),
JSONL (same keys), the VGGSound CSV, an AudioSet segment CSV (+ --class-index), or a folder.
A re-run continues where an interrupted one stopped; failed clips are listed in DIR/failures.jsonl.
"""


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `vab extract` and `recipes/extract.py`."""
    p.add_argument("manifest", help="manifest file (CSV / JSONL / VGGSound / AudioSet) or a folder of media files")
    p.add_argument("--out", required=True, help="output directory (created; re-running resumes)")
    p.add_argument("--config", help="preset name or YAML whose codec / visual / extract sections to use")
    p.add_argument("--codec", choices=["spectral", "encodec", "dac"], help="audio codec (default: spectral, offline)")
    p.add_argument("--visual", choices=["pixels", "hog", "hog-colour", "clip"],
                   help="frame encoder (default: hog-colour, offline, shape and colour; pixels: offline, colours "
                        "only; hog: offline, shape only; clip: the paper's, needs weights)")
    p.add_argument("--duration", type=float, help="seconds per clip; longer clips are cut, shorter padded")
    p.add_argument("--fps", type=float, help="visual frames stored per second")
    p.add_argument("--root", help="folder holding the media files (VGGSound / AudioSet manifests; relative paths)")
    p.add_argument("--class-index", help="AudioSet class_labels_indices.csv")
    p.add_argument("--format", default="auto", choices=["auto", "csv", "jsonl", "vggsound", "audioset"])
    p.add_argument("--name-template", help="file name template for VGGSound / AudioSet rows, e.g. '{ytid}_{start:06d}'")
    p.add_argument("--split", help="split for rows that name none (AudioSet: overrides the one taken from the file name)")
    p.add_argument("--full-videos", action="store_true",
                   help="VGGSound / AudioSet files are whole videos: cut each clip at its start_seconds "
                        "(default: files hold only the segment)")
    add_batch_size_option(p, None, "clips per codec / encoder batch")
    p.add_argument("--workers", type=int, help="decoding worker processes")
    p.add_argument("--audio-only", action="store_true", help="store tokens only (audio classification sets)")
    p.add_argument("--retry-failed", action="store_true", help="try clips listed in failures.jsonl again")
    add_device_option(p, None, "cpu, cuda, cuda:N, mps or auto (default: extract.device, auto)")
    # key=value words anywhere on the line are config overrides (see vab.cli.parse_with_overrides)
    p.set_defaults(overrides=[])


def config_from_args(args: argparse.Namespace):
    overrides = list(args.overrides)
    for flag, key in [
        ("codec", "codec.name"),
        ("visual", "visual.name"),
        ("duration", "extract.duration"),
        ("fps", "extract.fps"),
        ("batch_size", "extract.batch_size"),
        ("workers", "extract.num_workers"),
        ("device", "extract.device"),
    ]:
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.audio_only:
        overrides.append("extract.audio_only=true")
    if args.device:
        overrides.append(f"visual.device={args.device}")
    return load_config(args.config, overrides)


def run(args: argparse.Namespace, *, rank: int = 0, world_size: int = 1, barrier=lambda: None) -> int:
    console = Console(stderr=True)
    cfg = config_from_args(args)
    written = [Path(args.out) / name for name in (META_FILE, FAILURES_FILE, CODEC_FILE)]
    InputGuard([p for p in (args.manifest, args.class_index) if p]).refuse(written)
    manifest = read_manifest(
        args.manifest, fmt=args.format, root=args.root, class_index=args.class_index,
        name_template=args.name_template, split=args.split, trimmed=not args.full_videos,
    )
    summary = extract(
        manifest,
        args.out,
        cfg.codec,
        cfg.visual,
        cfg.extract,
        rank=rank,
        world_size=world_size,
        barrier=barrier,
        retry_failed=args.retry_failed,
        console=console,
    )
    if rank == 0:
        print_summary(console, summary, args.out)
    return 1 if summary.failed or summary.failed_before else 0


def print_summary(console, summary, out: str) -> None:
    table = Table(title=plain(f"extraction -> {out}"), show_header=False)
    table.add_row("clips in manifest", str(summary.total))
    table.add_row("already done", str(summary.skipped))
    table.add_row("extracted now", str(summary.extracted))
    table.add_row("failed now", str(summary.failed))
    if summary.failed_before:
        table.add_row("failed earlier (not retried)", str(summary.failed_before))
    table.add_row("wall time", f"{summary.seconds:.1f} s ({summary.clips_per_second:.2f} clips/s)")
    table.add_row("decode / codec / visual", f"{summary.decode_seconds:.1f} / {summary.codec_seconds:.1f} / {summary.visual_seconds:.1f} s")
    console.print(table)
    for reason, count in sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:10]:
        console.print(f"  failed x{count}: {reason}", markup=False, highlight=False)  # reasons hold file names
    if summary.failed or summary.failed_before:
        console.print(plain(f"{summary.failed + summary.failed_before} clip(s) failed: see {out}/failures.jsonl"),
                      style="yellow", soft_wrap=True)


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "extract",
        help=help,
        description="Decode each clip of a manifest, tokenize its audio with the codec and encode its frames, "
        "and store everything as a Hugging Face data set in --out.",
        epilog=EPILOG + "\nconfig overrides: any key=value word, e.g. codec.bandwidth=6 extract.max_short_side=224\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_extract_arguments(p)
    p.set_defaults(func=run)
