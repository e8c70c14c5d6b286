"""ImageBind's vision and audio towers and the IB-score (issue 26): the published layout,
av-benchmark's preprocessing against direct re-implementations, the score's formula, and random
weights saved to a file (with other modalities' keys, as the release holds them) and loaded back."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vab.errors import VabError
from vab.evaluation.scorers import imagebind as ib

TINY = {"vision_dim": 16, "vision_depth": 1, "vision_heads": 2, "audio_dim": 16, "audio_depth": 1, "audio_heads": 2,
        "out_dim": 8, "size": 28}


def tiny_net(seed: int = 0) -> ib.ImageBindNet:
    torch.manual_seed(seed)
    net = ib.ImageBindNet(**TINY).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.normal_(0, 0.3)
    return net


def test_published_layout_has_imagebind_huge_names_and_sizes():
    with torch.device("meta"):
        state = {k: tuple(v.shape) for k, v in ib.ImageBindNet().state_dict().items()}
    # the vision and audio part of imagebind_huge (checked once against ImageBind's own module)
    assert len(state) == 569 and sum(math.prod(s) for s in state.values()) == 719_065_089
    for key, shape in {
        "modality_preprocessors.vision.rgbt_stem.proj.1.weight": (1280, 3, 2, 14, 14),
        "modality_preprocessors.vision.pos_embedding_helper.pos_embed": (1, 257, 1280),
        "modality_preprocessors.audio.rgbt_stem.proj.weight": (768, 1, 16, 16),
        "modality_preprocessors.audio.rgbt_stem.norm_layer.weight": (768,),
        "modality_preprocessors.audio.pos_embedding_helper.pos_embed": (1, 229, 768),
        "modality_trunks.vision.pre_transformer_layer.0.weight": (1280,),
        "modality_trunks.vision.blocks.31.attn.in_proj_weight": (3840, 1280),
        "modality_trunks.audio.blocks.11.attn.bias_k": (1, 1, 768),
        "modality_heads.vision.2.weight": (1024, 1280), "modality_heads.audio.2.weight": (1024, 768),
        "modality_postprocessors.audio.1.log_logit_scale": (),
    }.items():
        assert state[key] == shape, key


def test_audio_clip_starts_and_filterbanks_follow_imagebind():
    assert ib.audio_clip_starts(8.0) == [Fraction(0), Fraction(3), Fraction(6)]
    assert ib.audio_clip_starts(1.5) == [0, 0, 0]
    wav = torch.from_numpy(np.random.default_rng(0).normal(scale=0.1, size=16000 * 5).astype(np.float32))
    got = ib.audio_clips(wav)
    assert got.shape == (3, 1, 128, 204)
    for i, start in enumerate((0.0, 1.5, 3.0)):
        clip = wav[int(start * 16000):int((start + 2) * 16000)][None].clone()
        clip -= clip.mean()
        import torchaudio

        fbank = torchaudio.compliance.kaldi.fbank(clip, htk_compat=True, sample_frequency=16000, use_energy=False,
                                                  window_type="hanning", num_mel_bins=128, dither=0.0,
                                                  frame_length=25, frame_shift=10).T
        fbank = torch.nn.functional.pad(fbank, (0, 204 - fbank.shape[1]))
        torch.testing.assert_close(got[i, 0], (fbank + 4.268) / 9.138, rtol=1e-4, atol=1e-4)


def uniform_crop(images: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """av-benchmark's ib_data.uniform_crop."""
    h, w = images.shape[2], images.shape[3]
    y, x = int(math.ceil((h - size) / 2)), int(math.ceil((w - size) / 2))
    if h > w:
        y = {0: 0, 1: y, 2: h - size}[index]
    else:
        x = {0: 0, 1: x, 2: w - size}[index]
    return images[:, :, y:y + size, x:x + size]


@pytest.mark.parametrize("shape", [(48, 64), (64, 40)])
def test_video_clips_follow_av_benchmark(shape):
    from torchvision.transforms import v2

    frames = np.random.default_rng(1).integers(0, 256, size=(4, *shape, 3), dtype=np.uint8)
    got = ib.video_clips(frames, size=28)
    transform = v2.Compose([v2.Resize(28, interpolation=v2.InterpolationMode.BICUBIC), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=ib.CLIP_MEAN, std=ib.CLIP_STD)])
    x = transform(torch.from_numpy(frames).permute(0, 3, 1, 2))  # [T, C, H, W]
    crops = torch.stack([uniform_crop(x, 28, i) for i in range(3)])  # [3, T, C, 28, 28]
    want = torch.cat([crops[:, i:i + 2] for i in range(3)]).permute(0, 2, 1, 3, 4)  # 'b n t c h w -> b n c t h w'
    assert got.shape == (9, 3, 2, 28, 28)
    torch.testing.assert_close(got, want)
    assert ib.video_clips(frames[:1], size=28).shape[0] == 0


def test_half_fps_frames_are_the_ones_on_screen_every_two_seconds():
    frames = np.arange(200)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.int64)
    picked = ib.half_fps_frames(frames, 25.0, 8.0)
    assert picked[:, 0, 0, 0].tolist() == [0, 50, 100, 150]


def test_score_is_the_cosine_of_the_mean_embeddings_and_batches():
    net = tiny_net()
    scorer = ib.ImageBindScorer(net)
    rng = np.random.default_rng(2)
    wav = rng.normal(scale=0.1, size=16000 * 8).astype(np.float32)
    frames = rng.integers(0, 256, size=(4, 40, 56, 3), dtype=np.uint8)
    got = scorer.score(wav, 16000, frames)
    with torch.no_grad():
        clips = ib.video_clips(frames, 28)
        video = net.embed("vision", clips).mean(0)
        audio = net.embed("audio", ib.audio_clips(torch.from_numpy(wav))).mean(0)
        one = net.embed("vision", clips[4:5])
    assert got == pytest.approx(float(F.cosine_similarity(video, audio, dim=0)), abs=1e-6)
    assert -1.0 <= got <= 1.0
    # unit-length video embeddings, audio ones of length 20 (ImageBind's fixed scale); batch-independent
    with torch.no_grad():
        v = net.embed("vision", clips)
        a = net.embed("audio", ib.audio_clips(torch.from_numpy(wav)))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(9))
    torch.testing.assert_close(a.norm(dim=-1), torch.full((3,), 20.0))
    torch.testing.assert_close(one[0], v[4], rtol=1e-5, atol=1e-5)
    assert math.isnan(scorer.score(wav, 16000, frames[:1]))


def test_imagebind_loads_a_release_like_file_and_refuses_others(tmp_path):
    net = tiny_net(3)
    state = dict(net.state_dict())
    state["modality_trunks.text.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)  # other modalities are skipped
    state["modality_heads.depth.0.weight"] = torch.zeros(2)
    path = tmp_path / "imagebind_huge.pth"
    torch.save(state, path)
    loaded = ib.ImageBindScorer.from_file(path, **TINY)
    x = torch.randn(2, 1, 128, 204)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net.embed("audio", x), net.embed("audio", x))
    with pytest.raises(VabError, match="no such ImageBind weight file.*imagebind_huge.pth"):
        ib.ImageBindScorer.from_file(tmp_path / "absent.pth")
    with pytest.raises(VabError, match="not ImageBind weights.*wrong shapes"):
        ib.ImageBindScorer.from_file(path, **{**TINY, "out_dim": 4})
