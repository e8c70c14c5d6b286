"""Multiway Transformer layers (VLMo style) and the float32 read-out.

A layer has one self-attention shared by both modalities.  In an *expert* layer
the pre-norm + feed-forward block is split at the visual/audio boundary: the
first ``num_visual`` positions go through the visual expert, the rest through
the audio expert, so a position never passes through the other modality's FFN.
Layers above the expert layers use one shared FFN.

Sequences are always ``[visual ; audio]``: ``x`` is ``[B, F + T, W]``; the attention
bias (ALiBi measured in time) comes from :mod:`vab.model.base`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from vab.precision import cpu_capabilities


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention over ``[B, L, W]`` with an optional
    additive bias ``[H, L, L]`` (ALiBi)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        # SDPA wants the float mask in the query's dtype (bf16 / fp16 under autocast), and a 4-D
        # mask: with [H, L, L] the CPU falls back to the unfused math kernel (2-3x slower).  Callers
        # pass it ready ([1, H, L, L] in the compute dtype, see `attention_mask`): converting 9M
        # values per layer was 6% of a bf16 vab-encodec forward
        mask = None
        if bias is not None:
            mask = bias if bias.dtype == q.dtype else bias.to(q.dtype)
            mask = mask[None] if mask.dim() == 3 else mask
        if blocked_attention_pays(q) and not (self.training and self.dropout):
            y = blocked_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(y.transpose(1, 2).reshape(b, length, width))


#: queries per block of :func:`blocked_attention`: a block's scores [B, H, 128, L] stay in cache
#: (64 and 128 measured alike, 256 30% slower at L = 760)
ATTENTION_BLOCK = 128


def blocked_attention_pays(q: torch.Tensor) -> bool:
    """True where :func:`blocked_attention` beats SDPA: bf16 / fp16 on a CPU without AMX, with no
    gradient to keep.  There the fused CPU kernel multiplies in float32 (a bf16 vab-encodec
    forward's attention ran at 69 GFLOP/s, 17% of the bf16 matrix-product peak, the same speed as
    fp32), while the blocks' products run on the CPU's bf16 dot-product instructions
    (docs/BENCHMARKS.md, "Closer to the peak")."""
    return (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)
            and not (torch.is_grad_enabled() and q.requires_grad) and not _cpu_has_amx())


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v`` as explicit matrix products, one example at a time
    and over blocks of :data:`ATTENTION_BLOCK` queries, in q's dtype: q, k, v ``[B, H, L, d]``,
    mask ``[1 or B, H, L, L]`` or None -> ``[B, H, L, d]``.  One example's block of scores
    ([H, 128, L]: 3 MB at L = 760) stays in cache, where a whole batch's did not (a batch of 16
    rows ran at half the speed per row); and each example is computed from itself alone, so a
    result does not depend on its batch."""
    length, dim = q.shape[-2], q.shape[-1]
    out = torch.empty_like(q)
    for b in range(q.shape[0]):
        # contiguous once: a block product on strided views copied k and v again for every block
        qb, vb = q[b].contiguous(), v[b].contiguous()
        kt = (k[b] * dim**-0.5).contiguous().transpose(-1, -2)
        mb = None if mask is None else mask[b if mask.shape[0] > 1 else 0]
        for start in range(0, length, ATTENTION_BLOCK):
            rows = slice(start, start + ATTENTION_BLOCK)
            scores = torch.matmul(qb[:, rows], kt)
            if mb is not None:
                scores += mb[:, rows]
            torch.matmul(scores.softmax(-1), vb, out=out[b, :, rows])
    return out


@functools.cache
def _cpu_has_amx() -> bool:
    return bool(cpu_capabilities().get("amx_bf16"))


class FeedForward(nn.Module):
    """Pre-norm FFN block ``LayerNorm -> Linear -> GELU -> Linear`` (residual added by the layer)."""

    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm(x))))))


class MultiwayLayer(nn.Module):
    """Pre-norm Transformer layer: shared attention, then per-modality experts
    (``experts=True``) or one shared FFN."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.0, experts: bool = False):
        super().__init__()
        self.experts = experts
        self.attn_norm = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.drop = nn.Dropout(dropout)
        if experts:
            self.ffn_visual = FeedForward(width, ffn, dropout)
            self.ffn_audio = FeedForward(width, ffn, dropout)
        else:
            self.ffn = FeedForward(width, ffn, dropout)

    def forward(self, x: torch.Tensor, num_visual: int, bias: torch.Tensor | None) -> torch.Tensor:
        """``x [B, F + T, W]`` whose first ``num_visual`` positions are visual."""
        x = x + self.drop(self.attn(self.attn_norm(x), bias))
        if not self.experts:
            return x + self.ffn(x)
        parts = []
        visual, audio = x[:, :num_visual], x[:, num_visual:]
        if visual.shape[1]:
            parts.append(visual + self.ffn_visual(visual))
        if audio.shape[1]:
            parts.append(audio + self.ffn_audio(audio))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matrix products on `x` run in: autocast's when it is on for x's device, else x's."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def token_logits(
    norm: nn.LayerNorm, heads: nn.ModuleList, h: torch.Tensor, where: torch.Tensor | None = None
) -> torch.Tensor:
    """The read-out: final LayerNorm and one linear head per level, always in at least float32
    (outside autocast, whatever the weights' dtype): ``h [B, T, W]`` -> logits ``[B, levels, T, V]``.
    Half-precision rounding here would reach the sampler multiplied by the guidance scale.

    `where` (bool ``[B, levels, T]``): only those positions are read, as rows ``[M, V]`` in the
    order of ``logits[where]`` (example, then level, then time): a sampler needs the logits of
    its masked positions only, and the fp32 heads are a few percent of a bf16 forward."""
    dtype = h.dtype if h.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=h.device.type, enabled=False):
        x = F.layer_norm(h.to(dtype), norm.normalized_shape, norm.weight.to(dtype), norm.bias.to(dtype), norm.eps)
        if where is None:
            return torch.stack([F.linear(x, head.weight.to(dtype), head.bias.to(dtype)) for head in heads], dim=1)
        if where.shape != (x.shape[0], len(heads), x.shape[1]):
            raise ValueError(f"where has shape {tuple(where.shape)}; expected {(x.shape[0], len(heads), x.shape[1])}")
        b, level, t = where.nonzero(as_tuple=True)  # row-major: the order of logits[where]
        rows = x[b, t]  # [M, W]
        out = rows.new_empty(rows.shape[0], heads[0].out_features)
        for k, head in enumerate(heads):
            pick = level == k
            out[pick] = F.linear(rows[pick], head.weight.to(dtype), head.bias.to(dtype))
        return out
