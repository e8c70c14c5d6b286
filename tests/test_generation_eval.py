"""Generation metrics (FAD, KL), the audio scorers and their weight loaders, and eval/generation.py end to end."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.mediagen import make_video
from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.evaluation.scorers import build_classifier, build_scorer
from vab.evaluation.scorers.logmel import LogMelEmbedder
from vab.evaluation.scorers.panns import Cnn14, PANNsEmbedder
from vab.evaluation.scorers.vggish import VGGishEmbedder, VGGishNet
from vab.errors import VabError
from vab.generation.sampling import SamplingConfig
from vab.evaluation.metrics import (
    frechet_audio_distance,
    frechet_distance,
    gaussian_statistics,
    kl_divergence,
    label_kl,
    softmax,
)

SMALL = ["model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64"]
RUN = ["train.tracker=none", "train.batch_size=8", "train.checkpoint_every=0", "train.valid_every=0"]
# 2-s clips and windows keep generation and decoding cheap
SHORT = ["data.duration=2.0", "extract.duration=2.0"]
TINY_VGGISH = {"widths": (4, 4, 8, 8), "hidden": 16}
TINY_CNN14 = {"widths": (4, 4, 8, 8, 8, 16), "classes": 5}


def tone(freq: float, seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------------- Frechet distance
def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.2, 3.0, 6), rng.uniform(0.2, 3.0, 6)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-9, abs=1e-9)
    assert frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_full_covariances_matches_one_dimensional_formula_and_is_symmetric():
    a = np.array([[2.0, 0.3], [0.3, 1.0]])
    b = np.array([[1.0, -0.2], [-0.2, 0.5]])
    mu = np.zeros(2)
    assert frechet_distance(mu, a, mu, b) == pytest.approx(frechet_distance(mu, b, mu, a), rel=1e-9)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(20000, 3))
    y = rng.normal(1.0, 2.0, size=(20000, 3))
    # each dimension: 1^2 + (1 - 2)^2 = 2
    assert frechet_audio_distance(x, y) == pytest.approx(6.0, rel=0.05)


def test_frechet_survives_rank_deficient_covariances():
    rng = np.random.default_rng(2)
    # 5 samples in 32 dimensions: both covariances have rank 4
    x, y = rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 0.5
    d = frechet_audio_distance(x, y)
    assert math.isfinite(d) and d > 0
    # exactly singular: a covariance of zeros
    mu, sigma = gaussian_statistics(x)
    assert math.isfinite(frechet_distance(mu, sigma, mu, np.zeros_like(sigma)))


def test_frechet_refuses_a_large_imaginary_part():
    # not positive semi-definite: sqrt(diag(1, -1)) has an imaginary entry of 1
    with pytest.raises(VabError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_gaussian_statistics_shapes_and_errors():
    mu, sigma = gaussian_statistics(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]))
    assert mu.tolist() == [2.0, 3.0] and sigma.shape == (2, 2) and sigma[0, 0] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        gaussian_statistics(np.zeros((1, 4)))


# ---------------------------------------------------------------------- KL
def test_kl_is_zero_for_identical_and_positive_otherwise():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 5))
    p = softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert label_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    q = softmax(logits + rng.normal(size=logits.shape))
    assert kl_divergence(p, q) > 0
    # direction: KL(real || generated), the mean of per-clip KLs
    expected = np.mean(np.sum(p * np.log(p / q), axis=1))
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-9)
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p), rel=1e-6)


def test_kl_with_zeros_stays_finite():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    value = kl_divergence(p, q)
    assert math.isfinite(value) and value > 5  # an impossible label is heavily penalised
    assert kl_divergence(q[:1], p[:1]) == pytest.approx(kl_divergence(p[:1], q[:1]))
    with pytest.raises(ValueError):
        kl_divergence(p, q[:1])


# ---------------------------------------------------------------------- the log-mel embedder
def test_logmel_is_deterministic_and_tells_sounds_apart():
    e = LogMelEmbedder()
    low, high = tone(300), tone(3000)
    noise = np.random.default_rng(4).normal(0, 0.1, 32000).astype(np.float32)
    a, b = e.embed_at(low, 16000), e.embed_at(low, 16000)
    assert a.shape == (3, 128) and np.array_equal(a, b)
    assert np.array_equal(e.label_probs_at(low, 16000), LogMelEmbedder().label_probs_at(low, 16000))
    same = np.linalg.norm(e.embed_at(low, 16000) - e.embed_at(tone(300, 2.0) * 1.0, 16000))
    assert same == 0.0
    far = [np.linalg.norm(e.embed_at(low, 16000).mean(0) - e.embed_at(x, 16000).mean(0)) for x in (high, noise)]
    assert min(far) > 10
    # the band distribution puts the tone's mass where the tone is
    p_low, p_high = (e.label_probs_at(x, 16000).mean(0) for x in (low, high))
    assert np.argmax(p_low) < np.argmax(p_high)
    assert kl_divergence(p_low[None], p_high[None]) > 1.0
    # FAD: two renditions of one sound are closer than two different sounds
    low2 = tone(310)
    assert frechet_audio_distance(e.embed_at(low, 16000), e.embed_at(low2, 16000), eps=1e-3) < frechet_audio_distance(
        e.embed_at(low, 16000), e.embed_at(high, 16000), eps=1e-3)


def test_scorers_resample_and_take_short_clips():
    e = LogMelEmbedder()
    at_8k = e.embed_at(tone(300, 2.0, 8000), 8000)
    at_16k = e.embed_at(tone(300, 2.0), 16000)
    assert at_8k.shape == at_16k.shape
    assert np.abs(at_8k.mean(0) - at_16k.mean(0))[:20].max() < 2.0  # same tone after resampling (low bands)
    assert e.embed_at(np.zeros(100, np.float32), 16000).shape == (1, 128)


def test_build_scorer_specs():
    assert build_scorer("logmel").name == "logmel"
    assert build_classifier("logmel").has_labels
    for bad, words in [("mfcc", "expected one of"), ("vggish", "needs a local path"), ("logmel:x", "takes no path")]:
        with pytest.raises(VabError, match=words):
            build_scorer(bad)


# ---------------------------------------------------------------------- weight loaders
def test_published_layouts_have_the_published_sizes():
    with torch.device("meta"):  # shapes only, no 600 MB of weights
        vggish, cnn14 = VGGishNet().state_dict(), Cnn14().state_dict()
    assert sum(v.numel() for v in vggish.values()) == 72_141_184
    assert tuple(vggish["embeddings.0.weight"].shape) == (4096, 12288)
    assert {k.split(".")[1] for k in vggish if k.startswith("features.")} == {"0", "3", "6", "8", "11", "13"}
    cnn = {k: tuple(v.shape) for k, v in cnn14.items()}
    assert cnn["spectrogram_extractor.stft.conv_real.weight"] == (513, 1, 1024)
    assert cnn["logmel_extractor.melW"] == (513, 64)
    assert cnn["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert cnn["fc_audioset.weight"] == (527, 2048)
    assert "bn0.running_var" in cnn and "conv_block1.bn1.num_batches_tracked" in cnn


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vggish_loads_saved_random_weights(tmp_path, suffix):
    torch.manual_seed(0)
    net = VGGishNet(**TINY_VGGISH).eval()
    path = tmp_path / f"vggish{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = VGGishEmbedder.from_file(path, **TINY_VGGISH)
    wav = torch.from_numpy(tone(440, 2.0))
    expected = VGGishEmbedder(net).embed(wav)
    got = loaded.embed(wav)
    assert got.shape == (2, 128) and torch.allclose(got, expected)


def test_panns_loads_a_nested_checkpoint_and_gives_distributions(tmp_path):
    torch.manual_seed(0)
    net = Cnn14(**TINY_CNN14).eval()
    path = tmp_path / "Cnn14.pth"
    torch.save({"model": net.state_dict(), "iteration": 3}, path)  # the released checkpoint's layout
    loaded = PANNsEmbedder.from_file(path, **TINY_CNN14)
    wav = torch.from_numpy(tone(440, 1.5, 32000))
    assert torch.allclose(loaded.embed(wav), PANNsEmbedder(net).embed(wav))
    probs = loaded.label_probs(wav)
    assert probs.shape == (1, 5) and probs.dtype == torch.float64 and float(probs.sum()) == pytest.approx(1.0, abs=1e-12)


def test_weight_loaders_explain_missing_and_wrong_files(tmp_path):
    missing = tmp_path / "nowhere" / "vggish-10086976.pth"
    with pytest.raises(VabError, match=r"nowhere.*no such VGGish weight file.*download vggish-10086976\.pth"):
        VGGishEmbedder.from_file(missing)
    with pytest.raises(VabError, match="Cnn14_mAP=0.431.pth"):
        build_scorer(f"panns:{tmp_path / 'absent.pth'}")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(VabError, match=r"garbage.pth: cannot read weights.*expected the VGGish weights"):
        VGGishEmbedder.from_file(garbage)
    other = tmp_path / "other.pth"  # a real state dict, of another network
    torch.save(Cnn14(**TINY_CNN14).state_dict(), other)
    with pytest.raises(VabError, match=r"other\.pth: not VGGish weights: .*missing tensors"):
        VGGishEmbedder.from_file(other, **TINY_VGGISH)
    wrong_size = tmp_path / "wrong.pth"
    torch.save(VGGishNet(**TINY_VGGISH).state_dict(), wrong_size)
    with pytest.raises(VabError, match="wrong shapes"):
        VGGishEmbedder.from_file(wrong_size, widths=(4, 4, 8, 16), hidden=16)


# ---------------------------------------------------------------------- clips
def test_dataset_clips_reads_a_split_and_keeps_ids_distinct_across_data_sets(tmp_path):
    from vab.evaluation.soundtracks import dataset_clips

    small = {"per_class": {"train": 1, "test": 1}, "duration": 2.0, "frames": 4}
    a = make_synthetic_dataset(tmp_path / "a", **small)
    b = make_synthetic_dataset(tmp_path / "b", **small)
    one = dataset_clips([a], "test")
    assert [c.id for c in one.clips] == [f"clip{i:04d}" for i in range(4, 8)]
    assert one.clips[0].tokens.shape == (4, 100) and one.clips[0].labels == ["class0"]
    both = dataset_clips([a, b], "test", limit=6)
    # only the ids that repeat get their data set's name
    assert [c.id for c in both.clips] == ["a/clip0004", "a/clip0005", "clip0006", "clip0007", "b/clip0004", "b/clip0005"]
    with pytest.raises(VabError, match="no clips in split 'valid'"):
        dataset_clips([a], "valid")


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, model dir, audio classifier dir): synthetic data, a few pretraining steps,
    a few audio fine-tuning steps."""
    from vab.config import load_config
    from vab.finetuning.classification import finetune_classifier
    from vab.training.run import pretrain

    root = tmp_path_factory.mktemp("geneval")
    data = make_synthetic_dataset(root / "data", per_class={"train": 4, "test": 1}, duration=2.0, frames=4)
    model = pretrain(load_config("tiny", tiny_overrides(data) + SHORT + SMALL + RUN + [
        "train.max_steps=4", "train.warmup_steps=1", "train.lr=2e-3", "codec.griffin_lim_iters=2",
        f"train.output_dir={root / 'pre'}",
    ]))
    classifier = finetune_classifier(model, "audio", tiny_overrides(data) + SHORT + RUN + [
        "train.max_steps=3", "train.lr=3e-3", f"train.output_dir={root / 'cls'}"])
    return data, Path(model), Path(classifier)


def eval_script():
    spec = importlib.util.spec_from_file_location("eval_generation", Path(__file__).parents[1] / "eval" / "generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_generation_scores_two_models_on_stored_data(trained, tmp_path):
    data, model, classifier = trained
    out = tmp_path / "out"
    code = eval_script().main([
        "--checkpoint", str(model), "--checkpoint", str(model), "--label", "vab", "--label", "again",
        *tiny_overrides(data), "codec.griffin_lim_iters=2", "--split", "test", "--steps", "2",
        "--classifier", f"own:{classifier}", "--limit", "3",
        "--out", str(out), "--save-audio",
    ])
    assert code == 0
    report = json.loads((out / "generation.json").read_text())
    assert report["clips"] == 3 and report["split"] == "test"
    # the synthetic clips' media paths do not exist: the real audio is the decoded stored tokens
    assert report["real_audio"] == "codec decoding of the stored real tokens"
    assert report["real_audio_counts"] == {"media": 0, "tokens": 3}
    assert [m["name"] for m in report["models"]] == ["vab", "again"]
    for m in report["models"]:
        assert m["clips"] == 3 and m["failed"] == 0 and m["model_type"] == "vab"
        for key in ("fad", "kl", "seconds_per_clip", "real_time_factor"):
            assert isinstance(m[key], float) and math.isfinite(m[key]) and m[key] >= 0, key
        assert m["fad"] > 0 and m["audio_seconds"] == pytest.approx(3 * 2.0)
    # same model, same seed: the same soundtracks, hence the same scores
    a, b = report["models"]
    assert a["fad"] == pytest.approx(b["fad"]) and a["kl"] == pytest.approx(b["kl"])
    md = (out / "generation.md").read_text()
    assert "| vab | vab | 3 |" in md and "| FAD (logmel) | KL (own) |" in md and f"KL classifier: own:{classifier}" in md
    assert len(list((out / "audio" / "vab").glob("*.wav"))) == 3


def test_eval_generation_on_videos_uses_the_media_audio(trained, tmp_path):
    _, model, _ = trained
    videos = tmp_path / "videos"
    for i, freq in enumerate((300.0, 600.0, 1200.0)):
        make_video(videos / f"v{i}.mp4", seconds=1.5, fps=4, width=32, height=32, freq=freq)
    out = tmp_path / "out"
    code = eval_script().main(["--checkpoint", str(model), "--videos", str(videos), "--steps", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "generation.json").read_text())
    assert report["real_audio"] == "original media files" and report["source"] == "video files"
    (m,) = report["models"]
    assert m["clips"] == 3 and math.isfinite(m["fad"]) and math.isfinite(m["kl"])
    assert m["audio_seconds"] == pytest.approx(4.5, abs=0.1)


def test_eval_generation_refuses_bad_inputs(trained, tmp_path, capsys):
    data, model, _ = trained
    script = eval_script()
    assert script.main(["--checkpoint", str(tmp_path / "none"), *tiny_overrides(data)]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert script.main(["--checkpoint", str(model), *tiny_overrides(data), "--real", "media",
                        "--out", str(tmp_path / "o")]) == 2
    assert "real audio for fewer than 2 clips" in capsys.readouterr().err
    assert script.main(["--checkpoint", str(model), *tiny_overrides(data), "--embedder",
                        f"vggish:{tmp_path / 'v.pth'}", "--out", str(tmp_path / "o")]) == 2
    assert "no such VGGish weight file" in capsys.readouterr().err
    assert script.main(["--checkpoint", str(model), *tiny_overrides(data), "--classifier", f"own:{model}",
                        "--out", str(tmp_path / "o")]) == 2
    assert "classifier.yaml: missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_eval_generation_compares_vab_with_the_autoregressive_baseline(trained, tmp_path):
    """The issue's comparison: a tiny VAB and a tiny FoleyGen trained on the same data, one table."""
    from vab.config import load_config
    from vab.training.run import pretrain

    data, model, classifier = trained
    baseline = pretrain(load_config("foleygen-tiny", tiny_overrides(data) + SHORT + RUN + [
        "model.width=32", "model.layers=2", "model.heads=2", "model.ffn=64", "train.max_steps=3",
        "train.warmup_steps=1", "codec.griffin_lim_iters=2", f"train.output_dir={tmp_path / 'fg'}",
    ]))
    out = tmp_path / "out"
    code = eval_script().main([
        "--checkpoint", str(model), "--checkpoint", str(baseline), *tiny_overrides(data), "codec.griffin_lim_iters=2",
        "--steps", "2", "--classifier", f"own:{classifier}", "--limit", "3", "--out", str(out),
    ])
    assert code == 0
    report = json.loads((out / "generation.json").read_text())
    vab_row, ar_row = report["models"]
    assert (vab_row["model_type"], ar_row["model_type"]) == ("vab", "foleygen")
    assert vab_row["name"] != ar_row["name"] and report["clips"] == 3
    for row in (vab_row, ar_row):
        assert row["clips"] == 3 and all(math.isfinite(row[k]) for k in ("fad", "kl", "seconds_per_clip"))
    # each model decodes with its own settings: FoleyGen's guidance 3 and top-k 256
    assert (ar_row["sampling"]["guidance"], ar_row["sampling"]["top_k"]) == (3.0, 256)
    # and VAB vab generate's defaults, with the steps asked for
    assert (vab_row["sampling"]["guidance"], vab_row["sampling"]["steps"]) == (SamplingConfig().guidance, 2)
    assert "sampling of " in (out / "generation.md").read_text()


# ---------------------------------------------------------------------- the real audio's span
def two_part_video(path: Path, first: float, second: float) -> Path:
    """A 4-s video whose audio is a `first` Hz tone for 2 s, then a `second` Hz tone."""
    wav = np.concatenate([tone(first), tone(second)])[None]
    return make_video(path, seconds=4.0, fps=4, width=32, height=32, wav=wav)


def as_format_1(data: Path, out: Path) -> Path:
    """`data` as vab wrote it before clip starts were stored (no start / source_duration, version 1)."""
    import yaml

    from vab.data.store import DATA_DIR, load_dataset_dir

    out.mkdir(parents=True)
    for name in ("meta.yaml", "codec.safetensors"):
        if (data / name).exists():
            (out / name).write_bytes((data / name).read_bytes())
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    (out / "meta.yaml").write_text(yaml.safe_dump({**meta, "version": 1}))
    load_dataset_dir(data / DATA_DIR).remove_columns(["start", "source_duration"]).save_to_disk(str(out / DATA_DIR))
    return out


def test_real_audio_is_read_from_the_start_extraction_cut_the_clip_at(tmp_path):
    """Clips cut 2 s into their files: the real audio is the file's seconds 2-4 (the second tone),
    not 0-2; a data set made before starts were stored is refused in one line only where the start
    cannot be known (a file longer than its clip), and read from 0 where it can."""
    from vab.cli import main as vab_main
    from vab.evaluation.soundtracks import RealAudio, Scoring, clip_header, dataset_clips, score_real
    from vab.evaluation.records import RecordStore
    from vab import media

    videos = [two_part_video(tmp_path / f"v{i}.mp4", 300.0 * (i + 1), 2000.0 + 500 * i) for i in range(2)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(v), "start": 2.0}) + "\n" for v in videos))
    data = tmp_path / "data"
    fast = ["--duration", "2", "--fps", "2", "codec.codebook_size=32", "codec.n_fft=512"]
    assert vab_main(["extract", str(manifest), "--out", str(data), *fast]) == 0
    clips = dataset_clips([data], None)
    assert [c.start for c in clips.clips] == [2.0, 2.0]
    real = RealAudio(clips, "media", sample_rate=16000)
    for clip, video in zip(clips.clips, videos):
        wav, rate, kind = real.read(clip)
        assert kind == "media" and rate == 16000
        np.testing.assert_array_equal(wav, media.read_audio(video, 16000, 2.0, 4.0))
        assert not np.allclose(wav, media.read_audio(video, 16000, 0.0, 2.0), atol=0.05)
    from vab.data.store import DATA_DIR, clip_spans, load_dataset_dir

    starts, lengths = clip_spans(load_dataset_dir(data / DATA_DIR).data.table)
    assert starts == [2.0, 2.0] and all(3.9 < x < 4.2 for x in lengths)

    # format 1: the start of a 4-s file's 2-s clip is unknown -> one line, before any scoring
    old = as_format_1(data, tmp_path / "old")
    old_clips = dataset_clips([old], None)
    assert [c.start for c in old_clips.clips] == [None, None]
    embedder = LogMelEmbedder()
    store = RecordStore(tmp_path / "records", "real", {"test": 1})
    with pytest.raises(VabError, match=r"old: made before vab stored clip starts.*v0\.mp4 is longer than its 2-s clip"):
        score_real(old_clips, RealAudio(old_clips, "auto", sample_rate=16000), Scoring(embedder), {"main": store})
    assert not store.folder.exists()  # refused before any clip was scored
    # the stored tokens need no start
    failures = score_real(old_clips, RealAudio(old_clips, "tokens", sample_rate=16000), Scoring(embedder),
                          {"main": store})
    assert not failures
    assert {store.read(clip_header(clip))["kind"] for clip in old_clips.clips} == {"tokens"}
    # format 1 over files no longer than their clips: the start can only have been 0
    whole = tmp_path / "whole.jsonl"
    short = [make_video(tmp_path / f"s{i}.mp4", seconds=2.0, fps=4, width=32, height=32, freq=400.0 + 300 * i)
             for i in range(2)]
    whole.write_text("".join(json.dumps({"path": str(v)}) + "\n" for v in short))
    assert vab_main(["extract", str(whole), "--out", str(tmp_path / "whole"), *fast]) == 0
    old_whole = dataset_clips([as_format_1(tmp_path / "whole", tmp_path / "old_whole")], None)
    wav, _, kind = RealAudio(old_whole, "media", sample_rate=16000).read(old_whole.clips[0])
    np.testing.assert_array_equal(wav, media.read_audio(short[0], 16000, 0.0, 2.0))


# ---------------------------------------------------------------------- the field's table and sync
def test_field_table_has_the_fields_columns_in_order_and_recomputes_from_records(trained, tmp_path):
    from vab.evaluation import soundtracks as ge
    from vab.evaluation.metrics import frechet_audio_distance, logit_kl
    from vab.evaluation.scorers.passt import PaSSTEmbedder, PaSSTNet

    data, model, _ = trained
    clips = ge.dataset_clips([data], "test", limit=3)
    torch.manual_seed(0)
    extra = {"passt": PaSSTEmbedder(PaSSTNet(dim=16, depth=1, heads=2, classes=7)),
             "panns": PANNsEmbedder(Cnn14(**TINY_CNN14, sample_rate=16000))}
    names = {"passt": "tiny-passt.pt", "panns": "tiny-cnn14-16k.pth", "vggish": None}
    report = ge.evaluate([str(model)], clips, SamplingConfig(steps=2), LogMelEmbedder(), None,
                         embedder_name="logmel", classifier_name=None, real_codec={"griffin_lim_iters": 2},
                         records=tmp_path, table="field", extra=extra, extra_names=names)
    header, rows = report.rows()
    assert header[:10] == ["model", "clips", "FD_PaSST", "FD_PANNs", "FD_VGG", "KL_PANNs", "KL_PaSST", "IS",
                           "IB-score", "DeSync"]
    assert header[10:] == ["sync (weights-free)", "sync offset s", "s / clip", "audio s / clip", "precision", "device"]
    (m,) = report.models
    # what ran, never the request: `auto` is fp32 or bf16 by the CPU
    assert m.precision in ("fp32", "bf16") and m.device == "cpu" and m.audio_seconds_per_clip == pytest.approx(2.0)
    f = m.field
    for key in ("fd_passt", "fd_panns", "kl_panns", "kl_passt"):
        assert f[key] is not None and math.isfinite(f[key]) and f[key] >= -1e-9, key
    # not given (VGGish, ImageBind, Synchformer), or too few clips (IS needs 10): n/a with a note
    assert f["fd_vggish"] is None and f["ib"] is None and f["desync"] is None and f["is_panns"] is None
    assert "IS needs at least 10 clips" in m.note
    assert rows[0][2:10] == [f"{f['fd_passt']:.3f}", f"{f['fd_panns']:.3f}", "n/a", f"{f['kl_panns']:.3f}",
                             f"{f['kl_passt']:.3f}", "n/a", "n/a", "n/a"]
    # the same numbers from the records by hand: FD of the stored embeddings, KL of the stored distributions
    scoring = ge.Scoring(LogMelEmbedder(), None, extra, names={"embedder": "logmel", "classifier": None, **names})
    real = scoring.stores(tmp_path, "real", {"mode": "auto", "codec": {"griffin_lim_iters": 2}, "data": clips.source})
    gen_dirs = sorted(p for p in (tmp_path / "records").iterdir() if p.name.startswith("model-"))
    assert len(gen_dirs) == 3  # main, passt and panns stores of the one model
    heads = [c for c in clips.clips]
    real_passt = ge.Scores.load(real["passt"], heads)
    gen_passt = [json.loads((d / "settings.json").read_text()) for d in gen_dirs]
    passt_dir = next(d for d, s in zip(gen_dirs, gen_passt) if s.get("scorer") == "passt")
    gen = [np.load(p) for p in sorted(passt_dir.glob("*.npz"))]
    order = [np.load(real["passt"].path(c.id)) for c in sorted(heads, key=lambda c: real["passt"].path(c.id).name)]
    assert f["fd_passt"] == pytest.approx(frechet_audio_distance(np.concatenate(real_passt.embeddings),
                                                                 np.concatenate([g["embeddings"] for g in gen])),
                                          rel=1e-6)
    want_kl = logit_kl(np.log(np.stack([r["distribution"] for r in order])),
                       np.log(np.stack([g["distribution"] for g in gen])))
    assert f["kl_passt"] == pytest.approx(want_kl, rel=1e-6)
    md = report.markdown()
    assert "| model | clips | FD_PaSST | FD_PANNs | FD_VGG | KL_PANNs | KL_PaSST | IS | IB-score | DeSync |" in md
    assert "vggish: not given" in md and "n/a: FD_VGG needs --vggish" in md
    assert report.csv().splitlines()[0].startswith("model,clips,FD_PaSST,FD_PANNs,FD_VGG,KL_PANNs,KL_PaSST,IS,")


def test_eval_generation_scores_sync_against_the_clips_frames(trained, tmp_path):
    """Videos of the synthetic world: the real audio is in time with its picture (high weights-free
    sync score), and the table carries the generated audio's score and length."""
    from vab.data.synthetic import plan_clips, render_audio, render_frames, world_classes

    _, model, _ = trained
    classes = world_classes(4)
    videos = tmp_path / "videos"
    for spec in plan_clips(4, {"train": 3}, 2.0, 8.0, 32, 32, seed=2):
        frames = render_frames(spec, classes[spec.label], 2.0, 8.0, 32, 32)
        wav = render_audio(spec, classes[spec.label], 2.0)[None]
        make_video(videos / f"{spec.id}.mp4", fps=8.0, frames=list(frames), wav=wav, seconds=2.0)
    out = tmp_path / "out"
    assert eval_script().main(["--checkpoint", str(model), "--videos", str(videos), "--steps", "2",
                               "--out", str(out)]) == 0
    report = json.loads((out / "generation.json").read_text())
    assert report["real_sync"] > 0.6 and report["real_sync_offset"] <= 0.05
    (m,) = report["models"]
    assert m["sync_clips"] == 3 and -1.0 <= m["sync"] <= 1.0 and 0.0 <= m["sync_offset"] <= 1.0
    assert m["audio_seconds_per_clip"] == pytest.approx(2.0, abs=0.05) and m["precision"] and m["device"] == "cpu"
    csv_text = (out / "generation.csv").read_text().splitlines()
    assert csv_text[0].startswith("model,type,clips,FAD (logmel),KL (logmel),sync (weights-free),sync offset s")
    assert len(csv_text) == 2


def test_field_scorer_options_need_the_field_table(trained, tmp_path, capsys):
    data, model, _ = trained
    assert eval_script().main(["--checkpoint", str(model), *tiny_overrides(data), "--passt", str(tmp_path / "p.pt"),
                               "--out", str(tmp_path / "o")]) == 2
    assert "--passt fill the field's table: add --table field" in capsys.readouterr().err
    assert eval_script().main(["--checkpoint", str(model), *tiny_overrides(data), "--table", "field",
                               "--passt", str(tmp_path / "p.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "no such PaSST weight file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_field_table_desync_and_ib_score_on_videos(trained, tmp_path):
    """DeSync and the IB-score through the evaluation: each 5-s clip's first and last 4.8 s, and its
    frames at 0 and 2 s, scored as the scorers give them alone."""
    from vab import media
    from vab.evaluation import soundtracks as ge
    from vab.evaluation.scorers.imagebind import ImageBindNet, ImageBindScorer, half_fps_frames
    from vab.evaluation.scorers.synchformer import SynchformerNet, SynchformerScorer

    _, model, _ = trained
    videos = tmp_path / "videos"
    for i, freq in enumerate((300.0, 900.0)):
        make_video(videos / f"v{i}.mp4", seconds=5.0, fps=25, width=40, height=32, freq=freq)
    clips = ge.manifest_clips(videos, None, 5.0)
    torch.manual_seed(0)
    net = SynchformerNet(dim=16, depth=1, heads=2, global_depth=1, global_heads=2, size=32)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    scorer = SynchformerScorer(net)
    ib_net = ImageBindNet(vision_dim=16, vision_depth=1, vision_heads=2, audio_dim=16, audio_depth=1, audio_heads=2,
                          out_dim=8, size=28)
    with torch.no_grad():
        for p in ib_net.parameters():
            p.normal_(0, 0.3)
    ib_scorer = ImageBindScorer(ib_net)
    report = ge.evaluate([str(model)], clips, SamplingConfig(steps=2), LogMelEmbedder(), None,
                         embedder_name="logmel", classifier_name=None, records=tmp_path / "out", table="field",
                         extra_names={"synchformer": "tiny.pth", "imagebind": "tiny-ib.pth"}, desync=scorer,
                         imagebind=ib_scorer, save_audio=tmp_path / "audio")
    (m,) = report.models
    wavs = sorted((tmp_path / "audio").rglob("*.wav"))
    assert len(wavs) == 2
    want, cosines = [], []
    for wav_path, clip in zip(wavs, sorted(clips.clips, key=lambda c: c.id)):
        wav = media.read_audio(wav_path, 16000)
        frames, _ = media.read_frames(clip.video, 25.0, 0.0, 5.0, max_short_side=ge.DESYNC_SHORT_SIDE)
        want.append(scorer.desync(wav, 16000, frames))
        cosines.append(ib_scorer.score(wav, 16000, half_fps_frames(frames, 25.0, 5.0)))
    assert m.field["desync"] == pytest.approx(np.mean(want), abs=1e-9)
    assert 0.0 <= m.field["desync"] <= 2.0
    # the published tables show the mean cosine times 100 (the saved wav is 16-bit: a little rounding)
    assert m.field["ib"] == pytest.approx(100 * np.mean(cosines), abs=0.05) and -100 <= m.field["ib"] <= 100
    md = report.markdown()
    assert "synchformer: tiny.pth" in md and "imagebind: tiny-ib.pth" in md and "FD_PaSST needs --passt" in md
