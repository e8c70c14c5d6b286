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
from tests.test_reliability_options import script
from vab import precision


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


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
