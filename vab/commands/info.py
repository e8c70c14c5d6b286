"""`vab info CONFIG_OR_MODEL_DIR`: the configuration and the model's parameter counts.

Nothing is downloaded: the model is built on the ``meta`` device from the input
shapes each codec / frame encoder is known to have (or, for a model directory,
the shapes stored in its weights file).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from vab.checkpoint import build_model
from vab.checkpoint.directory import metadata_number
from vab.config import load_config
from vab.errors import ConfigError, VabError
from vab.filenames import WEIGHTS_FILE
from vab.model import PARTS
from vab.safetext import plain
from vab.visual import visual_dim
from vab.weights import read_header

# codebook geometry of the library codecs: (codebook_size, codebook_dim, frame_rate Hz, levels)
ENCODEC_24KHZ = (1024, 128, 75.0)
ENCODEC_LEVELS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
DAC_16KHZ = (1024, 8, 50.0, 12)


def codec_geometry(codec: Any) -> tuple[int, int, float, int]:
    """(codebook_size, codebook_dim, frame_rate, levels) of a codec config, without weights."""
    if codec.name == "encodec":
        if float(codec.bandwidth) not in ENCODEC_LEVELS:
            raise ConfigError(f"codec.bandwidth: {codec.bandwidth} is not one of {sorted(ENCODEC_LEVELS)} kbps")
        return (*ENCODEC_24KHZ, ENCODEC_LEVELS[float(codec.bandwidth)])
    if codec.name == "dac":
        return DAC_16KHZ
    if codec.name == "spectral":
        return int(codec.codebook_size), int(codec.n_fft) // 2 + 1, float(codec.frame_rate), int(codec.levels)
    raise ConfigError(f"codec.name: unknown codec {codec.name!r} (expected encodec, dac or spectral)")


def model_inputs(source: str, cfg: Any) -> tuple[tuple[int, ...], int, float]:
    """(codebooks shape ``[levels, size, dim]``, visual_dim, frame_rate) for a preset / file
    (from the config) or a model directory (from its weights file header)."""
    weights = Path(source) / WEIGHTS_FILE
    if weights.is_file():
        meta, shapes = read_header(weights)
        shape = shapes.get("codebooks", ())
        if len(shape) != 3:
            raise VabError(f"{weights}: tensor codebooks has shape {shape}, expected (levels, codebook_size, dim)")
        return shape, int(metadata_number(weights, meta, "visual_dim", int, 1)), float(
            metadata_number(weights, meta, "frame_rate", float, 0))
    size, dim, frame_rate, levels = codec_geometry(cfg.codec)
    if cfg.model.levels > levels:
        raise ConfigError(f"model.levels is {cfg.model.levels} but codec {cfg.codec.name} has {levels} levels")
    return (int(cfg.model.levels), size, dim), visual_dim(cfg.visual), frame_rate


def build_meta_model(source: str, cfg: Any) -> torch.nn.Module:
    """The model of `cfg` on the meta device (no memory, no weights)."""
    shape, vdim, frame_rate = model_inputs(source, cfg)
    with torch.device("meta"):
        return build_model(cfg, torch.empty(shape), vdim, frame_rate)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.source, args.overrides)
    model = build_meta_model(args.source, cfg)
    console = Console()
    if not args.params_only:
        console.print(Syntax(OmegaConf.to_yaml(cfg), "yaml", theme="ansi_dark", background_color="default"))
    counts = model.parameter_counts()

    table = Table(title=plain(f"{cfg.model.type} model: {args.source}"))
    table.add_column("part")
    table.add_column("parameters", justify="right")
    table.add_column("share", justify="right")
    labels = {
        "total": "total",
        "expert_layers": f"expert layers (first {model.expert_layers})",
        "embeddings": "embeddings",
        "attention": "attention",
        "experts": "modality experts",
        "shared_ffn": "shared FFN",
        "heads": f"heads ({len(model.heads)} levels)",
    }
    for part in PARTS:
        n = counts[part]
        table.add_row(labels[part], f"{n:,} ({n / 1e6:.1f}M)", f"{100 * n / max(counts['total'], 1):.1f}%")
    console.print(table)
    console.print(
        f"sequence: {model.num_frames} visual frames ({model.fps:g} fps) + {model.num_audio_frames} audio frames "
        f"({model.frame_rate:g} Hz) x {model.levels} levels, {model.codebook_size} tokens per level; "
        f"frozen codebooks {tuple(model.codebooks.shape)}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction, help: str) -> None:
    p = subparsers.add_parser(
        "info",
        help=help,
        description="Print the configuration of a preset, YAML file or model directory, and the "
        "model's parameter counts (total, expert layers, per part). Downloads nothing.",
    )
    p.add_argument("source", metavar="CONFIG_OR_MODEL_DIR", help="preset name (e.g. vab-encodec), YAML file or model directory")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.layers=12")
    p.add_argument("--params-only", action="store_true", help="print only the parameter table")
    p.set_defaults(func=run)
