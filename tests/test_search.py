"""`vab embed`, `vab search` and `vab curate` on a tiny contrastively trained model.

The model is trained here, through the shared engine, with a small symmetric InfoNCE
objective (fixed temperature) on the synthetic data set, whose audio and pictures
agree at the class level; a copy of the data set with some clips' audio swapped for
another class's checks curation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.mediagen import make_video
from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.cli import main

SMALL_MODEL = ["model.width=64", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=128"]
# train clips 0-63 (16 per class), valid 64-79, test 80-95; two swapped clips per class
SWAPPED = [3, 9, 20, 27, 37, 44, 50, 61]
TEMPERATURE = 0.1


def infonce(model, batch, generator=None):
    """Symmetric InfoNCE between the audio and video embeddings of a batch (fixed temperature)."""
    from vab.finetuning.pooling import embeddings

    a, v = embeddings(model, batch)
    logits = a @ v.T / TEMPERATURE
    target = torch.arange(len(a), device=a.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return loss, {"acc": (logits.argmax(1) == target).float().mean().item()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The clean synthetic set, with a spectral codec (fitted on noise) to build the model from."""
    import numpy as np

    from vab.codecs.spectral import SpectralCodec
    from vab.config import load_config

    out = make_synthetic_dataset(tmp_path_factory.mktemp("data") / "clean")
    cfg = load_config("tiny", tiny_overrides(out))
    noise = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
    SpectralCodec.from_config(cfg.codec).fit([noise]).save(out)
    return out


@pytest.fixture(scope="module")
def swapped_data(tmp_path_factory) -> Path:
    # same seed: the same clips, except that the listed ones carry another class's audio
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "swapped", swap_audio=SWAPPED)


@pytest.fixture(scope="module")
def model_dir(data, tmp_path_factory) -> Path:
    from vab.config import load_config
    from vab.data.dataset import collate
    from vab.checkpoint import save_model_dir
    from vab.training.run import build_datasets, build_model, load_codec_for
    from vab.training.engine import Trainer

    run = tmp_path_factory.mktemp("run")
    cfg = load_config("tiny", tiny_overrides(data) + SMALL_MODEL + [
        "data.duration=2.0", "train.max_steps=40", "train.batch_size=16", "train.warmup_steps=5", "train.lr=2e-3",
        "train.tracker=none", "train.checkpoint_every=0", "train.valid_every=1000", f"train.output_dir={run}",
    ])
    train_set, _, info = build_datasets(cfg, [str(data)])
    codec = load_codec_for(cfg, data)
    torch.manual_seed(0)
    model = build_model(cfg, codec, info.visual_dim)
    trained = Trainer(cfg.train, model, infonce, train_set, None, collate_fn=collate, config=cfg).fit()
    return save_model_dir(trained, codec, run / "model")


@pytest.fixture(scope="module")
def test_index(data, model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "test"
    assert main(["embed", str(data), "--checkpoint", str(model_dir), "--out", str(out), "--split", "test"]) == 0
    return out


def search_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["search", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_embed_writes_normalised_embeddings_with_ids(test_index):
    from vab.search import Index

    index = Index.load(test_index)
    assert len(index) == 16 and index.ids == [f"clip{n:04d}" for n in range(80, 96)]
    assert index.audio.shape == index.video.shape == (16, 64)
    assert torch.allclose(index.audio.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert torch.allclose(index.video.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert set(index.splits) == {"test"} and index.labels[0] == ["class0"]
    assert not [p for p in test_index.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_search_finds_the_true_partner_of_held_out_clips(test_index, capsys):
    from vab.search import Index

    index = Index.load(test_index)
    found = {"video": 0, "audio": 0}
    for clip in index.ids:
        for by, within in (("video", "audio"), ("audio", "video")):
            out = search_json(capsys, test_index, "--query", clip, "--by", by, "--in", within, "--top", "5")
            assert out["in"] == within and [r["rank"] for r in out["results"]] == [1, 2, 3, 4, 5]
            cosines = [r["cosine"] for r in out["results"]]
            assert cosines == sorted(cosines, reverse=True)
            found[by] += clip in [r["id"] for r in out["results"]]
    rates = {by: n / len(index) for by, n in found.items()}
    with capsys.disabled():
        print(f"top-5 partner rate over {len(index)} held-out clips: {rates}")
    assert rates["video"] >= 0.6 and rates["audio"] >= 0.6


def test_search_table_and_bad_queries(test_index, tmp_path, capsys):
    assert main(["search", str(test_index), "--query", "clip0080", "--top", "3"]) == 0
    table = capsys.readouterr().out
    assert "clip0080" in table and "cosine" in table
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    for query in (str(bad), "no-such-clip"):
        assert main(["search", str(test_index), "--query", query]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1 and query in err
    assert main(["search", str(tmp_path), "--query", "clip0080"]) == 2
    assert "not an embedding index" in capsys.readouterr().err


def test_curate_drops_clips_with_swapped_audio(swapped_data, model_dir, tmp_path, capsys):
    out, plot = tmp_path / "kept.jsonl", tmp_path / "hist.png"
    args = ["curate", str(swapped_data), "--checkpoint", str(model_dir), "--split", "train", "--out", str(out)]
    assert main([*args, "--keep-fraction", "0.875", "--plot", str(plot)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 56 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(rows[0]) == {"id", "path", "labels", "split", "score"} and rows[0]["split"] == "train"
    kept = {int(r["id"][4:]) for r in rows}
    swapped, clean = set(SWAPPED), set(range(64)) - set(SWAPPED)
    dropped_swapped, kept_clean = len(swapped - kept), len(clean & kept)
    with capsys.disabled():
        print(f"keep-fraction 0.875: dropped {dropped_swapped}/{len(swapped)} swapped, kept {kept_clean}/{len(clean)} clean")
    assert dropped_swapped >= 6 and kept_clean >= 50
    scores = {int(r["id"][4:]): r["score"] for r in rows}
    # a fixed threshold: the clips above it, with the same scores
    assert main([*args, "--threshold", "0.3"]) == 0
    above = {int(r["id"][4:]): r["score"] for r in map(json.loads, out.read_text().splitlines())}
    assert all(v >= 0.3 for v in above.values()) and all(above[i] == v for i, v in scores.items() if i in above)
    with capsys.disabled():
        print(f"threshold 0.3: dropped {len(swapped - set(above))}/{len(swapped)} swapped, "
              f"kept {len(clean & set(above))}/{len(clean)} clean")
    assert len(swapped - set(above)) >= 6 and len(clean & set(above)) >= 50
    # exactly the clips scoring at or above the threshold: all 64 scores, then a threshold equal to
    # the median one (kept, being "at" it), compared clip by clip
    assert main([*args, "--keep-fraction", "1.0"]) == 0
    every = {int(r["id"][4:]): r["score"] for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(every) == list(range(64))
    threshold = sorted(every.values())[32]
    assert main([*args, "--threshold", repr(threshold)]) == 0
    exact = {int(r["id"][4:]) for r in map(json.loads, out.read_text().splitlines())}
    assert exact == {i for i, v in every.items() if v >= threshold} and len(exact) == 32
    capsys.readouterr()
    assert main([*args, "--keep-fraction", "1.5"]) == 2
    assert "--keep-fraction" in capsys.readouterr().err
    assert main(["curate", str(model_dir), "--threshold", "0", "--out", str(out)]) == 2
    assert "neither an extracted data set" in capsys.readouterr().err


def test_curate_reads_an_index(test_index, tmp_path):
    out = tmp_path / "half.jsonl"
    assert main(["curate", str(test_index), "--keep-fraction", "0.5", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert {r["split"] for r in rows} == {"test"}


def test_embed_media_folder_and_file_queries(tmp_path, capsys):
    from tests.test_generate import SMALL, make_model_dir
    from vab.search import Index

    model = make_model_dir(tmp_path / "model")
    videos = tmp_path / "videos"
    for n, freq in enumerate((220.0, 440.0, 880.0)):
        make_video(videos / f"v{n}.mp4", seconds=4.0, freq=freq, **SMALL)
    (videos / "broken.mp4").write_bytes(b"garbage")
    out = tmp_path / "index"
    assert main(["embed", str(videos), "--checkpoint", str(model), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 input(s) failed" in err and "broken.mp4" in err
    index = Index.load(out)
    assert sorted(index.ids) == ["v0", "v1", "v2"] and index.audio.shape == (3, 32)
    result = search_json(capsys, out, "--query", videos / "v1.mp4", "--by", "audio", "--in", "video", "--top", "3")
    assert len(result["results"]) == 3
    # a file query is embedded exactly as the folder was (a random model scores the others high too)
    for by in ("audio", "video"):
        hits = search_json(capsys, out, "--query", videos / "v1.mp4", "--by", by, "--in", by, "--top", "3")["results"]
        assert next(r for r in hits if r["id"] == "v1")["cosine"] == pytest.approx(1.0, abs=1e-4)
    # an audio file is a query by its sound only
    from vab import media

    wav = tmp_path / "tone.wav"
    media.write_audio(wav, media.read_audio(videos / "v2.mp4", 16000), 16000)
    hits = search_json(capsys, out, "--query", wav, "--by", "audio", "--in", "audio", "--top", "3")["results"]
    assert next(r for r in hits if r["id"] == "v2")["cosine"] == pytest.approx(1.0, abs=1e-3)
    assert main(["search", str(out), "--query", str(wav), "--by", "video"]) == 2
    assert "no video stream" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing"), "--checkpoint", str(model), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
