"""Reading a model directory: the model, and the codec and frame encoder it was trained
with, each checked against the model so that a mismatch is one clear error, not noise.

:func:`load` is what every caller uses: a folder or a Hugging Face Hub id in, a
:class:`Checkpoint` out (``model, codec, visual = load(source)``; the codec and the frame
encoder are built when first asked for).  :func:`load_model` reads the model alone.
Only YAML and safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from vab.checkpoint.directory import check_tensors, metadata_number, read_weights
from vab.checkpoint.hub import resolve_model_dir
from vab.checkpoint.registry import class_for
from vab.codecs import AudioCodec, build_codec
from vab.codecs.spectral import SpectralCodec
from vab.config import load_config
from vab.errors import ConfigError, VabError
from vab.filenames import CONFIG_FILE, WEIGHTS_FILE
from vab.model import TokenModel, alibi_slopes
from vab.utils import pick_device
from vab.visual import VisualEncoder, build_visual_encoder


@dataclass(frozen=True)
class Checkpoint:
    """A loaded model directory: `model` (eval mode is the caller's choice), the local
    `directory` it was read from (a Hub id's cached snapshot) and the `source` as given.
    :attr:`codec` and :attr:`visual` are built on first use (a frame encoder may load
    weights), and checked against the model; unpacking gives (model, codec, visual)."""

    model: TokenModel
    directory: Path
    source: str

    @functools.cached_property
    def codec(self) -> AudioCodec:
        return load_codec(self.model, self.directory)

    @functools.cached_property
    def visual(self) -> VisualEncoder:
        return load_visual(self.model, self.directory)

    def __iter__(self) -> Iterator[TokenModel | AudioCodec | VisualEncoder]:
        return iter((self.model, self.codec, self.visual))


def load(
    source: str | os.PathLike, device: str | torch.device = "cpu", *, kind: type[TokenModel] = TokenModel,
    local_files_only: bool = False,
) -> Checkpoint:
    """The model directory `source` (a folder, or a Hub id ``org/name[@revision]``) with its
    model on `device`, which must be a `kind`."""
    directory = resolve_model_dir(source, local_files_only=local_files_only)
    model = load_model(directory, device, kind=kind)
    return Checkpoint(model, directory, os.fspath(source))


def load_model(
    source: str | os.PathLike, device: str | torch.device = "cpu", *, kind: type[TokenModel] = TokenModel,
    local_files_only: bool = False,
) -> TokenModel:
    """The model in a model directory or Hub id, of the class its ``model.type`` names,
    which must be a `kind`.  Raises VabError naming the file and the problem."""
    directory = resolve_model_dir(source, local_files_only=local_files_only)
    if not directory.is_dir():
        raise VabError(f"{directory}: not a model directory (no such directory, so no {CONFIG_FILE})")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise VabError(f"{path}: missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg = load_config(config_path)
    try:
        found = class_for(str(cfg.model.type), kind)
    except ConfigError as exc:
        raise ConfigError(f"{directory}: {exc}") from None
    metadata, tensors = read_weights(weights_path)
    if "codebooks" not in tensors:
        raise VabError(f"{weights_path}: missing tensors: codebooks")
    if "visual_dim" not in metadata or "frame_rate" not in metadata:
        raise VabError(f"{weights_path}: not a VAB weights file (metadata lacks visual_dim / frame_rate)")
    visual_dim = int(metadata_number(weights_path, metadata, "visual_dim", int, 1))
    frame_rate = float(metadata_number(weights_path, metadata, "frame_rate", float, 0))
    if tensors["codebooks"].dim() != 3:
        raise VabError(f"{weights_path}: tensor codebooks has shape {tuple(tensors['codebooks'].shape)}, "
                       "expected (levels, codebook_size, dim)")
    try:
        with torch.device("meta"):  # no memory for weights that are replaced at once
            model = found.from_config(cfg, torch.empty(tensors["codebooks"].shape), visual_dim, frame_rate)
    except ConfigError as exc:  # say which model directory holds the bad config
        raise ConfigError(f"{config_path}: {exc}") from None
    tensors = check_tensors(weights_path, model.state_dict(), tensors)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.slopes = alibi_slopes(len(model.slopes))  # not stored, and built on the meta device
    return model.to(pick_device(str(device)))


def build_model(cfg: object, codebooks: list[torch.Tensor] | torch.Tensor, visual_dim: int,
                frame_rate: float) -> TokenModel:
    """A new model of the class ``cfg.model.type`` names (see
    :meth:`vab.model.base.TokenModel.from_config` for the arguments)."""
    return class_for(str(cfg.model.type)).from_config(cfg, codebooks, visual_dim, frame_rate)


def load_codec(model: TokenModel, directory: str | Path | None = None) -> AudioCodec:
    """The codec of ``model.config.codec``; a fitted spectral codec is read from
    ``directory/codec.safetensors``, else rebuilt from the codebooks the model stores
    (for the spectral codec those are the fitted centroids themselves)."""
    codec = build_codec(model.config.codec, directory=directory)
    if isinstance(codec, SpectralCodec) and not codec.is_fitted:
        codec = _spectral_from_codebooks(model)
    check_codec(model, codec, directory)
    return codec


def _spectral_from_codebooks(model: TokenModel) -> SpectralCodec:
    cfg = model.config.codec
    codec = SpectralCodec(
        sample_rate=int(cfg.sample_rate), frame_rate=float(cfg.frame_rate), n_fft=int(cfg.n_fft),
        levels=int(model.levels), codebook_size=int(model.codebook_size), griffin_lim_iters=int(cfg.griffin_lim_iters),
    )
    state = codec.settings_state(model.codebooks.detach().float().cpu())
    return codec.load_fitted(state, label="the model's stored codebooks")


def check_codec(model: TokenModel, codec: AudioCodec, where: str | Path | None = None) -> None:
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


def load_visual(model: TokenModel, where: str | Path | None = None) -> VisualEncoder:
    """The frame encoder of ``model.config.visual``; its feature size must be the model's.
    `where` (the model directory) prefixes the error."""
    encoder = build_visual_encoder(model.config.visual)
    if encoder.dim != model.visual_dim:
        raise VabError(
            f"{f'{where}: ' if where else ''}the {encoder.name} frame encoder gives {encoder.dim}-d features; the model reads {model.visual_dim}-d"
        )
    return encoder


def check_c2f(model: TokenModel, c2f: TokenModel, codec: AudioCodec, where: str | Path | None = None) -> None:
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
