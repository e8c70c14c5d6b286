"""`vab search INDEX --query CLIP_OR_FILE --by video --in audio`: cross-modal search."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vab.errors import VabError
from vab.safetext import plain
from vab.search import Embedder, Index, search
from vab.utils import add_device_option

EPILOG = """\
examples:
  vab search index/videos --query dog.mp4 --by video --in audio     # which clips sound like this video looks
  vab search index/videos --query bark.wav --by audio --in video     # which videos fit this sound
  vab search index/vggsound --query clip0042 --by video --in audio --top 10 --json

The query is a clip id of the index (its stored embedding is used) or a media file,
embedded on the fly (first model window) with the model that built the index
(--checkpoint to use another copy of it: its weights must be the ones the index records,
another model is refused).  Scores are cosine similarities.
"""


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "search", help=help,
        description="Query an embedding index (`vab embed`) across modalities.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("index", metavar="INDEX_DIR", help="folder written by `vab embed`")
    p.add_argument("--query", required=True, help="clip id in the index, or a video / audio file")
    p.add_argument("--by", choices=["video", "audio"], default="video", help="modality of the query (default video)")
    p.add_argument("--in", dest="within", choices=["audio", "video"], default=None,
                   help="modality searched (default: the other one)")
    p.add_argument("--top", type=int, default=5, help="results to show (default 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--checkpoint", help="model directory or Hub id for file queries "
                   "(default: the one recorded in the index)")
    add_device_option(p, "cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    index = Index.load(args.index)
    within = args.within or ("audio" if args.by == "video" else "video")
    vector = query_vector(index, args.index, args.query, args.by, args.checkpoint, args.device)
    hits = search(index, vector, within, args.top)
    results = [
        {"rank": r + 1, "id": index.ids[i], "path": index.paths[i], "cosine": round(score, 6),
         "labels": index.labels[i] if index.labels else []}
        for r, (i, score) in enumerate(hits)
    ]
    if args.json:
        print(json.dumps({"query": args.query, "by": args.by, "in": within, "results": results}, indent=1,
                         allow_nan=False))
    else:
        show(results, args.query, args.by, within)
    return 0


def query_vector(index: Index, where: str, query: str, by: str, checkpoint: str | None, device: str):
    """``[W]``: the stored embedding of clip `query`, or the embedding of the file `query` by the
    model that made the index (stored at `where`)."""
    row = index.position(query)
    if row is not None:
        return index.embeddings(by)[row]
    if not Path(query).expanduser().is_file():
        raise VabError(f"{query}: neither a clip id of the index nor a file")
    vector = Embedder.for_index(index, where, checkpoint, device).embed_media(Path(query).expanduser(), by)
    if not bool(vector.isfinite().all()):
        raise VabError(f"{query}: its {by} embedding is not finite (NaN or inf)")
    return vector


def show(results: list[dict], query: str, by: str, within: str) -> None:
    table = Table(title=plain(f"{query} ({by}) -> nearest {within}"))
    for name, justify in [("rank", "right"), ("id", "left"), ("path", "left"), ("labels", "left"), ("cosine", "right")]:
        table.add_column(name, justify=justify, overflow="fold")
    for r in results:  # ids, paths and labels are the user's text, not rich markup
        table.add_row(str(r["rank"]), plain(r["id"]), plain(r["path"]), plain(", ".join(r["labels"])),
                      f"{r['cosine']:.4f}")
    Console().print(table)
