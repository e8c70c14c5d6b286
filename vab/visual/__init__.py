"""Frame encoders: uint8 RGB frames ``[F, H, W, 3]`` -> features ``[F, D]`` (docs/ARCHITECTURE.md, "Data contracts").

``clip`` wraps an open_clip image tower (the paper's EVA02-CLIP-L by default);
``pixels`` (a colour grid), ``hog`` (gradient-orientation histograms: shape) and
``hog-colour`` (both) are weights-free, for the offline demo and tests.
"""

from __future__ import annotations

from vab.config import VisualConfig
from vab.errors import ConfigError
from vab.visual.base import VisualEncoder
from vab.visual.hog import HogColourEncoder, HogEncoder
from vab.visual.pixels import PixelEncoder

#: the weights-free ones (features fixed by name and grid), by name
_OFFLINE = {"pixels": PixelEncoder, "hog": HogEncoder, "hog-colour": HogColourEncoder}
OFFLINE_ENCODERS = tuple(_OFFLINE)
ENCODERS = ("clip", *OFFLINE_ENCODERS)


def _offline_encoder(cfg: VisualConfig) -> VisualEncoder | None:
    """The weights-free encoder named by ``cfg.name`` (cheap to build: no weights), or None."""
    encoder = _OFFLINE.get(cfg.name)
    return encoder(grid=cfg.grid, batch_size=cfg.batch_size) if encoder is not None else None


def build_visual_encoder(cfg: VisualConfig) -> VisualEncoder:
    """The encoder named by ``cfg.name`` (clip | pixels | hog | hog-colour), weights loaded, in eval mode."""
    offline = _offline_encoder(cfg)
    if offline is not None:
        return offline
    if cfg.name == "clip":
        # torchvision and open_clip come with it (seconds to import): only when it is asked for
        from vab.visual.clip import ClipEncoder

        return ClipEncoder.from_config(cfg)
    raise ConfigError(f"visual.name={cfg.name}: unknown visual encoder (choose from {', '.join(ENCODERS)})")


def visual_dim(visual: VisualConfig) -> int:
    """Feature size of a frame-encoder config, without weights."""
    offline = _offline_encoder(visual)
    if offline is not None:
        return offline.dim
    if visual.name == "clip":
        import open_clip  # heavy (~2 s with timm), and only the clip encoder needs it

        model_cfg = open_clip.get_model_config(visual.model)
        if model_cfg is None:
            raise ConfigError(f"visual.model: {visual.model!r} is not an open_clip model name")
        return int(model_cfg["embed_dim"])
    raise ConfigError(f"visual.name: unknown frame encoder {visual.name!r} (expected {', '.join(ENCODERS)})")


__all__ = ["ENCODERS", "OFFLINE_ENCODERS", "VisualEncoder", "build_visual_encoder", "visual_dim"]
