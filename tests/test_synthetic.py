"""The synthetic audio-visual world: real media, ground truth that matches the media,
determinism, resumption, the `vab synth` command, and the demo's quality measures."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from vab import media
from vab.cli import main
from vab.data.manifest import read_manifest
from vab.data.synthetic import (
    COLOURS,
    parse_intervals,
    plan_clips,
    read_truth,
    render_audio,
    synthesize,
    visibility,
    world_classes,
)
from vab.demo import quality
from vab.errors import VabError

SMALL = dict(classes=3, train=6, valid=0, test=3, seconds=2.0, fps=8.0, width=32, height=32, seed=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    synthesize(out, **SMALL)
    return out


def test_manifest_is_what_vab_extract_reads(world):
    manifest = read_manifest(world / "manifest.csv")
    assert len(manifest) == 9
    assert manifest.label_names == sorted(c.name for c in world_classes(3))
    assert [r.split for r in manifest.rows].count("test") == 3
    assert all(len(r.labels) == 1 for r in manifest.rows)  # one label per clip
    assert all((world / "clips" / f"{r.id}.mp4").exists() for r in manifest.rows)


def test_clips_are_h264_aac_with_the_asked_geometry(world):
    info = media.probe(world / "clips" / "train-00000.mp4")
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (32, 32)
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(2.0, abs=0.07)
    assert info.audio_sample_rate == 16000


def test_sound_plays_exactly_while_the_object_is_visible(world):
    truth = read_truth(world)
    classes = world_classes(3)
    for row in truth.values():
        wav = media.read_audio(row.path, 16000, 0.0, 2.0)
        energy = quality.frame_energy_db(wav, 16000)
        vis = visibility(row.intervals, len(energy), quality.FRAME_RATE)
        assert vis.any()
        # loud while visible, near silent otherwise (AAC smears ~1 frame around each switch)
        inside = energy[vis]
        assert np.median(inside) > -25
        edges = np.convolve(np.diff(vis.astype(int)) != 0, np.ones(7), mode="same") > 0
        quiet = ~vis & ~np.concatenate([[False], edges])
        if quiet.any():
            assert np.median(energy[quiet]) < -60
        # the object's colour is on screen exactly on the visible frames
        frames, times = media.read_frames(row.path, 8.0, 0.0, 2.0)
        colour = np.array(COLOURS[row.label.split("-")[0]], dtype=float)
        cls = next(c for c in classes if c.name == row.label)
        assert tuple(cls.colour) == tuple(colour)
        for frame, t in zip(frames, times):
            near = (np.abs(frame.astype(float) - colour).sum(axis=-1) < 60).sum()
            shown = any(a <= t < b for a, b in row.intervals)
            assert (near >= 6) == shown, (row.id, t, near)


def test_same_seed_same_world_other_seed_other_world():
    a = plan_clips(4, {"train": 8, "test": 4}, 4.0, 8.0, 64, 64, seed=1)
    b = plan_clips(4, {"train": 8, "test": 4}, 4.0, 8.0, 64, 64, seed=1)
    c = plan_clips(4, {"train": 8, "test": 4}, 4.0, 8.0, 64, 64, seed=2)
    assert a == b and a != c
    cls = world_classes(4)
    assert np.array_equal(render_audio(a[0], cls[a[0].label], 4.0), render_audio(b[0], cls[b[0].label], 4.0))
    for spec in a:
        # whole video frames, at least 0.5 s each, in order, inside the clip
        for t0, t1 in spec.intervals:
            assert 0 <= t0 < t1 <= 4.0 and t1 - t0 >= 0.5 - 1e-9
            assert (t0 * 8) == pytest.approx(round(t0 * 8)) and (t1 * 8) == pytest.approx(round(t1 * 8))
        starts = [t0 for t0, _ in spec.intervals]
        assert starts == sorted(starts)
        for (_, end), (start, _) in zip(spec.intervals, spec.intervals[1:]):
            assert start - end >= 0.25 - 1e-9


@pytest.mark.parametrize("world", ["demo", "tunes"])
def test_a_larger_training_set_starts_with_the_smaller_one_but_moves_the_test_clips(world):
    """What --help and the README promise for data-size comparisons: the first N training clips
    are the same for any --train >= N; the valid and test clips follow them in the same stream."""
    small = plan_clips(8, {"train": 8, "valid": 2, "test": 4}, 4.0, 8.0, 64, 64, seed=0, world=world)
    large = plan_clips(8, {"train": 16, "valid": 2, "test": 4}, 4.0, 8.0, 64, 64, seed=0, world=world)
    assert [c for c in large if c.split == "train"][:8] == [c for c in small if c.split == "train"]
    assert [c for c in large if c.split == "test"] != [c for c in small if c.split == "test"]


def test_rerun_keeps_clips_and_other_settings_are_refused(world):
    before = {p.name: p.stat().st_mtime_ns for p in (world / "clips").iterdir()}
    again = synthesize(world, **SMALL)
    assert again.written == 0
    assert {p.name: p.stat().st_mtime_ns for p in (world / "clips").iterdir()} == before
    with pytest.raises(VabError, match="other parameters.*seed 3 -> 4"):
        synthesize(world, **{**SMALL, "seed": 4})


@pytest.mark.parametrize("bad", [dict(classes=1), dict(classes=9), dict(seconds=0.5), dict(fps=7.3), dict(train=0)])
def test_bad_parameters_are_one_line_errors(tmp_path, bad):
    with pytest.raises(VabError):
        synthesize(tmp_path / "w", **{**SMALL, **bad})
    assert not (tmp_path / "w" / "manifest.csv").exists()


def test_vab_synth_command(tmp_path, capsys):
    out = tmp_path / "w"
    code = main(["synth", str(out), "--classes", "2", "--train", "2", "--valid", "1", "--test", "1",
                 "--seconds", "1", "--fps", "4", "--size", "24"])
    assert code == 0
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["split"] for r in rows] == ["train", "train", "valid", "test"]
    assert all(parse_intervals(r["visible"]) for r in rows)
    assert main(["synth", str(tmp_path / "x"), "--classes", "12"]) == 2
    assert "--classes must be between 2 and 8" in capsys.readouterr().err


def test_intervals_round_trip_and_visibility():
    spans = parse_intervals("0.2500-1.0000;2-3.5")
    assert spans == [(0.25, 1.0), (2.0, 3.5)]
    vis = visibility(spans, 200, 50.0)
    assert vis[:12].sum() == 0 and vis[13:50].all() and not vis[50:100].any() and vis[100:175].all()


# ---------------------------------------------------------------------- quality measures
def test_judge_recognises_each_class_sound_whatever_its_timing():
    classes = world_classes(8)
    specs = plan_clips(8, {"train": 48, "test": 16}, 2.0, 8.0, 32, 32, seed=0)
    wavs = [render_audio(s, classes[s.label], 2.0) for s in specs]
    labels = [s.label for s in specs]
    judge = quality.SoundClassifier(16000).fit(wavs[:48], labels[:48])
    assert quality.agreement(judge.predict(wavs[48:]), labels[48:]) == 1.0
    # silence everywhere: a constant judge output, far from perfect agreement
    silent = [np.zeros(32000, dtype=np.float32)] * 16
    assert quality.agreement(judge.predict(silent), labels[48:]) <= 0.25


def test_timing_measures_and_chance():
    classes = world_classes(2)
    specs = plan_clips(2, {"train": 20}, 4.0, 8.0, 32, 32, seed=5)
    wavs = [render_audio(s, classes[s.label], 4.0) for s in specs]
    vis = [visibility(s.intervals, 200, 50.0) for s in specs]
    energies = [quality.frame_energy_db(w, 16000) for w in wavs]
    threshold = quality.fit_threshold(energies, vis)
    assert -90 < threshold < -15  # between silence and the quietest sound (-12 dBFS)
    own = quality.timing_scores(energies, vis, threshold)
    assert own.agreement > 0.97
    assert 0.5 <= own.chance < 0.8 and own.shuffled < own.agreement - 0.2
    always_on = [np.zeros_like(e) for e in energies]
    share = float(np.mean(np.concatenate(vis)))  # "always sounding" agrees exactly on the visible frames
    assert quality.timing_scores(always_on, vis, threshold).agreement == pytest.approx(share)
    assert own.majority == pytest.approx(max(share, 1 - share))
    assert quality.timing_agreement(np.array([-90.0, 0.0, 0.0]), np.array([False, True, False]), -40) == pytest.approx(2 / 3)

