"""Writing a model directory: ``config.yaml``, ``model.safetensors``, the fitted codec and
the model card, each file atomically (a reader never sees half of one)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from vab.checkpoint.card import TrainingRecord, render_card, write_card
from vab.checkpoint.directory import weights_metadata
from vab.codecs import AudioCodec
from vab.config import save_config
from vab.errors import VabError
from vab.filenames import CONFIG_FILE, WEIGHTS_FILE
from vab.model import TokenModel
from vab.model.quantize import is_quantized
from vab.utils import atomic_path


def save_model(model: TokenModel, directory: str | Path, training: TrainingRecord | None = None) -> Path:
    """Write `model`'s ``config.yaml`` (the full config), ``model.safetensors`` and model card
    ``README.md`` (`training` adds what the run knows) into `directory`.  Returns the directory."""
    if is_quantized(model):
        raise VabError(
            f"{directory}: this model was converted for inference (int8 or half-precision layers, built at "
            "load time for --precision); save the float model it was made from"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=weights_metadata(str(model.config.model.type), model.visual_dim, model.frame_rate, tensors))
    save_config(model.config, directory / CONFIG_FILE)
    write_card(directory, render_card(model, training))
    return directory


def save_model_dir(model: TokenModel, codec: AudioCodec, out: str | Path, training: TrainingRecord | None = None) -> Path:
    """A self-contained model directory: :func:`save_model` and the fitted codec, if any."""
    out = save_model(model, out, training)
    codec.save(out)
    return out
