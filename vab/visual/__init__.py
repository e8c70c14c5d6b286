"""Frame encoders: uint8 RGB frames ``[F, H, W, 3]`` -> features ``[F, D]`` (DESIGN section 3).

``clip`` wraps an open_clip image tower (the paper's EVA02-CLIP-L by default);
``pixels`` (a colour grid), ``hog`` (gradient-orientation histograms: shape) and
``hog-colour`` (both) are weights-free, for the offline demo and tests.
"""

from __future__ import annotations

from vab.config import VisualConfig
from vab.errors import ConfigError
from vab.visual.base import VisualEncoder

ENCODERS = ("clip", "pixels", "hog", "hog-colour")
#: the weights-free ones (features fixed by name and grid)
OFFLINE_ENCODERS = ("pixels", "hog", "hog-colour")


def _offline_encoder(cfg: VisualConfig) -> VisualEncoder | None:
    """The weights-free encoder named by ``cfg.name`` (cheap to build: no weights), or None."""
    if cfg.name == "pixels":
        from vab.visual.pixels import PixelEncoder as encoder
    elif cfg.name == "hog":
        from vab.visual.hog import HogEncoder as encoder
    elif cfg.name == "hog-colour":
        from vab.visual.hog import HogColourEncoder as encoder
    else:
        return None
    return encoder(grid=cfg.grid, batch_size=cfg.batch_size)


def build_visual_encoder(cfg: VisualConfig) -> VisualEncoder:
    """The encoder named by ``cfg.name`` (clip | pixels | hog | hog-colour), weights loaded, in eval mode."""
    offline = _offline_encoder(cfg)
    if offline is not None:
        return offline
    if cfg.name == "clip":
        from vab.visual.clip import ClipEncoder  # imports open_clip only when asked for

        return ClipEncoder.from_config(cfg)
    raise ConfigError(f"visual.name={cfg.name}: unknown visual encoder (choose from {', '.join(ENCODERS)})")


def visual_dim(visual: VisualConfig) -> int:
    """Feature size of a frame-encoder config, without weights."""
    offline = _offline_encoder(visual)
    if offline is not None:
        return offline.dim
    if visual.name == "clip":
        import open_clip

        model_cfg = open_clip.get_model_config(visual.model)
        if model_cfg is None:
            raise ConfigError(f"visual.model: {visual.model!r} is not an open_clip model name")
        return int(model_cfg["embed_dim"])
    raise ConfigError(f"visual.name: unknown frame encoder {visual.name!r} (expected {', '.join(ENCODERS)})")


__all__ = ["ENCODERS", "OFFLINE_ENCODERS", "VisualEncoder", "build_visual_encoder", "visual_dim"]
