"""Trust in what commands write (issue 13, docs/RELIABILITY.md section 4): no input is ever
written over, outputs know their source, writes keep the umask and fail in one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.mediagen import make_video
from tests.test_generate import FAST_ARGS, SMALL, make_model_dir
from vab.cli import main as vab_main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


def generate(*args) -> int:
    return vab_main(["generate", *map(str, args), *FAST_ARGS, "--device", "cpu"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(folder: Path) -> set[str]:
    """Names in `folder` except the hidden source records."""
    return {p.name for p in folder.iterdir() if not p.name.endswith(".vab.json")}


# ---------------------------------------------------------------------- 1. never overwrite an input
def test_generate_into_the_videos_own_folder_leaves_the_video_byte_identical(tmp_path, model_dir):
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    before = digest(clip)
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent) == 0
    assert digest(clip) == before
    assert outputs(tmp_path) == {"clip.mp4", "clip-vab.wav", "clip-vab.mp4"}
    stamp = (tmp_path / "clip-vab.wav").stat().st_mtime_ns
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent) == 0  # skipped: made from this clip
    assert (tmp_path / "clip-vab.wav").stat().st_mtime_ns == stamp
    assert generate(clip, "--checkpoint", model_dir, "--out", clip.parent, "--overwrite") == 0
    assert digest(clip) == before and outputs(tmp_path) == {"clip.mp4", "clip-vab.wav", "clip-vab.mp4"}


def test_links_to_an_input_are_never_written_through(tmp_path, model_dir):
    """An output name that is a hard link or a symlink to an input counts as that input."""
    clip = make_video(tmp_path / "in" / "clip.mp4", seconds=1.0, **SMALL)
    other = make_video(tmp_path / "in" / "other.mp4", seconds=1.0, freq=330.0, **SMALL)
    out = tmp_path / "out"
    out.mkdir()
    os.link(clip, out / "clip.mp4")  # the output name of clip.mp4 is clip.mp4 itself (hard link)
    (out / "other.wav").symlink_to(other)  # ... and other's audio name points at other.mp4
    before = {p: digest(p) for p in (clip, other)}
    assert generate(clip, other, "--checkpoint", model_dir, "--out", out) == 0
    assert {p: digest(p) for p in (clip, other)} == before
    assert outputs(out) == {"clip.mp4", "other.wav", "clip-vab.wav", "clip-vab.mp4", "other-vab.wav", "other-vab.mp4"}


def test_a_prompt_is_an_input_too(tmp_path, model_dir):
    from vab import media
    import numpy as np

    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    prompt = media.write_audio(out / "clip.wav", np.zeros(16000, np.float32), 16000)
    before = digest(prompt)
    assert generate(clip, "--checkpoint", model_dir, "--out", out, "--prompt", prompt) == 0
    assert digest(prompt) == before and (out / "clip-vab.wav").is_file()


# ---------------------------------------------------------------------- 2. outputs know their source
def test_two_videos_with_one_stem_in_two_runs_both_keep_their_soundtrack(tmp_path, model_dir, capsys):
    a = make_video(tmp_path / "a" / "clip.mp4", seconds=1.0, **SMALL)
    b = make_video(tmp_path / "b" / "clip.mp4", seconds=2.0, freq=330.0, **SMALL)
    out = tmp_path / "out"
    assert generate(a, "--checkpoint", model_dir, "--out", out) == 0
    first = digest(out / "clip.wav")
    assert generate(b, "--checkpoint", model_dir, "--out", out) == 0
    assert "exists, skipped" not in capsys.readouterr().err
    assert digest(out / "clip.wav") == first  # a's soundtrack is kept ...
    assert outputs(out) == {"clip.wav", "clip.mp4", "clip-vab.wav", "clip-vab.mp4"}  # ... and b has its own
    # each re-run finds its own outputs
    for video in (a, b):
        assert generate(video, "--checkpoint", model_dir, "--out", out) == 0
        assert "exists, skipped" in capsys.readouterr().err
    assert len(outputs(out)) == 4
    # a changed source (new content, same path) is generated again, in place
    make_video(a, seconds=1.5, freq=550.0, **SMALL)
    assert generate(a, "--checkpoint", model_dir, "--out", out) == 0
    assert "exists, skipped" not in capsys.readouterr().err and digest(out / "clip.wav") != first
    assert len(outputs(out)) == 4


def test_files_vab_did_not_make_are_never_overwritten(tmp_path, model_dir):
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.wav").write_bytes(b"the user's own recording")
    assert generate(clip, "--checkpoint", model_dir, "--out", out, "--overwrite") == 0
    assert (out / "clip.wav").read_bytes() == b"the user's own recording"
    assert (out / "clip-vab.wav").is_file()


# ---------------------------------------------------------------------- 5. a batch goes on
def test_a_sampler_or_muxer_failure_is_that_videos_error(tmp_path, model_dir, monkeypatch, capsys):
    from vab import media
    from vab.generation import generator as gen

    folder = tmp_path / "in"
    for i, name in enumerate(("a", "b", "c", "d")):
        make_video(folder / f"{name}.mp4", seconds=1.0, freq=220.0 * (i + 1), **SMALL)
    real_key, real_sampler, real_mux = gen.content_key, gen.sample_tokens, media.mux
    monkeypatch.setattr(gen, "content_key", lambda s: "poison" if Path(s).name == "b.mp4" else real_key(s))
    poison = {gen.window_seed(0, "poison", "coarse", i) for i in range(4)}

    def sampler(model, features, **kwargs):
        if poison & set(kwargs["seeds"]):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real_sampler(model, features, **kwargs)

    def mux(video, *args, **kwargs):
        if Path(video).name == "c.mp4":
            raise ValueError("muxer said no")
        return real_mux(video, *args, **kwargs)

    monkeypatch.setattr(gen, "sample_tokens", sampler)
    monkeypatch.setattr(media, "mux", mux)
    out = tmp_path / "out"
    assert generate(folder, "--checkpoint", model_dir, "--out", out, "--batch-size", "2") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "2 input(s) failed" in err
    assert f"{folder / 'b.mp4'}: unexpected RuntimeError: CUDA error: device-side assert triggered" in err
    assert f"{folder / 'c.mp4'}: unexpected ValueError: muxer said no" in err
    assert outputs(out) == {"a.wav", "a.mp4", "d.wav", "d.mp4"}  # nothing half-written for b and c
    # the videos sampled with b (batch of two) got the soundtrack they get alone
    alone = tmp_path / "alone"
    monkeypatch.setattr(gen, "sample_tokens", real_sampler)
    assert generate(folder / "a.mp4", "--checkpoint", model_dir, "--out", alone) == 0
    assert digest(alone / "a.wav") == digest(out / "a.wav")


def test_embed_goes_on_past_a_clip_whose_embedding_is_not_finite(tmp_path, model_dir, monkeypatch, capsys):
    import torch

    from vab.search import Embedder, Index

    folder = tmp_path / "in"
    for i, name in enumerate(("a", "b", "c")):
        make_video(folder / f"{name}.mp4", seconds=1.0, freq=220.0 * (i + 1), **SMALL)
    real, calls = Embedder.embed_batch, []

    def nan_for_the_second(self, batch):
        a, v = real(self, batch)
        calls.append(1)
        return (a * float("nan"), v) if len(calls) == 2 else (a, v)

    monkeypatch.setattr(Embedder, "embed_batch", nan_for_the_second)
    out = tmp_path / "index"
    assert vab_main(["embed", str(folder), "--checkpoint", str(model_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'b.mp4'}: the embedding of clip 'b' is not finite (NaN or inf)" in err
    index = Index.load(out)
    assert index.ids == ["a", "c"] and torch.isfinite(index.audio).all()
    # an index whose embeddings hold NaN (made elsewhere) is refused, naming the clip
    index.video[1, 0] = float("inf")
    with pytest.raises(Exception, match="the embedding of clip 'c' is not finite"):
        index.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------- 8. outputs are valid
@pytest.fixture
def index_dir(tmp_path, model_dir) -> Path:
    """An index of hostile ids and labels, recorded as made by the tiny model (file queries use it)."""
    import torch
    import torch.nn.functional as F

    from vab.checkpoint import load_model
    from vab.search import Index, model_digest

    g = torch.Generator().manual_seed(0)
    audio, video = (F.normalize(torch.randn(3, 8, generator=g), dim=-1) for _ in range(2))
    ids = ["[red]loud[/red]", "[/bold]", "=HYPERLINK(\"http://x\")"]
    labels = [["[link=http://x]dog[/link]"], ["cat"], ["+cmd|' /C calc'!A0"]]
    return Index(ids=ids, paths=[f"/v/{i}.mp4" for i in range(3)], audio=audio, video=video, labels=labels,
                 model_dir=str(model_dir), model_digest=model_digest(load_model(model_dir))
                 ).save(tmp_path / "index")


def test_ids_and_labels_are_printed_as_they_are(index_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one row per line
    assert vab_main(["search", str(index_dir), "--query", "[/bold]", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "[red]loud[/red]" in out and "[link=http://x]dog[/link]" in out and "Traceback" not in out


def test_curate_refuses_a_folder_as_out_or_plot_before_writing(index_dir, tmp_path, capsys):
    folder = tmp_path / "a folder"
    folder.mkdir()
    for option, extra in (("--out", []), ("--plot", ["--out", str(tmp_path / "kept.jsonl")])):
        args = ["curate", str(index_dir), "--threshold", "0", *extra, option, str(folder)]
        assert vab_main(args) == 2
        assert capsys.readouterr().err.strip() == f"error: {folder}: is a folder; {option} takes a file name"
    assert not (tmp_path / "kept.jsonl").exists() and not any(folder.iterdir())
    # nor one of its inputs
    assert vab_main(["curate", str(index_dir), "--threshold", "0", "--out", str(index_dir / "index.json")]) == 2
    assert "vab never writes over an input" in capsys.readouterr().err


def test_csv_cells_are_never_formulas(tmp_path):
    import csv

    from vab.finetuning.classification import write_per_class_csv

    rows = [{"class": name, "ap": -0.5, "positives": 1, "top1_recall": 1.0}
            for name in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "dog")]
    path = write_per_class_csv(rows, tmp_path / "per_class.csv")
    with open(path, newline="") as f:
        got = [r["class"] for r in csv.DictReader(f)]
    assert got == ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "dog"]
    assert "-0.5" in path.read_text()  # numbers stay numbers


# ---------------------------------------------------------------------- 7. one atomic writer
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_get_the_permissions_of_the_umask(tmp_path, model_dir, mask):
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    old = os.umask(mask)
    try:
        assert generate(clip, "--checkpoint", model_dir, "--out", tmp_path / "out", "--plot") == 0
    finally:
        os.umask(old)
    for name in ("clip.wav", "clip.mp4", "clip.png", ".clip.vab.json"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


@pytest.mark.parametrize("library, error", [
    ("safetensors", "SafetensorError: Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                    "message: \"No space left on device\" })"),
    ("pyav", OSError(28, "No space left on device")),
    ("matplotlib", PermissionError(13, "Permission denied")),
    ("pyarrow", "pyarrow.lib.ArrowIOError: [Errno 122] Disk quota exceeded"),
])
def test_a_full_disk_or_a_refused_write_is_one_line_naming_the_file(tmp_path, library, error):
    from vab.errors import VabError
    from vab.utils import atomic_path

    target = tmp_path / "out" / "file.bin"
    with pytest.raises(VabError) as caught:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise error if isinstance(error, BaseException) else RuntimeError(error)
    text = str(caught.value)
    assert text.startswith(f"{target}: cannot write (") and "\n" not in text
    assert any(w in text for w in ("No space left on device", "Permission denied", "Disk quota exceeded"))
    assert list(target.parent.iterdir()) == []  # no half-written file, no temporary


def test_a_full_disk_stops_generate_with_one_line(tmp_path, model_dir, monkeypatch, capsys):
    from vab import media

    folder = tmp_path / "in"
    for name in ("a", "b"):
        make_video(folder / f"{name}.mp4", seconds=1.0, **SMALL)

    def full(path, *args, **kwargs):
        from vab.utils import atomic_path

        with atomic_path(path):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(media, "write_audio", full)
    out = tmp_path / "out"
    assert generate(folder, "--checkpoint", model_dir, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {out / 'a.wav'}: cannot write (No space left on device)"
    assert outputs(out) == set()  # the mp4 written before the wav was removed with it


# ---------------------------------------------------------------------- 5, 6. data set folders stay usable
EXTRACT = ["--duration", "2", "--fps", "2", "codec.codebook_size=32", "codec.n_fft=512", "codec.griffin_lim_iters=2"]


def extract(*args) -> int:
    return vab_main(["extract", *map(str, args)])


def stored(out: Path) -> dict[str, tuple]:
    from vab.data.store import load_dataset_dir

    table = load_dataset_dir(out / "data").to_dict()
    return {i: (p, tuple(lab)) for i, p, lab in zip(table["id"], table["path"], table["labels"])}


def failures(out: Path) -> dict[str, str]:
    import json

    path = out / "failures.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {json.loads(line)["id"]: json.loads(line)["reason"] for line in lines}


@pytest.mark.parametrize("option, expected", [
    (["--fps", "0"], "extract.fps=0.0 must be in (0, 1000]"),
    (["--duration", "-2"], "extract.duration=-2.0 must be in (0, 3600]"),
    (["--workers", "-1"], "extract.num_workers=-1 must be in [0, 256]"),
    (["extract.chunk_size=0"], "extract.chunk_size=0 must be >= 1"),
    (["codec.name=nope"], "nope"),
])
def test_extract_checks_its_options_before_writing_anything(tmp_path, option, expected, capsys):
    make_video(tmp_path / "in" / "a.mp4", seconds=2.0, **SMALL)
    out = tmp_path / "data"
    assert extract(tmp_path / "in", "--out", out, *EXTRACT, *option) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and expected in err, err
    assert not out.exists()


def test_a_folder_where_every_clip_failed_takes_a_rerun_with_good_options(tmp_path, capsys):
    for i in range(2):
        make_video(tmp_path / "in" / f"a{i}.mp4", seconds=2.0, video=False, freq=300.0 + 100 * i)
    out = tmp_path / "data"
    assert extract(tmp_path / "in", "--out", out, *EXTRACT, "extract.audio_only=false") == 1
    assert set(failures(out)) == {"a0", "a1"}  # the folder says what happened
    capsys.readouterr()
    assert extract(tmp_path / "in", "--out", out, *EXTRACT, "--audio-only") == 0  # other settings: starts afresh
    assert set(stored(out)) == {"a0", "a1"} and not failures(out)


def test_a_name_that_is_not_utf8_is_one_failure(tmp_path):
    import shutil

    folder = tmp_path / "in"
    good = [make_video(folder / f"{n}.mp4", seconds=2.0, freq=200.0 + 50 * i, **SMALL) for i, n in enumerate("ab")]
    shutil.copy(good[0], os.fsencode(folder) + b"/bad\xff\xfe.mp4")
    out = tmp_path / "data"
    assert extract(folder, "--out", out, *EXTRACT) == 1
    assert set(stored(out)) == {"a", "b"}
    assert list(failures(out).values()) == ["the file name is not valid UTF-8 (rename the file)"]
    assert extract(folder, "--out", out, *EXTRACT) == 1  # a re-run skips it like any recorded failure


def test_changed_manifest_rows_are_refused_naming_them(tmp_path, capsys):
    import json

    videos = [make_video(tmp_path / "v" / f"{n}.mp4", seconds=2.0, freq=200.0 + 50 * i, **SMALL)
              for i, n in enumerate("abc")]
    manifest = tmp_path / "m.jsonl"

    def write(rows):
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    rows = [{"id": n, "path": str(p), "label": lab} for n, p, lab in zip("abc", videos, ["dog", "cat", "dog"])]
    write(rows + [{"id": "d", "path": str(tmp_path / "missing.mp4"), "label": "cat"}])
    out = tmp_path / "data"
    assert extract(manifest, "--out", out, *EXTRACT) == 1  # d is missing
    before = stored(out)
    capsys.readouterr()
    rows[1]["label"] = "dog"
    rows[2]["path"] = str(videos[0])
    write(rows + [{"id": "d", "path": str(tmp_path / "missing.mp4"), "label": "cat"}])
    assert extract(manifest, "--out", out, *EXTRACT) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: 2 manifest row(s) changed since they were extracted: b (labels), c (path); "
                   "extract into another --out (or delete the folder) to use the new rows")
    assert stored(out) == before
    # a failed row that now names a file is tried again (not kept as failed)
    rows[1]["label"], rows[2]["path"] = "cat", str(videos[2])
    write(rows + [{"id": "d", "path": str(videos[1]), "label": "cat"}])
    assert extract(manifest, "--out", out, *EXTRACT) == 0
    assert set(stored(out)) == {"a", "b", "c", "d"} and not failures(out)


def test_a_codec_failure_on_one_clip_is_that_clips_failure(tmp_path, monkeypatch):
    from vab.data import extract as ex

    folder = tmp_path / "in"
    for i, n in enumerate("abc"):
        make_video(folder / f"{n}.mp4", seconds=2.0, freq=200.0 + 50 * i, **SMALL)
    real = ex._encode_batch

    def fails_on_b(codec, visual, items, *args):
        if any(b["row"].id == "b" for b in items):
            raise RuntimeError("codec exploded")
        return real(codec, visual, items, *args)

    monkeypatch.setattr(ex, "_encode_batch", fails_on_b)
    out = tmp_path / "data"
    assert extract(folder, "--out", out, *EXTRACT, "extract.batch_size=3") == 1
    assert set(stored(out)) == {"a", "c"} and failures(out) == {"b": "unexpected RuntimeError: codec exploded"}


@pytest.mark.parametrize("script", ["retrieval", "classification"])
def test_fine_tuning_into_its_own_init_folder_is_refused(tmp_path, model_dir, script, capsys):
    import importlib.util
    import shutil

    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    before = digest(model / "model.safetensors")
    path = Path(__file__).resolve().parents[1] / "finetune" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"finetune_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "link").symlink_to(model)  # the same folder under another name
    rc = module.main(["--init", str(model), "--model-out", str(tmp_path / "link"), "data.path=[/nowhere]",
                      f"train.output_dir={tmp_path / 'run'}", "train.tracker=none"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'link'}: is the input {model}; vab never writes over an input (choose another --model-out)"
    assert digest(model / "model.safetensors") == before and not (tmp_path / "run").exists()


def test_extract_never_writes_over_its_manifest(tmp_path, capsys):
    import json

    video = make_video(tmp_path / "a.mp4", seconds=2.0, **SMALL)
    out = tmp_path / "data"
    out.mkdir()
    manifest = out / "failures.jsonl"  # a manifest kept where extraction writes its failures
    manifest.write_text(json.dumps({"path": str(video)}) + "\n")
    before = manifest.read_bytes()
    assert extract(manifest, "--out", out, *EXTRACT) == 2
    assert capsys.readouterr().err.strip() == (f"error: {manifest}: is the input {manifest}; vab never writes over "
                                               "an input (choose another --out)")
    assert manifest.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["failures.jsonl"]


def test_a_query_whose_embedding_is_not_finite_is_one_line(index_dir, model_dir, tmp_path, monkeypatch, capsys):
    import torch

    from vab.search import Embedder

    clip = make_video(tmp_path / "q.mp4", seconds=1.0, **SMALL)
    monkeypatch.setattr(Embedder, "embed_one", lambda self, modality, value: torch.full((8,), float("nan")))
    assert vab_main(["search", str(index_dir), "--query", str(clip), "--checkpoint", str(model_dir), "--json"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {clip}: its video embedding is not finite (NaN or inf)"
