"""The VAB model: visual-conditioned masked audio-token prediction (paper section 3.2).

Inputs are audio tokens ``[B, K, T]`` (value ``mask_id`` = ``codebook_size`` where
masked) and frame features ``[B, F, D]``.  Audio embedding of frame t is
``sum_k proj_k(codebook_k[token])`` with the codec's own (frozen) codebook
vectors, or a learned per-level [MASK] vector in model space.  Visual frames are
projected linearly, or replaced by a learned null embedding (unconditional
generation / classifier-free guidance).  A learned modality embedding is added
to each modality; the sequence ``[visual ; audio]`` runs through the multiway
Transformer; one linear head per predicted level reads the audio positions.
With ``model.visual_add`` each audio position also gets the frame on screen at its time,
through its own projection (nothing when the picture is absent or dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vab.errors import ConfigError, VabError
from vab.config import VABModelConfig
from vab.model.base import ALIBI_DIRECTIONS, Inputs, TokenModel, alibi_bias, alibi_positions, frame_of_step
from vab.model.multiway import MultiwayLayer, compute_dtype, token_logits

#: model.visual_pool / model.visual_proj: how frame features enter (the paper: frames, linear)
VISUAL_POOLS = ("frames", "mean")
VISUAL_PROJECTIONS = ("linear", "mlp")


class VAB(TokenModel):
    """Multiway Transformer over ``[visual ; audio]`` with per-level token heads.

    Attributes: ``levels`` (codec levels read), ``given_levels`` (leading levels
    only given, never predicted), ``codebook_size``, ``mask_id``, ``frame_rate``
    (audio tokens per second), ``fps`` (visual frames per second),
    ``num_frames`` (F) and ``num_audio_frames`` (T) for ``duration`` seconds.
    """

    model_type = "vab"
    EMBEDDING_PREFIXES = ("audio_proj.", "mask_embed", "visual_proj.", "visual_add.", "null_visual", "modality")
    #: forward(..., where=mask) returns the logits of the masked positions only (the sampler asks)
    reads_positions = True
    NO_DECAY_VECTORS = ("mask_embed", "null_visual", "modality")

    def __init__(self, m: VABModelConfig, inputs: Inputs):
        _check_model_config(m, inputs)
        super().__init__(m, inputs)
        self.given_levels = int(m.given_levels)
        self.expert_layers = int(m.expert_layers)
        width = int(m.width)
        self.audio_proj = nn.ModuleList(nn.Linear(inputs.codebooks.shape[2], width) for _ in range(self.levels))
        self.mask_embed = nn.Parameter(torch.empty(self.levels, width))
        if m.visual_proj == "mlp":
            self.visual_proj = nn.Sequential(nn.Linear(self.visual_dim, width), nn.GELU(), nn.Linear(width, width))
        else:
            self.visual_proj = nn.Linear(self.visual_dim, width)
        self.visual_pool = str(m.visual_pool)
        self.visual_add = nn.Linear(self.visual_dim, width) if getattr(m, "visual_add", False) else None
        self.visual_add_dropout = float(getattr(m, "visual_add_dropout", 0.0))
        self.alibi_direction = str(getattr(m, "alibi_direction", "both"))
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
        self._bias_cache: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    # ------------------------------------------------------------------ construction
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
            v = self.visual_proj(self._frame_inputs(features))
            if drop_visual is not None:
                drop = drop_visual.to(device=v.device, dtype=torch.bool)[:, None, None]
                v = torch.where(drop, self.null_visual.to(v.dtype), v)
        return v + self.modality[0]

    def _frame_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, F, D]`` on the model's device and dtype, as the projections read them
        (``visual_pool: mean``: every frame the clip's mean)."""
        # the learned null vector's dtype, not visual_proj.weight's: a quantized projection has no float weight
        x = features.to(device=self.null_visual.device, dtype=self.null_visual.dtype)
        return x.mean(dim=1, keepdim=True).expand_as(x) if self.visual_pool == "mean" else x

    def add_visual(
        self, audio: torch.Tensor, features: torch.Tensor | None, drop_visual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Audio embeddings ``[B, T, W]`` plus, per position, the projection of the frame on screen
        at its time (``model.visual_add``); unchanged without it, without features, and for
        dropped examples (``drop_visual [B]``): the unconditional input is the audio alone."""
        if self.visual_add is None or features is None:
            return audio
        frames = frame_of_step(audio.shape[1], self.fps, self.frame_rate, features.shape[1]).to(features.device)
        added = self.visual_add(self._frame_inputs(features)[:, frames])  # [B, T, W]
        keep = None if drop_visual is None else ~drop_visual.to(device=added.device, dtype=torch.bool)
        if self.training and self.visual_add_dropout > 0:
            kept = torch.rand(added.shape[0], device=added.device) >= self.visual_add_dropout
            keep = kept if keep is None else keep & kept
        if keep is not None:
            added = added * keep[:, None, None].to(added.dtype)
        return audio + added.to(audio.dtype)

    # ------------------------------------------------------------------ Transformer
    def attention_bias(self, num_visual: int, num_audio: int, device: torch.device | None = None) -> torch.Tensor | None:
        """ALiBi bias ``[H, F+T, F+T]`` (float32) for ``[visual ; audio]``, or None (``alibi: none``)."""
        if self.alibi == "none":
            return None
        device = device or self.slopes.device

        def build() -> torch.Tensor:
            positions = alibi_positions(num_visual, num_audio, self.fps, self.frame_rate, self.alibi)
            return alibi_bias(positions, self.slopes.detach().cpu(), self.alibi_direction).to(device)

        return self._cached((num_visual, num_audio, str(device)), build)

    def attention_mask(self, num_visual: int, num_audio: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The ALiBi bias as SDPA takes it: ``[1, H, F+T, F+T]`` in `dtype` (cached, like
        :meth:`attention_bias`, so a sampler's steps do not convert it again in every layer)."""
        if self.alibi == "none":
            return None
        return self._cached(
            (num_visual, num_audio, str(device), dtype),
            lambda: self.attention_bias(num_visual, num_audio, device).to(dtype)[None],
        )

    def _cached(self, key: tuple, build) -> torch.Tensor:
        # made under inference mode, a tensor cannot be saved for a later training step's backward
        key = (*key, torch.is_inference_mode_enabled())
        value = self._bias_cache.get(key)
        if value is None:
            if len(self._bias_cache) > 8:
                self._bias_cache.clear()
            value = self._bias_cache[key] = build()
        return value

    def _run(self, h: torch.Tensor, num_visual: int, layers: int | None = None) -> torch.Tensor:
        bias = self.attention_mask(num_visual, h.shape[1] - num_visual, h.device, compute_dtype(h))
        for layer in self.layers[: layers if layers is not None else len(self.layers)]:
            h = layer(h, num_visual, bias)
        return h

    def forward(
        self,
        tokens: torch.Tensor,
        features: torch.Tensor | None = None,
        drop_visual: torch.Tensor | None = None,
        where: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens ``[B, K, T]`` (``mask_id`` where masked), features ``[B, F, D]`` or None
        (null visual embedding for all), ``drop_visual [B]`` bool -> logits
        ``[B, levels - given_levels, T, codebook_size]`` for the predicted levels; with
        `where` (bool ``[B, levels - given_levels, T]``) only ``logits[where]``, ``[M, V]``,
        computed for those positions alone."""
        audio = self.embed_audio(tokens)
        visual = self.embed_visual(features, drop_visual, batch=audio.shape[0])  # checks the features' shape
        audio = self.add_visual(audio, features, drop_visual)
        num_visual = visual.shape[1]
        h = self._run(torch.cat([visual, audio], dim=1), num_visual)
        return token_logits(self.final_norm, self.heads, h[:, num_visual:], where)

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
        audio = self.add_visual(self.embed_audio(tokens), features)
        return self._run(torch.cat([visual, audio], dim=1), visual.shape[1], self.expert_layers)


def _check_model_config(m: VABModelConfig, inputs: Inputs) -> None:
    problems = inputs.problems(m)
    if not 0 <= m.expert_layers <= m.layers:
        problems.append(f"model.expert_layers ({m.expert_layers}) must be between 0 and model.layers ({m.layers})")
    if not 0 <= m.given_levels < m.levels:
        problems.append(f"model.given_levels ({m.given_levels}) must be >= 0 and < model.levels ({m.levels})")
    if m.visual_pool not in VISUAL_POOLS:
        problems.append(f"model.visual_pool: {m.visual_pool!r} is not one of {', '.join(VISUAL_POOLS)}")
    if m.visual_proj not in VISUAL_PROJECTIONS:
        problems.append(f"model.visual_proj: {m.visual_proj!r} is not one of {', '.join(VISUAL_PROJECTIONS)}")
    direction = getattr(m, "alibi_direction", "both")
    if direction not in ALIBI_DIRECTIONS:
        problems.append(f"model.alibi_direction: {direction!r} is not one of {', '.join(ALIBI_DIRECTIONS)}")
    if problems:
        raise ConfigError("; ".join(problems))
