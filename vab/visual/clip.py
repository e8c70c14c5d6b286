"""open_clip image tower as a frame encoder (the paper uses EVA02-CLIP-L, 768-d).

Weights come from, in order: ``visual.path`` (a local open_clip state dict,
``.safetensors`` / ``.bin`` / ``.pt``), the open_clip download for
``visual.pretrained`` (a tag such as ``merged2b_s4b_b131k``), or random init when
both are unset (tests only).  ``visual.model`` may also be ``local-dir:/folder``
(an open_clip folder with ``open_clip_config.json`` and weights).

Only the image tower is kept.  Preprocessing runs batched in torch on the
encoder's device and follows the model's own open_clip preprocessing
(size, mean/std, interpolation, resize mode).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from vab.config import VisualConfig
from vab.errors import ConfigError, VabError
from vab.precision import DTYPES, cpu_has_native_bf16
from vab.utils import pick_device
from vab.visual.base import VisualEncoder
from vab.visual.pixels import as_frames

# keys of open_clip's PreprocessCfg that a pretrained tag may set
_TAG_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


def _open_clip() -> Any:
    try:
        import open_clip  # heavy (~2 s with timm): imported only when a clip encoder is built
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise VabError(f"visual.name=clip needs open_clip_torch ({exc}); pip install open_clip_torch") from None
    return open_clip


def _short(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[-2]), int(size[-1])
    return int(size), int(size)


def preprocess_frames(frames: torch.Tensor, pcfg: dict) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> float32 ``[F, 3, h, w]``, normalised as open_clip's
    eval transform does (resize with antialias, centre crop or pad, mean/std).

    `pcfg` is open_clip's preprocess config (``open_clip.get_model_preprocess_cfg``):
    size, mean, std, interpolation (bicubic | bilinear), resize_mode
    (shortest | longest | squash), fill_color.
    """
    th, tw = _pair(pcfg.get("size", 224))
    mode = InterpolationMode.BILINEAR if pcfg.get("interpolation") == "bilinear" else InterpolationMode.BICUBIC
    resize_mode = pcfg.get("resize_mode", "shortest")
    x = frames.permute(0, 3, 1, 2).float()  # [F, 3, H, W], 0..255
    h, w = x.shape[-2:]
    if resize_mode == "squash":
        x = TF.resize(x, [th, tw], mode, antialias=True)
    elif resize_mode == "shortest" and th == tw:
        # an int size: the short side becomes th, as torchvision's Resize(int) does
        x = TF.resize(x, th, mode, antialias=True)
        x = TF.center_crop(x, [th, tw])
    elif resize_mode in ("shortest", "longest"):
        rh, rw = h / th, w / tw
        ratio = max(rh, rw) if resize_mode == "longest" else min(rh, rw)
        x = TF.resize(x, [round(h / ratio), round(w / ratio)], mode, antialias=True)
        x = _center_crop_or_pad(x, th, tw, float(pcfg.get("fill_color", 0)))
    else:
        raise ValueError(f"unknown open_clip resize_mode {resize_mode!r}")
    # open_clip's PIL path stores the resized image as uint8 (saturated, rounded)
    x = x.clamp_(0.0, 255.0).round_().div_(255.0)
    return TF.normalize(x, list(pcfg["mean"]), list(pcfg["std"]))


def _center_crop_or_pad(x: torch.Tensor, th: int, tw: int, fill: float) -> torch.Tensor:
    """``[F, 3, h, w]`` -> ``[F, 3, th, tw]``: pad with `fill` (0..255) where too small, then centre crop."""
    h, w = x.shape[-2:]
    ph, pw = max(th - h, 0), max(tw - w, 0)
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)
        h, w = x.shape[-2:]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[..., top : top + th, left : left + tw]


def _resolve_weights(cfg: VisualConfig) -> tuple[str | None, dict]:
    """Return (checkpoint file or None, preprocess overrides from the pretrained tag)."""
    open_clip = _open_clip()
    name = cfg.model
    tag = cfg.pretrained or None
    tag_cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    overrides = {k: tag_cfg[k] for k in _TAG_PREPROCESS_KEYS if tag_cfg.get(k) is not None}
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise VabError(f"visual.path={cfg.path}: no such file (an open_clip weights file for {name})")
        return str(path), overrides
    if tag is None:
        return None, {}  # random init
    if not tag_cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ConfigError(
            f"visual.pretrained={tag}: not an open_clip tag for {name} (known: {known}); "
            f"or set visual.path=/path/to/open_clip_model.safetensors"
        )
    try:
        checkpoint = open_clip.pretrained.download_pretrained(tag_cfg)
    except Exception as exc:  # network, hub, cache: all mean "not fetched"
        checkpoint, reason = "", _short(exc)
    else:
        reason = "the download returned no file"
    if not checkpoint:
        raise VabError(
            f"could not fetch open_clip weights for {name}/{tag} ({reason}); "
            f"set visual.path=/path/to/open_clip_model.safetensors (or .bin)"
        )
    return checkpoint, overrides


def load_clip_visual(cfg: VisualConfig) -> tuple[torch.nn.Module, dict, int]:
    """Build the open_clip model named by `cfg` with its weights and keep the image tower.

    Returns (image tower on the CPU in fp32, eval mode; preprocess config; feature size D).
    """
    open_clip = _open_clip()
    name = cfg.model
    schema_name = name.startswith(("local-dir:", "hf-hub:"))
    if not schema_name and open_clip.get_model_config(name) is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"visual.model={name}: unknown open_clip model ({hint}see open_clip.list_models())")
    checkpoint, overrides = (None, {}) if schema_name else _resolve_weights(cfg)
    try:
        model = open_clip.create_model(
            name, pretrained=checkpoint, force_preprocess_cfg=overrides or None, device="cpu", precision="fp32"
        )
    except Exception as exc:
        if cfg.path:
            raise VabError(f"visual.path={cfg.path}: cannot load open_clip weights for {name} ({_short(exc)})") from None
        raise VabError(f"visual.model={name}: cannot build the open_clip model ({_short(exc)})") from None
    pcfg = dict(open_clip.get_model_preprocess_cfg(model))
    visual = model.visual
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        dim = (open_clip.get_model_config(name) or {}).get("embed_dim") or getattr(model, "embed_dim", None)
    del model  # drops the text tower
    visual.eval().requires_grad_(False)
    return visual, pcfg, int(dim)


def resolve_encoder_precision(precision: str, device: torch.device) -> str:
    """`visual.precision` made concrete: auto = fp16 on a CUDA GPU, bf16 on a CPU with native bf16
    (EVA02-L-14 encodes 10 frames 3.4x faster than in fp32, features at cosine 0.9999 to fp32's;
    docs/BENCHMARKS.md), fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision not in DTYPES:
        raise ConfigError(f"visual.precision={precision}: expected auto, {', '.join(DTYPES)}")
    return precision


class ClipEncoder(VisualEncoder):
    """uint8 ``[F, H, W, 3]`` -> open_clip image embeddings ``[F, D]`` (float32, CPU,
    not L2-normalised: ``model.encode_image(x)`` with ``normalize=False``)."""

    name = "clip"

    def __init__(
        self,
        visual: torch.nn.Module,
        preprocess_cfg: dict,
        dim: int,
        *,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        batch_size: int = 64,
    ):
        super().__init__()
        self.device = torch.device(device)
        self.precision = resolve_encoder_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.visual = visual.to(device=self.device)
        if self.dtype != torch.float32:
            # matrix products in half precision under autocast, their weights stored so once (not
            # converted on every call); norms, positions and the pooled output stay float32
            for module in self.visual.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.to(self.dtype)
        self.preprocess_cfg = preprocess_cfg
        self._dim = int(dim)
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def from_config(cls, cfg: VisualConfig) -> "ClipEncoder":
        visual, pcfg, dim = load_clip_visual(cfg)
        return cls(
            visual, pcfg, dim, device=pick_device(cfg.device, "visual.device"), precision=cfg.precision, batch_size=cfg.batch_size
        )

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def image_size(self) -> tuple[int, int]:
        return _pair(self.preprocess_cfg.get("size", 224))

    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = as_frames(frames)
        out = []
        half = self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=half):
            for chunk in x.split(self.batch_size):
                feats = self.visual(preprocess_frames(chunk.to(self.device), self.preprocess_cfg))
                if isinstance(feats, (tuple, list)):  # CoCa towers return (pooled, tokens)
                    feats = feats[0]
                out.append(feats.float().cpu())
        # concatenated outside inference mode: callers get an ordinary tensor
        return torch.cat(out) if out else torch.zeros(0, self.dim)
