"""A generator that needs no model knowledge to be checked for synchronisation.

It is the library's own :class:`~vab.generation.generator.Generator` (windows, frame
reading on the picture's clock, stitching, decoding, writing) around two stand-ins:

- the sampler turns each frame feature into a token: 1 where the frame is bright (a flash of
  tests/corpus.py), 0 elsewhere.  The model reads frames at the codec's frame rate (50 fps),
  so token t is decided by the frame on screen at ``(t + 0.5) / 50`` s;
- :class:`ClickCodec` decodes token 1 into a click at the start of its audio frame.

So the generated soundtrack clicks where the picture flashes, to within half an audio frame
(10 ms), exactly when every stage keeps the picture's clock; a stage that shifts time shifts
the clicks.
"""

from __future__ import annotations

import torch

from vab.codecs.base import AudioCodec
from vab.config import load_config
from vab.generation.generator import Generator
from vab.model.vab import VAB
from vab.visual import build_visual_encoder

RATE = 16000
FRAME_RATE = 50.0
GRID = 4  # the pixels encoder's colour grid: [3, GRID, GRID] features in [-1, 1]
BRIGHT = 0.6  # a frame flashes when one of its cells is white: all three colours above this


class ClickCodec(AudioCodec):
    """Tokens ``[B, K, T]`` -> a click at the start of every audio frame whose level-0 token is 1."""

    name = "clicks"

    def __init__(self, levels: int = 4):
        super().__init__()
        self.levels = levels

    @property
    def sample_rate(self) -> int:
        return RATE

    @property
    def frame_rate(self) -> float:
        return FRAME_RATE

    @property
    def num_codebooks(self) -> int:
        return self.levels

    @property
    def codebook_size(self) -> int:
        return 2

    @property
    def hop(self) -> int:
        return int(RATE / FRAME_RATE)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        wav = self._check_wav(wav)
        frames = wav[..., : wav.shape[-1] // self.hop * self.hop].reshape(wav.shape[0], -1, self.hop)
        loud = (frames.abs().amax(dim=-1) > 0.1).long()  # [B, T]
        return loud[:, None].expand(-1, self.levels, -1).clone()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._check_codes(codes)
        b, _, t = codes.shape
        wav = torch.zeros(b, 1, t * self.hop)
        n = self.hop // 2  # 10 ms
        burst = 0.8 * torch.sin(2 * torch.pi * 1000.0 * torch.arange(n) / RATE)
        for i, j in (codes[:, 0] == 1).nonzero().tolist():
            wav[i, 0, j * self.hop : j * self.hop + n] = burst
        return wav

    def codebook_vectors(self, level: int) -> torch.Tensor:
        return torch.eye(2)


def flash_sampler(model, features, given=None, given_mask=None, cfg=None, seeds=None) -> torch.Tensor:
    """Tokens ``[B, levels, T]``: 1 at level 0 where the frame read for that token is bright."""
    cells = features.float().reshape(*features.shape[:2], 3, GRID * GRID)  # [B, F, colour, cell]
    bright = (cells.amin(dim=2).amax(dim=2) > BRIGHT).long()  # [B, F], F == T (fps == frame rate)
    tokens = torch.zeros(features.shape[0], model.levels, bright.shape[1], dtype=torch.long)
    tokens[:, 0] = bright
    return tokens


def click_generator(window: float = 8.0) -> Generator:
    """A :class:`Generator` whose soundtracks click on the picture's flashes (module docstring),
    with `window`-second windows."""
    cfg = load_config("tiny", [
        "model.width=16", "model.layers=1", "model.expert_layers=1", "model.heads=2", "model.ffn=32",
        "model.levels=2", f"data.duration={window}", f"data.fps={FRAME_RATE}", f"extract.fps={FRAME_RATE}",
        "visual.name=pixels", f"visual.grid={GRID}",
    ])
    codec = ClickCodec(levels=2)
    visual = build_visual_encoder(cfg.visual)
    model = VAB.from_config(cfg, [codec.codebook_vectors(k) for k in range(2)], visual_dim=visual.dim,
                            frame_rate=FRAME_RATE)
    model.sampler = flash_sampler
    return Generator(model, codec=codec, visual=visual, precision="fp32")
