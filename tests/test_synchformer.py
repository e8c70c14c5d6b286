"""Synchformer and DeSync (issue 26): the published layout, preprocessing against direct
re-implementations of av-benchmark's, the divided attention against a loop over its groups,
DeSync's windowing and averaging, and random weights saved to a file and loaded back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vab.errors import VabError
from vab.evaluation.scorers import synchformer as sf

# a 32 x 32 picture (2 x 2 patches), 16 wide: the published layout with few weights
TINY = {"dim": 16, "depth": 1, "heads": 2, "global_depth": 1, "global_heads": 2, "size": 32}


def tiny_net(seed: int = 0) -> sf.SynchformerNet:
    torch.manual_seed(seed)
    net = sf.SynchformerNet(**TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


def test_published_layout_has_av_benchmarks_names_and_sizes():
    with torch.device("meta"):
        state = {k: tuple(v.shape) for k, v in sf.SynchformerNet().state_dict().items()}
    assert len(state) == 513 and sum(math.prod(s) for s in state.values()) == 237_460_245
    for key, shape in {
        "vfeat_extractor.patch_embed_3d.proj.weight": (768, 3, 2, 16, 16),
        "vfeat_extractor.pos_embed": (1, 197, 768), "vfeat_extractor.temp_embed": (1, 8, 768),
        "vfeat_extractor.blocks.11.timeattn.qkv.weight": (2304, 768),
        "vfeat_extractor.spatial_attn_agg.self_attn.in_proj_weight": (2304, 768),
        "afeat_extractor.ast.embeddings.position_embeddings": (1, 74, 768),
        "afeat_extractor.ast.encoder.layer.11.attention.attention.query.weight": (768, 768),
        "afeat_extractor.freq_attn_agg.cls_token": (1, 1, 768),
        "transformer.pos_emb_cfg.pos_emb": (1, 198, 768), "transformer.blocks.2.mlp.2.weight": (768, 3072),
        "transformer.off_head.weight": (21, 768), "vproj.weight": (768, 768),
    }.items():
        assert state[key] == shape, key


def test_offset_grid_and_desync_of_windows():
    assert sf.OFFSETS[0] == -2.0 and sf.OFFSETS[-1] == 2.0 and len(sf.OFFSETS) == 21
    assert sf.OFFSETS[11] == pytest.approx(0.2)
    logits = torch.zeros(3, 21)
    logits[0, 10], logits[1, 0], logits[2, 13] = 1, 1, 1  # 0 s, -2 s, +0.6 s
    np.testing.assert_allclose(sf.desync_of_windows(logits).numpy(), [0.0, 2.0, 0.6], atol=1e-12)


def reference_divided(attn: sf._DividedAttention, x: torch.Tensor, axis: str, frames: int) -> torch.Tensor:
    """Loop over every group: the class token attends to all tokens; a patch token attends to
    the class token and to the tokens of its group (same patch over frames, or same frame)."""
    b, n, d = x.shape
    h = attn.heads
    q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    q = q * (d // h) ** -0.5
    patches = (n - 1) // frames
    out = torch.zeros_like(q)
    out[:, :, 0] = (torch.softmax(q[:, :, :1] @ k.transpose(-2, -1), -1) @ v)[:, :, 0]
    for f in range(frames):
        for p in range(patches):
            i = 1 + f * patches + p
            group = ([1 + g * patches + p for g in range(frames)] if axis == "time"
                     else [1 + f * patches + g for g in range(patches)])
            keys = [0, *group]
            w = torch.softmax(q[:, :, i:i + 1] @ k[:, :, keys].transpose(-2, -1), -1)
            out[:, :, i] = (w @ v[:, :, keys])[:, :, 0]
    return attn.proj(out.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("axis", ["time", "space"])
def test_divided_attention_matches_a_loop_over_its_groups(axis):
    torch.manual_seed(0)
    attn = sf._DividedAttention(8, 2)
    x = torch.randn(2, 1 + 3 * 4, 8)  # 3 frames of 4 patches
    with torch.no_grad():
        torch.testing.assert_close(attn(x, axis, 3), reference_divided(attn, x, axis, 3), rtol=1e-5, atol=1e-6)


def test_audio_segments_follow_av_benchmark():
    import torchaudio

    wav = torch.from_numpy(np.random.default_rng(0).normal(scale=0.1, size=16000 * 2).astype(np.float32))
    got = sf.audio_segments(wav)
    count = (len(wav) - 10240) // 5120 + 1
    assert got.shape == (count, 66, 128)
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, win_length=400, hop_length=160, n_fft=1024, n_mels=128)
    for i in (0, count - 1):
        spec = torch.log(mel(wav[i * 5120:i * 5120 + 10240]) + 1e-6)  # [128, 65]
        spec = torch.cat([spec, torch.zeros(128, 1)], dim=1)  # padded with 0 to 66 frames, then normalised
        want = ((spec - (-4.2677393)) / (2 * 4.5689974)).T
        torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-5)
    assert sf.audio_segments(wav[:10000]).shape == (0, 66, 128)


def test_video_segments_resize_crop_scale_and_stride():
    from torchvision.transforms import v2

    frames = np.random.default_rng(1).integers(0, 256, size=(40, 48, 64, 3), dtype=np.uint8)
    got = sf.video_segments(frames, size=32)
    assert got.shape == ((40 - 16) // 8 + 1, 16, 3, 32, 32)
    # av-benchmark's transform: Resize(short side, bicubic), CenterCrop, [0, 1], Normalize(0.5, 0.5)
    transform = v2.Compose([v2.Resize(32, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(32), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
    want = transform(torch.from_numpy(frames).permute(0, 3, 1, 2))
    torch.testing.assert_close(got[0], want[:16])
    torch.testing.assert_close(got[2], want[16:32])
    assert float(got.min()) >= -1.0 and float(got.max()) <= 1.0


def test_desync_averages_the_first_and_last_window_of_a_clip():
    net = tiny_net()
    scorer = sf.SynchformerScorer(net)
    rng = np.random.default_rng(2)
    seconds = 6.0  # 37 audio and 36 video segments: the two 14-segment windows overlap little
    wav = rng.normal(scale=0.1, size=int(16000 * seconds)).astype(np.float32)
    frames = rng.integers(0, 256, size=(int(25 * seconds), 40, 40, 3), dtype=np.uint8)
    got = scorer.desync(wav, 16000, frames)
    with torch.no_grad():
        a = net.audio_features(sf.audio_segments(torch.from_numpy(wav)))
        v = net.video_features(sf.video_segments(frames, 32))
        first = net.offset_logits(v[None, :14], a[None, :14])
        last = net.offset_logits(v[None, -14:], a[None, -14:])
    want = (abs(sf.OFFSETS[int(first.argmax())]) + abs(sf.OFFSETS[int(last.argmax())])) / 2
    assert got == pytest.approx(want, abs=1e-12)
    # the features of one segment do not depend on the others computed with it
    with torch.no_grad():
        one = net.video_features(sf.video_segments(frames, 32)[3:4])
    torch.testing.assert_close(one[0], v[3], rtol=1e-5, atol=1e-5)
    # audio at another rate is resampled; a clip under 4.8 s has no DeSync
    assert math.isfinite(scorer.desync(np.repeat(wav, 2), 32000, frames))
    assert math.isnan(scorer.desync(wav[:16000 * 4], 16000, frames[:100]))


def test_synchformer_loads_saved_random_weights(tmp_path):
    net = tiny_net(3)
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(net.state_dict(), path)
    loaded = sf.SynchformerScorer.from_file(path, **TINY)
    v, a = torch.randn(2, 14, 8, 16), torch.randn(2, 14, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net.offset_logits(v, a), net.offset_logits(v, a))
        # batching: a clip's logits do not depend on the other clip in the batch
        torch.testing.assert_close(loaded.net.offset_logits(v[1:], a[1:])[0], net.offset_logits(v, a)[1],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(VabError, match="no such Synchformer weight file.*synchformer_state_dict.pth"):
        sf.SynchformerScorer.from_file(tmp_path / "absent.pth")
    with pytest.raises(VabError, match="not Synchformer weights.*wrong shapes"):
        sf.SynchformerScorer.from_file(path, **{**TINY, "dim": 32, "heads": 4})
