"""PANNs Cnn14 (Kong et al. 2020): an AudioSet tagger, as an embedder (2048-d) and a
527-class label distribution.

The module names follow the published checkpoints ``Cnn14_mAP=0.431.pth`` (32 kHz) and
``Cnn14_16k_mAP=0.438.pth`` (16 kHz, the one av-benchmark, MMAudio's evaluation, uses for
FD / KL / IS with PANNs) (``spectrogram_extractor.stft.conv_{real,imag}``,
``logmel_extractor.melW``, ``bn0``, ``conv_block1..6``, ``fc1``, ``fc_audioset``), so
either file loads as is; which one it is follows from its STFT kernel, and its STFT and
mel filter buffers are read from the file too.  32 kHz: 1024-sample Hann windows, hop
320, 64 mel bands 50 Hz - 14 kHz; 16 kHz: 512, 160, 50 Hz - 8 kHz; 10 log10 power.  One
embedding / distribution per clip (the network pools over time).  The label distribution
is the softmax of the AudioSet logits (the network itself is trained with per-class
sigmoids), in float64.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from vab.evaluation.scorers.base import AudioEmbedder, pad_to
from vab.evaluation.scorers.weights import load_into, read_state_dict

SAMPLE_RATE = 32000
N_MELS = 64
CLASSES = 527
#: sample rate -> (n_fft = window, hop, mel fmax Hz) of the published networks
FRONT_ENDS = {32000: (1024, 320, 14000.0), 16000: (512, 160, 8000.0)}
DOWNLOAD = ("Cnn14_mAP=0.431.pth (32 kHz) or Cnn14_16k_mAP=0.438.pth (16 kHz, as av-benchmark) from the PANNs "
            "release (qiuqiangkong/audioset_tagging_cnn, Zenodo 3987831)")


class _STFT(nn.Module):
    """The short-time Fourier transform as two strided convolutions (the checkpoint stores their kernels)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        bins = n_fft // 2 + 1
        self.n_fft = n_fft
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        with torch.device("cpu"):  # real numbers even when the module is built on the meta device
            n = torch.arange(n_fft, dtype=torch.float64)
            k = torch.arange(bins, dtype=torch.float64)[:, None]
            window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
            angle = 2 * math.pi * k * n / n_fft
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(angle) * window)[:, None].float())
            self.conv_imag.weight.copy_((-torch.sin(angle) * window)[:, None].float())

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` -> power ``[B, frames, bins]`` (centred frames, reflect padding)."""
        x = F.pad(wav[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return (self.conv_real(x) ** 2 + self.conv_imag(x) ** 2).transpose(1, 2)


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)


class _LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, fmax: float):
        super().__init__()

        with torch.device("cpu"):  # real numbers even when the module is built on the meta device
            fb = AF.melscale_fbanks(n_fft // 2 + 1, 50.0, fmax, N_MELS, sample_rate, norm="slaney", mel_scale="slaney")
        self.melW = nn.Parameter(fb.float(), requires_grad=False)  # [bins, mels]

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10((power @ self.melW).clamp_min(1e-10))


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pool: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x


class Cnn14(nn.Module):
    """Waveform ``[B, S]`` at `sample_rate` (32 or 16 kHz) -> (embedding ``[B, 2048]``, AudioSet
    logits ``[B, 527]``).

    `widths` and `classes` default to the published network; smaller values give the same
    layout with fewer weights (tests)."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048), classes: int = CLASSES,
                 sample_rate: int = SAMPLE_RATE):
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"Cnn14 has 6 conv blocks, got {len(widths)} widths")
        if sample_rate not in FRONT_ENDS:
            raise ValueError(f"PANNs Cnn14 was published at {sorted(FRONT_ENDS)} Hz, not {sample_rate}")
        n_fft, hop, fmax = FRONT_ENDS[sample_rate]
        self.sample_rate = sample_rate
        self.spectrogram_extractor = _Spectrogram(n_fft, hop)
        self.logmel_extractor = _LogMel(sample_rate, n_fft, fmax)
        self.bn0 = nn.BatchNorm2d(N_MELS)
        chans = [1, *widths]
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(chans[i], chans[i + 1], 2 if i < 5 else 1))
        self.fc1 = nn.Linear(chans[-1], chans[-1])
        self.fc_audioset = nn.Linear(chans[-1], classes)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor.stft(wav))[:, None]  # [B, 1, frames, mels]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x)
        x = x.mean(dim=3)  # over frequency -> [B, 2048, frames']
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, self.fc_audioset(embedding)


class PANNsEmbedder(AudioEmbedder):
    """Cnn14 clip embeddings ``[1, 2048]`` and AudioSet label distributions ``[1, 527]`` (one row per clip)."""

    name = "panns"
    sample_rate = SAMPLE_RATE

    def __init__(self, net: Cnn14, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.sample_rate = int(net.sample_rate)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **arch) -> PANNsEmbedder:
        """Load the weights in `path` (a released ``.pth`` checkpoint, 32 or 16 kHz, or a
        ``.safetensors`` state dict); `arch`: :class:`Cnn14` sizes (default: the published network;
        the sample rate follows from the file's STFT kernel)."""
        state = read_state_dict(path, "PANNs Cnn14", DOWNLOAD)
        kernel = state.get("spectrogram_extractor.stft.conv_real.weight")
        rates = {n_fft: rate for rate, (n_fft, _, _) in FRONT_ENDS.items()}
        if kernel is not None and "sample_rate" not in arch and kernel.shape[-1] in rates:
            arch["sample_rate"] = rates[kernel.shape[-1]]
        net = load_into(Cnn14(**arch), state, path, "PANNs Cnn14")
        return cls(net, device)

    @torch.no_grad()
    def _run(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # at least one second: five 2x poolings need >= 32 frames
        wav = pad_to(wav.float(), self.sample_rate)[None].to(self.device)
        embedding, logits = self.net(wav)
        return embedding.float().cpu(), logits.float().cpu()

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return self._run(wav)[0]

    def label_probs(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._run(wav)[1].double(), dim=-1)

    def embed_and_label_probs(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, logits = self._run(wav)
        return embedding, torch.softmax(logits.double(), dim=-1)
