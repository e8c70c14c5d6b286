"""The VAB model: visual-conditioned masked audio-token prediction (paper section 3.2).

Inputs are audio tokens ``[B, K, T]`` (value ``mask_id`` = ``codebook_size`` where
masked) and frame features ``[B, F, D]``.  Audio embedding of frame t is
``sum_k proj_k(codebook_k[token])`` with the codec's own (frozen) codebook
vectors, or a learned per-level [MASK] vector in model space.  Visual frames are
projected linearly, or replaced by a learned null embedding (unconditional
generation / classifier-free guidance).  A learned modality embedding is added
to each modality; the sequence ``[visual ; audio]`` runs through the multiway
Transformer; one linear head per predicted level reads the audio positions.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vab.errors import ConfigError, VabError
from vab.model.multiway import ALIBI_MODES, MultiwayLayer, alibi_bias, alibi_positions, alibi_slopes

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES = ("vab", "coarse2fine", "foleygen")

#: parts reported by :meth:`VAB.num_parameters`
PARTS = ("total", "expert_layers", "embeddings", "attention", "experts", "shared_ffn", "heads")


class VAB(nn.Module):
    """Multiway Transformer over ``[visual ; audio]`` with per-level token heads.

    Attributes: ``levels`` (codec levels read), ``given_levels`` (leading levels
    only given, never predicted), ``codebook_size``, ``mask_id``, ``frame_rate``
    (audio tokens per second), ``fps`` (visual frames per second),
    ``num_frames`` (F) and ``num_audio_frames`` (T) for ``duration`` seconds.
    """

    def __init__(self, cfg: Any, codebooks: torch.Tensor, visual_dim: int, frame_rate: float):
        super().__init__()
        m = cfg.model
        _check_model_config(m, codebooks, visual_dim, frame_rate, cfg.data)
        init_token_geometry(self, cfg, codebooks, visual_dim, frame_rate)
        self.given_levels = int(m.given_levels)
        self.expert_layers = int(m.expert_layers)
        width = int(m.width)
        self.audio_proj = nn.ModuleList(nn.Linear(codebooks.shape[2], width) for _ in range(self.levels))
        self.mask_embed = nn.Parameter(torch.empty(self.levels, width))
        self.visual_proj = nn.Linear(self.visual_dim, width)
        self.null_visual = nn.Parameter(torch.empty(width))
        self.modality = nn.Parameter(torch.empty(2, width))  # 0 = visual, 1 = audio
        self.layers = nn.ModuleList(
            MultiwayLayer(width, int(m.heads), int(m.ffn), float(m.dropout), experts=i < self.expert_layers)
            for i in range(int(m.layers))
        )
        self.final_norm = nn.LayerNorm(width)
        self.heads = nn.ModuleList(
            nn.Linear(width, self.codebook_size) for _ in range(self.levels - self.given_levels)
        )
        self.register_buffer("slopes", alibi_slopes(int(m.heads)), persistent=False)
        self._bias_cache: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, cfg: Any, codebooks: list[torch.Tensor] | torch.Tensor, visual_dim: int, frame_rate: float
    ) -> "VAB":
        """Build from a VABConfig.  `codebooks`: the codec's ``codebook_vectors(k)``
        ``[codebook_size, d]`` for k < ``cfg.model.levels``; `frame_rate`: audio
        tokens per second.  ``cfg.model.type`` picks VAB or Coarse2Fine."""
        if not isinstance(codebooks, torch.Tensor):
            if len(codebooks) == 0:
                raise ConfigError("model: no codebooks given")
            codebooks = torch.stack([c.detach().float() for c in codebooks])
        return model_class(cfg.model.type)(cfg, codebooks, visual_dim, frame_rate)

    def reset_parameters(self) -> None:
        """Truncated normal (std 0.02) for weights and learned vectors, zero biases,
        unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for p in (self.mask_embed, self.null_visual, self.modality):
            nn.init.trunc_normal_(p, std=0.02)

    # ------------------------------------------------------------------ embeddings
    def embed_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, K>=levels, T]`` (any int dtype; ``mask_id`` = masked) -> ``[B, T, W]``,
        modality embedding included."""
        if tokens.dim() != 3 or tokens.shape[1] < self.levels:
            raise VabError(
                f"audio tokens have shape {tuple(tokens.shape)}; the model needs [batch, >={self.levels} levels, time]"
            )
        tokens = tokens[:, : self.levels].to(device=self.codebooks.device, dtype=torch.long)
        cb = self.codebooks
        # codec codebooks come at arbitrary scales (EnCodec entries are far from unit norm):
        # centre and scale each level so the projection starts at a sensible magnitude
        cb = (cb - cb.mean(dim=1, keepdim=True)) / cb.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        out = None
        for k in range(self.levels):
            proj = self.audio_proj[k](cb[k])  # [codebook_size, W]
            table = torch.cat([proj, self.mask_embed[k][None].to(proj.dtype)], 0)
            emb = F.embedding(tokens[:, k], table)  # [B, T, W], row mask_id = [MASK]
            out = emb if out is None else out + emb
        return out + self.modality[1]

    def embed_visual(
        self, features: torch.Tensor | None, drop_visual: torch.Tensor | None = None, batch: int | None = None
    ) -> torch.Tensor:
        """Features ``[B, F, D]`` -> ``[B, F, W]``; ``None`` gives the null embedding for
        ``num_frames`` frames and ``batch`` examples; ``drop_visual [B]`` (bool) swaps in the
        null embedding per example.  Modality embedding included."""
        if features is None:
            if batch is None:
                raise ValueError("embed_visual(None) needs the batch size")
            v = self.null_visual.expand(batch, self.num_frames, -1)
        else:
            if features.dim() != 3 or features.shape[2] != self.visual_dim:
                raise VabError(
                    f"visual features have shape {tuple(features.shape)}; the model needs "
                    f"[batch, frames, {self.visual_dim}]"
                )
            v = self.visual_proj(features.to(device=self.visual_proj.weight.device, dtype=self.visual_proj.weight.dtype))
            if drop_visual is not None:
                drop = drop_visual.to(device=v.device, dtype=torch.bool)[:, None, None]
                v = torch.where(drop, self.null_visual.to(v.dtype), v)
        return v + self.modality[0]

    # ------------------------------------------------------------------ Transformer
    def attention_bias(self, num_visual: int, num_audio: int, device: torch.device | None = None) -> torch.Tensor | None:
        """ALiBi bias ``[H, F+T, F+T]`` (float32) for ``[visual ; audio]``, or None (``alibi: none``)."""
        if self.alibi == "none":
            return None
        device = device or self.slopes.device
        key = (num_visual, num_audio, str(device))
        bias = self._bias_cache.get(key)
        if bias is None:
            if len(self._bias_cache) > 8:
                self._bias_cache.clear()
            positions = alibi_positions(num_visual, num_audio, self.fps, self.frame_rate, self.alibi)
            bias = alibi_bias(positions, self.slopes.detach().cpu()).to(device)
            self._bias_cache[key] = bias
        return bias

    def _run(self, h: torch.Tensor, num_visual: int, layers: int | None = None) -> torch.Tensor:
        bias = self.attention_bias(num_visual, h.shape[1] - num_visual, h.device)
        for layer in self.layers[: layers if layers is not None else len(self.layers)]:
            h = layer(h, num_visual, bias)
        return h

    def forward(
        self,
        tokens: torch.Tensor,
        features: torch.Tensor | None = None,
        drop_visual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens ``[B, K, T]`` (``mask_id`` where masked), features ``[B, F, D]`` or None
        (null visual embedding for all), ``drop_visual [B]`` bool -> logits
        ``[B, levels - given_levels, T, codebook_size]`` for the predicted levels."""
        audio = self.embed_audio(tokens)
        visual = self.embed_visual(features, drop_visual, batch=audio.shape[0])
        num_visual = visual.shape[1]
        h = self._run(torch.cat([visual, audio], dim=1), num_visual)
        h = self.final_norm(h[:, num_visual:])
        return torch.stack([head(h) for head in self.heads], dim=1)

    def encode_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """Audio alone through the first ``expert_layers`` layers (audio experts) -> ``[B, T, W]``."""
        return self._run(self.embed_audio(tokens), 0, self.expert_layers)

    def encode_visual(self, features: torch.Tensor) -> torch.Tensor:
        """Video alone through the first ``expert_layers`` layers (visual experts) -> ``[B, F, W]``."""
        h = self.embed_visual(features)
        return self._run(h, h.shape[1], self.expert_layers)

    def encode_joint(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``[visual ; audio]`` through the first ``expert_layers`` layers -> ``[B, F + T, W]``."""
        visual = self.embed_visual(features)
        return self._run(torch.cat([visual, self.embed_audio(tokens)], dim=1), visual.shape[1], self.expert_layers)

    # ------------------------------------------------------------------ parameter counts
    #: parameter-name prefixes counted as "embeddings" by :meth:`part_of`
    EMBEDDING_PREFIXES: tuple[str, ...] = ("audio_proj.", "mask_embed", "visual_proj.", "null_visual", "modality")

    def part_of(self, name: str) -> str:
        """The part (embeddings | attention | experts | shared_ffn | heads) a parameter belongs to."""
        if name.startswith(self.EMBEDDING_PREFIXES):
            return "embeddings"
        if name.startswith(("final_norm.", "heads.")):
            return "heads"
        if ".attn." in name or ".attn_norm." in name:
            return "attention"
        if ".ffn_visual." in name or ".ffn_audio." in name:
            return "experts"
        if ".ffn." in name:
            return "shared_ffn"
        raise KeyError(name)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameter counts for every name in :data:`PARTS` (frozen codebooks excluded)."""
        counts = dict.fromkeys(PARTS, 0)
        for name, p in self.named_parameters():
            n = p.numel()
            counts["total"] += n
            counts[self.part_of(name)] += n
            if name.startswith("layers.") and int(name.split(".")[1]) < self.expert_layers:
                counts["expert_layers"] += n
        return counts

    def num_parameters(self, part: str = "total") -> int:
        """Parameters in `part` (one of :data:`PARTS`)."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r} (expected one of {', '.join(PARTS)})")
        return self.parameter_counts()[part]

    # ------------------------------------------------------------------ model directory
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.yaml`` (the full VABConfig) and ``model.safetensors`` into `directory`,
        each atomically.  Returns the directory."""
        from safetensors.torch import save_file

        from vab.config import save_config
        from vab.utils import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        metadata = {
            "format": "vab",
            "type": str(self.config.model.type),
            "visual_dim": str(self.visual_dim),
            "frame_rate": repr(self.frame_rate),
            "sha256": tensors_digest(tensors),
        }
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        save_config(self.config, directory / CONFIG_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "VAB":
        """Load a model directory written by :meth:`save_pretrained` (YAML + safetensors only).
        Raises VabError naming the file and the problem."""
        from vab.config import load_config
        from vab.utils import pick_device

        directory = Path(directory)
        if not directory.is_dir():
            raise VabError(f"{directory}: not a model directory (no such directory)")
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise VabError(f"{path}: missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
        cfg = load_config(config_path)
        metadata, tensors = read_weights(weights_path)
        if "codebooks" not in tensors:
            raise VabError(f"{weights_path}: missing tensors: codebooks")
        try:
            visual_dim, frame_rate = int(metadata["visual_dim"]), float(metadata["frame_rate"])
        except (KeyError, ValueError):
            raise VabError(f"{weights_path}: not a VAB weights file (metadata lacks visual_dim / frame_rate)") from None
        try:
            with torch.device("meta"):
                model = model_class(cfg.model.type)(
                    cfg, torch.empty(tensors["codebooks"].shape), visual_dim, frame_rate
                )
        except ConfigError as exc:  # say which model directory holds the bad config
            raise ConfigError(f"{config_path}: {exc}") from None
        check_tensors(weights_path, model.state_dict(), tensors)
        model.load_state_dict(tensors, strict=True, assign=True)
        # non-persistent buffers were built on the meta device
        model.slopes = alibi_slopes(len(model.slopes))
        return model.to(pick_device(str(device)))

    # ------------------------------------------------------------------ generation
    def generate(self, source: Any, **kwargs: Any) -> Any:
        """Soundtrack for a video file or features ``[F, D]`` -> ``vab.generator.GenerationResult``
        (waveform, sample_rate, tokens ``[K, T]``, timings); keywords as :func:`vab.generator.generate`."""
        from vab.generator import generate

        return generate(self, source, **kwargs)


def init_token_geometry(model: nn.Module, cfg: Any, codebooks: torch.Tensor, visual_dim: int, frame_rate: float) -> None:
    """The attributes every model over codec tokens and frame features shares (VAB, the
    coarse-to-fine model, the FoleyGen baseline): a private copy of the config, levels,
    codebook size and [MASK] id, rates (audio frames / s, video frames / s), window length
    (s) and sizes, and the frozen codec codebooks ``[K, codebook_size, d]`` as a buffer,
    stored so a model directory is self-contained."""
    m = cfg.model
    # a private copy: later edits of the caller's config must not change what is saved
    model.config = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    model.levels = int(m.levels)
    model.codebook_size = int(codebooks.shape[1])
    model.mask_id = model.codebook_size
    model.frame_rate = float(frame_rate)
    model.fps = float(cfg.data.fps)
    model.duration = float(cfg.data.duration)
    model.num_frames = int(round(model.duration * model.fps))
    model.num_audio_frames = int(round(model.duration * model.frame_rate))
    model.visual_dim = int(visual_dim)
    model.alibi = str(m.alibi)
    model.register_buffer("codebooks", codebooks.detach().clone().float(), persistent=True)


def model_class(model_type: str) -> type[VAB]:
    """The class for ``model.type`` (vab | coarse2fine | foleygen, the autoregressive baseline)."""
    if model_type == "vab":
        return VAB
    if model_type == "coarse2fine":
        from vab.model.coarse2fine import Coarse2Fine

        return Coarse2Fine
    if model_type == "foleygen":
        from vab.baselines.foleygen import FoleyGen

        return FoleyGen
    raise ConfigError(f"model.type: unknown model type {model_type!r} (expected one of {', '.join(MODEL_TYPES)})")


def _check_model_config(m: Any, codebooks: torch.Tensor, visual_dim: int, frame_rate: float, data: Any) -> None:
    problems = []
    if m.width % m.heads:
        problems.append(f"model.width ({m.width}) must be divisible by model.heads ({m.heads})")
    if not 0 <= m.expert_layers <= m.layers:
        problems.append(f"model.expert_layers ({m.expert_layers}) must be between 0 and model.layers ({m.layers})")
    if not 0 <= m.given_levels < m.levels:
        problems.append(f"model.given_levels ({m.given_levels}) must be >= 0 and < model.levels ({m.levels})")
    if m.alibi not in ALIBI_MODES:
        problems.append(f"model.alibi: {m.alibi!r} is not one of {', '.join(ALIBI_MODES)}")
    if codebooks.dim() != 3 or codebooks.shape[0] != m.levels:
        problems.append(
            f"model.levels is {m.levels} but {codebooks.shape[0] if codebooks.dim() == 3 else 'malformed'} "
            "codebooks were given (the codec has fewer levels?)"
        )
    if visual_dim <= 0 or frame_rate <= 0 or data.fps <= 0 or data.duration <= 0:
        problems.append("visual_dim, frame_rate, data.fps and data.duration must be positive")
    if problems:
        raise ConfigError("; ".join(problems))


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: safetensors itself does not
    detect altered tensor data."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_weights(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors (CPU) of a safetensors file, checked against its digest."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: truncated or not safetensors at all
        raise VabError(f"{path}: cannot read weights, the file is truncated or corrupted ({_one_line(exc)})") from None
    if metadata.get("format") != "vab":
        raise VabError(f"{path}: not a VAB weights file (no 'format: vab' metadata)")
    digest = metadata.get("sha256")
    if digest is not None and digest != tensors_digest(tensors):
        raise VabError(f"{path}: checksum mismatch, the weights were altered or corrupted")
    return metadata, tensors


def tensor_differences(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Sorted names (missing from `found`, unexpected in it, present in both with another shape)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in sorted(set(expected) & set(found)) if tuple(found[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, wrong


def check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """Raise a VabError naming missing, unexpected and mis-shaped tensors."""

    def names(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    missing, unexpected, wrong = tensor_differences(expected, found)
    shapes = [f"{k} {tuple(found[k].shape)} (expected {tuple(expected[k].shape)})" for k in wrong]
    problems = []
    if missing:
        problems.append(f"missing tensors: {names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {names(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {names(shapes)}")
    if problems:
        raise VabError(f"{path}: does not match {CONFIG_FILE}: " + "; ".join(problems))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
