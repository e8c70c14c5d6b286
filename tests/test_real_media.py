"""Real media in, synchronised media out: every file of the corpus (tests/corpus.py) through
reading, muxing, `vab generate`, the web page's backend, `vab extract` and `vab embed`.

One clock, the picture's: time 0 is the first displayed frame.  Synchronisation is measured
without any model knowledge: each corpus picture flashes at known times; a click track
standing in for generated audio (or the click generator of tests/clicksync.py, which runs
the whole generation path) goes in, the output is decoded with PyAV alone, and its click
onsets are compared with its flash frames, on the output's own timestamps, as a player
shows them.  Target: within one audio frame of a 50 Hz codec (20 ms), every file, every
container; otherwise a one-line refusal.
"""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.clicksync import click_generator
from tests.corpus import SPECS, clicks, measure_sync, onsets, picture_flashes
from tests.test_generate import make_model_dir
from vab import media
from vab.cli import main as vab_main
from vab.errors import MediaError, VabError

SYNC = 0.02  # seconds: one audio frame of a 50 Hz codec
EXACT = 0.002  # seconds: reading is exact to a sample or a tick; this allows for codec smear
RATE = 16000
CONTAINERS = (".mp4", ".mov", ".mkv", ".ts")
NO_EDIT_LIST = (".mkv", ".ts")  # cannot hide frames nor the last AAC frame's padding
AAC_FRAME_48K = 1024 / 48000
SHORT = [s.name for s in SPECS]
NAMES = SHORT + ["long_30min"]


# ---------------------------------------------------------------------- measuring
def is_flash(frame: np.ndarray) -> bool:
    return float(np.percentile(frame.mean(axis=-1), 75)) > 200


def red_square_top_left(frame: np.ndarray) -> bool:
    """The corpus pictures hold a red square near the top-left corner as shown."""
    red = np.argwhere((frame[..., 0] > 170) & (frame[..., 1] < 110) & (frame[..., 2] < 110))
    h, w = frame.shape[:2]
    return len(red) > 0 and red[:, 0].mean() < h / 2 and red[:, 1].mean() < w / 2


def check_sync(out: Path, item, *, marker: bool = False, suffix: str = ".mp4") -> None:
    """Assert that `out`'s sound clicks with its picture's flashes (SYNC), starts with the
    first displayed frame (the click at sample 0 with `marker`) and lasts as long as the
    picture."""
    sync = measure_sync(out, declared_end=suffix not in NO_EDIT_LIST)
    hidden = item.spec.hidden if suffix in NO_EDIT_LIST else 0.0  # frames an edit list hid now show
    if marker:
        assert sync.clicks and abs(sync.clicks[0] - (sync.first + hidden)) <= EXACT, (sync.clicks[:1], sync.first)
    offsets = sync.offsets(marker)
    assert len(sync.flashes) == len(item.flashes) and len(sync.clicks) == len(item.flashes) + marker, sync
    assert max(map(abs, offsets)) <= SYNC, offsets
    if suffix in NO_EDIT_LIST:  # whole AAC frames at 48 kHz, never past the picture
        assert sync.picture_end - AAC_FRAME_48K - EXACT <= sync.sound_end <= sync.picture_end + EXACT, sync
    else:
        assert abs(sync.sound_end - sync.picture_end) <= EXACT, sync
    assert abs(sync.picture_end - sync.first - hidden - item.seconds) <= EXACT, sync


# ---------------------------------------------------------------------- reading
@pytest.mark.parametrize("name", NAMES)
def test_probe_describes_the_picture(corpus, name):
    item = corpus[name]
    info = media.probe(item.path)
    _, first, _ = picture_flashes(item.path)
    assert info.start == pytest.approx(first, abs=1e-6)
    assert info.duration == pytest.approx(item.seconds, abs=1e-3)
    assert (info.width, info.height) == item.display
    assert info.rotation == item.spec.rotation
    assert info.sample_aspect_ratio == (item.spec.sar or 1)
    assert media.picture_seconds(item.path) == pytest.approx(item.seconds, abs=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_frames_are_read_on_the_picture_clock_as_shown(corpus, name):
    item = corpus[name]
    flashes = item.flashes if len(item.flashes) <= 3 else item.flashes[:2] + item.flashes[-1:]
    for f in flashes:  # 1 ms before and after each flash begins
        frames, times = media.read_frames(item.path, 1000.0, f - 0.002, f + 0.002)
        assert [is_flash(x) for x in frames] == [False, False, True, True], (f, times)
    frames, _ = media.read_frames(item.path, 10.0, 0.0, 0.2)
    width, height = item.display
    assert frames.shape[1:3] == (height, width)  # upright, square pixels
    if item.spec.picture in ("plain", "letterbox"):
        assert red_square_top_left(frames[0])
    bounded, _ = media.read_frames(item.path, 10.0, 0.0, 0.1, max_short_side=16)
    assert min(bounded.shape[1:3]) == 16
    assert bounded.shape[2] / bounded.shape[1] == pytest.approx(width / height, rel=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_sound_is_read_on_the_picture_clock(corpus, name):
    item = corpus[name]
    if not item.has_audio:
        with pytest.raises(MediaError, match="no audio stream"):
            media.read_audio(item.path, RATE, 0.0, 1.0)
        return
    a0, a1 = item.audio_span()
    seconds = min(item.seconds, 60.0)
    wav = media.read_audio(item.path, RATE, 0.0, seconds)
    assert len(wav) == round(seconds * RATE)
    expected = [f for f in item.flashes if a0 <= f < min(a1, seconds)]
    assert np.allclose(onsets(wav, RATE), expected, atol=EXACT)
    if a0 > 0:  # the picture starts in silence
        assert np.abs(wav[: int(a0 * RATE) - 64]).max() < 1e-3
    for f in [f for f in item.flashes if a0 <= f < a1][-2:]:  # windows after a seek
        window = media.read_audio(item.path, RATE, f - 0.05, f + 0.05)
        assert np.allclose(onsets(window, RATE)[:1], [0.05], atol=EXACT)


# ---------------------------------------------------------------------- muxing
def containers(name: str) -> tuple[str, ...]:
    # the 30-minute file in the container `vab generate` writes (each other one costs ~20 s)
    return (".mp4",) if name == "long_30min" else CONTAINERS


@pytest.mark.parametrize("name", NAMES)
def test_mux_starts_the_sound_with_the_picture_in_every_container(corpus, name, tmp_path):
    item = corpus[name]
    track = clicks((0.0, *item.flashes), item.seconds, RATE)  # a click on the first frame too
    for suffix in containers(name):
        out = tmp_path / f"{name}{suffix}"
        if suffix == ".ts" and item.spec.rotation:
            with pytest.raises(VabError, match=f"cannot keep the video's {item.spec.rotation}-degree rotation"):
                media.mux(item.path, track, RATE, out)
            assert not list(tmp_path.iterdir())  # no half-written file
            continue
        media.mux(item.path, track, RATE, out)
        check_sync(out, item, marker=True, suffix=suffix)
        info = media.probe(out)  # shown as the source: display matrix and pixel aspect kept
        assert (info.rotation, info.sample_aspect_ratio, info.width, info.height) == (
            item.spec.rotation, item.spec.sar or Fraction(1), *item.display)
        out.unlink()


def test_mux_of_the_review_case_plays_the_whole_sound_with_the_picture(corpus, tmp_path):
    """The review's case: an MPEG-TS picture starting at 3.0 s played the new sound 3 s
    early, and kept only 0.96 s of it (the outputs' timestamps were the source's)."""
    item = corpus["mpegts_3s"]
    assert media.probe(item.path).start == pytest.approx(3.0)
    for suffix in CONTAINERS:
        out = media.mux(item.path, np.full(RATE * 2, 0.1, np.float32), RATE, tmp_path / f"o{suffix}")
        info = media.probe(out)
        with av.open(str(out)) as c:
            audio = c.streams.audio[0]
            kept = sum(f.samples for f in c.decode(audio)) / audio.sample_rate
        assert info.duration == pytest.approx(2.0, abs=EXACT) and kept >= 2.0 - AAC_FRAME_48K


# ---------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def clicker():
    return click_generator()


def generate_with(clicker, monkeypatch, *args: str) -> int:
    from vab.generation.generator import Generator

    monkeypatch.setattr(Generator, "from_pretrained", classmethod(lambda cls, *a, **k: clicker))
    return vab_main(["generate", *args, "--checkpoint", "clicks", "--device", "cpu"])


def test_generate_keeps_every_corpus_file_in_sync(corpus, clicker, monkeypatch, tmp_path, capsys):
    folder = corpus["reference"].path.parent
    out = tmp_path / "out"
    assert generate_with(clicker, monkeypatch, str(folder), "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name in SHORT:
        item = corpus[name]
        stem = item.path.stem
        wav = media.read_audio(out / f"{stem}.wav", RATE)
        assert abs(len(wav) / RATE - item.seconds) <= 0.5 / 50, name  # whole audio tokens
        assert np.allclose(onsets(wav, RATE), item.flashes, atol=SYNC), name
        check_sync(out / f"{stem}.mp4", item)


@pytest.mark.slow
def test_generate_keeps_a_30_minute_file_in_sync(corpus, clicker, monkeypatch, tmp_path, capsys):
    item = corpus["long_30min"]
    out = tmp_path / "out"
    assert generate_with(clicker, monkeypatch, str(item.path), "--out", str(out)) == 0
    wav = media.read_audio(out / "long_30min.wav", RATE)
    assert abs(len(wav) / RATE - item.seconds) <= 0.5 / 50
    assert np.allclose(onsets(wav, RATE), item.flashes, atol=SYNC)
    check_sync(out / "long_30min.mp4", item)


@pytest.mark.parametrize("name", SHORT)
def test_app_result_is_in_sync(corpus, clicker, name, tmp_path):
    from vab.app.backend import Backend
    from vab.app.workspace import Workspace
    from vab.generation.sampling import SamplingConfig

    item = corpus[name]
    with Workspace(parent=tmp_path) as workspace:
        backend = Backend(clicker, workspace)
        result = backend.soundtrack(backend.plan_soundtrack("generate", str(item.path), SamplingConfig(steps=1)))
        assert result.seconds == pytest.approx(item.seconds, abs=0.5 / 50)
        check_sync(result.video, item)
        assert np.allclose(onsets(media.read_audio(result.audio, RATE), RATE), item.flashes, atol=SYNC)


def test_app_refuses_a_file_longer_than_its_limit_in_one_line(corpus, clicker, tmp_path):
    from vab.app.backend import Backend, Limits
    from vab.app.workspace import Workspace
    from vab.generation.sampling import SamplingConfig

    with Workspace(parent=tmp_path) as workspace:
        with pytest.raises(MediaError, match=r"too long \(1802 s; this page takes up to 1800 s\)"):
            Backend(clicker, workspace, Limits(max_seconds=1800)).plan_soundtrack(
                "generate", str(corpus["long_30min"].path), SamplingConfig(steps=1))


# ---------------------------------------------------------------------- extraction and embedding
@pytest.mark.parametrize("name", NAMES)
def test_extraction_reads_each_clip_on_the_picture_clock(corpus, name):
    from vab.config import ExtractConfig
    from vab.data.extract import decode_clip

    item = corpus[name]
    start = 0.0 if name != "long_30min" else 1780.0  # a clip from the middle of a long file
    cfg = ExtractConfig(duration=min(item.seconds, 10.0), fps=50.0, max_short_side=32)
    if not item.has_audio:
        with pytest.raises(MediaError, match="no audio stream"):
            decode_clip(str(item.path), cfg, RATE, start)
        return
    wav, frames = decode_clip(str(item.path), cfg, RATE, start)
    assert len(wav) == round(cfg.duration * RATE) and len(frames) == round(cfg.duration * cfg.fps)
    a0, a1 = item.audio_span()
    shown = [f - start for f in item.flashes if start <= f < start + cfg.duration]
    assert np.allclose(onsets(wav, RATE), [f for f in shown if a0 <= f + start < a1], atol=EXACT)
    # the first frame sampled after each flash begins is a flash: (i + 0.5) / fps >= f
    seen = [i for i in range(len(frames)) if is_flash(frames[i]) and (i == 0 or not is_flash(frames[i - 1]))]
    expected = [int(np.ceil(f * cfg.fps - 0.5 - 1e-9)) for f in shown]
    assert seen == expected


@pytest.fixture(scope="module")
def manifest(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "corpus.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "id"])
        for name in NAMES:
            writer.writerow([str(corpus[name].path), name])
    return path


def test_extract_takes_every_corpus_file_or_says_why_in_one_line(manifest, tmp_path, capsys):
    from tests.test_extract import load_columns

    out = tmp_path / "data"
    args = ["extract", str(manifest), "--out", str(out), "--duration", "2", "--fps", "4", "--config", "tiny",
            "codec.codebook_size=16", "codec.n_fft=512", "codec.griffin_lim_iters=2"]
    assert vab_main(args) == 1  # one file has no sound to extract
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["id"], f["reason"]) for f in failures] == [("no_audio", "no audio stream")]
    cols = load_columns(out)
    assert sorted(cols["id"]) == sorted(n for n in NAMES if n != "no_audio")
    assert np.isfinite(cols["features"].astype(np.float32)).all()


def test_embed_takes_every_corpus_file_or_says_why_in_one_line(manifest, tmp_path_factory, tmp_path, capsys):
    from vab.search import Index

    model_dir = make_model_dir(tmp_path_factory.mktemp("model") / "tiny")
    out = tmp_path / "index"
    assert vab_main(["embed", str(manifest), "--checkpoint", str(model_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    problems = [line.strip() for line in err.splitlines() if line.strip().startswith(str(manifest.parent.parent))]
    assert len([p for p in problems if "no audio stream" in p]) == 1
    index = Index.load(out)
    assert sorted(index.ids) == sorted(n for n in NAMES if n != "no_audio")
    assert bool(index.audio.isfinite().all()) and bool(index.video.isfinite().all())
