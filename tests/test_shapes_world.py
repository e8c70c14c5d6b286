"""The harder synthetic world (`vab synth --world shapes`), the `hog` frame encoder that sees
shape, and the visual probe (the ceiling of what stored frame features tell)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vab import media
from vab.cli import main
from vab.config import VisualConfig
from vab.data import shapes
from vab.data.synthetic import plan_clips, read_truth, synthesize, visibility, world_classes
from vab.demo import quality
from vab.demo.probe import pool_visible, visual_probe
from vab.errors import VabError
from vab.visual import build_visual_encoder, visual_dim
from vab.visual.hog import hog_colour_dim, hog_dim

from .synthdata import make_synthetic_dataset

SMALL = dict(classes=4, train=8, valid=0, test=4, seconds=2.0, fps=8.0, width=48, height=48, seed=5, world="shapes")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    synthesize(out, **SMALL)
    return out


def test_the_class_is_the_shape_not_the_colour_and_sounds_vary_per_clip():
    classes = world_classes(8, "shapes")
    assert len({c.shape for c in classes}) == 8
    specs = plan_clips(8, {"train": 32}, 2.0, 8.0, 48, 48, 0, "shapes")
    for label in range(8):
        same = [s for s in specs if s.label == label]
        assert len({tuple(s.extra["colour"]) for s in same}) == len(same)  # a new colour every clip
        assert len({round(s.extra["pitch"], 6) for s in same}) == len(same)  # and a new voice
    # the same class sounds different from clip to clip (not one fixed waveform)
    a, b = [s for s in specs if s.label == 0][:2]
    wa, wb = (shapes.render_audio(s, classes[0], 2.0) for s in (a, b))
    spectra = [np.abs(np.fft.rfft(w)) for w in (wa, wb)]
    assert np.corrcoef(*spectra)[0, 1] < 0.9


def test_vowels_share_one_band():
    """Four classes are vowels over the same frequency range: no single band names them."""
    rng = np.random.default_rng(0)
    v = {"pitch": 0.5, "speed": 1.0, "tilt": 1.0, "formant_scale": 1.0, "glide": 0.0}
    for family in ("vowel-a", "vowel-i", "vowel-u", "vowel-ae"):
        x = shapes.family_sound(family, 16000, v, rng)
        spec = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / 16000)
        share = spec[(freqs >= 100) & (freqs <= 4000)].sum() / spec.sum()
        assert share > 0.95, family


def test_sound_plays_while_the_shape_is_visible_in_the_written_clips(world):
    truth = read_truth(world)
    assert json.loads((world / "world.json").read_text())["params"]["world"] == "shapes"
    for row in truth.values():
        wav = media.read_audio(row.path, 16000, 0.0, 2.0)
        energy = quality.frame_energy_db(wav, 16000)
        vis = visibility(row.intervals, len(energy), quality.FRAME_RATE)
        assert np.median(energy[vis]) > -35
        edges = np.convolve(np.diff(vis.astype(int)) != 0, np.ones(7), mode="same") > 0
        quiet = ~vis & ~np.concatenate([[False], edges])
        if quiet.any():
            assert np.median(energy[quiet]) < -60


def test_vab_synth_world_shapes_and_a_folder_of_another_world_is_refused(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["synth", str(out), "--world", "shapes", "--classes", "2", "--train", "2", "--valid", "0",
            "--test", "0", "--seconds", "1", "--size", "32"]
    assert main(args) == 0
    assert (out / "clips" / "train-00001.mp4").is_file()
    with pytest.raises(VabError, match="other parameters"):
        synthesize(out, classes=2, train=2, valid=0, test=0, seconds=1.0, width=32, height=32)
    with pytest.raises(VabError, match="unknown world"):
        world_classes(2, "cubes")


def _picture(shape: str, colour, background, half: int = 12, cx: int = 24, cy: int = 24) -> np.ndarray:
    from vab.data.synthetic import _shape_mask

    img = np.empty((48, 48, 3), dtype=np.uint8)
    img[:] = background
    img[_shape_mask(shape, 48, half, cx, cy, 48)] = colour
    return img


def test_hog_tells_shapes_apart_whatever_their_colour_and_pixels_does_not():
    hog = build_visual_encoder(VisualConfig(name="hog", grid=4))
    pixels = build_visual_encoder(VisualConfig(name="pixels", grid=4))
    frames = np.stack([
        _picture("hbar", (250, 20, 20), (10, 10, 90)),
        _picture("hbar", (20, 200, 250), (90, 60, 10)),
        _picture("vbar", (250, 20, 20), (10, 10, 90)),
    ])
    h = hog.encode(frames).numpy()
    assert h.shape == (3, hog_dim(4)) == (3, 9 * (16 + 4 + 1))
    # the same shape in other colours: (nearly) the same features; another shape: far
    assert np.linalg.norm(h[0] - h[1]) < 0.1 * np.linalg.norm(h[0] - h[2])
    p = pixels.encode(frames).numpy()
    assert np.linalg.norm(p[0] - p[1]) > np.linalg.norm(p[0] - p[2])  # colour dominates the pixel grid


def test_hog_colour_tells_both_shape_and_colour_and_keeps_the_hog_part():
    cfg = VisualConfig(name="hog-colour", grid=4)
    both = build_visual_encoder(cfg)
    frames = np.stack([
        _picture("hbar", (250, 20, 20), (10, 10, 90)),
        _picture("hbar", (20, 200, 250), (10, 10, 90)),  # same shape and background, other colour
        _picture("vbar", (250, 20, 20), (10, 10, 90)),  # same colours, other shape
    ])
    f = both.encode(frames).numpy()
    assert f.shape == (3, hog_colour_dim(4)) == (3, 9 * (16 + 4 + 1) + 3 * 2 * 2) and both.dim == visual_dim(cfg)
    shape, colour = f[:, : hog_dim(4)], f[:, hog_dim(4):]
    np.testing.assert_allclose(shape, build_visual_encoder(VisualConfig(name="hog", grid=4)).encode(frames).numpy())
    # hog alone cannot tell the first two apart; the colour part can, and it is in [-1, 1]
    assert np.linalg.norm(colour[0] - colour[1]) > 10 * np.linalg.norm(shape[0] - shape[1])
    assert np.abs(colour).max() <= 1.0


def test_hog_refuses_what_is_not_uint8_rgb():
    hog = build_visual_encoder(VisualConfig(name="hog", grid=2))
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        hog.encode(np.zeros((2, 8, 8), dtype=np.uint8))
    assert hog.encode(np.zeros((0, 8, 8, 3), dtype=np.uint8)).shape == (0, hog_dim(2))


@pytest.mark.parametrize("name", ["hog", "hog-colour"])
def test_hog_gives_a_flat_frame_with_noise_near_zero_features_as_a_constant_one(name):
    """The per-frame normalisation used to turn one grey level of noise into full-strength
    features (a floor of 1e-6); faint real edges keep theirs."""
    enc = build_visual_encoder(VisualConfig(name=name, grid=8))
    rng = np.random.default_rng(0)
    flat = np.full((1, 192, 256, 3), 16, np.uint8)
    noisy = (flat + rng.integers(-1, 2, flat.shape)).astype(np.uint8)  # night: one grey level of noise
    edges = []
    for contrast in (8, 24, 120):  # a dark picture holding one vertical edge
        frame = flat.copy()
        frame[:, :, 100:] += contrast
        edges.append(frame)
    f = enc.encode(np.concatenate([flat, noisy, *edges])).numpy()
    shape = np.linalg.norm(f[:, : hog_dim(8)], axis=1)
    full = np.sqrt(9 * (64 + 16 + 4 + 1))  # unit mean size
    assert shape[0] == 0 and shape[1] <= 0.05 * full
    assert shape[2] >= 0.8 * full and shape[3:] == pytest.approx(full, rel=1e-4)  # 8 grey levels and up
    if name == "hog-colour":  # the colour grid sees the same dark grey in both
        assert np.abs(f[0, hog_dim(8):] - f[1, hog_dim(8):]).max() < 2 / 127.5


def test_hog_of_dark_fading_and_noisy_corpus_clips(corpus):
    """Compressed video: a dark noisy clip reads as a constant frame, a fade gains its shape as
    it brightens, a static scene under sensor noise keeps its shape at full strength."""
    enc = build_visual_encoder(VisualConfig(name="hog", grid=8))
    full = np.sqrt(9 * (64 + 16 + 4 + 1))

    def norms(name: str) -> np.ndarray:
        frames, times = media.read_frames(corpus[name].path, 10.0)
        shown = [i for i, t in enumerate(times) if not any(0 <= t - f < 0.05 for f in corpus[name].flashes)]
        return np.linalg.norm(enc.encode(frames[shown]).numpy(), axis=1)

    assert norms("dark_noisy").max() <= 0.05 * full
    fade = norms("fade_in")
    assert fade[0] < 0.6 * full and np.all(fade[len(fade) // 4 :] == pytest.approx(full, rel=1e-3))
    assert norms("static_noisy") == pytest.approx(full, rel=1e-3)


def test_visual_probe_on_stored_features(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", classes=3, per_class={"train": 8, "test": 4})
    result = visual_probe(data)
    assert result["accuracy"] == 1.0 and result["chance"] == pytest.approx(1 / 3)
    assert (result["train_clips"], result["test_clips"]) == (24, 12)
    with pytest.raises(VabError, match="needs train and valid"):
        visual_probe(data, test_split="valid")


def test_pool_visible_uses_only_visible_frames():
    f = np.array([[0.0], [10.0], [2.0]])
    assert pool_visible(f, np.array([False, False, True])).tolist() == [2.0, 2.0]
    assert pool_visible(f, np.zeros(3, dtype=bool)).tolist() == [4.0, 10.0]  # none visible: all frames
