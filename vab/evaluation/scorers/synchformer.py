"""Synchformer (Iashin et al. 2024) and the field's DeSync: how far (s) a soundtrack is from
its picture, as Synchformer predicts it.

The network is built as av-benchmark (MMAudio's evaluation code) builds it, with the layer
names of its ``synchformer_state_dict.pth`` so that file loads as is:

* ``vfeat_extractor``: MotionFormer, a ViT-B (12 layers, 768 wide, 12 heads) over tubelets of
  2 frames x 16 x 16 pixels of a 16-frame, 224 x 224 segment, with divided attention (each
  token attends over time, then over space, the class token over everything), then a
  ``TransformerEncoderLayer`` with its own class token that pools each of the 8 tubelet
  steps over space: ``[S, 8, 768]`` per clip;
* ``afeat_extractor``: AST (12 layers) over 16 x 16 patches (stride 10) of a 128-band
  log-mel spectrogram of 66 frames (0.64 s), then a ``TransformerEncoderLayer`` that pools
  each of the 6 time steps over frequency: ``[S, 6, 768]``;
* ``transformer``: 3 GPT-style layers over ``[OFF; 14 x 8 video; MOD; 14 x 6 audio]`` tokens
  (after ``vproj`` / ``aproj``) whose OFF token gives logits over 21 offsets, -2 .. 2 s in
  steps of 0.2 s.

Preprocessing and the score follow av-benchmark: video at 25 fps, resized (short side 224,
bicubic) and centre-cropped to 224, scaled to [-1, 1], cut into 16-frame segments every 8
frames; audio at 16 kHz cut into 10,240-sample segments every 5,120 samples, each a
128-band mel spectrogram (1024-point FFT, 400-sample window, hop 160), ``log(x + 1e-6)``,
padded to 66 frames, normalised ``(x + 4.2677393) / (2 * 4.5689974)``.  DeSync of a clip:
the offsets predicted for its first and last 14 segments (4.8 s each), in absolute value,
averaged; the table averages clips.  Clips shorter than 4.8 s have no DeSync.  Where vab
differs: frames are read with PyAV on the picture's own clock (``vab.media``) rather than
torio's fps filter, so a frame may be picked one source frame apart.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from vab.evaluation.scorers.passt import Mlp
from vab.evaluation.scorers.weights import NetScorer, load_into, read_state_dict

SAMPLE_RATE = 16000
FPS = 25.0
SIZE = 224
SEGMENT_FRAMES = 16
SEGMENT_STEP_FRAMES = 8
AUDIO_SEGMENT = 10240  # samples, 0.64 s
AUDIO_STEP = 5120
SPEC_FRAMES = 66
MEL_MEAN, MEL_STD = -4.2677393, 4.5689974
WINDOW_SEGMENTS = 14  # 4.8 s of segments, the positions the offset transformer has
OFFSETS = tuple(float(x) for x in np.linspace(-2.0, 2.0, 21))  # s, the classes of the offset head
DOWNLOAD = "synchformer_state_dict.pth (the Synchformer weights av-benchmark / MMAudio use)"


# ---------------------------------------------------------------------- video: MotionFormer
def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T) v over the last two axes (q already scaled)."""
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


class _DividedAttention(nn.Module):
    """Attention of every token over time (``time``: the same patch in every frame) or space
    (``space``: every patch of its frame); the class token attends to every token, and every
    token also to the class token."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, axis: str, frames: int) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))  # [B, h, N, dh]
        q = q * (d // h) ** -0.5
        cls_out = _attend(q[:, :, :1], k, v)  # [B, h, 1, dh]
        patches = (n - 1) // frames

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, h, F * P, dh] -> groups [B, h, G, L, dh]
            t = t[:, :, 1:].reshape(b, h, frames, patches, -1)
            return t.transpose(2, 3) if axis == "time" else t

        qg, kg, vg = split(q), split(k), split(v)
        groups = qg.shape[2]
        kc = k[:, :, None, :1].expand(-1, -1, groups, -1, -1)
        vc = v[:, :, None, :1].expand(-1, -1, groups, -1, -1)
        out = _attend(qg, torch.cat([kc, kg], dim=3), torch.cat([vc, vg], dim=3))  # [B, h, G, L, dh]
        if axis == "time":
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(b, h, frames * patches, -1)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _DividedBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _DividedAttention(dim, heads)
        self.timeattn = _DividedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), "time", frames)
        x = x + self.attn(self.norm1(x), "space", frames)
        return x + self.mlp(self.norm2(x))


class _Pooling(nn.TransformerEncoderLayer):
    """A pre-norm ``TransformerEncoderLayer`` (GELU, eps 1e-6) with its own class token: the
    class token's output pools a sequence ``[N, L, D]`` into ``[N, D]``."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation=nn.GELU(), layer_norm_eps=1e-6,
                         batch_first=True, norm_first=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1))[:, 0]


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, conv: nn.Module):
        super().__init__()
        self.proj = conv


class MotionFormer(nn.Module):
    """Segments ``[N, 3, 16, H, W]`` (H = W = `size`) -> features ``[N, 8, dim]``."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, size: int = SIZE):
        super().__init__()
        grid = size // 16
        self.patch_embed = _PatchEmbed(dim, nn.Conv2d(3, dim, 16, stride=16))  # in the checkpoint, unused
        self.patch_embed_3d = _PatchEmbed(dim, nn.Conv3d(3, dim, (2, 16, 16), stride=(2, 16, 16)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, SEGMENT_FRAMES // 2, dim))
        self.blocks = nn.ModuleList([_DividedBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.spatial_attn_agg = _Pooling(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.patch_embed_3d.proj(x)  # [N, D, t, h, w]
        _, d, t, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [N, t h w, D]: frame-major
        pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temp_embed[:, :t].repeat_interleave(h * w, dim=1)
        x = torch.cat([self.cls_token.expand(n, -1, -1) + self.pos_embed[:, :1], x + pos], dim=1)
        for block in self.blocks:
            x = block(x, t)
        x = self.norm(x[:, 1:])  # [N, t h w, D]
        per_frame = x.reshape(n * t, h * w, d)
        return self.spatial_attn_agg(per_frame).reshape(n, t, d)


# ---------------------------------------------------------------------- audio: AST
class _ASTSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (m(x).reshape(b, n, self.heads, -1).transpose(1, 2) for m in (self.query, self.key, self.value))
        return _attend(q / math.sqrt(d // self.heads), k, v).transpose(1, 2).reshape(b, n, d)


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)


class _ASTAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = _ASTSelfAttention(dim, heads)
        self.output = _Dense(dim, dim)


class _ASTLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = _ASTAttention(dim, heads)
        self.intermediate = _Dense(dim, 4 * dim)
        self.output = _Dense(4 * dim, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention.output.dense(self.attention.attention(self.layernorm_before(x)))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class _ASTPatches(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.projection = nn.Conv2d(1, dim, 16, stride=10)


class _ASTEmbeddings(nn.Module):
    def __init__(self, dim: int, patches: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embeddings = _ASTPatches(dim)
        self.position_embeddings = nn.Parameter(torch.zeros(1, patches + 2, dim))


class _ASTEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.layer = nn.ModuleList([_ASTLayer(dim, heads) for _ in range(depth)])


class _AST(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.freq_patches = (128 - 16) // 10 + 1
        self.time_patches = (SPEC_FRAMES - 16) // 10 + 1
        self.embeddings = _ASTEmbeddings(dim, self.freq_patches * self.time_patches)
        self.encoder = _ASTEncoder(dim, depth, heads)
        self.layernorm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``[N, 66, 128]`` (time, mel) -> ``[N, 2 + f t, D]``."""
        e = self.embeddings
        x = e.patch_embeddings.projection(spec.transpose(1, 2)[:, None]).flatten(2).transpose(1, 2)  # f-major
        n = x.shape[0]
        x = torch.cat([e.cls_token.expand(n, -1, -1), e.distillation_token.expand(n, -1, -1), x], dim=1)
        x = x + e.position_embeddings
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class AudioFeatures(nn.Module):
    """Spectrogram segments ``[N, 66, 128]`` -> features ``[N, 6, dim]``."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12):
        super().__init__()
        self.ast = _AST(dim, depth, heads)
        self.freq_attn_agg = _Pooling(dim, heads)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.ast(spec)[:, 2:]  # without the class and distillation tokens
        n, _, d = x.shape
        f, t = self.ast.freq_patches, self.ast.time_patches
        x = x.reshape(n, f, t, d).transpose(1, 2).reshape(n * t, f, d)
        return self.freq_attn_agg(x).reshape(n, t, d)


# ---------------------------------------------------------------------- the offset transformer
class _GPTAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.key, self.query, self.value, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (m(x).reshape(b, n, self.heads, -1).transpose(1, 2) for m in (self.query, self.key, self.value))
        return self.proj(_attend(q / math.sqrt(d // self.heads), k, v).transpose(1, 2).reshape(b, n, d))


class _GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _GPTAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class _PositionEmbedding(nn.Module):
    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, length, dim))


class GlobalTransformer(nn.Module):
    """Video ``[B, 14 x 8, D]`` and audio ``[B, 14 x 6, D]`` tokens -> offset logits ``[B, 21]``."""

    def __init__(self, dim: int = 768, depth: int = 3, heads: int = 8):
        super().__init__()
        self.vis_in_lnorm, self.aud_in_lnorm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, dim))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_emb_cfg = _PositionEmbedding(2 + WINDOW_SEGMENTS * (8 + 6), dim)
        self.blocks = nn.Sequential(*[_GPTBlock(dim, heads) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(dim)
        self.off_head = nn.Linear(dim, len(OFFSETS))

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b = v.shape[0]
        x = torch.cat([self.OFF_tok.expand(b, -1, -1), self.vis_in_lnorm(v), self.MOD_tok.expand(b, -1, -1),
                       self.aud_in_lnorm(a)], dim=1)
        x = self.ln_f(self.blocks(x + self.pos_emb_cfg.pos_emb))
        return self.off_head(x[:, 0])


class SynchformerNet(nn.Module):
    """The three parts with av-benchmark's names.  `dim`, `depth`, `heads`, `size` default to the
    published network; smaller values give the same layout with fewer weights (tests)."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, global_depth: int = 3,
                 global_heads: int = 8, size: int = SIZE):
        super().__init__()
        self.size = size
        self.vfeat_extractor = MotionFormer(dim, depth, heads, size)
        self.afeat_extractor = AudioFeatures(dim, depth, heads)
        self.vproj, self.aproj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.transformer = GlobalTransformer(dim, global_depth, global_heads)

    def video_features(self, segments: torch.Tensor) -> torch.Tensor:
        """``[S, 16, 3, H, W]`` in [-1, 1] -> ``[S, 8, D]``."""
        return self.vfeat_extractor(segments.permute(0, 2, 1, 3, 4))

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """``[S, 66, 128]`` normalised log-mel -> ``[S, 6, D]``."""
        return self.afeat_extractor(spec)

    def offset_logits(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Features ``[B, 14, 8, D]`` and ``[B, 14, 6, D]`` -> logits over :data:`OFFSETS` ``[B, 21]``."""
        b, _, _, d = video.shape
        return self.transformer(self.vproj(video).reshape(b, -1, d), self.aproj(audio).reshape(b, -1, d))


# ---------------------------------------------------------------------- preprocessing and DeSync
def video_segments(frames: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` at 25 fps -> segments ``[S, 16, 3, size, size]`` in [-1, 1]
    (short side resized to `size` with bicubic antialiasing, centre crop; 16 frames every 8)."""
    # torchvision takes seconds to import: only when frames are scored
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    x = TF.center_crop(TF.resize(x, size, interpolation=InterpolationMode.BICUBIC, antialias=True), size)
    x = (x.float() / 255.0 - 0.5) / 0.5
    count = (len(x) - SEGMENT_FRAMES) // SEGMENT_STEP_FRAMES + 1
    if count < 1:
        return x.new_zeros((0, SEGMENT_FRAMES, 3, size, size))
    return torch.stack([x[i * SEGMENT_STEP_FRAMES:i * SEGMENT_STEP_FRAMES + SEGMENT_FRAMES] for i in range(count)])


_MEL: dict[str, torchaudio.transforms.MelSpectrogram] = {}


def audio_segments(wav: torch.Tensor) -> torch.Tensor:
    """Mono 16-kHz audio ``[N]`` -> normalised log-mel segments ``[S, 66, 128]`` (0.64 s every 0.32 s)."""
    if "mel" not in _MEL:
        _MEL["mel"] = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=1024, win_length=400,
                                                           hop_length=160, n_mels=128)
    count = (len(wav) - AUDIO_SEGMENT) // AUDIO_STEP + 1
    if count < 1:
        return wav.new_zeros((0, SPEC_FRAMES, 128))
    segments = torch.stack([wav[i * AUDIO_STEP:i * AUDIO_STEP + AUDIO_SEGMENT] for i in range(count)]).float()
    spec = torch.log(_MEL["mel"](segments) + 1e-6)  # [S, 128, 65]
    spec = F.pad(spec, (0, max(0, SPEC_FRAMES - spec.shape[-1])))[..., :SPEC_FRAMES]
    return ((spec - MEL_MEAN) / (2 * MEL_STD)).transpose(1, 2)


def desync_of_windows(logits: torch.Tensor) -> torch.Tensor:
    """|offset| (s) of the class each row of logits ``[W, 21]`` picks: ``[W]``."""
    return torch.tensor(OFFSETS, dtype=torch.float64)[logits.argmax(dim=-1)].abs()


class SynchformerScorer(NetScorer):
    """DeSync of a clip's audio against its frames (module doc)."""

    name = "synchformer"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **arch) -> SynchformerScorer:
        """Load ``synchformer_state_dict.pth`` (or a ``.safetensors`` state dict); `arch`:
        :class:`SynchformerNet` sizes (default: the published network)."""
        return cls(load_into(SynchformerNet(**arch), read_state_dict(path, "Synchformer", DOWNLOAD), path,
                             "Synchformer"), device)

    @torch.no_grad()
    def desync(self, wav: np.ndarray, sample_rate: int, frames: np.ndarray) -> float:
        """Mean |offset| (s) of the first and last 14 segments of audio ``[N]`` at `sample_rate`
        against uint8 frames ``[T, H, W, 3]`` at 25 fps, both from the clip's first frame; NaN
        when either gives fewer than 14 segments (a clip under 4.8 s)."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
        if int(sample_rate) != SAMPLE_RATE:
            x = torchaudio.functional.resample(x, int(sample_rate), SAMPLE_RATE)
        audio = audio_segments(x)
        video = video_segments(frames, self.net.size)
        if min(len(audio), len(video)) < WINDOW_SEGMENTS:
            return float("nan")
        a = torch.cat([self.net.audio_features(audio[i:i + 8].to(self.device)) for i in range(0, len(audio), 8)])
        v = torch.cat([self.net.video_features(video[i:i + 2].to(self.device)) for i in range(0, len(video), 2)])
        w = WINDOW_SEGMENTS
        logits = self.net.offset_logits(torch.stack([v[:w], v[-w:]]), torch.stack([a[:w], a[-w:]]))
        return float(desync_of_windows(logits.float().cpu()).mean())
