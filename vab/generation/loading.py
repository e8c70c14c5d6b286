"""The parts generation needs next to the model (codec, frame encoder, coarse-to-fine
model), each checked against the model so a mismatch is one clear error, not noise."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from vab.codecs import AudioCodec, build_codec
from vab.errors import VabError
from vab.visual import VisualEncoder, build_visual_encoder


def load_codec(model: Any, directory: str | Path | None = None) -> AudioCodec:
    """The codec of ``model.config.codec``; a fitted spectral codec is read from
    ``directory/codec.safetensors``, else rebuilt from the codebooks the model stores
    (for the spectral codec those are the fitted centroids themselves)."""
    codec = build_codec(model.config.codec, directory=directory)
    if codec.name == "spectral" and not codec.is_fitted:
        codec = _spectral_from_codebooks(model)
    check_codec(model, codec, directory)
    return codec


def _spectral_from_codebooks(model: Any) -> AudioCodec:
    from safetensors.torch import save_file

    from vab.codecs.spectral import FLOOR_DB, SpectralCodec

    cfg = model.config.codec
    codec = SpectralCodec(
        sample_rate=int(cfg.sample_rate), frame_rate=float(cfg.frame_rate), n_fft=int(cfg.n_fft),
        levels=int(model.levels), codebook_size=int(model.codebook_size), griffin_lim_iters=int(cfg.griffin_lim_iters),
    )
    state = {
        "centroids": model.codebooks.detach().float().cpu().contiguous(),
        "sample_rate": torch.tensor(codec.sample_rate),
        "hop_length": torch.tensor(codec.hop_length),
        "n_fft": torch.tensor(codec.n_fft),
        "floor_db": torch.tensor(FLOOR_DB),
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_file(state, str(Path(tmp) / "codec.safetensors"))
        return codec.load_state_file(Path(tmp) / "codec.safetensors", label="the model's stored codebooks")


def check_codec(model: Any, codec: AudioCodec, where: str | Path | None = None) -> None:
    """Raise VabError if `codec` is not the one `model` was trained with."""
    where = f"{where}: " if where else ""
    if abs(float(codec.frame_rate) - float(model.frame_rate)) > 1e-6:
        raise VabError(f"{where}the {codec.name} codec runs at {codec.frame_rate:g} Hz but the model at {model.frame_rate:g} Hz")
    if codec.num_codebooks < model.levels or codec.codebook_size != model.codebook_size:
        raise VabError(
            f"{where}the {codec.name} codec has {codec.num_codebooks} x {codec.codebook_size} codebooks; "
            f"the model reads {model.levels} x {model.codebook_size}"
        )
    for k in range(model.levels):
        mine, theirs = codec.codebook_vectors(k).float().cpu(), model.codebooks[k].detach().float().cpu()
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
            raise VabError(
                f"{where}the {codec.name} codec's level-{k} codebook differs from the one the model was trained "
                "with (other codec weights or codec.safetensors?)"
            )


def load_visual(model: Any, where: str | Path | None = None) -> VisualEncoder:
    """The frame encoder of ``model.config.visual``; its feature size must be the model's.
    `where` (the model directory) prefixes the error."""
    encoder = build_visual_encoder(model.config.visual)
    if encoder.dim != model.visual_dim:
        raise VabError(
            f"{f'{where}: ' if where else ''}the {encoder.name} frame encoder gives {encoder.dim}-d features; the model reads {model.visual_dim}-d"
        )
    return encoder


def check_c2f(model: Any, c2f: Any, codec: AudioCodec, where: str | Path | None = None) -> None:
    """Raise VabError unless `c2f` is a coarse-to-fine model for `model`'s levels and codec."""
    where = f"{where}: " if where else ""
    if int(c2f.given_levels) < 1:
        raise VabError(f"{where}not a coarse-to-fine model (model.type is {c2f.config.model.type})")
    problems = []
    if int(c2f.given_levels) != int(model.levels):
        problems.append(f"it is given {c2f.given_levels} coarse levels but the model makes {model.levels}")
    if int(c2f.levels) > codec.num_codebooks:
        problems.append(f"it makes {c2f.levels} levels but the codec has {codec.num_codebooks}")
    if abs(float(c2f.frame_rate) - float(model.frame_rate)) > 1e-6:
        problems.append(f"its frame rate is {c2f.frame_rate:g} Hz, the model's {model.frame_rate:g} Hz")
    if abs(float(c2f.fps) - float(model.fps)) > 1e-6:
        # features are read (or given) once per rate: the fine pass would see other seconds' frames
        problems.append(f"it reads frames at {c2f.fps:g} fps, the model at {model.fps:g} fps")
    if int(c2f.visual_dim) != int(model.visual_dim):
        problems.append(f"it reads {c2f.visual_dim}-d frame features, the model {model.visual_dim}-d")
    if int(c2f.num_audio_frames) > int(model.num_audio_frames):
        problems.append(f"its window ({c2f.duration:g} s) is longer than the model's ({model.duration:g} s)")
    if not problems and not torch.allclose(
        c2f.codebooks[: model.levels].detach().float().cpu(), model.codebooks.detach().float().cpu(), rtol=1e-4, atol=1e-5
    ):
        problems.append("its coarse codebooks differ from the model's (another codec?)")
    if problems:
        raise VabError(f"{where}the coarse-to-fine model does not fit the model: " + "; ".join(problems))
