"""What the offline spectral codec lets a perfect model reach on a world (issue 30).

Class agreement cannot exceed the judge's score on the codec's round trip of the real test
audio (encode, decode): the "codec ceiling" of the learning-curve tables.  For each named
variant of the `spectral` codec (the preset's codec settings plus the variant's overrides),
this fits the codec on the world's training clips as `vab extract` does (the first
``extract.codec_fit_clips`` of them, an override a variant may set too), and scores the real
test audio and its round trip with the demo's judge (:func:`vab.demo.soundtracks.fit_judge`):
class and timing agreement, with the tokens per second each variant costs the model.

    python benchmarks/codec_ceiling.py --world /tmp/i30/tunes \\
        --variant default= --variant fft2048=codec.n_fft=2048 \\
        --variant fit64=extract.codec_fit_clips=64 --variant cb1024=codec.codebook_size=1024
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vab.codecs import build_codec
from vab.config import load_config
from vab.data.extract import fit_spectral_codec
from vab.data.manifest import read_manifest
from vab.demo.soundtracks import fit_judge
from vab.errors import VabError


def variant(text: str) -> tuple[str, list[str]]:
    """``NAME=override,override`` (``NAME=`` for the preset's own codec)."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=override,override (NAME= for none)")
    return name, [o for o in rest.split(",") if o]


def ceiling(world: Path, cfg) -> dict[str, float]:
    """The judge's scores on the real test audio and on its round trip through `cfg`'s codec."""
    codec = build_codec(cfg.codec)
    t0 = time.perf_counter()
    clips = fit_spectral_codec(codec, read_manifest(world / "manifest.csv"), cfg.extract)
    fit_seconds = time.perf_counter() - t0
    judge = fit_judge(world, codec, cfg.extract.duration, "test")
    ref = judge.reference
    return {"tokens_per_second": cfg.codec.levels * cfg.codec.frame_rate, "real": ref["judge_on_real_test"],
            "codec": ref["judge_on_codec_test"], "timing_codec": ref["timing_codec"], "fit_seconds": fit_seconds,
            "fit_clips": clips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True, help="a `vab synth` folder (manifest.csv, world.json)")
    parser.add_argument("--variant", type=variant, action="append", required=True,
                        help="NAME=override,override (e.g. fft2048=codec.n_fft=2048); repeat for each")
    parser.add_argument("--config", default="tiny", help="the preset whose codec the overrides change (default tiny)")
    args = parser.parse_args()
    if not (args.world / "manifest.csv").is_file():
        raise SystemExit(f"{args.world}: no manifest.csv (make the world with `vab synth`)")
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        raise SystemExit(f"--variant: names repeat ({', '.join(names)})")
    try:  # every variant's settings checked before any work
        configs = {name: load_config(args.config, overrides) for name, overrides in args.variant}
    except VabError as exc:
        raise SystemExit(f"error: {exc}") from None
    for name, cfg in configs.items():
        if cfg.codec.name != "spectral":
            raise SystemExit(f"--variant {name}: this measures the spectral codec (got codec.name={cfg.codec.name})")

    table = Table(title=f"codec ceiling on {args.world}")
    for column in ("variant", "overrides", "tokens / s", "fitted on clips", "judge on real test",
                   "on codec round trip", "timing (round trip)", "fit s"):
        table.add_column(column)
    for name, overrides in args.variant:
        row = ceiling(args.world, configs[name])
        table.add_row(name, " ".join(overrides) or "(preset)", f"{row['tokens_per_second']:.0f}", str(row["fit_clips"]),
                      f"{row['real']:.3f}",
                      f"{row['codec']:.3f}", f"{row['timing_codec']:.3f}", f"{row['fit_seconds']:.0f}")
        print(f"{name}: round trip {row['codec']:.3f} (real {row['real']:.3f})", flush=True)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
