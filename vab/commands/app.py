"""`vab app --checkpoint DIR [--index DIR] [--classifier DIR]`: the web page."""

from __future__ import annotations

import argparse

from rich.console import Console

from vab.app.backend import Backend, Limits
from vab.app.server import require_gradio, serve
from vab.app.workspace import Workspace
from vab.errors import VabError
from vab.precision import add_precision_option, check_generation_precision
from vab.utils import add_device_option

EPILOG = """\
examples:
  vab app --checkpoint vab-demo/model --index vab-demo/index --classifier vab-demo/classify-audio-visual
  vab app --checkpoint models/vab-dac --c2f-checkpoint models/c2f-dac --port 8080
  vab app --checkpoint runs/tiny/model --host 0.0.0.0 --concurrency 2     # reachable from other machines

The page (open the printed address in a browser) has five tabs:
  Generate  upload a video (or pick a held-out clip of the demo), set the decoding settings and the seed:
            the video with its new soundtrack, wav / mp4 downloads named clip-vab-seed0.* and frames over
            the spectrogram
  Edit      the video's own soundtrack over a time axis, spans regenerated (typed as 2.5-4.0,7-8 or clicked
            on it, and drawn on it; spans past the clip's end are refused), the result beside the original
  Continue  a prompt audio (uploaded or recorded) continued along the video
  Search    (with --index, from vab embed) what the index holds, and the clips whose other modality best
            fits a query video or audio
  Classify  (with --classifier, repeatable) what each classifier reads and the labels it knows, and the
            top-5 labels of a clip; an audio file goes to an audio classifier when one is loaded

The models are loaded once.  Generation runs window by window as `vab generate` does (a long video
needs no more memory than a short one), and the same file and seed give the same soundtrack as
`vab generate`.  --concurrency jobs run at once and --queue-size more wait; each job's status says
its place in the queue, when it should start and the time left.  Stop ends a job after its current
window, and the job keeps its slot until then.  Uploads are refused above --max-upload-mb and media
above --max-seconds, with one line saying why.  Everything the server writes lives in one temporary
folder: results are deleted --keep-minutes after they were made, and the folder when the server
stops.  Nothing is fetched from the internet; the page binds to 127.0.0.1 unless --host says
otherwise.
"""


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "app", help=help,
        description="Serve a local web page (Gradio) over a generation model, an embedding index and classifiers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="generation model directory (config.yaml + model.safetensors)")
    p.add_argument("--c2f-checkpoint", help="coarse-to-fine model directory (DAC: fills the 8 fine levels)")
    p.add_argument("--index", help="embedding index (from vab embed) for the Search tab")
    p.add_argument("--classifier", action="append", default=[], metavar="DIR",
                   help="classifier directory (from finetune/classification.py) for the Classify tab; repeat for more")
    n = p.add_argument_group("server")
    n.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    n.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    n.add_argument("--concurrency", type=int, default=1, help="jobs that run at once (default 1)")
    n.add_argument("--queue-size", type=int, default=16, help="jobs that may wait (default 16)")
    n.add_argument("--max-upload-mb", type=int, default=500, help="largest upload in MB (default 500)")
    n.add_argument("--max-seconds", type=float, default=1800.0,
                   help="longest video or audio accepted, in seconds (default 1800 = 30 min)")
    n.add_argument("--keep-minutes", type=float, default=60.0, help="results are deleted after this (default 60)")
    m = p.add_argument_group("models")
    add_device_option(m, "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    add_precision_option(m)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if not 0 < args.port < 65536:
        raise VabError(f"--port must be in 1..65535, got {args.port}")
    limits = Limits(concurrency=args.concurrency, queue_size=args.queue_size, max_upload_mb=args.max_upload_mb,
                    max_seconds=args.max_seconds, keep_seconds=args.keep_minutes * 60).validate()
    check_generation_precision(args.precision)
    require_gradio()  # before minutes of model loading, not after
    workspace = Workspace(keep=limits.keep_seconds)
    workspace.hold_temporary_files()  # before anything imports Gradio or writes a temporary file
    try:
        backend = Backend.load(args.checkpoint, args.c2f_checkpoint, workspace=workspace, limits=limits,
                               index=args.index, classifiers=args.classifier, device=args.device,
                               precision=args.precision)
    except BaseException:
        workspace.close()
        raise
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]note: serving on {args.host}: anyone who can reach this machine can use the page")

    def ready(url: str) -> None:
        # plain and on stdout: scripts and tests wait for this line
        print(f"vab app: serving {backend.describe()} at {url} (Ctrl-C to stop); results in "
              f"{workspace.root} for {args.keep_minutes:g} min", flush=True)

    serve(backend, args.host, args.port, ready=ready)
    return 0
