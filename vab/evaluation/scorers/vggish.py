"""VGGish (Hershey et al. 2017), the embedding network of the FAD paper and of VAB Table 1.

The layers are laid out like the PyTorch port's weight file ``vggish-10086976.pth``
(``features.{0,3,6,8,11,13}`` convolutions, ``embeddings.{0,2,4}`` linear layers), so
that file loads as is.  Input: 0.96-s examples of 16-kHz audio as 96 x 64 log-mel
patches (25-ms Hann windows, 10-ms hop, 64 HTK mel bands 125-7500 Hz, log(mel + 0.01)
of the magnitude).  Output: the 128-d embedding before the final ReLU and without the
PCA / quantisation post-processing, as FAD implementations use it.
"""

from __future__ import annotations

import os

import torch
import torchaudio
from torch import nn

from vab.evaluation.scorers.base import AudioEmbedder, pad_to
from vab.evaluation.scorers.weights import load_into, read_state_dict

SAMPLE_RATE = 16000
EXAMPLE_FRAMES = 96
N_MELS = 64
LOG_OFFSET = 0.01
DOWNLOAD = "vggish-10086976.pth from the torchvggish releases (harritaylor/torchvggish)"


class VGGishNet(nn.Module):
    """Log-mel examples ``[B, 1, 96, 64]`` -> embeddings ``[B, 128]``.

    `widths` (four conv stages) and `hidden` default to the published network; smaller
    values give the same layout with fewer weights (tests)."""

    def __init__(self, widths: tuple[int, int, int, int] = (64, 128, 256, 512), hidden: int = 4096):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        w1, w2, w3, w4 = widths
        for block in ([w1], [w2], [w3, w3], [w4, w4]):
            for width in block:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(w4 * 4 * 6, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 128), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [B, 512, 6, 4]
        # the TF original flattens channels-last: (time, freq, channel)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return self.embeddings[:-1](x)


class VGGishEmbedder(AudioEmbedder):
    """One 128-d VGGish embedding per 0.96 s of audio ``[N, 128]``."""

    name = "vggish"
    sample_rate = SAMPLE_RATE

    def __init__(self, net: VGGishNet, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=400, hop_length=160, f_min=125.0, f_max=7500.0,
            n_mels=N_MELS, power=1.0, center=False, mel_scale="htk",
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **arch) -> VGGishEmbedder:
        """Load the weights in `path` (``.pth`` as the PyTorch port ships it, or ``.safetensors``);
        `arch`: :class:`VGGishNet` sizes (default: the published network)."""
        net = load_into(VGGishNet(**arch), read_state_dict(path, "VGGish", DOWNLOAD), path, "VGGish")
        return cls(net, device)

    def examples(self, wav: torch.Tensor) -> torch.Tensor:
        """``[S]`` at 16 kHz -> log-mel examples ``[N, 1, 96, 64]`` (the tail shorter than one
        example is dropped unless the clip is shorter than one: then it is zero-padded)."""
        wav = pad_to(wav.float(), 400 + 160 * (EXAMPLE_FRAMES - 1))
        frames = torch.log(self.mel(wav) + LOG_OFFSET).T  # [frames, 64]
        n = frames.shape[0] // EXAMPLE_FRAMES
        return frames[: n * EXAMPLE_FRAMES].reshape(n, 1, EXAMPLE_FRAMES, N_MELS)

    @torch.no_grad()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(self.examples(wav).to(self.device)).float().cpu()
