"""PaSST (Koutini et al. 2022), the AudioSet transformer of the field's FD_PaSST / KL_PaSST:
a 768-d clip embedding and a 527-class label distribution.

Built as ``hear21passt`` builds ``passt_s_swa_p16_128_ap476`` (what av-benchmark, MMAudio's
evaluation code, loads with ``get_basic_model(mode="all")``): a ViT-B (12 layers, 768 wide,
12 heads) on 16 x 16 patches of a 128-band log-mel spectrogram taken with stride 10 in
both axes, separate frequency / time position embeddings, a class and a distillation
token whose outputs are averaged into the embedding, and a LayerNorm + linear head for
the logits.  The module names follow the released checkpoint
``passt-s-f128-p16-s10-ap.476-swa.pt`` (``patch_embed.proj``, ``cls_token``,
``dist_token``, ``new_pos_embed``, ``freq_new_pos_embed``, ``time_new_pos_embed``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head.0``,
``head.1``, ``head_dist``), so that file loads as is; a state dict of hear21passt's
wrapper (``net.`` prefix) loads too.

Front end (hear21passt's ``AugmentMelSTFT`` in eval mode): 32-kHz audio, pre-emphasis
``x[t] - 0.97 x[t - 1]``, 1024-point STFT of 800-sample symmetric Hann windows (centred,
reflect padding), hop 320, power, 128 Kaldi mel bands 0 - 15 kHz, ``(log(mel + 1e-5) +
4.5) / 5``.  As av-benchmark, every clip is padded with zeros or cut to 10 s (320,000
samples) and gives one row.  The label distribution is the softmax of the logits (float64).

Weights: a local file (``passt:PATH``) or ``passt:download``, which fetches the release file
into the torch hub cache the way hear21passt does (never in the offline path;
:func:`vab.evaluation.scorers.weights.weights_file`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from vab.evaluation.scorers.base import AudioEmbedder
from vab.evaluation.scorers.weights import load_into, read_state_dict

SAMPLE_RATE = 32000
CLIP_SAMPLES = 320000  # av-benchmark pads or cuts every clip to 10 s
N_MELS = 128
N_FFT = 1024
WINDOW = 800
HOP = 320
F_MAX = 15000.0  # hear21passt: sr / 2 - fmax_aug_range / 2 = 16000 - 1000
PATCH = 16
STRIDE = 10
CLASSES = 527
DOWNLOAD = "passt-s-f128-p16-s10-ap.476-swa.pt from the PaSST release v0.0.1-audioset (kkoutini/PaSST)"


class PaSSTMel(nn.Module):
    """Waveform ``[B, S]`` at 32 kHz -> normalised log-mel ``[B, 128, S // 320 + 1]``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=False), persistent=False)
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(N_MELS, N_FFT, float(SAMPLE_RATE), 0.0, F_MAX,
                                                             100.0, -500.0, 1.0)
        self.register_buffer("banks", F.pad(banks, (0, 1)), persistent=False)  # [128, 513]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(wav[:, None].float(), torch.tensor([[[-0.97, 1.0]]], device=wav.device))[:, 0]
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WINDOW, window=self.window, center=True,
                          normalized=False, return_complex=True)
        power = spec.real**2 + spec.imag**2
        return (torch.log(self.banks @ power + 1e-5) + 4.5) / 5.0


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d_head)) v, as timm's ViT
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """timm's ViT MLP (``fc1``, exact GELU, ``fc2``), also Synchformer's."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, PATCH, stride=STRIDE)


class PaSSTNet(nn.Module):
    """Log-mel ``[B, 1, 128, T]`` -> (logits ``[B, classes]``, embedding ``[B, dim]``).

    `dim`, `depth`, `heads` and `classes` default to the published network; smaller values give
    the same layout with fewer weights (tests).  `time_patches`: the length of the time position
    embedding (99 for the 998-frame input the network was built for; longer inputs are refused,
    shorter ones use its first columns)."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, classes: int = CLASSES,
                 time_patches: int = (998 - PATCH) // STRIDE + 1):
        super().__init__()
        freq_patches = (N_MELS - PATCH) // STRIDE + 1
        self.patch_embed = _PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, dim))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, dim, freq_patches, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, dim, 1, time_patches))
        self.blocks = nn.Sequential(*[_Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))
        self.head_dist = nn.Linear(dim, classes)  # in the checkpoint; the published forward does not use it

    def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed.proj(spec)  # [B, D, F', T']
        if x.shape[-1] > self.time_new_pos_embed.shape[-1]:
            raise ValueError(f"PaSST: {x.shape[-1]} time patches, the network has positions for "
                             f"{self.time_new_pos_embed.shape[-1]}")
        x = x + self.time_new_pos_embed[..., : x.shape[-1]] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)  # [B, F' T', D], frequency-major as the original
        b = x.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1],
                            self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:]], dim=1)
        x = self.norm(self.blocks(torch.cat([tokens, x], dim=1)))
        embedding = (x[:, 0] + x[:, 1]) / 2
        return self.head(embedding), embedding


class PaSSTEmbedder(AudioEmbedder):
    """One PaSST embedding ``[1, 768]`` and label distribution ``[1, 527]`` per clip (the clip
    padded or cut to 10 s first, as av-benchmark)."""

    name = "passt"
    sample_rate = SAMPLE_RATE

    def __init__(self, net: PaSSTNet, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.mel = PaSSTMel().to(self.device)
        self.net = net.to(self.device).eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **arch) -> PaSSTEmbedder:
        """Load the weights in `path` (the released ``.pt``, hear21passt's wrapper state dict, or a
        ``.safetensors`` state dict); `arch`: :class:`PaSSTNet` sizes (default: the published network)."""
        return cls(load_into(PaSSTNet(**arch), _net_keys(read_state_dict(path, "PaSST", DOWNLOAD)), path, "PaSST"),
                   device)

    @torch.no_grad()
    def logits_and_embedding(self, wavs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips ``[B, S]`` at 32 kHz (each padded or cut to 10 s) -> (logits ``[B, C]``, embeddings ``[B, D]``)."""
        x = wavs.float()[:, :CLIP_SAMPLES]
        x = F.pad(x, (0, CLIP_SAMPLES - x.shape[1])).to(self.device)
        logits, embedding = self.net(self.mel(x)[:, None])
        return logits.float().cpu(), embedding.float().cpu()

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return self.logits_and_embedding(wav[None])[1]

    def label_probs(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits_and_embedding(wav[None])[0].double(), dim=-1)

    def embed_and_label_probs(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.logits_and_embedding(wav[None])
        return embedding, torch.softmax(logits.double(), dim=-1)


def _net_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's own keys: hear21passt's wrapper prefixes them with ``net.`` and adds its
    mel buffers and a device proxy."""
    if any(k.startswith("net.") for k in state):
        return {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    return state
