"""Frame encoders: the weights-free pixel grid and open_clip towers (tiny random-init model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vab.config import VisualConfig
from vab.errors import ConfigError, VabError
from vab.visual import build_visual_encoder
from vab.visual.clip import ClipEncoder, preprocess_frames
from vab.visual.pixels import PixelEncoder

open_clip = pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

TINY = "vab-test-tiny-vit"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, h, w, 3]: smooth colour patterns plus mild noise (photo-like, not pure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        base = np.stack([128 + 100 * np.sin(xx / (4 + i) + c) * np.cos(yy / 6 + i) for c in range(3)], -1)
        out.append(base + rng.normal(0, 8, (h, w, 3)))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- pixels


def test_pixels_shape_range_and_values():
    enc = build_visual_encoder(VisualConfig(name="pixels", grid=4))
    assert isinstance(enc, PixelEncoder) and enc.dim == 48
    frames = smooth_frames(3, 24, 40)
    out = enc.encode(frames)
    assert out.shape == (3, 48) and out.dtype == torch.float32
    assert not out.is_inference()  # usable in training code (in-place ops, autograd inputs)
    assert out.min() >= -1.0 and out.max() <= 1.0
    # black left half, white right half: a 2x2 grid sees exactly -1 and +1
    img = np.zeros((1, 6, 8, 3), np.uint8)
    img[:, :, 4:] = 255
    two = PixelEncoder(grid=2).encode(img).view(3, 2, 2)
    assert torch.equal(two, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]).expand(3, 2, 2))
    # area averaging: the mean of a 2x2 block
    blk = np.array([[[0, 0, 0], [100, 0, 0]], [[200, 0, 0], [2, 0, 0]]], np.uint8)[None]
    assert PixelEncoder(grid=1).encode(blk)[0, 0].item() == pytest.approx(75.5 / 127.5 - 1.0)


def test_pixels_deterministic_and_batch_invariant():
    frames = smooth_frames(5, 30, 20, seed=3)
    a = PixelEncoder(grid=8, batch_size=2).encode(frames)
    b = PixelEncoder(grid=8, batch_size=64).encode(torch.from_numpy(frames))
    assert torch.equal(a, b)
    assert torch.equal(a, PixelEncoder(grid=8, batch_size=2).encode(frames))
    assert PixelEncoder(grid=8).encode(frames[:0]).shape == (0, 192)


def test_pixels_rejects_wrong_input():
    enc = PixelEncoder(grid=2)
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        enc.encode(np.zeros((4, 4, 3), np.uint8))


def test_unknown_encoder_name():
    with pytest.raises(ConfigError, match="clip, pixels"):
        build_visual_encoder(VisualConfig(name="resnet"))


# ---------------------------------------------------------------- clip (tiny open_clip model)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Registers a tiny open_clip config and saves one random-init model as .safetensors and .pt."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny_clip")
    (root / "configs").mkdir()
    (root / "configs" / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(root / "configs")
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(root / "tiny.safetensors"))
    torch.save(state, root / "tiny.pt")
    return root


def reference(path, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's own path: PIL transform per frame, then model.encode_image."""
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(path))
    model.eval()
    pixels = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
    with torch.no_grad():
        return pixels, model.encode_image(pixels)


def clip_cfg(path, **kw) -> VisualConfig:
    kw.setdefault("precision", "fp32")  # compared with open_clip's own fp32 forward
    return VisualConfig(name="clip", model=TINY, pretrained=None, path=str(path), device="cpu", **kw)


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_clip_matches_open_clip(tiny, suffix):
    path = tiny / f"tiny.{suffix}"
    enc = build_visual_encoder(clip_cfg(path))
    assert isinstance(enc, ClipEncoder) and enc.dim == 32 and enc.image_size == (32, 32)
    # only the image tower is kept
    assert enc.state_dict() and all(k.startswith("visual.") for k in enc.state_dict())
    frames = smooth_frames(3, 48, 64)  # landscape: resize short side, centre crop
    ref_pixels, ref = reference(path, frames)
    out = enc.encode(frames)
    assert out.shape == (3, 32) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert not out.is_inference()
    # within one uint8 step of PIL's antialiased bicubic
    mine = preprocess_frames(torch.from_numpy(frames), enc.preprocess_cfg)
    step = 1 / 255 / min(enc.preprocess_cfg["std"])
    assert (mine - ref_pixels).abs().max() <= step * 1.01
    assert (mine - ref_pixels).abs().mean() < step / 3
    assert torch.allclose(out, ref, atol=0.03)
    assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.9999
    # a differently seeded model gives different features: the file was really loaded
    torch.manual_seed(99)
    other = open_clip.create_model(TINY).eval()
    with torch.no_grad():
        assert not torch.allclose(other.encode_image(ref_pixels), ref, atol=0.1)


def test_clip_portrait_and_upscaled_frames(tiny):
    enc = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors"))
    for h, w in [(64, 40), (20, 30)]:  # portrait; smaller than the model input (upscaled)
        frames = smooth_frames(2, h, w, seed=h)
        ref_pixels, ref = reference(tiny / "tiny.safetensors", frames)
        mine = preprocess_frames(torch.from_numpy(frames), enc.preprocess_cfg)
        assert mine.shape == ref_pixels.shape == (2, 3, 32, 32)
        assert (mine - ref_pixels).abs().max() < 0.02
        assert torch.nn.functional.cosine_similarity(enc.encode(frames), ref).min() > 0.9999


@pytest.mark.parametrize("mode", ["squash", "longest"])
def test_preprocess_resize_modes_match_open_clip(mode):
    cfg = {"size": 24, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "interpolation": "bilinear",
           "resize_mode": mode, "fill_color": 0}
    transform = open_clip.image_transform(24, is_train=False, mean=cfg["mean"], std=cfg["std"],
                                          resize_mode=mode, interpolation="bilinear")
    frames = smooth_frames(2, 30, 50, seed=7)
    ref = torch.stack([transform(Image.fromarray(f)) for f in frames])
    mine = preprocess_frames(torch.from_numpy(frames), cfg)
    assert mine.shape == ref.shape == (2, 3, 24, 24)
    assert (mine - ref).abs().max() <= 1 / 255 / 0.2 * 1.01


def test_clip_batch_invariance(tiny):
    frames = smooth_frames(5, 40, 40, seed=5)
    a = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", batch_size=2)).encode(frames)
    b = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", batch_size=16)).encode(frames)
    assert a.shape == (5, 32)
    assert torch.allclose(a, b, atol=1e-5)


def test_clip_bf16_close_to_fp32(tiny):
    frames = smooth_frames(2, 32, 32)
    a = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors")).encode(frames)
    b = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", precision="bf16")).encode(frames)
    assert b.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    with pytest.raises(ConfigError, match="visual.precision"):
        build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", precision="fp8"))


def test_clip_auto_precision_is_bf16_where_the_cpu_has_it(tiny, monkeypatch):
    import vab.visual.clip as clip_module

    frames = smooth_frames(2, 32, 32)
    fp32 = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors")).encode(frames)
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(clip_module, "cpu_has_native_bf16", lambda native=native: native)
        enc = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", precision="auto"))
        assert enc.precision == expected
        out = enc.encode(frames)
        assert out.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(out, fp32).min() > 0.99
        assert torch.equal(out, fp32) == (expected == "fp32")
    # half precision keeps the norms in float32: only the matrix products' weights are bf16
    enc = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors", precision="bf16"))
    kinds = {type(m).__name__: p.dtype for m in enc.visual.modules() for p in m.parameters(recurse=False)}
    assert kinds["Linear"] == torch.bfloat16 and kinds["LayerNorm"] == torch.float32


def test_clip_local_dir_uses_its_preprocess_config(tiny, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": pre}))
    (folder / "open_clip_model.safetensors").write_bytes((tiny / "tiny.safetensors").read_bytes())
    enc = build_visual_encoder(VisualConfig(name="clip", model=f"local-dir:{folder}", pretrained=None))
    assert tuple(enc.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)
    frame = np.full((1, 32, 32, 3), 255, np.uint8)
    pixels = preprocess_frames(torch.from_numpy(frame), enc.preprocess_cfg)
    assert torch.allclose(pixels, torch.ones_like(pixels))
    base = build_visual_encoder(clip_cfg(tiny / "tiny.safetensors"))
    assert not torch.allclose(enc.encode(frame), base.encode(frame), atol=1e-3)


def test_clip_tag_preprocessing_applies_to_local_file(tiny, monkeypatch):
    """visual.path replaces the download but keeps the tag's preprocessing (mean/std)."""
    real = open_clip.get_pretrained_cfg

    def fake(model, tag):
        if (model, tag) == (TINY, "fake-tag"):
            return {"hf_hub": "nowhere/", "mean": (0.1, 0.2, 0.3), "std": (0.3, 0.3, 0.3)}
        return real(model, tag)

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", fake)
    cfg = clip_cfg(tiny / "tiny.safetensors")
    cfg.pretrained = "fake-tag"
    enc = build_visual_encoder(cfg)
    assert tuple(enc.preprocess_cfg["mean"]) == (0.1, 0.2, 0.3)


# ---------------------------------------------------------------- clip errors


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_clip_missing_file(tiny, tmp_path):
    with pytest.raises(VabError) as exc:
        build_visual_encoder(clip_cfg(tmp_path / "nope.safetensors"))
    assert "visual.path=" in one_line(exc) and "no such file" in str(exc.value)


@pytest.mark.parametrize("suffix", ["safetensors", "pt", "bin"])
def test_clip_corrupt_file(tiny, tmp_path, suffix):
    bad = tmp_path / f"bad.{suffix}"
    bad.write_bytes(b"this is not a weights file" * 10)
    with pytest.raises(VabError) as exc:
        build_visual_encoder(clip_cfg(bad))
    assert one_line(exc).startswith(f"visual.path={bad}: cannot load open_clip weights for {TINY}")


def test_clip_weights_of_another_model(tiny, tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(VabError) as exc:
        build_visual_encoder(clip_cfg(wrong))
    assert "cannot load open_clip weights" in one_line(exc)


def test_clip_unknown_model():
    with pytest.raises(VabError) as exc:
        build_visual_encoder(VisualConfig(name="clip", model="EVA02-L-15", pretrained=None))
    text = one_line(exc)
    assert "visual.model=EVA02-L-15" in text and "EVA02-L-14" in text  # suggests the close match


def test_clip_unknown_tag():
    with pytest.raises(ConfigError) as exc:
        build_visual_encoder(VisualConfig(name="clip", model="EVA02-L-14", pretrained="no-such-tag"))
    assert "merged2b_s4b_b131k" in one_line(exc)


def test_clip_offline_download(monkeypatch):
    def no_network(cfg, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_network)
    with pytest.raises(VabError) as exc:
        build_visual_encoder(VisualConfig(name="clip"))  # the default EVA02-L-14 tag
    assert one_line(exc) == (
        "could not fetch open_clip weights for EVA02-L-14/merged2b_s4b_b131k (OSError: network is unreachable); "
        "set visual.path=/path/to/open_clip_model.safetensors (or .bin)"
    )
