"""vab.media on synthetic files made with PyAV (tests/mediagen.py)."""

from __future__ import annotations

import inspect
import multiprocessing
import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.mediagen import frame_pattern, make_video, tone
from vab import media
from vab.errors import MediaError, VabError

# Writing a display matrix needs PyAV >= 18 (reading it back is older).
needs_rotation = pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="PyAV cannot write rotation"
)
VFR_TIMES = [0.0, 0.05, 0.3, 0.31, 0.9, 1.0, 1.5, 1.52, 1.9]  # last frame lasts until 1.94 s
SR = 16000


def code(i: int) -> int:
    """Red value of source frame i (tests/mediagen.py)."""
    return (i * 7) % 200 + 30


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "cfr": make_video(d / "cfr.mp4", seconds=2.0, fps=25),
        "gop": make_video(d / "gop.mp4", seconds=4.0, fps=25, gop=10, audio=False),
        "vfr": make_video(d / "vfr.mp4", seconds=2.0, frame_times=VFR_TIMES),
        "noaudio": make_video(d / "noaudio.mp4", seconds=1.0, audio=False),
        "audioonly": make_video(d / "audioonly.m4a", seconds=1.5, video=False),
    }


def reference(path):
    """Every decoded frame (RGB) and its time, straight from PyAV."""
    with av.open(str(path)) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    return np.array([t for t, _ in frames]), np.stack([a for _, a in frames])


def on_screen(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the frame shown at each t: last with time <= t, else the first."""
    return np.maximum(np.searchsorted(times, t, side="right") - 1, 0)


def assert_codes(frames: np.ndarray, idx: np.ndarray):
    """h264 is lossy: the red level must be nearer its own code than a neighbour's (7 apart)."""
    red = frames[:, frames.shape[1] // 2, frames.shape[2] // 2, 0].astype(int)
    expected = np.array([code(i) for i in idx])
    assert np.all(np.abs(red - expected) <= 3), (red, expected)


# ---------------------------------------------------------------- probe


def test_probe_streams(clips):
    cfr = media.probe(clips["cfr"])
    assert cfr.has_video and cfr.has_audio and cfr.path == str(clips["cfr"])
    assert cfr.fps == pytest.approx(25.0) and cfr.num_frames == 50
    assert (cfr.width, cfr.height, cfr.rotation) == (64, 48, 0)
    assert cfr.duration == pytest.approx(2.0, abs=0.05)
    assert (cfr.audio_sample_rate, cfr.audio_channels) == (16000, 1)

    noaudio = media.probe(clips["noaudio"])
    assert noaudio.has_video and not noaudio.has_audio and noaudio.audio_sample_rate is None

    audio = media.probe(clips["audioonly"])
    assert audio.has_audio and not audio.has_video
    assert audio.fps is None and audio.width is None and audio.num_frames is None
    assert audio.duration == pytest.approx(1.5, abs=0.05)

    vfr = media.probe(clips["vfr"])
    assert vfr.num_frames == len(VFR_TIMES)
    assert vfr.fps == pytest.approx(len(VFR_TIMES) / 1.94, rel=0.05)


# ---------------------------------------------------------------- frames


@pytest.mark.parametrize("fps", [0.5, 1, 5, 25, 60, 240])
@pytest.mark.parametrize("name", ["cfr", "vfr"])
def test_read_frames_picks_frame_on_screen(clips, name, fps):
    ref_t, ref = reference(clips[name])
    end = 2.0 if name == "cfr" else 1.94
    frames, times = media.read_frames(clips[name], fps)
    expected_t = (np.arange(int(np.ceil(end * fps)) + 1) + 0.5) / fps
    np.testing.assert_allclose(times, expected_t[expected_t < end - 1e-9])
    assert frames.dtype == np.uint8 and frames.shape == (len(times), 48, 64, 3)
    idx = on_screen(ref_t, times)
    np.testing.assert_array_equal(frames, ref[idx])
    assert_codes(frames, idx)  # mediagen numbers frames in presentation order
    if fps > 25:
        assert len(np.unique(idx)) < len(idx)  # faster than the source: frames repeat


def test_window_after_seek(clips):
    """[t0, t1) in the middle of a file with keyframes every 0.4 s."""
    ref_t, ref = reference(clips["gop"])
    frames, times = media.read_frames(clips["gop"], 5, t0=1.3, t1=2.7)
    np.testing.assert_allclose(times, 1.3 + (np.arange(7) + 0.5) / 5)
    idx = on_screen(ref_t, times)
    np.testing.assert_array_equal(frames, ref[idx])
    assert_codes(frames, np.floor(times * 25).astype(int))
    # a window starting between frames, at a high rate
    frames, times = media.read_frames(clips["gop"], 60, t0=2.01, t1=2.2)
    np.testing.assert_array_equal(frames, ref[on_screen(ref_t, times)])
    assert times[0] == pytest.approx(2.01 + 0.5 / 60) and times[-1] < 2.2


def test_window_edges(clips):
    frames, times = media.read_frames(clips["cfr"], 1, t0=1.2, t1=5.0)
    np.testing.assert_allclose(times, [1.7])  # 2.7 is past the end of the video
    assert media.read_frames(clips["cfr"], 1, t0=1.0, t1=1.4)[0].shape[0] == 0  # 1.5 >= t1
    assert media.read_frames(clips["cfr"], 1, t0=3.0)[0].shape == (0, 0, 0, 3)
    with pytest.raises(ValueError):
        media.read_frames(clips["cfr"], 0)


@pytest.mark.parametrize("bound, shape", [(24, (24, 32)), (25, (24, 32)), (47, (46, 62)), (48, (48, 64)), (100, (48, 64))])
def test_short_side_bound(clips, bound, shape):
    frames, _ = media.read_frames(clips["cfr"], 5, max_short_side=bound)
    assert frames.shape[1:3] == shape
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    assert_codes(frames, np.floor((np.arange(10) + 0.5) / 5 * 25).astype(int))


@needs_rotation
def test_rotation_gives_upright_frames(tmp_path):
    pics = [frame_pattern(i, 64, 48) for i in range(5)]
    for p in pics:
        p[:8, :8] = 255  # white corner, top-left as stored
    path = make_video(tmp_path / "phone.mp4", seconds=0.2, frames=pics, rotation=90, audio=False)
    info = media.probe(path)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    frames, _ = media.read_frames(path, 10, max_short_side=24)
    assert frames.shape[1:3] == (32, 24)  # portrait, short side bounded
    white = np.argwhere(frames[0].min(axis=-1) > 200)
    # displayed a quarter turn counter-clockwise: top-left goes to bottom-left
    assert white[:, 0].min() >= 26 and white[:, 1].max() <= 5


def test_iter_frames_is_lazy_and_converts_only_returned_frames(clips, monkeypatch):
    converted = []

    class CountingHeld(media._Held):
        def rgb(self):
            if self.array is None:
                converted.append(self.t)
            return super().rgb()

    monkeypatch.setattr(media, "_Held", CountingHeld)
    it = media.iter_frames(clips["gop"], 1)
    assert inspect.isgenerator(it)
    assert not converted
    out = list(it)
    assert len(out) == 4 and len(converted) == 4  # 100 frames decoded, 4 converted


def test_iter_frames_memory_does_not_grow_with_length(clips):
    frame_bytes = 48 * 64 * 3
    tracemalloc.start()
    try:
        n = 0
        for _t, frame in media.iter_frames(clips["gop"], 25):
            n += frame.shape[0] > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 100
    assert peak < 20 * frame_bytes  # the whole video would be 100 frames


def _read_in_child(path: str, queue) -> None:
    queue.put(media.read_frames(path, 4, max_short_side=16)[0].shape)


def test_a_forked_process_reads_frames_after_its_parent_did(clips):
    """`vab extract`'s decoding workers are forks: whatever the parent converted before must
    not leave the child a converter bound to threads it does not have (PyAV 18.1.1 keeps one
    per thread; CI hung here)."""
    expected = media.read_frames(clips["cfr"], 4, max_short_side=16)[0].shape
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(str(clips["cfr"]), queue), daemon=True)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("a forked process hung reading frames after its parent had read some")
    assert child.exitcode == 0 and queue.get(timeout=5) == expected


# ---------------------------------------------------------------- audio


def envelope_step(x: np.ndarray, sample_rate: int, level: float) -> float:
    """Seconds at which the 5 ms RMS envelope first exceeds `level`."""
    hop = sample_rate // 200
    rms = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    return float(np.argmax(rms > level) * hop / sample_rate)


def step_wav(seconds: float, at: float, sample_rate: int = SR) -> np.ndarray:
    """A 440 Hz tone at amplitude 0.1 that jumps to 0.6 at `at` seconds: [1, N]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    amp = np.where(t < at, 0.1, 0.6)
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (0.3, 1.7013), (1.234, 1.9), (0.5, 0.50001)])
def test_read_audio_length_exact(clips, t0, t1):
    x = media.read_audio(clips["cfr"], 22050, t0, t1)
    assert x.dtype == np.float32 and x.shape == (round((t1 - t0) * 22050),)


def test_read_audio_zero_pads_past_end(clips):
    x = media.read_audio(clips["cfr"], SR, 1.5, 3.0)
    assert x.shape == (24000,)
    assert np.sqrt(np.mean(x[:7000] ** 2)) > 0.2  # the tone (0.5 peak)
    assert np.all(x[8000:] == 0)  # the stream ends at 2.0 s
    assert media.read_audio(clips["cfr"], SR).shape == (32000,)  # to the end of the stream


@pytest.fixture(scope="module")
def step_clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("step") / "step.mp4", seconds=3.0, wav=step_wav(3.0, at=1.8))


@pytest.mark.parametrize("rate", [SR, 22050])
def test_read_audio_window_follows_timestamps(step_clip, rate):
    whole = media.read_audio(step_clip, rate)
    assert envelope_step(whole, rate, 0.25) == pytest.approx(1.8, abs=0.01)
    window = media.read_audio(step_clip, rate, 1.1, 2.5)  # read after a seek
    assert envelope_step(window, rate, 0.25) == pytest.approx(0.7, abs=0.01)
    same = whole[round(1.1 * rate) :][: len(window)]
    # same samples as reading from the start; after resampling, up to half a sample of phase
    np.testing.assert_allclose(window, same, atol=1e-4 if rate == SR else 0.05)


def test_read_audio_lossless_sample_exact(tmp_path):
    rng = np.random.default_rng(0)
    wav = rng.uniform(-0.9, 0.9, size=3 * SR).astype(np.float32)
    for suffix in (".wav", ".flac"):
        path = media.write_audio(tmp_path / f"noise{suffix}", wav, SR)
        x = media.read_audio(path, SR, 0.7301, 2.21)
        start = round(0.7301 * SR)
        np.testing.assert_allclose(x, wav[start : start + len(x)], atol=0.51 / 32768)


def test_read_audio_averages_any_layout(tmp_path):
    rng = np.random.default_rng(1)
    for channels in (2, 6):
        wav = rng.uniform(-0.5, 0.5, size=(channels, SR)).astype(np.float32)
        path = media.write_audio(tmp_path / f"c{channels}.wav", wav, SR)
        assert media.probe(path).audio_channels == channels
        np.testing.assert_allclose(media.read_audio(path, SR), wav.mean(0), atol=2e-4)
    # lossy multichannel AAC inside an mp4 reads too
    path = make_video(tmp_path / "surround.mp4", seconds=1.0, channels=6, freq=440.0)
    assert media.probe(path).audio_channels == 6
    x = media.read_audio(path, SR)
    assert x.shape == (SR,) and dominant_hz(x, SR) == pytest.approx(440, abs=2)


def dominant_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sample_rate / len(x))


@pytest.mark.parametrize("source_rate", [8000, 48000])
def test_read_audio_resamples(tmp_path, source_rate):
    path = make_video(tmp_path / "a.mp4", seconds=1.0, sample_rate=source_rate, freq=1000.0, video=False)
    x = media.read_audio(path, SR)
    assert x.shape == (SR,)
    assert dominant_hz(x, SR) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(x[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_read_audio_only_formats(tmp_path, clips):
    wav = tone(1.0, 24000, 880.0)
    for suffix, codec in ((".mp3", "libmp3lame"), (".flac", "flac")):
        path = tmp_path / f"a{suffix}"
        with av.open(str(path), "w") as out:
            s = out.add_stream(codec, rate=24000, layout="mono")
            if suffix == ".mp3":  # cover art: a video stream that is not video
                art = out.add_stream("mjpeg")
                art.width = art.height = 16
                art.pix_fmt = "yuvj420p"
                art.disposition = av.stream.Disposition.attached_pic
                pic = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 128, np.uint8), format="rgb24")
                pic = pic.reformat(format="yuvj420p")
                pic.pts = 0
                out.mux(art.encode(pic))
                out.mux(art.encode(None))
            frame = av.AudioFrame.from_ndarray(wav, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 24000, 0
            out.mux(s.encode(frame))
            out.mux(s.encode(None))
        info = media.probe(path)
        assert info.has_audio and not info.has_video and info.duration == pytest.approx(1.0, abs=0.03)
        x = media.read_audio(path, SR, 0.0, 1.0)
        assert x.shape == (SR,) and dominant_hz(x, SR) == pytest.approx(880, abs=2)
        with pytest.raises(MediaError, match="no video stream"):
            media.read_frames(path, 1)
    x = media.read_audio(clips["audioonly"], SR)  # AAC in .m4a
    assert x.shape == (int(1.5 * SR),) and dominant_hz(x, SR) == pytest.approx(440, abs=2)


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_audio_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(2)
    stereo = rng.uniform(-1, 1, size=(2, 12345)).astype(np.float32)
    path = media.write_audio(tmp_path / f"out{suffix}", stereo, 24000)
    info = media.probe(path)
    assert (info.audio_sample_rate, info.audio_channels, info.has_video) == (24000, 2, False)
    with av.open(str(path)) as c:
        back = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    q = np.clip(np.round(stereo * 32768), -32768, 32767)
    # packed s16 decodes as [1, N * C] interleaved
    np.testing.assert_array_equal(back.reshape(-1, 2).T, q)
    mono = media.write_audio(tmp_path / f"mono{suffix}", stereo[0], 24000)
    np.testing.assert_allclose(media.read_audio(mono, 24000), stereo[0], atol=0.51 / 32768)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"mono{suffix}", f"out{suffix}"])


def test_write_audio_rejects_unknown_suffix(tmp_path):
    with pytest.raises(VabError, match="suffix"):
        media.write_audio(tmp_path / "x.ogg", np.zeros(100, np.float32), SR)
    assert list(tmp_path.iterdir()) == []


def video_packets(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(bytes(p), p.pts * s.time_base, p.dts * s.time_base) for p in c.demux(s) if p.dts is not None]


@pytest.mark.parametrize("seconds", [3.0, 1.2])
def test_mux_copies_video_and_replaces_audio(clips, tmp_path, seconds):
    src = clips["cfr"]
    wav = tone(seconds, 24000, 1000.0, channels=2)
    out = media.mux(src, wav, 24000, tmp_path / "muxed.mp4")
    assert video_packets(out) == video_packets(src)  # bytes and times unchanged
    with av.open(str(out)) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
        assert c.streams.audio[0].sample_rate == 24000 and c.streams.audio[0].channels == 2
    info = media.probe(out)
    assert info.duration <= 2.0 + 1 / 25 + 1e-6
    x = media.read_audio(out, 24000)
    assert len(x) <= 2.0 * 24000 + 1024
    assert dominant_hz(x[: int(min(seconds, 2.0) * 24000)], 24000) == pytest.approx(1000, abs=2)
    if seconds < 2.0:  # zero padded to the video's length
        assert np.abs(x[int(1.3 * 24000) : int(1.95 * 24000)]).max() < 1e-3
    assert [p.name for p in tmp_path.iterdir()] == ["muxed.mp4"]


def test_mux_with_seconds_keeps_only_the_start_of_the_video(clips, tmp_path):
    src = clips["cfr"]  # 2 s at 25 fps
    out = media.mux(src, tone(3.0, 24000, 1000.0), 24000, tmp_path / "cut.mp4", seconds=0.8)
    kept, original = video_packets(out), video_packets(src)
    cut = Fraction(4, 5)  # packet times are exact fractions; the float 0.8 is a little above 4/5
    shown = [p for p in original if p[1] < cut]
    assert shown and all(p in kept for p in shown)  # every frame shown before the cut, bytes unchanged
    assert kept == original[: len(kept)] and all(dts < cut for _, _, dts in kept)
    assert 0.8 <= media.probe(out).duration <= 0.8 + 4 / 25
    assert len(media.read_audio(out, 24000)) <= 0.8 * 24000 + 1024
    frames, times = media.read_frames(out, fps=25)
    assert len(frames) == 20 and times[-1] < 0.8  # every frame before the cut decodes
    # a cut past the end changes nothing
    longer = media.mux(src, tone(3.0, 24000, 1000.0), 24000, tmp_path / "whole.mp4", seconds=5.0)
    assert video_packets(longer) == original


@needs_rotation
def test_mux_keeps_rotation_and_handles_silent_video(clips, tmp_path):
    phone = make_video(tmp_path / "phone.mp4", seconds=0.4, rotation=270, audio=False)
    out = media.mux(phone, np.zeros(SR, np.float32), SR, tmp_path / "o.mp4")
    info = media.probe(out)
    assert info.rotation == 270 and info.has_audio and info.duration <= 0.4 + 0.04 + 1e-6
    assert video_packets(out) == video_packets(phone)


def test_mux_other_containers(clips, tmp_path):
    out = media.mux(clips["cfr"], tone(3.0, SR)[0], SR, tmp_path / "o.mkv")
    with av.open(str(out)) as c:
        ends = {"audio": 0.0, "video": 0.0}
        for p in c.demux():
            if p.dts is not None:
                ends[p.stream.type] = max(ends[p.stream.type], float((p.pts + p.duration) * p.time_base))
    # no edit list in Matroska: the audio is cut to whole AAC frames inside the video
    assert 2.0 - 0.07 <= ends["audio"] <= ends["video"] == pytest.approx(2.0)
    assert [b for b, _, _ in video_packets(out)] == [b for b, _, _ in video_packets(clips["cfr"])]
    with pytest.raises(VabError, match="o.wav"):
        media.mux(clips["cfr"], tone(1.0, SR)[0], SR, tmp_path / "o.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mkv"]


# ---------------------------------------------------------------- bad input


@pytest.fixture
def bad_files(tmp_path, clips):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    data = clips["cfr"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return {
        "missing": (tmp_path / "missing.mp4", "file not found"),
        "empty": (empty, "empty file"),
        "text": (text, "not a media file"),
        "cut": (cut, "not a media file"),  # the index (moov) is at the end: gone
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "cut"])
def test_bad_files_raise_media_error(bad_files, kind, tmp_path):
    path, problem = bad_files[kind]
    calls = [
        lambda: media.probe(path),
        lambda: media.read_frames(path, 1),
        lambda: media.iter_frames(path, 1),  # reported at the call, before iterating
        lambda: media.read_audio(path, SR),
        lambda: media.mux(path, np.zeros(100, np.float32), SR, tmp_path / "out.mp4"),
    ]
    for call in calls:
        with pytest.raises(MediaError, match=problem) as err:
            call()
        assert str(path) in str(err.value)
    assert not (tmp_path / "out.mp4").exists()


def test_truncated_stream_returns_what_decodes(tmp_path):
    """A file whose index is up front (faststart) decodes up to the cut, no raw av error."""
    full = make_video(tmp_path / "full.mp4", seconds=2.0, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames, times = media.read_frames(cut, 25)
    assert 5 < len(frames) < 50
    ref_t, ref = reference(full)
    np.testing.assert_array_equal(frames, ref[on_screen(ref_t, times)])
    x = media.read_audio(cut, SR)
    assert SR // 4 < len(x) < 2 * SR
    padded = media.read_audio(cut, SR, 0.0, 2.0)
    assert len(padded) == 2 * SR and np.all(padded[len(x) :] == 0)


def test_missing_stream_kinds(clips):
    with pytest.raises(MediaError, match="no video stream") as err:
        media.read_frames(clips["audioonly"], 1)
    assert str(clips["audioonly"]) in str(err.value)
    with pytest.raises(MediaError, match="no video stream"):
        media.mux(clips["audioonly"], np.zeros(10, np.float32), SR, clips["audioonly"].with_suffix(".o.mp4"))
    with pytest.raises(MediaError, match="no audio stream") as err:
        media.read_audio(clips["noaudio"], SR)
    assert str(clips["noaudio"]) in str(err.value)


# ---------------------------------------------------------------------- sparse reading (issue 19)
SHORT_GOPS = {"preset": "veryfast", "g": "6", "keyint_min": "6", "bf": "3"}  # B-frames, a keyframe every 0.24 s


@pytest.mark.parametrize("options", [
    SHORT_GOPS,
    {**SHORT_GOPS, "x264-params": "open-gop=1"},  # leading B-frames reference the previous GOP
    {"preset": "veryfast", "g": "250", "bf": "3"},  # one keyframe: nothing to skip
])
@pytest.mark.parametrize("fps, t0, t1", [(1.0, 0.0, None), (8.0, 0.0, None), (0.7, 1.3, 5.1), (2.5, 0.4, 3.0)])
def test_sparse_reading_returns_the_frames_of_decoding_every_packet(tmp_path, options, fps, t0, t1):
    path = make_video(tmp_path / "v.mp4", seconds=6.0, fps=25, width=64, height=48, encoder_options=options)
    sparse, times = media.read_frames(path, fps, t0, t1, max_short_side=32)
    every, every_times = media.read_frames(path, fps, t0, t1, max_short_side=32, sparse=False)
    assert len(every) > 0 and np.array_equal(times, every_times)
    assert np.array_equal(sparse, every)


def test_sparse_reading_matches_on_variable_frame_rate(tmp_path):
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.uniform(0.01, 0.12, 80))
    path = make_video(tmp_path / "vfr.mp4", frame_times=list(stamps - stamps[0]), seconds=float(stamps[-1]),
                      width=64, height=48, encoder_options={"preset": "veryfast", "g": "5", "bf": "2"})
    for fps in (0.5, 1.0, 3.0):
        a, _ = media.read_frames(path, fps)
        b, _ = media.read_frames(path, fps, sparse=False)
        assert np.array_equal(a, b), fps


def test_sparse_reading_decodes_only_what_low_frame_rates_need(tmp_path, monkeypatch):
    path = make_video(tmp_path / "v.mp4", seconds=8.0, fps=25, width=64, height=48, encoder_options=SHORT_GOPS)
    decoded = {"n": 0}
    real = media._decoded

    def counting(*args):
        for item in real(*args):
            decoded["n"] += 1
            yield item

    monkeypatch.setattr(media, "_decoded", counting)
    counts = {}
    for sparse in (False, True):
        decoded["n"] = 0
        media.read_frames(path, 1.0, sparse=sparse)
        counts[sparse] = decoded["n"]
    assert counts[False] == 200 and counts[True] < 200 / 3, counts
