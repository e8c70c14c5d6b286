"""`vab generate` and the generation API: windows, stitching, outputs, editing, continuation.

Models are tiny with random weights, saved to a model directory and loaded back by
the real loader; the spectral codec is fitted on a few seconds of noise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.mediagen import make_video, tone
import vab
from vab.checkpoint import load_model, save_model
from vab import media
from vab.cli import main
from vab.errors import VabError
from vab.generation.generator import Generator, Request
from vab.generation.codec_chunks import decode_chunked, encode_chunked
from vab.generation.features import video_seconds
from vab.generation.inputs import expand_inputs, unique_names
from vab.generation.windows import plan_windows, seconds_to_tokens
from vab.model import VAB, Coarse2Fine
from vab.generation.sampling import SamplingConfig

FAST = SamplingConfig(steps=2, guidance=3.0)
FAST_ARGS = ["--steps", "2", "--cfg", "3"]
SMALL = dict(fps=2.0, width=32, height=24)  # small, low-fps test videos


# ---------------------------------------------------------------------- fixtures
def make_model_dir(directory: Path, *overrides: str, seed: int = 0) -> Path:
    """A tiny VAB (4-s windows, 8 fps as the preset, spectral codec fitted on noise) saved to `directory`."""
    from vab.codecs.spectral import SpectralCodec
    from vab.config import load_config
    from vab.visual import build_visual_encoder

    cfg = load_config("tiny", [
        "codec.codebook_size=16", "codec.n_fft=512", "codec.griffin_lim_iters=2",
        "model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64",
        *overrides,
    ])
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(16000 * 4).astype(np.float32) * np.repeat(rng.uniform(0.01, 0.5, 40), 1600)
    codec = SpectralCodec.from_config(cfg.codec).fit([noise])
    encoder = build_visual_encoder(cfg.visual)
    torch.manual_seed(seed)
    codebooks = [codec.codebook_vectors(k) for k in range(cfg.model.levels)]
    model = VAB.from_config(cfg, codebooks, visual_dim=encoder.dim, frame_rate=codec.frame_rate)
    save_model(model, directory)
    codec.save(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def generator(model_dir) -> Generator:
    return Generator.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "long": make_video(d / "long.mp4", seconds=35.0, **SMALL),
        "nine": make_video(d / "nine.mp4", seconds=9.0, freq=330.0, **SMALL),
        "short": make_video(d / "short.mp4", seconds=2.0, **SMALL),
        "silent": make_video(d / "silent.mp4", seconds=3.0, audio=False, **SMALL),
    }


def generate_cli(*args: str) -> int:
    return main(["generate", *map(str, args), *FAST_ARGS, "--device", "cpu"])


def audio_seconds(path: Path) -> float:
    return len(media.read_audio(path, 16000)) / 16000


def video_packets(path: Path) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


def visible(folder: Path) -> set[str]:
    """Every name in `folder` (temporaries included) except the outputs' source records."""
    return {p.name for p in folder.iterdir() if not p.name.endswith(".vab.json")}


# ---------------------------------------------------------------------- plans
def test_window_plan_covers_the_input_with_full_windows():
    windows = plan_windows(total=1750, length=200, overlap=50)
    assert windows[0].start == 0 and windows[0].carried == 0
    assert windows[-1].stop == 1750
    assert all(w.length == 200 for w in windows)
    for prev, w in zip(windows, windows[1:]):
        assert w.carried == prev.stop - w.start >= 50 and w.start > prev.start
    assert plan_windows(total=120, length=200, overlap=50) == [plan_windows(200, 200, 50)[0]]
    assert seconds_to_tokens(2.5, 50) == 125 and seconds_to_tokens(0.01, 50) == 1 and seconds_to_tokens(0.03, 50) == 2


def test_chunked_encoding_is_exact_and_decoding_has_the_right_length(generator):
    codec = generator.codec
    wav = np.random.default_rng(1).standard_normal(320 * 400).astype(np.float32) * 0.1
    whole = codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0]
    # chunks of 1 s with 0.5 s of context (> n_fft / 2): the same tokens as one call
    assert torch.equal(encode_chunked(codec, wav, 4, chunk_seconds=1.0), whole)
    one = decode_chunked(codec, whole)  # shorter than a chunk: one call
    assert np.array_equal(one, codec.decode(whole[None])[0, 0].numpy())
    chunked = decode_chunked(codec, whole, chunk_seconds=1.0)
    assert chunked.shape == one.shape and np.isfinite(chunked).all()


def test_inputs_expand_folders_and_globs_and_names_are_unique(tmp_path):
    for rel in ["a/clip.mp4", "b/clip.mp4", "b/other.mkv", "b/.hidden.mp4", "b/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "b" / "out").mkdir()
    (tmp_path / "b" / "out" / "clip.mp4").write_bytes(b"an earlier output")
    found, problems = expand_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.m*"), str(tmp_path / "nope.mp4"),
                                     str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "z*"), str(tmp_path / "b")],
                                    exclude=tmp_path / "b" / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/clip.mp4", "b/clip.mp4", "b/other.mkv"]
    assert [why for _, why in problems] == ["file not found", "no files match this pattern"]
    names = unique_names(found)
    assert sorted(names.values()) == ["a__clip", "b__clip", "other"]


# ---------------------------------------------------------------------- long videos
def test_long_video_in_windows(tmp_path, videos, model_dir, monkeypatch):
    requested = []
    real = media.read_frames

    def recording(path, fps, t0=0.0, t1=None, max_short_side=None):
        requested.append((t0, t1))
        return real(path, fps, t0, t1, max_short_side)

    monkeypatch.setattr(media, "read_frames", recording)
    out = tmp_path / "out"
    assert generate_cli(videos["long"], "--checkpoint", model_dir, "--out", out) == 0
    assert visible(out) == {"long.wav", "long.mp4"}

    length = video_seconds(videos["long"])
    assert abs(audio_seconds(out / "long.wav") - length) <= 1 / 50
    # frames were read window by window, never more than one 4-s window at a time
    windows = plan_windows(seconds_to_tokens(length, 50), 200, 50)
    assert len(requested) == len(windows) == 12
    assert all(t1 - t0 <= 4.0 + 1e-9 for t0, t1 in requested)
    assert [t0 for t0, _ in requested] == [w.start / 50 for w in windows]
    # the mp4: the original video packets unchanged, the new audio as AAC, no longer than the video
    assert video_packets(out / "long.mp4") == video_packets(videos["long"])
    with av.open(str(out / "long.mp4")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
    assert media.probe(out / "long.mp4").duration <= length + 1e-3


def test_window_features_from_video_and_from_array_agree(generator, videos):
    """A 9-s video (3 windows): features given as an array give the same tokens as the file."""
    from vab.visual import build_visual_encoder

    model = generator.model
    frames, _ = media.read_frames(videos["nine"], model.fps, max_short_side=model.config.extract.max_short_side)
    features = build_visual_encoder(model.config.visual).encode(frames)
    # one noise key for both (by default each source draws from a hash of its own content)
    from_file = generator.generate(videos["nine"], sampling=FAST, noise_key="nine")
    from_array = generator.generate(features, sampling=FAST, noise_key="nine")
    assert from_file.windows == from_array.windows == 3
    assert torch.equal(from_file.tokens, from_array.tokens)
    assert from_file.tokens.shape == (4, 450) and (from_file.tokens < 16).all()


# ---------------------------------------------------------------------- short, silent, formats
def test_short_and_silent_videos_flac_plot_and_no_mux(tmp_path, videos, model_dir):
    out = tmp_path / "out"
    rc = generate_cli(videos["short"], videos["silent"], "--checkpoint", model_dir, "--out", out, "--format", "flac",
                      "--plot")
    assert rc == 0
    assert visible(out) == {f"{n}.{s}" for n in ("short", "silent") for s in ("flac", "mp4", "png")}
    for name in ("short", "silent"):
        length = video_seconds(videos[name])
        assert abs(audio_seconds(out / f"{name}.flac") - length) <= 1 / 50
        assert video_packets(out / f"{name}.mp4") == video_packets(videos[name])
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only_audio = tmp_path / "audio_only"
    assert generate_cli(videos["short"], "--checkpoint", model_dir, "--out", only_audio, "--no-mux") == 0
    assert visible(only_audio) == {"short.wav"}
    cut = tmp_path / "cut"
    assert generate_cli(videos["nine"], "--checkpoint", model_dir, "--out", cut, "--duration", "1.5") == 0
    assert abs(audio_seconds(cut / "nine.wav") - 1.5) <= 1 / 50
    assert 1.5 <= media.probe(cut / "nine.mp4").duration <= 1.5 + 0.2  # the mp4 is cut with the audio


# ---------------------------------------------------------------------- batches
def test_batch_with_bad_files_reruns_and_overwrite(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    make_video(folder / "a" / "clip.mp4", seconds=1.5, **SMALL)
    make_video(folder / "b" / "clip.mp4", seconds=2.5, audio=False, **SMALL)
    make_video(folder / "c" / "blink.mp4", frame_times=[0.0], fps=25.0, width=32, height=24)  # one frame, 0.04 s
    (folder / "b" / "text.mp4").write_text("not a video")
    out = tmp_path / "out"
    args = [folder, tmp_path / "missing.mp4", "--checkpoint", model_dir, "--out", out, "--batch-size", "2"]
    assert generate_cli(*args) == 1
    err = capsys.readouterr().err
    assert "2 input(s) failed" in err and "missing.mp4: file not found" in err
    assert "text.mp4: not a media file" in err
    expected = {"a__clip.wav", "a__clip.mp4", "b__clip.wav", "b__clip.mp4", "blink.wav", "blink.mp4"}
    assert visible(out) == expected  # nothing for the bad files, no temporary files
    stamps = {name: (out / name).stat().st_mtime_ns for name in expected}

    assert generate_cli(*args) == 1  # the bad files are still bad
    assert "exists, skipped" in capsys.readouterr().err
    assert {name: (out / name).stat().st_mtime_ns for name in expected} == stamps
    assert generate_cli(*args, "--overwrite") == 1
    assert all((out / name).stat().st_mtime_ns > stamps[name] for name in expected)


def test_interrupted_writer_leaves_no_partial_output(tmp_path, model_dir, monkeypatch):
    folder = tmp_path / "in"
    for name in ("one", "two"):
        make_video(folder / f"{name}.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    real, calls = media._pcm16, []

    def dies_on_the_second_file(wav):
        calls.append(1)
        if len(calls) == 2:  # the second wav: its header and first samples are on disk
            raise KeyboardInterrupt
        return real(wav)

    monkeypatch.setattr(media, "_pcm16", dies_on_the_second_file)
    assert generate_cli(folder, "--checkpoint", model_dir, "--out", out) == 130
    assert visible(out) == {"one.wav", "one.mp4"}  # two.mp4 was muxed, then removed with its failed wav
    monkeypatch.setattr(media, "_pcm16", real)
    stamp = (out / "one.wav").stat().st_mtime_ns
    assert generate_cli(folder, "--checkpoint", model_dir, "--out", out) == 0
    assert visible(out) == {"one.wav", "one.mp4", "two.wav", "two.mp4"}
    assert (out / "one.wav").stat().st_mtime_ns == stamp


def test_sigkilled_batch_resumes_without_half_written_files(tmp_path, model_dir):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    names = [f"v{i}" for i in range(4)]
    for name in names:
        make_video(folder / f"{name}.mp4", seconds=4.5, **SMALL)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vab.cli", "generate", str(folder), "--checkpoint", str(model_dir),
               "--out", str(out), "--device", "cpu", *FAST_ARGS]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and not (out.is_dir() and any(p.suffix == ".wav" for p in out.iterdir())):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-batch, not finished
    for path in out.iterdir():  # whatever has its final name is complete
        if not path.name.startswith("."):
            assert abs(audio_seconds(path) - 4.5) <= 1 / 50, path.name
    assert generate_cli(folder, "--checkpoint", model_dir, "--out", out) == 0
    assert visible(out) == {f"{n}.{s}" for n in names for s in ("wav", "mp4")}  # no temporary files left


def test_clear_errors_before_any_work(tmp_path, videos, model_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert generate_cli(videos["short"], "--checkpoint", model_dir, "--out", blocker / "out") == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
    assert generate_cli(videos["short"], "--checkpoint", tmp_path / "nope", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "not a model directory" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("model: {width: 32}\n")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"garbage")
    assert generate_cli(videos["short"], "--checkpoint", tmp_path / "broken", "--out", tmp_path / "o") == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert generate_cli(videos["short"], "--checkpoint", model_dir, "--out", tmp_path / "o", "--edit", "3-1") == 2
    assert "start < end" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a refused run leaves no (empty) output folder


# ---------------------------------------------------------------------- editing and continuation
def test_an_edit_span_past_the_end_is_refused_for_that_video_not_cut(tmp_path, videos, model_dir, capsys):
    out = tmp_path / "o"
    assert generate_cli(videos["short"], videos["nine"], "--checkpoint", model_dir, "--out", out, "--edit", "1-3") == 1
    err = capsys.readouterr().err
    assert "short.mp4: edit span 1-3 s ends after the end (2.00 s)" in " ".join(err.split())
    assert (out / "nine.wav").is_file() and not (out / "short.wav").exists()  # the batch goes on


def test_edit_keeps_every_other_token_bit_identical(generator, videos):
    codec, path = generator.codec, videos["nine"]
    total = seconds_to_tokens(video_seconds(path), 50)
    wav = media.read_audio(path, codec.sample_rate, 0.0, total / 50)
    original = codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0]
    result = generator.generate(path, sampling=FAST, edit="1.0-2.5,7-7.5")
    regenerated = torch.zeros(total, dtype=torch.bool)
    regenerated[50:125] = regenerated[350:375] = True
    assert torch.equal(result.given_mask, ~regenerated.expand(4, -1))
    kept = ~regenerated
    assert torch.equal(result.tokens[:, kept], original[:, kept])  # across all 3 windows
    assert not torch.equal(result.tokens[:, regenerated], original[:, regenerated])


def test_continuation_keeps_the_prompt(tmp_path, generator, videos):
    prompt = media.write_audio(tmp_path / "prompt.wav", tone(1.5, 16000, 523.0)[0], 16000)
    result = generator.generate(videos["nine"], sampling=FAST, prompt=prompt, prompt_seconds=1.2)
    wav = media.read_audio(prompt, 16000, 0.0, 1.2)
    expected = generator.codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0]
    assert expected.shape[1] == 60
    assert torch.equal(result.tokens[:, :60], expected) and result.given_mask[:, :60].all()
    assert not result.given_mask[:, 60:].any()


# ---------------------------------------------------------------------- determinism and the API
def test_seeds_batches_and_the_cli_agree(tmp_path, model_dir, videos):
    model = load_model(model_dir, kind=VAB)
    first = vab.generate(model, videos["nine"], sampling=FAST, directory=model_dir)
    # a fresh model, no directory: the spectral codec is rebuilt from the codebooks the model stores
    again = vab.generate(load_model(model_dir, kind=VAB), videos["nine"], sampling=FAST)
    other = vab.generate(model, videos["nine"], sampling=SamplingConfig(steps=2, guidance=3.0, seed=1))
    assert torch.equal(first.tokens, again.tokens) and np.array_equal(first.waveform, again.waveform)
    assert not torch.equal(first.tokens, other.tokens)
    assert first.sample_rate == 16000 and first.waveform.dtype == np.float32 and first.real_time_factor > 0

    # batched with other videos: the same tokens
    batched = Generator.from_pretrained(model_dir, device="cpu", batch_size=3)
    requests = [Request(videos[n], key=n) for n in ("short", "nine", "silent")]
    outcomes = {o.request.key: o for o in batched.run(requests, FAST)}
    assert torch.equal(outcomes["nine"].result.tokens, first.tokens)

    # the CLI writes what the API returns (16-bit wav)
    out = tmp_path / "out"
    assert generate_cli(videos["nine"], "--checkpoint", model_dir, "--out", out, "--batch-size", "2") == 0
    written = media.read_audio(out / "nine.wav", 16000)
    assert np.abs(written - np.clip(first.waveform, -1, 1)).max() <= 1.01 / 32768


def test_every_video_draws_its_own_noise(tmp_path, model_dir):
    """Two different videos in one run share no more tokens than one video under two seeds;
    a video's soundtrack does not change with its name, folder or the other videos of the run."""
    free = SamplingConfig(steps=4, guidance=0.0)  # guidance 0: the picture barely matters to a random model
    a = make_video(tmp_path / "a.mp4", seconds=2.0, freq=300.0, **SMALL)
    b = make_video(tmp_path / "b.mp4", seconds=2.0, freq=500.0, **SMALL)
    generator = Generator.from_pretrained(model_dir, device="cpu", batch_size=2)
    both = {o.request.key: o.result.tokens for o in generator.run([Request(a, key="a"), Request(b, key="b")], free)}
    reseeded = generator.generate(a, sampling=dataclasses.replace(free, seed=1)).tokens
    across_videos = (both["a"] == both["b"]).float().mean().item()
    across_seeds = (both["a"] == reseeded).float().mean().item()
    assert across_videos <= across_seeds + 0.1, (across_videos, across_seeds)

    alone = generator.generate(a, sampling=free).tokens
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "renamed.mp4"
    moved.write_bytes(a.read_bytes())
    assert torch.equal(alone, both["a"]) and torch.equal(generator.generate(moved, sampling=free).tokens, alone)


# ---------------------------------------------------------------------- DAC coarse-to-fine
def test_dac_coarse_to_fine_fills_the_fine_levels(tmp_path, videos):
    from vab.config import load_config
    from vab.visual import build_visual_encoder

    tiny = ["codec.name=dac", "codec.pretrained=false", "model.width=32", "model.layers=2", "model.heads=2",
            "model.ffn=64", "data.duration=2.0"]
    coarse_cfg = load_config("tiny", [*tiny, "model.expert_layers=1", "model.levels=4"])
    fine_cfg = load_config("tiny", [*tiny, "model.type=coarse2fine", "model.expert_layers=0", "model.levels=12",
                                    "model.given_levels=4"])
    from vab.codecs.dac import DacCodec, random_dac

    codec = DacCodec(random_dac(encoder_dim=16, decoder_dim=64))  # the 16 kHz DAC's codes, a small network
    dim = build_visual_encoder(coarse_cfg.visual).dim
    books = [codec.codebook_vectors(k) for k in range(12)]
    torch.manual_seed(0)
    save_model(VAB.from_config(coarse_cfg, books[:4], visual_dim=dim, frame_rate=codec.frame_rate), tmp_path / "c")
    save_model(Coarse2Fine.from_config(fine_cfg, books, visual_dim=dim, frame_rate=codec.frame_rate), tmp_path / "f")

    with_c2f = Generator(load_model(tmp_path / "c", kind=VAB), codec=codec, c2f=load_model(tmp_path / "f", kind=VAB))
    full = with_c2f.generate(videos["short"], sampling=FAST, duration=0.6)
    assert full.tokens.shape == (12, 30) and (full.tokens < 1024).all()
    assert len(full.waveform) == 30 * 320 and full.sample_rate == 16000
    with pytest.warns(UserWarning, match="coarse DAC levels"):
        coarse_only = Generator(with_c2f.model, codec=with_c2f.codec, visual=with_c2f.visual)
    assert coarse_only.coarse_only and not with_c2f.coarse_only
    coarse = coarse_only.generate(videos["short"], sampling=FAST, duration=0.6)
    assert torch.equal(coarse.tokens, full.tokens[:4])  # the fine pass never touches the coarse levels
    with pytest.raises(VabError, match="coarse-to-fine model"):
        Generator.from_pretrained(tmp_path / "f", device="cpu")


@pytest.fixture(scope="module")
def c2f_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(coarse model dir, coarse-to-fine model dir): 2 coarse levels of the 4 of one spectral codec."""
    root = tmp_path_factory.mktemp("c2f")
    coarse = make_model_dir(root / "coarse", "model.levels=2")
    fine = make_model_dir(root / "fine", "model.type=coarse2fine", "model.expert_layers=0", "model.levels=4",
                          "model.given_levels=2", seed=0)
    return coarse, fine


def test_generate_with_a_c2f_checkpoint_end_to_end(tmp_path, c2f_pair, videos):
    """`vab generate --c2f-checkpoint`: the coarse model's levels kept, the fine ones filled, the same
    soundtrack as the API."""
    coarse, fine = c2f_pair
    out = tmp_path / "out"
    assert generate_cli(videos["short"], "--checkpoint", coarse, "--c2f-checkpoint", fine, "--out", out) == 0
    assert visible(out) == {"short.wav", "short.mp4"}
    pair = Generator.from_pretrained(coarse, fine, device="cpu")
    full = pair.generate(videos["short"], sampling=FAST)
    assert full.tokens.shape == (4, 100)
    coarse_only = Generator.from_pretrained(coarse, device="cpu").generate(videos["short"], sampling=FAST)
    assert torch.equal(full.tokens[:2], coarse_only.tokens)
    written = media.read_audio(out / "short.wav", 16000)
    assert np.abs(written - np.clip(full.waveform, -1, 1)).max() <= 1.01 / 32768


def test_a_c2f_model_reading_another_frame_rate_is_refused(tmp_path, c2f_pair, videos, capsys):
    """Features at the coarse model's rate would be misaligned for a fine model at another fps."""
    coarse, _ = c2f_pair
    fine = make_model_dir(tmp_path / "fine1fps", "model.type=coarse2fine", "model.expert_layers=0", "model.levels=4",
                          "model.given_levels=2", "data.fps=1.0", "extract.fps=1.0")
    with pytest.raises(VabError, match=r"fine1fps: the coarse-to-fine model does not fit the model: "
                                       r"it reads frames at 1 fps, the model at 8 fps"):
        Generator.from_pretrained(coarse, fine, device="cpu")
    out = tmp_path / "out"
    assert generate_cli(videos["short"], "--checkpoint", coarse, "--c2f-checkpoint", fine, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "it reads frames at 1 fps" in err
    assert not out.exists() or not any(out.iterdir())


def test_windows_over_stored_features_start_on_whole_frames(tmp_path, monkeypatch):
    """1-fps stored features, 4-s windows, a 2.5-s overlap: a 1.5-s stride would start windows
    mid-frame (and the features would be rounded half a second off the audio's time positions);
    the windows start on whole seconds instead, each carrying at least the 2.5 s asked for."""
    from vab.generation.features import ArrayFeatures
    from vab.generation.windows import frame_alignment

    model_dir = make_model_dir(tmp_path / "onefps", "data.fps=1.0", "extract.fps=1.0")
    generator = Generator.from_pretrained(model_dir, device="cpu", overlap=2.5)
    features = torch.randn(9, generator.model.visual_dim)  # 9 s stored at 1 fps
    starts, seen = [], []
    real = ArrayFeatures.window

    def recording(self, t0):
        starts.append(t0)
        seen.append(real(self, t0))
        return seen[-1]

    monkeypatch.setattr(ArrayFeatures, "window", recording)
    result = generator.generate(features, sampling=FAST)
    assert result.tokens.shape == (4, 450) and result.windows == len(starts) > 2
    assert all(float(t0).is_integer() for t0 in starts), starts
    for t0, window in zip(starts, seen):  # each window sees the frames of its own seconds
        first = int(t0)
        assert torch.equal(window, features[torch.arange(first, first + 4).clamp(max=8)])
    starts.clear()
    cut = generator.generate(features, sampling=FAST, duration=8.6)  # ends mid-frame: trimmed to 430 tokens
    assert cut.tokens.shape == (4, 430) and all(float(t0).is_integer() for t0 in starts)
    assert frame_alignment(50, 1.0) == 50 and frame_alignment(75, 2.0) == 75 and frame_alignment(50, 2.0) == 25
    plan = plan_windows(total=450, length=200, overlap=125, align=50)
    assert [w.start for w in plan] == [0, 50, 100, 150, 200, 250] and all(w.carried >= 125 for w in plan[1:])
    # a total that is not a whole number of frames: the last window starts on a frame and ends past it
    plan = plan_windows(total=430, length=200, overlap=125, align=50)
    assert plan[-1].start == 250 and plan[-1].stop == 450 and plan[-1].carried >= 125


def test_each_window_carries_the_previous_windows_overlap_tokens(tmp_path, model_dir, videos, monkeypatch):
    """A 9-s video in 4-s windows (0-4, 3-7, 5-9 s): the tokens window i + 1 starts with are given,
    and equal what window i made there, through the API and through `vab generate`."""
    import vab.generation.generator as generator_module

    calls = []
    real = generator_module.sample_tokens

    def recording(model, features, *, given, given_mask, **kwargs):
        out = real(model, features, given=given, given_mask=given_mask, **kwargs)
        calls.append((given_mask.clone(), out.clone()))
        return out

    monkeypatch.setattr(generator_module, "sample_tokens", recording)
    windows = plan_windows(450, 200, 50)
    assert [(w.start, w.carried) for w in windows] == [(0, 0), (150, 50), (250, 100)]

    def check_carried() -> None:
        assert len(calls) == 3
        for (prev, (_, before)), (w, (mask, after)) in zip(zip(windows, calls), zip(windows[1:], calls[1:])):
            assert mask[0, :, : w.carried].all() and not mask[0, :, w.carried :].any()
            assert torch.equal(after[0, :, : w.carried], before[0, :, w.start - prev.start :]), w

    result = Generator.from_pretrained(model_dir, device="cpu").generate(videos["nine"], sampling=FAST)
    check_carried()
    assert torch.equal(result.tokens[:, 150:200], calls[0][1][0, :, 150:])
    calls.clear()
    out = tmp_path / "out"
    assert generate_cli(videos["nine"], "--checkpoint", model_dir, "--out", out, "--no-mux") == 0
    check_carried()
    written = media.read_audio(out / "nine.wav", 16000)
    assert np.abs(written - np.clip(result.waveform, -1, 1)).max() <= 1.01 / 32768


def test_generate_with_a_prompt_end_to_end(tmp_path, model_dir, videos):
    """`vab generate --prompt AUDIO --prompt-seconds S`: the soundtrack starts with the prompt's tokens
    (given, never resampled) and is what the API makes with that prompt; several videos share it."""
    prompt = media.write_audio(tmp_path / "prompt.wav", tone(1.5, 16000, 523.0)[0], 16000)
    out = tmp_path / "out"
    assert generate_cli(videos["nine"], videos["short"], "--checkpoint", model_dir, "--out", out,
                        "--prompt", prompt, "--prompt-seconds", "1.2", "--no-mux") == 0
    assert visible(out) == {"nine.wav", "short.wav"}
    generator = Generator.from_pretrained(model_dir, device="cpu")
    tokens = generator.tokenize_prompt(prompt, 1.2)
    wav = media.read_audio(prompt, 16000, 0.0, 1.2)
    assert torch.equal(tokens[:, :60], generator.codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0])
    for name in ("nine", "short"):
        result = generator.generate(videos[name], sampling=FAST, prompt=prompt, prompt_seconds=1.2)
        assert torch.equal(result.tokens[:, :60], tokens[:, :60]) and result.given_mask[:, :60].all()
        assert not result.given_mask[:, 60:].any()
        written = media.read_audio(out / f"{name}.wav", 16000)
        assert np.abs(written - np.clip(result.waveform, -1, 1)).max() <= 1.01 / 32768, name
