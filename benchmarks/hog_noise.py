"""`hog` features of flat, noisy, dark and fading frames against real ones (issue 24).

For each kind of frame: the feature vector's size relative to a textured frame's
(``sqrt(BINS * sum(g * g))``, "full"), and with ``--before`` (the path of an earlier
``vab/visual/hog.py``) that version's size and the cosine between the two.  Frames: a
constant grey, flat frames with 1 / 2 / 3 grey levels of random noise (256 x 192), the dark,
fading, noisy and plain clips of the real-media corpus (tests/corpus.py, h264), and the
first 16 training clips of both synthetic worlds (`vab synth`, 3 s at 8 fps).

    python benchmarks/hog_noise.py --before /path/to/old/vab/visual/hog.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/corpus.py

from tests.corpus import build_corpus  # noqa: E402
from vab import media  # noqa: E402
from vab.data.synthetic import synthesize  # noqa: E402
from vab.visual.hog import BINS, HogEncoder, pyramid  # noqa: E402

GRID = 8


def load_hog(path: Path):
    spec = importlib.util.spec_from_file_location("hog_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HogEncoder(grid=GRID)


def frame_sets(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sets = {"constant grey, 256 x 192": np.full((4, 192, 256, 3), 16, np.uint8)}
    for n in (1, 2, 3):
        noise = rng.integers(-n, n + 1, (4, 192, 256, 3))
        sets[f"flat, {n} grey level{'s' if n > 1 else ''} of random noise, 256 x 192"] = (16 + noise).astype(np.uint8)
    items = build_corpus(folder / "corpus", long=False)
    for name in ("dark_noisy", "fade_in", "static_noisy", "letterboxed", "reference"):
        item = items[name]
        frames, times = media.read_frames(item.path, 10.0)
        shown = [i for i, t in enumerate(times) if not any(0 <= t - f < 0.05 for f in item.flashes)]  # no flashes
        sets[f"corpus `{name}` (h264, 64 x 48, 10 fps)"] = frames[shown]
    for world in ("demo", "shapes"):
        synthesize(folder / world, classes=8, train=16, valid=0, test=0, seconds=3.0, fps=8.0, width=64, height=64,
                   seed=0, world=world)
        paths = sorted((folder / world).rglob("*.mp4"))
        sets[f"{world} world: 16 clips at 8 fps"] = np.concatenate([media.read_frames(p, 8.0)[0] for p in paths])
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="an earlier vab/visual/hog.py to compare with")
    args = p.parse_args()
    full = float(np.sqrt(BINS * sum(g * g for g in pyramid(GRID))))
    now = HogEncoder(grid=GRID)
    before = load_hog(args.before) if args.before else None
    with tempfile.TemporaryDirectory() as tmp:
        sets = frame_sets(Path(tmp))
    head = ["frames", "frames n", "after: size / full (mean, min, max)"]
    if before is not None:
        head += ["before: size / full (mean)", "cosine after / before (median where both > 0.5)", "noise-only before, 0 now"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for name, frames in sets.items():
        a = now.encode(frames)
        na = a.norm(dim=1).numpy() / full
        row = [name, str(len(frames)), f"{na.mean():.2f} ({na.min():.2f}, {na.max():.2f})"]
        if before is not None:
            b = before.encode(frames)
            nb = b.norm(dim=1).numpy() / full
            cos = torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()
            both = (na > 0.5) & (nb > 0.5)
            row += [f"{nb.mean():.2f}", f"{np.median(cos[both]):.4f}" if both.any() else "-",
                    str(int(((nb > 0.5) & (na < 0.05)).sum()))]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
