"""A weights-free embedder: log-mel statistics per segment.

Each 0.96-s segment (hop 0.48 s; a shorter clip is one segment) of 16-kHz audio gives the
mean and standard deviation over time of a 64-band log-mel spectrogram (25-ms windows,
10-ms hop, 50 Hz - 8 kHz): a 128-d embedding.  Its "label" distribution is a spectral
envelope: the softmax over bands of the time-mean log-mel power, i.e. the clip's
geometric-mean power spectrum normalised to 1, so KL compares where the energy sits.

It needs nothing downloaded and is deterministic, so runs on any machine are
comparable with each other -- but not with published FAD / KL numbers (VGGish / PaSST).
"""

from __future__ import annotations

import torch
import torchaudio

from vab.evaluation.scorers.base import AudioEmbedder, pad_to

SAMPLE_RATE = 16000
N_MELS = 64
SEGMENT_SECONDS = 0.96
HOP_SECONDS = 0.48
LOG_FLOOR = 1e-6  # power floor: digital silence maps to a finite log


class LogMelEmbedder(AudioEmbedder):
    """Mean and std of log-mel bands per segment ``[N, 2 * n_mels]``; band distributions ``[N, n_mels]``."""

    name = "logmel"
    sample_rate = SAMPLE_RATE

    def __init__(self, n_mels: int = N_MELS, segment_seconds: float = SEGMENT_SECONDS, hop_seconds: float = HOP_SECONDS):
        self.n_mels = int(n_mels)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=400, hop_length=160, f_min=50.0, f_max=8000.0,
            n_mels=self.n_mels, power=2.0, center=True, mel_scale="htk",
        )
        self.frames_per_segment = round(segment_seconds * 100)  # 10-ms hop
        self.frames_per_hop = round(hop_seconds * 100)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[S]`` at 16 kHz -> log-mel ``[frames, n_mels]`` (natural log of power)."""
        wav = pad_to(wav.float(), 400)
        return torch.log(self.mel(wav) + LOG_FLOOR).T

    def segments(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel frames grouped by segment ``[N, frames_per_segment, n_mels]``."""
        frames = self.log_mel(wav)
        if frames.shape[0] <= self.frames_per_segment:
            return frames[None]
        return frames.unfold(0, self.frames_per_segment, self.frames_per_hop).transpose(1, 2)

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        seg = self.segments(wav)
        return torch.cat([seg.mean(dim=1), seg.std(dim=1, unbiased=False)], dim=1)

    def label_probs(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.segments(wav).mean(dim=1).double(), dim=-1).float()
