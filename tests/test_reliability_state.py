"""State on disk that must be trusted (issue 25, docs/RELIABILITY.md section 8): evaluation
records keyed by what actually ran and redone when damaged; atomic writes that reach the
disk before their final name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.mediagen import make_video
from tests.test_generate import FAST_ARGS, SMALL, make_model_dir
from tests.test_hub import script
from tests.test_reliability_configs import model_dir  # noqa: F401  (module fixture: a tiny model)
from vab import precision


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i, freq in enumerate((300.0, 500.0, 700.0)):
        make_video(folder / f"v{i}.mp4", seconds=1.0, freq=freq, **SMALL)
    return folder


def evaluate(model_dir: Path, videos: Path, out: Path, *extra: str) -> dict:
    argv = ["--checkpoint", str(model_dir), "--videos", str(videos), "--out", str(out), "--device", "cpu",
            *FAST_ARGS, *extra]
    assert script("eval/generation").main(argv) == 0
    return json.loads((out / "generation.json").read_text())


def model_records(out: Path) -> dict[str, dict]:
    """{records folder: its settings} of the model side."""
    root = out / "records"
    return {p.name: json.loads((p / "settings.json").read_text()) for p in root.iterdir() if not p.name.startswith("real-")}


# ---------------------------------------------------------------------- records keyed by what ran
def test_records_are_keyed_by_the_format_and_batch_size_that_ran(model_dir, videos, tmp_path, monkeypatch):
    """Was: keyed by the requested --precision (auto is bf16 on a CPU with native bf16, fp32
    elsewhere) and not by --batch-size; the report did not say which format ran."""
    out = tmp_path / "eval"
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"avx512_bf16": False})
    first = evaluate(model_dir, videos, out, "--precision", "auto")
    assert [(m["precision"], m["device"]) for m in first["models"]] == [("fp32", "cpu")]
    assert first["device"] == "cpu" and "| fp32 |" in (out / "generation.md").read_text()
    (folder, settings), = model_records(out).items()
    assert (settings["precision"], settings["device"], settings["batch_size"]) == ("fp32", "cpu", 1)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records" / folder).iterdir()}

    # fp32 asked by name is what auto ran: the records are reused, nothing is redone
    evaluate(model_dir, videos, out, "--precision", "fp32")
    assert set(model_records(out)) == {folder}
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records" / folder).iterdir()} == stamps

    # the same command on a CPU with native bf16 runs bf16: new records, and the report says so
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"avx512_bf16": True})
    bf16 = evaluate(model_dir, videos, out, "--precision", "auto")
    assert [m["precision"] for m in bf16["models"]] == ["bf16"]
    assert sorted(s["precision"] for s in model_records(out).values()) == ["bf16", "fp32"]

    # another batch size: its own records (the recorded generation times depend on it)
    evaluate(model_dir, videos, out, "--precision", "fp32", "--batch-size", "2")
    assert sorted((s["precision"], s["batch_size"]) for s in model_records(out).values()) == [
        ("bf16", 1), ("fp32", 1), ("fp32", 2)]


def test_a_damaged_record_is_redone_not_a_crash(model_dir, videos, tmp_path):
    """Was: a 0-byte record gave EOFError, a truncated one BadZipFile, on the next run."""
    out = tmp_path / "eval"
    first = evaluate(model_dir, videos, out)
    damaged = []
    for clip, damage in (("v0", "empty"), ("v1", "truncated"), ("v2", "garbage")):
        for record in sorted((out / "records").glob(f"*/{clip}-*.npz")):  # the real audio's and the model's
            data = record.read_bytes()
            record.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"x" * 200}[damage])
            damaged.append(record)
    assert len(damaged) == 6
    again = evaluate(model_dir, videos, out)
    assert again["models"][0]["fad"] == pytest.approx(first["models"][0]["fad"])
    assert again["models"][0]["kl"] == pytest.approx(first["models"][0]["kl"])
    assert all(r.stat().st_size > 200 for r in damaged)  # written again, whole


# ---------------------------------------------------------------------- atomic writes reach the disk
@pytest.mark.parametrize("is_dir", [False, True])
def test_atomic_path_fsyncs_the_data_before_the_rename_and_the_folder_after(tmp_path, monkeypatch, is_dir):
    """Was: never fsynced, so after a power cut a complete-looking name could hold nothing."""
    from vab import utils

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(utils.os, "replace", replace)
    final = tmp_path / ("part" if is_dir else "index.json")
    with utils.atomic_path(final, is_dir=is_dir) as tmp:
        if is_dir:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "data.arrow").write_bytes(b"1234")
        else:
            tmp.write_text("{}")
        staged = str(tmp)
    rename = events.index(("replace", str(final)))
    synced_before = [path for kind, path in events[:rename] if kind == "fsync"]
    expected = [f"{staged}/sub/data.arrow", f"{staged}/sub", staged] if is_dir else [staged]
    assert synced_before == expected
    assert events[rename + 1:] == [("fsync", str(tmp_path))]


# ---------------------------------------------------------------------- per-window seeds
def test_window_seeds_use_64_bits():
    """Was: 32-bit seeds, so two windows of a 100,000-window evaluation shared their draws with
    odds of 2 in 3 (the birthday bound)."""
    from vab.generation.generator import window_seed

    seeds = [window_seed(0, f"video{v}", phase, i) for v in range(200) for phase in ("coarse", "fine") for i in range(5)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**64 for s in seeds)
    assert sum(s >= 2**32 for s in seeds) > 0.99 * len(seeds)  # the high 32 bits are used
    assert window_seed(-5, "video", "coarse", 0) == window_seed(-5, "video", "coarse", 0)


# ---------------------------------------------------------------------- an index knows its model
def test_an_index_is_queried_and_replaced_only_by_its_own_model(model_dir, videos, tmp_path, capsys):
    """Was: `vab search --checkpoint` with another model of the same shapes ranked with the wrong
    embeddings (exit 0), and `vab embed --out` replaced an index of other data or another
    model without a word."""
    import shutil

    from vab.cli import main as vab_main

    other_model = make_model_dir(tmp_path / "other", seed=1)  # same shapes, other weights
    copy = Path(shutil.copytree(model_dir, tmp_path / "copy"))  # the same weights elsewhere
    index = tmp_path / "index"
    query = videos / "v0.mp4"
    assert vab_main(["embed", str(videos), "--checkpoint", str(model_dir), "--out", str(index)]) == 0
    before = {p.name: p.read_bytes() for p in index.iterdir()}

    def search(checkpoint: Path) -> tuple[int, str]:
        rc = vab_main(["search", str(index), "--query", str(query), "--checkpoint", str(checkpoint), "--json"])
        return rc, capsys.readouterr().err

    assert search(copy)[0] == 0 and search(model_dir)[0] == 0
    rc, err = search(other_model)
    assert rc == 2 and err.strip().count("\n") == 0 and "not the model that built the index" in err, err

    others = tmp_path / "others"
    others.mkdir()
    shutil.copy(videos / "v1.mp4", others / "w.mp4")
    refused = [
        (["embed", str(others), "--checkpoint", str(model_dir)], "holds an index of other data"),
        (["embed", str(videos), "--checkpoint", str(model_dir), "--split", "test"], "holds an index of other data"),
        (["embed", str(videos), "--checkpoint", str(other_model)], "holds an index made by another model"),
    ]
    for argv, words in refused:
        rc = vab_main([*argv, "--out", str(index)])
        err = capsys.readouterr().err
        assert rc == 2 and err.strip().count("\n") == 0 and words in err and "--replace" in err, err
        assert {p.name: p.read_bytes() for p in index.iterdir()} == before
    # the same data and model again: a re-run, allowed; --replace: the user's explicit choice
    assert vab_main(["embed", str(videos), "--checkpoint", str(copy), "--out", str(index)]) == 0
    assert vab_main(["embed", str(others), "--checkpoint", str(other_model), "--out", str(index), "--replace"]) == 0
    assert search(other_model)[0] == 0 and search(model_dir)[0] == 2
