"""What every model over codec tokens and frame features shares: :class:`TokenModel`.

VAB, the coarse-to-fine model and the FoleyGen baseline are different networks over the
same data: audio tokens ``[B, K, T]`` of one codec and frame features ``[B, F, D]``.
The base holds what they have in common and nothing of how they compute:

- the token geometry (levels, codebook size, the [MASK] id, rates in Hz, the window in
  seconds and its sizes F and T) and the codec's frozen codebooks ``[K, codebook_size, d]``
  as a buffer, so a model directory is self-contained;
- the ALiBi slopes of its heads (a buffer rebuilt on load, not stored);
- parameter bookkeeping by part (:data:`PARTS`), from the subclass's :meth:`part_of`;
- the model directory (``save_pretrained`` / ``from_pretrained``, :mod:`vab.model.directory`),
  whose ``model.type`` picks the class through :mod:`vab.model.registry`.

Model types defined outside this package may replace how the stages below use them:
``sampler`` (a decoding function with the signature of
:func:`vab.generation.sampling.sample_tokens`) and ``objective`` (a training objective
class taking the config).  None means MaskGIT decoding and the masked-token objective.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vab.errors import ConfigError, VabError
from vab.model.card import TrainingRecord
from vab.model.directory import (
    CONFIG_FILE, WEIGHTS_FILE, check_tensors, check_values, metadata_number, read_weights, tensors_digest,
)
from vab.model.multiway import ALIBI_MODES, alibi_slopes
from vab.model.registry import model_class, type_name

#: layers whose parameters (scales, shifts) are never weight-decayed
NORM_LAYERS = tuple(getattr(nn, n) for n in ("LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm1d") if hasattr(nn, n))

#: parts reported by :meth:`TokenModel.num_parameters`
PARTS = ("total", "expert_layers", "embeddings", "attention", "experts", "shared_ffn", "heads")


class TokenModel(nn.Module):
    """Base of the models over codec tokens and frame features.

    Attributes: ``config`` (a private copy of the full config), ``levels`` (codec levels
    read), ``given_levels`` (leading levels only given, never predicted), ``expert_layers``,
    ``codebook_size``, ``mask_id`` (= ``codebook_size``), ``frame_rate`` (audio tokens per
    second), ``fps`` (visual frames per second), ``duration`` (seconds of one window),
    ``num_frames`` (F) and ``num_audio_frames`` (T) of a window, ``visual_dim`` (D),
    ``alibi`` (position mode), ``codebooks`` and ``slopes`` (buffers).
    """

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

    def __init__(self, cfg: Any, codebooks: torch.Tensor, visual_dim: int, frame_rate: float):
        super().__init__()
        m = cfg.model
        # a private copy: later edits of the caller's config must not change what is saved
        self.config = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
        self.levels = int(m.levels)
        self.given_levels = 0
        self.expert_layers = 0
        self.codebook_size = int(codebooks.shape[1])
        self.mask_id = self.codebook_size
        self.frame_rate = float(frame_rate)
        self.fps = float(cfg.data.fps)
        self.duration = float(cfg.data.duration)
        self.num_frames = int(round(self.duration * self.fps))
        self.num_audio_frames = int(round(self.duration * self.frame_rate))
        self.visual_dim = int(visual_dim)
        self.alibi = str(m.alibi)
        self.register_buffer("codebooks", codebooks.detach().clone().float(), persistent=True)
        self.register_buffer("slopes", alibi_slopes(int(m.heads)), persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, cfg: Any, codebooks: list[torch.Tensor] | torch.Tensor, visual_dim: int, frame_rate: float
    ) -> "TokenModel":
        """The model ``cfg.model.type`` names, which must be a `cls`.  `codebooks`: the codec's
        ``codebook_vectors(k)`` ``[codebook_size, d]`` for k < ``cfg.model.levels`` (or stacked);
        `visual_dim`: D; `frame_rate`: audio tokens per second."""
        if not isinstance(codebooks, torch.Tensor):
            if len(codebooks) == 0:
                raise ConfigError("model: no codebooks given")
            codebooks = torch.stack([c.detach().float() for c in codebooks])
        return cls._class_for(str(cfg.model.type))(cfg, codebooks, visual_dim, frame_rate)

    @classmethod
    def _class_for(cls, model_type: str) -> type["TokenModel"]:
        """The registered class of `model_type`; ConfigError unless it is a `cls`."""
        found = model_class(model_type)
        if not (isinstance(found, type) and issubclass(found, cls)):
            raise ConfigError(f"holds a {model_type} model, not a {type_name(cls)} one")
        return found

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

    # ------------------------------------------------------------------ model directory
    def save_pretrained(self, directory: str | Path, training: TrainingRecord | None = None) -> Path:
        """Write ``config.yaml`` (the full config), ``model.safetensors`` and the model card
        ``README.md`` (:mod:`vab.model.card`; `training` adds what the run knows) into
        `directory`, each atomically.  Returns the directory."""
        from safetensors.torch import save_file

        from vab.config import save_config
        from vab.model.card import render_card, write_card
        from vab.utils import atomic_path

        from vab.model.quantize import is_quantized

        if is_quantized(self):
            raise VabError(
                f"{directory}: this model was converted for inference (int8 or half-precision layers, built at "
                "load time for --precision); save the float model it was made from"
            )
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
        write_card(directory, render_card(self, training))
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu", *, local_files_only: bool = False
    ) -> "TokenModel":
        """Load a model directory written by :meth:`save_pretrained` (YAML + safetensors only),
        or the one a Hugging Face Hub id ``org/name[@revision]`` names (:mod:`vab.model.hub`);
        the class is the one its ``model.type`` names, and must be a `cls`.  Raises VabError
        naming the file and the problem."""
        from vab.config import load_config
        from vab.model.hub import resolve_model_dir
        from vab.utils import pick_device

        directory = resolve_model_dir(directory, local_files_only=local_files_only)
        if not directory.is_dir():
            raise VabError(f"{directory}: not a model directory (no such directory, so no config.yaml)")
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise VabError(f"{path}: missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
        cfg = load_config(config_path)
        try:
            found = cls._class_for(str(cfg.model.type))
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
            with torch.device("meta"):
                model = found(cfg, torch.empty(tensors["codebooks"].shape), visual_dim, frame_rate)
        except ConfigError as exc:  # say which model directory holds the bad config
            raise ConfigError(f"{config_path}: {exc}") from None
        check_tensors(weights_path, model.state_dict(), tensors)
        tensors = check_values(weights_path, model.state_dict(), tensors)
        model.load_state_dict(tensors, strict=True, assign=True)
        # non-persistent buffers were built on the meta device
        model.slopes = alibi_slopes(len(model.slopes))
        return model.to(pick_device(str(device)))


def check_token_config(m: Any, codebooks: torch.Tensor, visual_dim: int, frame_rate: float, data: Any) -> list[str]:
    """Problems (one phrase each) with the settings every token model reads."""
    problems = []
    if m.heads < 1 or m.width % m.heads:
        problems.append(f"model.width ({m.width}) must be divisible by model.heads ({m.heads})")
    if m.alibi not in ALIBI_MODES:
        problems.append(f"model.alibi: {m.alibi!r} is not one of {', '.join(ALIBI_MODES)}")
    if codebooks.dim() != 3 or codebooks.shape[0] != m.levels:
        problems.append(
            f"model.levels is {m.levels} but {codebooks.shape[0] if codebooks.dim() == 3 else 'malformed'} "
            "codebooks were given (the codec has fewer levels?)"
        )
    if visual_dim <= 0 or frame_rate <= 0 or data.fps <= 0 or data.duration <= 0:
        problems.append("visual_dim, frame_rate, data.fps and data.duration must be positive")
    return problems


def load_pretrained(
    directory: str | Path, device: str | torch.device = "cpu", *, local_files_only: bool = False
) -> TokenModel:
    """The model in a model directory (``config.yaml`` + ``model.safetensors``) or Hugging Face
    Hub id (``org/name[@revision]``), of the class its ``model.type`` names (VAB, the
    coarse-to-fine model, the FoleyGen baseline ...)."""
    return TokenModel.from_pretrained(directory, device=device, local_files_only=local_files_only)
