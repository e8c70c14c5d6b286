"""`vab generate VIDEOS... --checkpoint DIR --out DIR`: soundtracks for videos."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vab.errors import MediaError, VabError, describe
from vab.files import InputGuard, WriteError
from vab.generation.conditions import parse_spans
from vab.generation.generator import Generator, Request
from vab.generation.inputs import expand_inputs, unique_names
from vab.generation.outputs import choose_outputs, remove_stale_temporaries, write_recorded
from vab.generation.sampling import add_sampling_arguments, sampling_from_args
from vab.precision import add_precision_option, check_generation_precision
from vab.safetext import plain
from vab.sharding import Shard
from vab.utils import add_batch_size_option, add_device_option, check_writable_dir

EPILOG = """\
examples:
  vab generate clip.mp4 --checkpoint runs/tiny/model --out out/
  vab generate videos/ 'more/**/*.mov' --checkpoint models/vab-encodec --out out/ --steps 16 --cfg 5 --guidance-stop 1 --temperature 1   # the paper's sampling
  vab generate clip.mp4 --checkpoint models/vab-dac --c2f-checkpoint models/c2f-dac --out out/
  vab generate clip.mp4 --checkpoint DIR --out out/ --edit 2.5-4.0,7-8     # regenerate two spans only
  vab generate clip.mp4 --checkpoint DIR --out out/ --prompt door.wav --prompt-seconds 2
  vab generate clip.mp4 --checkpoint org/vab-encodec --out out/           # a Hugging Face Hub id
  vab generate clip.mp4 --checkpoint org/vab-dac@v1.0 --c2f-checkpoint org/c2f-dac --out out/
  accelerate launch --num_processes 8 -m vab generate videos/ --checkpoint DIR --out out/   # 8 GPUs

Under `accelerate launch` each process generates one contiguous block of the video list
(names are decided over all of them), so the files are those one process would write.

--checkpoint and --c2f-checkpoint take a model directory or a Hugging Face Hub id
(org/name, or org/name@revision for a branch, tag or commit); a local folder of the same
spelling wins.  An id is fetched once (config.yaml, model.safetensors, codec.safetensors,
README.md only) into the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub); with
HF_HUB_OFFLINE=1 only the cache is read.

For each video: OUT/<name>.wav (or .flac), OUT/<name>.mp4 (the original video stream copied,
the new audio as its only track, as long as the video) and with --plot OUT/<name>.png.
<name> is the file's stem; videos from different folders that share a stem are named
after their folders too (a/clip.mp4 -> a__clip, b/clip.mp4 -> b__clip).
An input is never written over: when OUT/<name>.* would be one of the inputs (say
`vab generate clip.mp4 --out .`: clip.mp4 itself), or holds the outputs of another file
(another clip.mp4 generated into OUT earlier), the outputs are named <name>-vab.*
(then <name>-vab2.* ...).  OUT/.<name>.vab.json records the source file (path, size,
mtime) and the settings.  Videos whose outputs all exist and were made from the same
file are skipped (so a killed batch re-run continues) unless --overwrite.  Every file
is written to a temporary name and renamed when complete, with your umask's permissions.
Files that cannot be used are listed at the end and make the exit code 1; the others
are still generated.

Long videos are generated in windows of the model's trained length; each window carries
the last --overlap seconds of the previous one as given tokens, and the last window ends
at the video's end.  --batch-size videos are sampled together (one window of each per
sampler call); the result for a video does not depend on the batch size.
Each video's random draws come from --seed and a hash of the file's content: the same
file gives the same soundtrack whatever its name, folder or company, and different
videos never share their noise.
With --duration only the first seconds are generated, and the mp4 is cut there too
(video packets are copied, so the cut is exact to a frame).  --edit spans a-b regenerate tokens round(a*r) .. round(b*r)-1
at the codec frame rate r; every other token of the video's own soundtrack is kept.
"""

FORMATS = ("wav", "flac")


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "generate",
        help=help,
        description="Generate audio for videos with a VAB model: files, folders (searched recursively) or glob "
        "patterns; any length.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders or glob patterns")
    p.add_argument("--checkpoint", required=True,
                   help="model directory (config.yaml + model.safetensors) or Hugging Face Hub id org/name[@revision]")
    p.add_argument("--c2f-checkpoint", help="coarse-to-fine model directory or Hub id (DAC: fills the 8 fine levels)")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    s = p.add_argument_group("sampling")
    add_sampling_arguments(s)
    w = p.add_argument_group("windows and devices")
    w.add_argument("--duration", type=float, help="seconds from the start to generate (default: the whole video)")
    w.add_argument("--overlap", type=float, help="seconds each window carries from the previous one "
                   "(default: a quarter of the model's window, 2.5 s for 10-s models)")
    add_batch_size_option(w, 1, "videos sampled together (default 1)")
    add_device_option(w, "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    add_precision_option(w)
    o = p.add_argument_group("outputs")
    o.add_argument("--format", default="wav", choices=FORMATS, help="audio file format (default wav)")
    o.add_argument("--no-mux", action="store_true", help="write the audio only, no mp4")
    o.add_argument("--overwrite", action="store_true", help="regenerate videos whose outputs exist")
    o.add_argument("--plot", action="store_true", help="also write a PNG: frames above the spectrogram")
    e = p.add_argument_group("editing and continuation")
    e.add_argument("--edit", metavar="SPANS", help="regenerate only these spans of each video's own soundtrack, "
                   "e.g. 2.5-4.0,7-8 (seconds); everything else is kept token for token")
    e.add_argument("--prompt", metavar="AUDIO", help="continue this audio: its tokens are given at the start")
    e.add_argument("--prompt-seconds", type=float, help="use only the first seconds of --prompt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    check_generation_precision(args.precision)
    out = Path(args.out).expanduser()
    ensure_writable(out)
    sampling = sampling_from_args(args)
    if args.edit and args.prompt:
        raise VabError("use either --edit or --prompt, not both")
    if args.prompt_seconds is not None and not args.prompt:
        raise VabError("--prompt-seconds needs --prompt")
    if args.duration is not None and not args.duration > 0:
        raise VabError(f"--duration must be > 0 seconds, got {args.duration}")
    spans = parse_spans(args.edit) if args.edit else None
    settings = {"checkpoint": str(args.checkpoint), "c2f_checkpoint": args.c2f_checkpoint, "duration": args.duration,
                "edit": args.edit, "prompt": args.prompt, **vars(sampling)}
    shard = Shard.current()  # under `accelerate launch`: this process's block of the videos

    videos, problems = expand_inputs(args.inputs, exclude=out)
    plans = plan_batch(out, videos, args)
    shard.barrier()  # every process plans before any writes, so all see the same folder
    generator = Generator.from_pretrained(
        args.checkpoint, args.c2f_checkpoint, device=shard.device(args.device), precision=args.precision,
        overlap=args.overlap, batch_size=args.batch_size,
    )
    if generator.coarse_only:
        console.print(f"[yellow]note: decoding only the {generator.model.levels} coarse DAC levels "
                      "(no --c2f-checkpoint): expect muffled audio")
    prompt = generator.tokenize_prompt(args.prompt, args.prompt_seconds) if args.prompt else None

    if shard.world_size > 1:
        console.print(shard.describe(len(plans), "videos"), highlight=False)
    plans = shard.take(plans)  # names were chosen over all the inputs, so they do not depend on the processes
    problems = problems if shard.is_main else []  # input problems are reported once
    rows: list[tuple] = []
    requests = []
    for video, outputs, done in plans:
        if done and not args.overwrite:
            rows.append((str(video), None, None, None, None, "exists, skipped"))
            continue
        remove_stale_temporaries(outputs)
        requests.append(Request(source=video, duration=args.duration, edit=spans, prompt=prompt, key=outputs))

    with _Bar(console, len(requests)) as bar:
        for outcome in generator.run(requests, sampling, progress=bar.window):
            video = Path(outcome.request.source)
            if outcome.error is None:
                try:
                    write_recorded(outcome.result, video, outcome.request.key, outcome.request.duration, settings)
                except WriteError:  # disk full, no permission: the next video would fail the same way
                    raise
                except VabError as exc:
                    outcome.error = exc
                except OSError as exc:  # folder removed: no point going on
                    raise VabError(f"{out}: cannot write outputs for {video} ({exc.strerror or exc})") from None
                except Exception as exc:  # a muxer or plotting failure on an odd file: that video's error
                    outcome.error = exc
            if outcome.error is not None:
                problems.append((str(video), reason(outcome.error, video)))
            else:
                r = outcome.result
                rows.append((str(video), r.seconds, r.windows, r.timings["total"], r.real_time_factor,
                             ", ".join(p.name for p in outcome.request.key.paths())))
            bar.finished(outcome.request)

    print_summary(console, rows, problems, out)
    shard.close()
    return 1 if problems else 0


# ---------------------------------------------------------------------- outputs
def ensure_writable(out: Path) -> None:
    """Prove a file can be written in `out` (or that it can be created), before any work is
    done; creates nothing, so a refused run leaves no empty folder."""
    if not out.exists():
        check_writable_dir(out, "to the output folder")
        return
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise VabError(f"{out}: cannot write to the output folder ({exc.strerror or exc})") from None


def plan_batch(out: Path, videos: list[Path], args: argparse.Namespace) -> list[tuple[Path, object, bool]]:
    """(video, its outputs, whether they exist and were made from it) for each video.
    Output names are never one of the inputs (videos, --prompt): see `choose_outputs`."""
    guard = InputGuard([*videos, *([args.prompt] if args.prompt else [])])
    names = unique_names(videos)
    taken = set(names.values())
    plans = []
    for video in videos:
        outputs, done = choose_outputs(out, names[video], video, guard, taken - {names[video]}, args.format,
                                       mux=not args.no_mux, plot=args.plot)
        taken.add(outputs.audio.stem)
        plans.append((video, outputs, done))
    return plans


def reason(exc: Exception, video: Path) -> str:
    """The problem without the file name the list already shows (one line)."""
    if isinstance(exc, MediaError):
        return exc.problem
    if not isinstance(exc, VabError):
        return describe(exc)
    text = str(exc)
    prefix = f"{video}: "
    return text[len(prefix):] if text.startswith(prefix) else text


# ---------------------------------------------------------------------- progress and summary
class _Bar:
    """A rich progress bar: one line for the videos, one per video being generated (its windows)."""

    def __init__(self, console, total: int):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.videos = self.progress.add_task("videos", total=total)
        self.tasks: dict[int, int] = {}

    def window(self, request, done: int, total: int) -> None:
        key = id(request)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"  {Path(request.source).name} windows", total=total)
        self.progress.update(self.tasks[key], completed=done, total=total)

    def finished(self, request) -> None:
        task = self.tasks.pop(id(request), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.videos)

    def __enter__(self) -> "_Bar":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def print_summary(console, rows: list[tuple], problems: list[tuple[str, str]], out: Path) -> None:
    if rows:
        table = Table(title=plain(f"vab generate -> {out}"))
        for name, justify in [("file", "left"), ("seconds", "right"), ("windows", "right"),
                              ("time (s)", "right"), ("RTF", "right"), ("outputs", "left")]:
            table.add_column(name, justify=justify, overflow="fold")
        for file, seconds, windows, taken, rtf, outputs in rows:
            if seconds is None:  # file names are shown as they are, never read as rich markup
                table.add_row(plain(file), "", "", "", "", plain(outputs))
            else:
                table.add_row(plain(file), f"{seconds:.2f}", str(windows), f"{taken:.1f}", f"{rtf:.2f}", plain(outputs))
        console.print(table)
        console.print("RTF: wall seconds per second of audio (below 1 is faster than real time)")
    if problems:
        console.print(f"[red]{len(problems)} input(s) failed:")
        for file, why in problems:
            # one line per file, whatever the terminal width (easy to grep)
            console.print(f"  {file}: {why}", markup=False, highlight=False, soft_wrap=True)
