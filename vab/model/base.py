"""What every model over codec tokens and frame features shares: :class:`TokenModel`.

VAB, the coarse-to-fine model and the FoleyGen baseline are different networks over the
same data: audio tokens ``[B, K, T]`` of one codec and frame features ``[B, F, D]``.
The base holds what they have in common and nothing of how they compute:

- the token geometry (levels, codebook size, the [MASK] id, rates in Hz, the window in
  seconds and its sizes F and T) and the codec's frozen codebooks ``[K, codebook_size, d]``
  as a buffer, so a model directory is self-contained;
- parameter bookkeeping by part (:data:`PARTS`), from the subclass's :meth:`part_of`;
- positions in time: ALiBi measured in seconds on the picture's clock (:func:`alibi_positions`),
  with the slopes of its heads as a buffer that is not stored (rebuilt from the head count).

A model directory (``config.yaml`` + ``model.safetensors``) is read and written by
:mod:`vab.checkpoint`, which also maps ``model.type`` to a class; this package knows
nothing of it.

Model types defined outside this package may replace how the stages below use them:
``sampler`` (a decoding function with the signature of
:func:`vab.generation.sampling.sample_tokens`) and ``objective`` (a training objective
class taking the config).  None means MaskGIT decoding and the masked-token objective.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vab.config import ModelConfig
from vab.errors import ConfigError

#: layers whose parameters (scales, shifts) are never weight-decayed
NORM_LAYERS = tuple(getattr(nn, n) for n in ("LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm1d") if hasattr(nn, n))

#: parts reported by :meth:`TokenModel.num_parameters`
PARTS = ("total", "expert_layers", "embeddings", "attention", "experts", "shared_ffn", "heads")

#: model.alibi: distances in time (the paper), sequence index (ablation) or none
ALIBI_MODES = ("time", "index", "none")
#: model.alibi_direction: every head looks both ways (the paper), or some heads only back / only ahead
ALIBI_DIRECTIONS = ("both", "split")


def alibi_slopes(heads: int) -> torch.Tensor:
    """The standard ALiBi head slopes ``[H]``: a geometric sequence starting at
    ``2^(-8/H)``; for a head count that is not a power of two, the slopes of the
    nearest lower power of two plus every other slope of the next one."""

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if heads & (heads - 1) == 0:
        slopes = geometric(heads)
    else:
        lower = 2 ** int(math.floor(math.log2(heads)))
        slopes = geometric(lower) + geometric(2 * lower)[0::2][: heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_positions(
    num_visual: int, num_audio: int, fps: float, frame_rate: float, mode: str = "time"
) -> torch.Tensor:
    """Positions ``[F + T]`` of the sequence ``[visual ; audio]`` in audio-frame units.

    ``time``: audio frame t sits at ``(t + 0.5) / frame_rate`` seconds and visual
    frame f at ``(f + 0.5) / fps`` seconds (frames are sampled at interval
    centres); seconds are multiplied by ``frame_rate`` so neighbouring audio
    frames are one unit apart and an audio frame and the video frame shown at
    the same instant are at distance 0.
    ``index``: the position in the concatenated sequence (plain ALiBi, ablation).
    """
    if mode == "index":
        return torch.arange(num_visual + num_audio, dtype=torch.float64)
    if mode != "time":
        raise ValueError(f"alibi mode {mode!r} has no positions (expected time or index)")
    visual = (torch.arange(num_visual, dtype=torch.float64) + 0.5) / fps * frame_rate
    audio = torch.arange(num_audio, dtype=torch.float64) + 0.5
    return torch.cat([visual, audio])


def frame_of_step(steps: int, fps: float, frame_rate: float, num_frames: int) -> torch.Tensor:
    """Long ``[S]``: the frame on screen at the time of each of `steps` audio frames (or delayed steps),
    ``min(floor(s * fps / frame_rate), F - 1)``."""
    s = torch.arange(steps, dtype=torch.float64)
    # the tolerance keeps exact boundaries exact (step 25 at 50 Hz is frame 1 at 2 fps, not 0.999...)
    frame = torch.floor(s * float(fps) / float(frame_rate) + 1e-9).long()
    return frame.clamp_(max=num_frames - 1)


def alibi_bias(positions: torch.Tensor, slopes: torch.Tensor, direction: str = "both") -> torch.Tensor:
    """Additive attention bias ``[H, L, L] = -slope_h * |p_i - p_j|`` (float32), query i, key j.

    ``direction="split"``: heads 0, 4, 8 ... see only keys at or before their own time
    (-inf on later ones), heads 1, 5, 9 ... only keys at or after it, the rest both ways.
    Distances alone are the same either way, so with every head looking both ways a model
    whose audio positions are all masked cannot tell the start of a sound from its end (the
    first syllable of a word from its last); one-sided heads can.
    """
    if direction not in ALIBI_DIRECTIONS:
        raise ValueError(f"alibi direction {direction!r} is not one of {', '.join(ALIBI_DIRECTIONS)}")
    offset = positions[:, None] - positions[None, :]  # > 0: the key is earlier than the query
    bias = -slopes.double()[:, None, None] * offset.abs()[None]
    if direction == "split":
        heads = torch.arange(len(slopes))
        bias[heads % 4 == 0] = bias[heads % 4 == 0].masked_fill(offset < 0, float("-inf"))
        bias[heads % 4 == 1] = bias[heads % 4 == 1].masked_fill(offset > 0, float("-inf"))
    return bias.float()


@dataclass(frozen=True)
class Inputs:
    """What a model reads beside its own config section: the codec's frozen `codebooks`
    ``[K, codebook_size, d]``, the frame feature size `visual_dim` (D), `frame_rate` (audio
    tokens per second), `fps` (frames per second) and `duration` (seconds of one window)."""

    codebooks: torch.Tensor
    visual_dim: int
    frame_rate: float
    fps: float
    duration: float

    def problems(self, m: ModelConfig) -> list[str]:
        """Problems (one phrase each) with the settings every token model reads."""
        problems = []
        if m.heads < 1 or m.width % m.heads:
            problems.append(f"model.width ({m.width}) must be divisible by model.heads ({m.heads})")
        if m.alibi not in ALIBI_MODES:
            problems.append(f"model.alibi: {m.alibi!r} is not one of {', '.join(ALIBI_MODES)}")
        if self.codebooks.dim() != 3 or self.codebooks.shape[0] != m.levels:
            problems.append(
                f"model.levels is {m.levels} but {self.codebooks.shape[0] if self.codebooks.dim() == 3 else 'malformed'} "
                "codebooks were given (the codec has fewer levels?)"
            )
        if self.visual_dim <= 0 or self.frame_rate <= 0 or self.fps <= 0 or self.duration <= 0:
            problems.append("visual_dim, frame_rate, data.fps and data.duration must be positive")
        return problems


class TokenModel(nn.Module):
    """Base of the models over codec tokens and frame features.

    A model is built from its own section of the config (``model.*``) and its :class:`Inputs`;
    :meth:`from_config` does so from a whole config, which the model then carries as
    ``config`` (a private copy: what a model directory saves).

    Attributes: ``config``, ``levels`` (codec levels
    read), ``given_levels`` (leading levels only given, never predicted), ``expert_layers``,
    ``codebook_size``, ``mask_id`` (= ``codebook_size``), ``frame_rate`` (audio tokens per
    second), ``fps`` (visual frames per second), ``duration`` (seconds of one window),
    ``num_frames`` (F) and ``num_audio_frames`` (T) of a window, ``visual_dim`` (D),
    ``alibi`` (position mode), ``codebooks`` and ``slopes`` (buffers).
    """

    #: the ``model.type`` of a config this class is built from ("" for the base)
    model_type: ClassVar[str] = ""
    #: parameter-name prefixes counted as "embeddings" by :meth:`part_of`
    EMBEDDING_PREFIXES: ClassVar[tuple[str, ...]] = ()
    #: learned vectors weight decay must not shrink ([MASK], null visual, modality ...), by name
    NO_DECAY_VECTORS: ClassVar[tuple[str, ...]] = ()
    #: decoding step by step instead of MaskGIT (the autoregressive baseline)
    autoregressive: ClassVar[bool] = False
    #: the decoding function generation uses instead of MaskGIT; None: MaskGIT
    sampler: ClassVar[Callable[..., torch.Tensor] | None] = None
    #: the training objective class (built from the config) instead of the masked-token one
    objective: ClassVar[type | None] = None

    def __init__(self, m: ModelConfig, inputs: Inputs):
        super().__init__()
        self.config: DictConfig | None = None  # the whole config, set by from_config (what a model directory saves)
        self.levels = int(m.levels)
        self.given_levels = 0
        self.expert_layers = 0
        self.codebook_size = int(inputs.codebooks.shape[1])
        self.mask_id = self.codebook_size
        self.frame_rate = float(inputs.frame_rate)
        self.fps = float(inputs.fps)
        self.duration = float(inputs.duration)
        self.num_frames = int(round(self.duration * self.fps))
        self.num_audio_frames = int(round(self.duration * self.frame_rate))
        self.visual_dim = int(inputs.visual_dim)
        self.alibi = str(m.alibi)
        self.register_buffer("codebooks", inputs.codebooks.detach().clone().float(), persistent=True)
        self.register_buffer("slopes", alibi_slopes(int(m.heads)), persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, cfg: Any, codebooks: list[torch.Tensor] | torch.Tensor, visual_dim: int, frame_rate: float
    ) -> "TokenModel":
        """The model ``cfg.model.type`` names, which must be `cls` or a subclass of it that is
        already imported (any registered type: :func:`vab.checkpoint.build_model`).  `codebooks`:
        the codec's ``codebook_vectors(k)`` ``[codebook_size, d]`` for k < ``cfg.model.levels`` (or
        stacked ``[levels, codebook_size, d]``); `visual_dim`: D; `frame_rate`: audio tokens per second."""
        found = next((c for c in (cls, *_subclasses(cls)) if c.model_type == str(cfg.model.type)), None)
        if found is None:
            raise ConfigError(f"model.type is {cfg.model.type!r}, not {cls.model_type or cls.__name__!r}: build it "
                              "with vab.checkpoint.build_model")
        if not isinstance(codebooks, torch.Tensor):
            if len(codebooks) == 0:
                raise ConfigError("model: no codebooks given")
            codebooks = torch.stack([c.detach().float() for c in codebooks])
        model = found(cfg.model, Inputs(codebooks, int(visual_dim), float(frame_rate), float(cfg.data.fps),
                                        float(cfg.data.duration)))
        # a private copy: later edits of the caller's config must not change what is saved
        model.config = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
        return model

    # ------------------------------------------------------------------ optimisation
    def no_weight_decay(self) -> set[str]:
        """Names of the parameters AdamW must not decay (timm / open_clip convention): the
        learned vectors of ``NO_DECAY_VECTORS`` (e.g. the per-level [MASK] ``[levels, W]`` and
        the modality ``[2, W]`` embeddings, 2-D yet not weight matrices), every bias and every
        normalisation layer's parameters.  Decayed: linear weights and embedding tables."""
        names = {n for n in self.NO_DECAY_VECTORS if hasattr(self, n)}
        for prefix, module in self.named_modules():
            norm = isinstance(module, NORM_LAYERS)
            for name, _ in module.named_parameters(recurse=False):
                if norm or name == "bias":
                    names.add(f"{prefix}.{name}" if prefix else name)
        return names

    # ------------------------------------------------------------------ parameter counts
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


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
