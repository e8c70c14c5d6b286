"""The autoregressive baseline: FoleyGen (and the V-AURA-style fusion) on vab's codecs and data.

A decoder-only causal Transformer over codec tokens in the MusicGen delay pattern
(:mod:`vab.baselines.delay`): the input of step s is delayed step s - 1 (step 0 a start
token), embedded with one learned table per level and summed; one linear head per level
predicts all K levels of delayed step s.  Video conditions it in one of two ways
(``model.conditioning``):

- ``prefix`` (FoleyGen 2.3): frame features, projected linearly, are prepended to the
  audio steps; which frames each audio step may attend to is ``model.visual_mask``
  (``all`` | ``causal`` | ``frame``, FoleyGen 2.4, :mod:`vab.baselines.visual_masks`).
- ``concat`` (V-AURA III-A/C): frame features through a two-layer MLP, repeated to the
  audio frame rate, concatenated channel-wise with the audio embedding of the same step
  (audio ``width // 2`` + video ``width - width // 2`` channels); the input of step s
  carries the frame of step s's own time, one step ahead of the audio it carries.  Steps
  past the video's end (the delay tail) get a learned padding vector.

Classifier-free guidance: a learned null visual embedding replaces the projected frames
(training drops them with ``train.visual_dropout``).  Positions: ALiBi (``model.alibi``,
as in VAB: ``time`` puts frame f at its time and delayed step s at frame s, in audio
frames; ``index`` counts sequence positions; ``none`` has no positions).  Layers are
pre-norm with ``scaled_dot_product_attention``; a :class:`KVCache` makes sampling cost
one position per step.

It is not a kind of VAB: both are :class:`~vab.model.base.TokenModel` s, which gives
them the same token geometry (``levels``, ``mask_id``, ``num_frames``,
``num_audio_frames``, the ``codebooks`` buffer ...), parameter bookkeeping and model
directory format, so codec checks and ``vab generate`` treat them alike.  The type
registers as ``model.type: foleygen`` (an entry point in ``pyproject.toml``) and brings
its own decoding (:func:`~vab.baselines.sampling.sample_autoregressive`) and training
objective (:class:`~vab.baselines.objective.AutoregressiveObjective`).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from vab.baselines.objective import AutoregressiveObjective
from vab.baselines.sampling import sample_autoregressive
from vab.baselines.visual_masks import check_visual_mask, frame_of_step, visual_attention_mask
from vab.errors import ConfigError, VabError
from vab.config import FoleyGenModelConfig
from vab.model.base import Inputs, TokenModel, alibi_bias, alibi_positions
from vab.model.multiway import FeedForward, SelfAttention, token_logits

CONDITIONINGS = ("prefix", "concat")


class KVCache:
    """Keys and values of every layer for `batch` rows and up to `capacity` positions,
    filled left to right (``length`` positions so far, the visual prefix included)."""

    def __init__(self, layers: int, batch: int, capacity: int):
        self.layers, self.batch, self.capacity = layers, batch, capacity
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers
        self.length = 0
        self.num_visual = 0  # prefix positions at the start of the cache

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v [B, H, n, Dh]`` after the cached positions; return all of them so far."""
        n = k.shape[2]
        end = self.length + n
        if end > self.capacity:
            raise VabError(f"key-value cache holds {self.capacity} positions; {end} needed")
        if self.keys[layer] is None:  # allocated on first use, in the dtype autocast gives
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty(shape)
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n


class CachedAttention(SelfAttention):
    """:class:`~vab.model.multiway.SelfAttention` with a float mask ``[H, n, L]`` (ALiBi plus
    -inf where attention is not allowed) and an optional key-value cache."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, n, width = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        # a 4-D mask (batch dimension 1) lets the CPU take the fused kernel; a 3-D one falls back
        # to the unfused math path, 3-10x slower here (most at one query row against a long cache)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.to(q.dtype)[None], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, n, width))


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: masked self-attention, then a GELU feed-forward block."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.attn_norm = nn.LayerNorm(width)
        self.attn = CachedAttention(width, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.ffn = FeedForward(width, ffn, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), mask, cache, layer))
        return x + self.ffn(x)


class FoleyGen(TokenModel):
    """Decoder-only Transformer over delayed codec tokens, conditioned on frame features.

    Same constructor and attributes as the other token models; ``mask_id``
    (= ``codebook_size``) is the start / padding token of the delay pattern.
    """

    model_type = "foleygen"
    EMBEDDING_PREFIXES = ("audio_embed.", "visual_proj.", "null_visual", "pad_visual", "modality")
    NO_DECAY_VECTORS = ("null_visual", "pad_visual", "modality")
    autoregressive = True
    sampler = staticmethod(sample_autoregressive)
    objective = AutoregressiveObjective

    def __init__(self, m: FoleyGenModelConfig, inputs: Inputs):
        _check_foleygen_config(m, inputs)
        # the codec's codebooks are not read by this model; the base keeps them (as a buffer) so a
        # model directory is self-contained and generation can check (or rebuild) the codec as for VAB
        super().__init__(m, inputs)
        self.visual_mask = str(m.visual_mask)
        self.conditioning = str(m.conditioning)
        width = int(m.width)
        concat = self.conditioning == "concat"
        audio_width = width // 2 if concat else width
        video_width = width - audio_width if concat else width

        self.audio_embed = nn.ModuleList(nn.Embedding(self.codebook_size + 1, audio_width) for _ in range(self.levels))
        if concat:
            self.visual_proj = nn.Sequential(
                nn.Linear(self.visual_dim, video_width), nn.GELU(), nn.Linear(video_width, video_width)
            )
            self.pad_visual = nn.Parameter(torch.empty(video_width))
        else:
            self.visual_proj = nn.Linear(self.visual_dim, video_width)
            self.modality = nn.Parameter(torch.empty(2, width))  # 0 = visual, 1 = audio
        self.null_visual = nn.Parameter(torch.empty(video_width))
        self.layers = nn.ModuleList(
            DecoderLayer(width, int(m.heads), int(m.ffn), float(m.dropout)) for _ in range(int(m.layers))
        )
        self.final_norm = nn.LayerNorm(width)
        self.heads = nn.ModuleList(nn.Linear(width, self.codebook_size) for _ in range(self.levels))
        self._mask_cache: dict[tuple, torch.Tensor] = {}
        self.reset_parameters()

    # ------------------------------------------------------------------ construction
    def reset_parameters(self) -> None:
        """Truncated normal (std 0.02) for weights, embeddings and learned vectors, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for name in ("null_visual", "pad_visual", "modality"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)

    def new_cache(self, batch: int, steps: int) -> KVCache:
        """An empty cache for `batch` rows and `steps` delayed audio steps (plus the prefix)."""
        prefix = self.num_frames if self.conditioning == "prefix" else 0
        return KVCache(len(self.layers), batch, prefix + steps)

    # ------------------------------------------------------------------ embeddings
    def embed_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """Delayed input steps ``[B, K, n]`` (``mask_id`` = start / padding) -> ``[B, n, W_audio]``."""
        if steps.dim() != 3 or steps.shape[1] != self.levels:
            raise VabError(f"audio steps have shape {tuple(steps.shape)}; the model needs [batch, {self.levels} levels, steps]")
        steps = steps.to(device=self.codebooks.device, dtype=torch.long)
        return sum(self.audio_embed[k](steps[:, k]) for k in range(self.levels))

    def embed_visual(
        self, features: torch.Tensor | None, drop_visual: torch.Tensor | None = None, batch: int | None = None
    ) -> torch.Tensor:
        """Features ``[B, F, D]`` -> ``[B, F, W_video]``; None gives the null embedding for
        ``num_frames`` frames; ``drop_visual [B]`` swaps in the null embedding per example."""
        if features is None:
            return self.null_visual.expand(batch, self.num_frames, -1)
        if features.dim() != 3 or features.shape[2] != self.visual_dim:
            raise VabError(
                f"visual features have shape {tuple(features.shape)}; the model needs [batch, frames, {self.visual_dim}]"
            )
        weight = self.null_visual
        v = self.visual_proj(features.to(device=weight.device, dtype=weight.dtype))
        if drop_visual is not None:
            drop = drop_visual.to(device=v.device, dtype=torch.bool)[:, None, None]
            v = torch.where(drop, self.null_visual.to(v.dtype), v)
        return v

    def _visual_per_step(self, visual: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Concat conditioning: ``[B, n, W_video]``, the frame of each step's time for steps
        ``start .. start + n - 1``, the padding vector past the video's end."""
        frames = visual.shape[1]
        index = frame_of_step(start + n, self.fps, self.frame_rate, frames)[start:].to(visual.device)
        end = frames / self.fps * self.frame_rate  # the video's end, in audio frames
        past = (torch.arange(start, start + n, device=visual.device) >= end - 1e-9)[None, :, None]
        return torch.where(past, self.pad_visual.to(visual.dtype), visual[:, index])

    # ------------------------------------------------------------------ attention
    def attention_mask(self, num_visual: int, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """Float ``[H, L, L]`` (L = num_visual + steps): ALiBi bias, -inf where the visual mask or
        causality forbids attention.  Cached per shape."""
        device = device or self.slopes.device
        key = (num_visual, steps, str(device))
        mask = self._mask_cache.get(key)
        if mask is None:
            if len(self._mask_cache) > 8:
                self._mask_cache.clear()
            allowed = visual_attention_mask(self.visual_mask, num_visual, steps, self.fps, self.frame_rate)
            heads = len(self.slopes)
            if self.alibi == "none":
                bias = torch.zeros(heads, *allowed.shape)
            else:
                positions = alibi_positions(num_visual, steps, self.fps, self.frame_rate, self.alibi)
                bias = alibi_bias(positions, self.slopes.detach().cpu())
            mask = bias.masked_fill(~allowed, float("-inf")).to(device)
            self._mask_cache[key] = mask
        return mask

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        steps: torch.Tensor,
        features: torch.Tensor | None = None,
        drop_visual: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Delayed input steps ``[B, K, n]`` (:func:`~vab.baselines.delay.shift_right` of the
        delayed tokens), features ``[B, F, D]`` or None (null visual embedding), ``drop_visual
        [B]`` -> logits ``[B, K, n, codebook_size]``: output i predicts delayed step
        ``offset + i``.  Without a cache the steps start at 0 (teacher forcing); with one,
        they continue the cached positions (the prefix is added on the first call)."""
        batch, n = steps.shape[0], steps.shape[2]
        offset = 0 if cache is None else cache.length - cache.num_visual
        audio = self.embed_steps(steps)
        if self.conditioning == "prefix":
            audio = audio + self.modality[1]
            if cache is None or cache.length == 0:
                visual = self.embed_visual(features, drop_visual, batch) + self.modality[0]
                num_visual = visual.shape[1]
                x = torch.cat([visual, audio], dim=1)
                if cache is not None:
                    cache.num_visual = num_visual
            else:
                num_visual = cache.num_visual
                x = audio
        else:
            num_visual = 0
            visual = self.embed_visual(features, drop_visual, batch)
            x = torch.cat([audio, self._visual_per_step(visual, offset, n)], dim=2)
        total = num_visual + offset + n
        first = total - x.shape[1]
        # a row's mask depends only on its own position: one mask for the cache's whole
        # capacity serves every step of a sampling run
        planned = offset + n if cache is None else cache.capacity - num_visual
        mask = self.attention_mask(num_visual, planned, x.device)[:, first:total, :total]
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return token_logits(self.final_norm, self.heads, x[:, x.shape[1] - n :])


def _check_foleygen_config(m: FoleyGenModelConfig, inputs: Inputs) -> None:
    """One ConfigError listing every problem: the token models' checks plus the baseline's own."""
    problems = []
    if m.conditioning not in CONDITIONINGS:
        problems.append(f"model.conditioning: {m.conditioning!r} is not one of {', '.join(CONDITIONINGS)}")
    try:
        check_visual_mask(m.visual_mask)
    except ConfigError as exc:
        problems.append(str(exc))
    if m.given_levels != 0:
        problems.append(f"model.given_levels must be 0 for a foleygen model (got {m.given_levels})")
    if m.conditioning == "concat" and m.width < 2:
        problems.append("model.width must be >= 2 for concat conditioning")
    problems += inputs.problems(m)
    if problems:
        raise ConfigError("; ".join(problems))
