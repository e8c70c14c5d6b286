"""Extraction (`vab extract`, recipes/extract.py) and the data set reader."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port
import torch

from tests.mediagen import leave_ffmpeg_garbage, make_video
from vab.cli import main as vab_main

REPO = Path(__file__).resolve().parents[1]
# the offline default, kept small so each test runs in seconds
FAST = ["--duration", "2", "--fps", "2", "codec.codebook_size=32", "codec.n_fft=512", "codec.griffin_lim_iters=4"]


def make_clips(folder: Path, n: int, seconds: float = 2.0) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(make_video(folder / f"clip_{i:02d}.mp4", seconds=seconds, fps=10, width=32, height=24, freq=200 + 90 * i))
    return paths


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load_columns(out: Path) -> dict[str, np.ndarray | list]:
    from vab.data.store import column_to_numpy, load_dataset_dir

    ds = load_dataset_dir(out / "data")
    table = ds.data.table
    cols: dict[str, np.ndarray | list] = {"id": ds["id"], "index": ds["index"], "labels": ds["labels"]}
    cols["tokens"] = column_to_numpy(table.column("tokens"), np.int16)
    if "features" in ds.column_names:
        cols["features"] = column_to_numpy(table.column("features"), np.float16)
    return cols


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    make_clips(folder, 20)
    return folder


@pytest.fixture(scope="module")
def extracted(clip_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ds"
    assert vab_main(["extract", str(clip_folder), "--out", str(out), *FAST]) == 0
    return out


def test_extract_folder_tokens_decode_and_features_match_encoder(extracted, clip_folder):
    from vab import media
    from vab.codecs import build_codec
    from vab.config import load_config
    from vab.data.store import DataInfo
    from vab.visual import build_visual_encoder

    info = DataInfo.load(extracted)
    cols = load_columns(extracted)
    assert len(cols["id"]) == 20
    assert cols["tokens"].dtype == np.int16 and cols["tokens"].shape == (20, info.num_codebooks, 100)
    assert cols["features"].dtype == np.float16 and cols["features"].shape == (20, 4, info.visual_dim)
    assert cols["index"] == sorted(cols["index"])

    cfg = load_config(None, FAST[4:])
    codec = build_codec(cfg.codec, directory=extracted)
    wav = codec.decode(torch.from_numpy(cols["tokens"][:2].astype(np.int64)))
    assert wav.shape == (2, 1, 2 * codec.sample_rate)
    assert torch.isfinite(wav).all() and wav.abs().max() > 0

    # features equal a direct encoder call on the same frames
    encoder = build_visual_encoder(cfg.visual)
    i = cols["id"].index("clip_07")
    frames, _ = media.read_frames(str(clip_folder / "clip_07.mp4"), 2.0, 0.0, 2.0, max_short_side=256)
    direct = encoder.encode(frames).to(torch.float16).numpy()
    np.testing.assert_array_equal(cols["features"][i], direct)
    # and tokens equal a direct codec call on the same audio
    audio = media.read_audio(str(clip_folder / "clip_07.mp4"), codec.sample_rate, 0.0, 2.0)
    direct_tokens = codec.encode(torch.from_numpy(audio)[None, None])[0].numpy()
    np.testing.assert_array_equal(cols["tokens"][i], direct_tokens)


def test_rerun_of_finished_extraction_changes_nothing(extracted, clip_folder, capsys):
    before = load_columns(extracted)
    assert vab_main(["extract", str(clip_folder), "--out", str(extracted), *FAST]) == 0
    after = load_columns(extracted)
    assert after["id"] == before["id"]
    np.testing.assert_array_equal(after["tokens"], before["tokens"])


def test_rerun_with_other_settings_is_refused(extracted, clip_folder, capsys):
    rc = vab_main(["extract", str(clip_folder), "--out", str(extracted), *FAST[:2], "--fps", "4", *FAST[4:]])
    err = capsys.readouterr().err
    assert rc == 2 and "fps" in err and "other settings" in err
    assert len(err.strip().splitlines()) == 1


def test_sigkill_halfway_then_rerun_gives_identical_data_set(extracted, clip_folder, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vab.cli", "extract", str(clip_folder), "--out", str(out), *FAST,
           "extract.chunk_size=1", "extract.batch_size=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    parts = out / "parts"
    while time.time() < deadline and proc.poll() is None:
        if parts.exists() and len([p for p in parts.iterdir() if not p.name.startswith(".")]) >= 2:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "data").exists()
    done_before = len([p for p in parts.iterdir() if not p.name.startswith(".")])
    assert 0 < done_before < 20

    assert vab_main(["extract", str(clip_folder), "--out", str(out), *FAST]) == 0
    a, b = load_columns(extracted), load_columns(out)
    assert a["id"] == b["id"] and len(set(b["id"])) == 20
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    np.testing.assert_array_equal(a["features"], b["features"])
    assert not (out / "parts").exists() or not any((out / "parts").iterdir())


@pytest.mark.timeout(120)
def test_workers_do_not_inherit_unfreed_ffmpeg_objects(clip_folder, tmp_path, monkeypatch):
    """A decoding worker is a fork: an unreachable FFmpeg object with threads that the parent
    has not freed yet would be freed in the child, which waits forever for the parent's
    threads.  Here the worker collects garbage first thing."""
    import gc

    from vab.data import extract as extract_module

    init = extract_module._die_with_parent

    def collect_then_init(worker_id: int) -> None:
        gc.collect()
        init(worker_id)

    monkeypatch.setattr(extract_module, "_die_with_parent", collect_then_init)
    gc.disable()  # keep the garbage until the extraction starts
    try:
        leave_ffmpeg_garbage()
        assert vab_main(["extract", str(clip_folder), "--out", str(tmp_path / "out"), *FAST]) == 0
    finally:
        gc.enable()


def test_the_spectral_codec_is_fitted_on_the_first_codec_fit_clips_training_clips(clip_folder, tmp_path):
    from vab.codecs import build_codec
    from vab.config import load_config
    from vab.data.extract import fit_spectral_codec
    from vab.data.manifest import read_manifest

    assert load_config(None, []).extract.codec_fit_clips == 256
    manifest = read_manifest(clip_folder)
    cfg = load_config(None, ["extract.codec_fit_clips=3", *FAST[4:]])
    codec = build_codec(cfg.codec)
    assert fit_spectral_codec(codec, manifest, cfg.extract) == 3 and codec.is_fitted
    # the same three clips first in another manifest: the same codebooks
    rows = [r for r in manifest.rows if r.id in ("clip_00", "clip_01", "clip_02")]
    again = build_codec(cfg.codec)
    fit_spectral_codec(again, dataclasses.replace(manifest, rows=rows), cfg.extract)
    assert torch.equal(codec.centroids, again.centroids)
    rc = vab_main(["extract", str(clip_folder), "--out", str(tmp_path / "out"), "extract.codec_fit_clips=0"])
    assert rc == 2 and not (tmp_path / "out").exists()


def test_bad_files_go_to_failures_and_the_rest_is_extracted(tmp_path, capsys):
    folder = tmp_path / "mixed"
    make_clips(folder, 3)
    (folder / "text.mp4").write_text("this is not a video\n")
    (folder / "empty.mp4").write_bytes(b"")
    good = make_video(tmp_path / "src.mp4", seconds=2, fps=10, width=32, height=24).read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    make_video(folder / "silent.mp4", seconds=2, fps=10, width=32, height=24, audio=False)
    make_video(folder / "blind.mp4", seconds=2, video=False)
    out = tmp_path / "out"
    rc = vab_main(["extract", str(folder), "--out", str(out), *FAST])
    assert rc == 1
    failures = {json.loads(x)["id"]: json.loads(x)["reason"] for x in (out / "failures.jsonl").read_text().splitlines()}
    assert {"text", "empty", "silent", "blind"} <= set(failures)
    assert "no audio stream" in failures["silent"] and "no video stream" in failures["blind"]
    cols = load_columns(out)
    assert {"clip_00", "clip_01", "clip_02"} <= set(cols["id"])
    assert not set(failures) & set(cols["id"])
    err = capsys.readouterr().err
    assert "failures.jsonl" in err and "Traceback" not in err


def test_short_video_is_padded_and_audio_only_manifest_has_no_features(tmp_path):
    from vab import media
    from vab.config import load_config
    from vab.visual import build_visual_encoder

    short = make_video(tmp_path / "v" / "short.mp4", seconds=1.0, fps=10, width=32, height=24)
    out = tmp_path / "out"
    assert vab_main(["extract", str(short.parent), "--out", str(out), *FAST]) == 0
    cols = load_columns(out)
    feats = cols["features"][0]
    np.testing.assert_array_equal(feats[2], feats[1])  # frames past 1 s repeat the last real one
    np.testing.assert_array_equal(feats[3], feats[1])
    frames, _ = media.read_frames(str(short), 2.0, 0.0, 1.0, max_short_side=256)
    enc = build_visual_encoder(load_config(None, []).visual)
    np.testing.assert_array_equal(feats[:2], enc.encode(frames).to(torch.float16).numpy())

    # audio-only manifest
    audio_dir = tmp_path / "a"
    audio_dir.mkdir()
    for i in range(3):
        media.write_audio(audio_dir / f"a{i}.wav", np.sin(np.arange(16000) * (0.05 + 0.02 * i)).astype(np.float32) * 0.3, 16000)
    manifest = write_manifest(tmp_path / "audio.jsonl", [{"path": str(audio_dir / f"a{i}.wav"), "label": f"c{i % 2}"} for i in range(3)])
    out2 = tmp_path / "out2"
    assert vab_main(["extract", str(manifest), "--out", str(out2), *FAST]) == 0
    from vab.data.dataset import VABDataset

    ds = VABDataset(out2)
    assert not ds.info.has_visual and "features" not in ds[0]
    assert ds[0]["tokens"].dtype == torch.int16 and ds[0]["labels"].tolist() in ([1.0, 0.0], [0.0, 1.0])


def test_unwritable_output_and_missing_manifest_are_one_line_errors(tmp_path, capsys, clip_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert vab_main(["extract", str(clip_folder), "--out", str(blocker / "sub"), *FAST]) == 2
    assert vab_main(["extract", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "nope.csv" in err[1]


# ---------------------------------------------------------------- the reader


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """6 clips of 2 s, features stored at 4 fps, two splits, labels."""
    root = tmp_path_factory.mktemp("labelled")
    paths = make_clips(root / "v", 6)
    rows = [{"path": str(p), "label": ["dog", "cat"][i % 2], "split": "train" if i < 4 else "test"} for i, p in enumerate(paths)]
    manifest = write_manifest(root / "m.jsonl", rows)
    out = root / "ds"
    assert vab_main(["extract", str(manifest), "--out", str(out), "--duration", "2", "--fps", "4", *FAST[4:]]) == 0
    return out


def test_reader_keeps_dtypes_splits_and_labels(labelled):
    from vab.data.dataset import VABDataset, collate

    train = VABDataset(labelled, "train", fps=2, train=False)
    test = VABDataset(labelled, "test", fps=2, train=False)
    assert len(train) == 4 and len(test) == 2
    item = train[0]
    assert item["tokens"].dtype == torch.int16 and item["features"].dtype == torch.float16
    assert item["features"].shape[0] == 4 and item["tokens"].shape[-1] == 100
    assert train.info.label_names == ["cat", "dog"]
    assert item["labels"].tolist() == [0.0, 1.0]  # clip_00 is a dog
    batch = collate([train[i] for i in range(3)])
    assert batch["tokens"].shape[0] == 3 and batch["labels"].shape == (3, 2) and len(batch["id"]) == 3


def test_reader_picks_middle_frame_in_eval_and_one_per_interval_in_training(labelled):
    from vab.data.dataset import VABDataset

    full = VABDataset(labelled, fps=4, train=False)[0]["features"]  # stored frames
    ev = VABDataset(labelled, fps=2, train=False)[0]["features"]
    assert torch.equal(ev, full[[1, 3, 5, 7]])
    tr = VABDataset(labelled, fps=2, train=True)
    assert torch.equal(tr[0]["features"], tr[0]["features"])  # a function of (seed, epoch, item)
    seen = set()
    for epoch in range(20):
        tr.set_epoch(epoch)
        f = tr[0]["features"]
        picks = []
        for k in range(4):  # each returned frame comes from its own 2-frame interval
            match = [j for j in (2 * k, 2 * k + 1) if torch.equal(f[k], full[j])]
            assert match
            picks.append(match[0])
        seen.add(tuple(picks))
    assert len(seen) > 1


def test_reader_windows_and_mismatch_errors(labelled, tmp_path):
    from vab.data.dataset import VABDataset, check_matches_config, load_infos
    from vab.config import load_config
    from vab.errors import VabError

    short = VABDataset(labelled, duration=1.0, fps=2, train=False)
    item = short[0]
    assert item["tokens"].shape[-1] == 50 and item["features"].shape[0] == 2
    with pytest.raises(VabError, match="fps"):
        VABDataset(labelled, fps=3)
    with pytest.raises(VabError, match="no clips"):
        VABDataset(labelled, "valid")
    cfg = load_config("tiny" if (REPO / "vab/configs/tiny.yaml").exists() else None, ["codec.name=dac"])
    with pytest.raises(VabError, match="codec.name"):
        check_matches_config(load_infos([labelled]), cfg)
    with pytest.raises(VabError, match="not an extracted data set"):
        VABDataset(tmp_path)


@pytest.mark.slow
def test_accelerate_two_processes_match_one(clip_folder, extracted, tmp_path):
    out = tmp_path / "multi"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port()), "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           str(REPO / "recipes/extract.py"), str(clip_folder), "--out", str(out), *FAST]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = load_columns(extracted), load_columns(out)
    assert a["id"] == b["id"]
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    np.testing.assert_array_equal(a["features"], b["features"])


def test_full_videos_are_cut_at_each_rows_start(tmp_path):
    """`vab extract vggsound.csv --full-videos`: whole videos, each clip cut at its start_seconds
    (2 s and 3.5 s here): the stored tokens and features are those of the clip's own seconds, and the
    data set records the start and the file's length."""
    from vab import media
    from vab.codecs import build_codec
    from vab.config import load_config
    from vab.data.store import DATA_DIR, clip_spans, load_dataset_dir
    from vab.visual import build_visual_encoder

    media_dir = tmp_path / "media"
    rate = 16000
    starts = {"aaa": 2.0, "bbb": 3.5}
    for n, ytid in enumerate(starts):
        t = np.arange(6 * rate) / rate
        wav = (0.4 * np.sin(2 * np.pi * (300 + 400 * n) * t * (1 + (t > 3)))).astype(np.float32)[None]
        frames = [np.full((24, 32, 3), (i * 9) % 250, dtype=np.uint8) for i in range(60)]
        make_video(media_dir / f"{ytid}.mp4", seconds=6.0, fps=10, width=32, height=24, wav=wav, frames=frames)
    csv = tmp_path / "vggsound.csv"
    csv.write_text("".join(f"{ytid},{start},class {ytid},train\n" for ytid, start in starts.items()))
    out = tmp_path / "data"
    assert vab_main(["extract", str(csv), "--root", str(media_dir), "--name-template", "{ytid}", "--full-videos",
                     "--out", str(out), *FAST]) == 0
    cols = load_columns(out)
    assert cols["id"] == ["aaa", "bbb"]
    found, lengths = clip_spans(load_dataset_dir(out / DATA_DIR).data.table)
    assert found == [2.0, 3.5] and all(5.9 < x < 6.2 for x in lengths)
    cfg = load_config(None, FAST[4:])
    codec, encoder = build_codec(cfg.codec, directory=out), build_visual_encoder(cfg.visual)
    for i, (ytid, start) in enumerate(starts.items()):
        path = str(media_dir / f"{ytid}.mp4")
        audio = media.read_audio(path, codec.sample_rate, start, start + 2.0)
        np.testing.assert_array_equal(cols["tokens"][i], codec.encode(torch.from_numpy(audio)[None, None])[0].numpy())
        at_zero = media.read_audio(path, codec.sample_rate, 0.0, 2.0)
        assert not np.array_equal(cols["tokens"][i], codec.encode(torch.from_numpy(at_zero)[None, None])[0].numpy())
        frames, _ = media.read_frames(path, 2.0, start, start + 2.0, max_short_side=256)
        np.testing.assert_array_equal(cols["features"][i], encoder.encode(frames).to(torch.float16).numpy())
