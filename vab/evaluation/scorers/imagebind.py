"""ImageBind (Girdhar et al. 2023) and the field's IB-score: the cosine between a clip's
ImageBind video embedding and its soundtrack's ImageBind audio embedding.

Only the two towers the score needs are built, with the layer names of ImageBind's
``imagebind_huge.pth`` (``modality_preprocessors.{vision,audio}``,
``modality_trunks.{vision,audio}``, ``modality_heads.{vision,audio}``,
``modality_postprocessors.audio``); the checkpoint's other modalities (text, depth, thermal,
IMU) are left out when it is read.

* vision: tubelets of 2 frames x 14 x 14 pixels of 224 x 224 crops (a ViT-H: 32 layers,
  1280 wide, 16 heads, pre-LayerNorm, ``nn.MultiheadAttention``), the class token through a
  LayerNorm and a linear map to 1024, L2-normalised;
* audio: a 128-band Kaldi filterbank of 2-s clips (204 frames) in 16 x 16 patches with
  stride 10 (a ViT-B with learnt key / value biases), the class token to 1024,
  L2-normalised and scaled by 20 (ImageBind's fixed audio logit scale; a cosine ignores it).

Preprocessing and the score follow av-benchmark (MMAudio's evaluation code): the video's
frames at 0.5 fps (0, 2, 4 ... s) resized (short side 224, bicubic), normalised with CLIP's
mean and standard deviation, cut into 3 crops (left, centre, right; top, centre, bottom for
a portrait picture), every two consecutive frames one 2-frame clip, the clip embeddings
averaged; the audio (16 kHz) as three 2-s clips spaced evenly from the start to the end,
each with its mean removed, filterbank ``(x + 4.268) / 9.138``, the clip embeddings
averaged.  The clip's score is the cosine of the two averages; the table shows the mean
over clips times 100, as the published tables do.  Where vab differs: frames are read with
PyAV on the picture's own clock (the frame on screen at 0, 2, 4 ... s, as vab reads 25-fps
frames for Synchformer) rather than torio's fps filter.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from vab.evaluation.scorers.passt import Mlp
from vab.evaluation.scorers.weights import NetScorer, load_into, read_state_dict

SAMPLE_RATE = 16000
FPS = 0.5  # video frames per second ImageBind sees
SIZE = 224
CROPS = 3
AUDIO_CLIPS = 3
AUDIO_CLIP_SECONDS = 2
AUDIO_FRAMES = 204
FBANK_MEAN, FBANK_STD = -4.268, 9.138
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_LOGIT_SCALE = 20.0
DOWNLOAD = "imagebind_huge.pth (ImageBind's release, facebookresearch/ImageBind)"
MODALITIES = ("vision", "audio")


class _PadIm2Video(nn.Module):
    """A single picture ``[B, C, H, W]`` or one frame as two identical frames (no weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2) if x.ndim == 4 else x
        return x.repeat(1, 1, 2, 1, 1) if x.shape[2] == 1 else x


class _Stem(nn.Module):
    def __init__(self, proj: nn.Module, norm: nn.Module | None = None):
        super().__init__()
        self.proj = proj
        self.norm_layer = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm_layer(x) if self.norm_layer is not None else x


class _PositionEmbedding(nn.Module):
    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))


class _Preprocessor(nn.Module):
    def __init__(self, stem: _Stem, patches: int, dim: int):
        super().__init__()
        self.rgbt_stem = stem
        self.pos_embedding_helper = _PositionEmbedding(patches + 1, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.pos_embedding_helper.pos_embed


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias_kv: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, bias=True, add_bias_kv=bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [L, B, D]
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, pre_norm: bool, bias_kv: bool):
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_norm else nn.Identity())
        self.blocks = nn.Sequential(*[_Block(dim, heads, bias_kv) for _ in range(depth)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        return self.blocks(self.pre_transformer_layer(tokens).transpose(0, 1)).transpose(0, 1)


class _First(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


class _LogitScale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(float(np.log(scale))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=100) * x


class ImageBindNet(nn.Module):
    """ImageBind's vision and audio towers: 2-frame clips ``[N, 3, 2, 224, 224]`` -> ``[N, out]``
    (unit length) and filterbanks ``[N, 1, 128, 204]`` -> ``[N, out]`` (length 20).  The sizes
    default to ``imagebind_huge``; smaller values give the same layout (tests)."""

    def __init__(self, vision_dim: int = 1280, vision_depth: int = 32, vision_heads: int = 16, audio_dim: int = 768,
                 audio_depth: int = 12, audio_heads: int = 12, out_dim: int = 1024, size: int = SIZE):
        super().__init__()
        self.size = size
        vision_stem = _Stem(nn.Sequential(_PadIm2Video(), nn.Conv3d(3, vision_dim, (2, 14, 14), stride=(2, 14, 14),
                                                                    bias=False)))
        audio_stem = _Stem(nn.Conv2d(1, audio_dim, 16, stride=10, bias=False), nn.LayerNorm(audio_dim))
        audio_patches = ((128 - 16) // 10 + 1) * ((AUDIO_FRAMES - 16) // 10 + 1)
        self.modality_preprocessors = nn.ModuleDict({
            "vision": _Preprocessor(vision_stem, (size // 14) ** 2, vision_dim),
            "audio": _Preprocessor(audio_stem, audio_patches, audio_dim),
        })
        self.modality_trunks = nn.ModuleDict({
            "vision": _Trunk(vision_dim, vision_depth, vision_heads, pre_norm=True, bias_kv=False),
            "audio": _Trunk(audio_dim, audio_depth, audio_heads, pre_norm=False, bias_kv=True),
        })
        self.modality_heads = nn.ModuleDict({
            name: nn.Sequential(nn.LayerNorm(dim, eps=1e-6), _First(), nn.Linear(dim, out_dim, bias=False))
            for name, dim in (("vision", vision_dim), ("audio", audio_dim))
        })
        self.modality_postprocessors = nn.ModuleDict({
            "vision": _Normalize(), "audio": nn.Sequential(_Normalize(), _LogitScale(AUDIO_LOGIT_SCALE)),
        })

    def embed(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        tokens = self.modality_trunks[modality](self.modality_preprocessors[modality](x))
        return self.modality_postprocessors[modality](self.modality_heads[modality](tokens))


# ---------------------------------------------------------------------- preprocessing
def _crop(frames: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """av-benchmark's (ImageBind's) uniform crop `index` (0, 1, 2) of ``[..., H, W]``."""
    h, w = frames.shape[-2:]
    y, x = -(-(h - size) // 2), -(-(w - size) // 2)
    if h > w:
        y = {0: 0, 1: y, 2: h - size}[index]
    else:
        x = {0: 0, 1: x, 2: w - size}[index]
    return frames[..., y:y + size, x:x + size]


def half_fps_frames(frames: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """The frames on screen at 0, 2, 4 ... s (``int(0.5 seconds)`` of them, as av-benchmark) out
    of frames ``[T, H, W, 3]`` read at `fps` (a whole multiple of 0.5)."""
    step = int(round(fps / FPS))
    return frames[::step][: int(FPS * seconds)]


def video_clips(frames: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` at 0.5 fps -> 2-frame clips ``[3 crops x (T - 1), 3, 2, size, size]``."""
    # torchvision takes seconds to import: only when frames are scored
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = TF.resize(x, size, interpolation=InterpolationMode.BICUBIC, antialias=True).float() / 255.0
    x = TF.normalize(x, CLIP_MEAN, CLIP_STD)  # [T, 3, H', W']
    crops = torch.stack([_crop(x, size, i) for i in range(CROPS)])  # [3, T, 3, size, size]
    clips = [crops[:, i:i + 2] for i in range(len(x) - 1)]  # each [3, 2, 3, size, size]
    if not clips:
        return x.new_zeros((0, 3, 2, size, size))
    return torch.cat(clips).permute(0, 2, 1, 3, 4)  # [N, 3, 2, size, size]


def audio_clip_starts(seconds: float) -> list[Fraction]:
    """Start times (s) of the 2-s audio clips: evenly from 0 to the end (pytorchvideo's
    ConstantClipsPerVideoSampler, as ImageBind's loader uses it)."""
    last = max(Fraction(seconds) - AUDIO_CLIP_SECONDS, Fraction(0))
    return [last * i / (AUDIO_CLIPS - 1) for i in range(AUDIO_CLIPS)]


def audio_clips(wav: torch.Tensor) -> torch.Tensor:
    """Mono 16-kHz audio ``[N]`` -> normalised filterbanks ``[3, 1, 128, 204]``."""
    out = []
    for start in audio_clip_starts(len(wav) / SAMPLE_RATE):
        clip = wav[int(start * SAMPLE_RATE):int((start + AUDIO_CLIP_SECONDS) * SAMPLE_RATE)].double()
        clip = (clip - clip.mean()).float()
        fbank = torchaudio.compliance.kaldi.fbank(
            clip[None], htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False, window_type="hanning",
            num_mel_bins=128, dither=0.0, frame_length=25, frame_shift=10).T  # [128, frames]
        fbank = F.pad(fbank, (0, max(0, AUDIO_FRAMES - fbank.shape[1])))[:, :AUDIO_FRAMES]
        out.append(((fbank - FBANK_MEAN) / FBANK_STD)[None])
    return torch.stack(out)


class ImageBindScorer(NetScorer):
    """The IB-score of a clip: cosine of the mean video and mean audio embeddings (module doc)."""

    name = "imagebind"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **arch) -> ImageBindScorer:
        """Load the vision and audio towers from ``imagebind_huge.pth`` (every modality's weights;
        the others are left out) or a ``.safetensors`` state dict; `arch`: :class:`ImageBindNet` sizes."""
        state = read_state_dict(path, "ImageBind", DOWNLOAD)
        mine = {k: v for k, v in state.items() if k.split(".")[1:2] and k.split(".")[1] in MODALITIES}
        return cls(load_into(ImageBindNet(**arch), mine, path, "ImageBind"), device)

    @torch.no_grad()
    def score(self, wav: np.ndarray, sample_rate: int, frames: np.ndarray) -> float:
        """Cosine of audio ``[N]`` at `sample_rate` and uint8 frames ``[T, H, W, 3]`` at 0.5 fps
        (both from the clip's first frame); NaN when there are fewer than 2 frames."""
        clips = video_clips(frames, self.net.size)
        if len(clips) == 0:
            return float("nan")
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
        if int(sample_rate) != SAMPLE_RATE:
            x = torchaudio.functional.resample(x, int(sample_rate), SAMPLE_RATE)
        video = torch.cat([self.net.embed("vision", clips[i:i + 3].to(self.device)) for i in range(0, len(clips), 3)])
        audio = self.net.embed("audio", audio_clips(x).to(self.device))
        return float(F.cosine_similarity(video.mean(dim=0).double(), audio.mean(dim=0).double(), dim=0))
