"""The bad-input suite (docs/RELIABILITY.md): every awkward or broken file of
tests/badmedia.py through `vab extract`, `vab generate`, `vab embed` and the recipes.

Each file gives a correct result or a one-line reason naming it; a batch goes on past
bad files and exits 1 at the end; nothing half-written is left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.badmedia import UNICODE_NAME, make_bad_media
from tests.test_generate import FAST_ARGS, make_model_dir
from vab import media
from vab.cli import main as vab_main

EXTRACT_FAST = ["--duration", "2", "--fps", "2", "codec.codebook_size=32", "codec.n_fft=512",
                "codec.griffin_lim_iters=2"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return make_bad_media(tmp_path_factory.mktemp("bad") / "in")


@pytest.fixture(scope="module")
def folder(cases) -> Path:
    return next(iter(cases.values())).path.parent


@pytest.fixture(scope="module")
def empty(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("empty")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


def error_lines(err: str) -> list[str]:
    """stderr lines that report a problem (the summary lines and `error:` lines)."""
    return [line.strip() for line in err.splitlines() if line.strip()]


def assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Error:" not in err.replace("error:", ""), err


def listed(err: str, path: Path) -> str:
    """The one line of the failure list naming `path` (exactly one)."""
    lines = [line for line in error_lines(err) if line.startswith(f"{path}:")]
    assert len(lines) == 1, (path, err)
    return lines[0]


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def hidden(folder: Path) -> set[str]:
    """Hidden names (temporaries) other than `vab generate`'s source records."""
    return {p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".vab.json")}


# ---------------------------------------------------------------------- vab extract
def test_extract_batch_of_bad_media(cases, folder, tmp_path, capsys):
    from tests.test_extract import load_columns

    out = tmp_path / "data"
    assert vab_main(["extract", str(folder), "--out", str(out), *EXTRACT_FAST]) == 1
    err = capsys.readouterr().err
    assert_no_traceback(err)
    failures = {json.loads(line)["path"]: json.loads(line)["reason"]
                for line in (out / "failures.jsonl").read_text().splitlines()}
    bad = {str(c.path): c for c in cases.values() if not c.usable}
    assert set(failures) == set(bad)
    for path, reason in failures.items():
        assert bad[path].problem in reason and "\n" not in reason
    cols = load_columns(out)
    usable = {c.path.stem for c in cases.values() if c.usable}
    assert set(cols["id"]) == usable  # the unicode name is an id like any other
    assert cols["tokens"].shape[1:] == (4, 100)  # 4 levels x 2 s at 50 Hz
    assert cols["features"].shape[1:] == (4, 813)  # 2 s at 2 fps, hog-colour at grid 8
    row = {i: k for k, i in enumerate(cols["id"])}
    for short in ("one_frame", "uhd_4k"):  # one picture, repeated over the whole clip
        feats = cols["features"][row[short]]
        assert np.all(feats == feats[0]) and np.isfinite(feats.astype(np.float32)).all()
    assert not np.all(cols["features"][row["vfr"]] == cols["features"][row["vfr"]][0])
    # the rerun skips everything done and the same files fail again (exit 1)
    assert vab_main(["extract", str(folder), "--out", str(out), *EXTRACT_FAST]) == 1
    assert len(load_columns(out)["id"]) == len(usable)


def test_extract_audio_only_mode_takes_the_audio_only_file(cases, folder, tmp_path, capsys):
    from tests.test_extract import load_columns

    out = tmp_path / "audio"
    assert vab_main(["extract", str(folder), "--out", str(out), "--audio-only", *EXTRACT_FAST]) == 1
    failures = [json.loads(line)["id"] for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(failures) == ["silent", "text", "truncated", "zero_bytes"]
    assert "audio_only" in load_columns(out)["id"]


@pytest.mark.parametrize("what", ["missing", "empty", "zero", "text"])
def test_extract_bad_manifest_is_one_line(what, cases, empty, tmp_path, capsys):
    target = {"missing": tmp_path / "nope.csv", "empty": empty, "zero": cases["zero_bytes"].path,
              "text": cases["text"].path}[what]
    out = tmp_path / "o"
    assert vab_main(["extract", str(target), "--out", str(out), *EXTRACT_FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and str(target) in err, err
    assert not (out / "data").exists()


# ---------------------------------------------------------------------- vab generate
def test_generate_batch_of_bad_media(cases, folder, empty, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "missing.mp4"
    args = ["generate", str(folder), str(empty), str(missing), "--checkpoint", str(model_dir), "--out", str(out),
            "--device", "cpu", "--batch-size", "3", *FAST_ARGS]
    assert vab_main(args) == 1
    err = capsys.readouterr().err
    assert_no_traceback(err)
    assert "file not found" in listed(err, missing)
    assert "no video files" in listed(err, empty)
    bad = [c for c in cases.values() if not c.usable and c.has_video is not False or c.name == "audio_only"]
    for case in bad:
        if case.name == "silent":
            continue  # a silent video is what generation is for
        assert case.problem in listed(err, case.path)
    made = [c for c in cases.values() if c.usable or c.name == "silent"]
    assert visible(out) == {f"{c.path.stem}.{s}" for c in made for s in ("wav", "mp4")}
    assert not hidden(out)  # no temporaries
    for case in made:
        seconds = len(media.read_audio(out / f"{case.path.stem}.wav", 16000)) / 16000
        info = media.probe(out / f"{case.path.stem}.mp4")
        assert info.has_video and info.has_audio
        if case.seconds is not None:
            assert abs(seconds - case.seconds) <= 0.1, (case.name, seconds)
        else:  # truncated: as long as what is left of the video
            assert 0 < seconds < 4.0
        assert abs(info.duration - seconds) <= 0.15, case.name
    # the video stream is copied: size and rotation as in the source
    assert (media.probe(out / "uhd_4k.mp4").width, media.probe(out / "uhd_4k.mp4").height) == (3840, 2160)
    assert media.probe(out / "rotated_90.mp4").rotation == 90
    assert (out / UNICODE_NAME.replace(".mp4", ".wav")).is_file()


def test_generate_single_bad_file_exits_one_with_one_line(cases, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    for name in ("zero_bytes", "text", "truncated", "audio_only"):
        case = cases[name]
        args = ["generate", str(case.path), "--checkpoint", str(model_dir), "--out", str(out), "--device", "cpu",
                *FAST_ARGS]
        assert vab_main(args) == 1
        err = capsys.readouterr().err
        assert_no_traceback(err)
        assert case.problem in listed(err, case.path)
    assert not out.exists()  # nothing to write: no (empty) output folder either


# ---------------------------------------------------------------------- vab embed
def test_embed_batch_of_bad_media(cases, folder, model_dir, tmp_path, capsys):
    from vab.search import Index

    out = tmp_path / "index"
    assert vab_main(["embed", str(folder), "--checkpoint", str(model_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert_no_traceback(err)
    for case in cases.values():
        if not case.usable:
            assert case.problem in listed(err, case.path)
    index = Index.load(out)
    assert set(index.ids) == {c.path.stem for c in cases.values() if c.usable}
    assert index.audio.shape == index.video.shape and bool(index.audio.isfinite().all())
    assert visible(out) == {"embeddings.safetensors", "index.json"} and not hidden(out)


@pytest.mark.parametrize("what", ["missing", "empty", "zero"])
def test_embed_bad_input_gives_no_index(what, cases, empty, model_dir, tmp_path, capsys):
    target = {"missing": tmp_path / "nope", "empty": empty, "zero": cases["zero_bytes"].path}[what]
    out = tmp_path / "index"
    rc = vab_main(["embed", str(target), "--checkpoint", str(model_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert_no_traceback(err)
    assert rc == (2 if what == "missing" else 1)
    assert any(line.startswith((f"{target}:", f"error: {target}:")) for line in error_lines(err)), err
    assert not out.exists() or not any(out.iterdir())


def test_search_query_of_one_frame_video(cases, folder, model_dir, tmp_path, capsys):
    from vab.search import Embedder

    embedder = Embedder(model_dir)
    for name in ("one_frame", "uhd_4k", "odd_33x17", "rotated_90", "unicode_name"):
        vector = embedder.embed_media(cases[name].path, "video")
        assert vector.shape == (32,) and bool(vector.isfinite().all())
    with pytest.raises(Exception, match="no video stream"):
        embedder.embed_media(cases["audio_only"].path, "video")


# ---------------------------------------------------------------------- recipes
def run_script(script: str, *args: str) -> int:
    import runpy
    import sys

    module = runpy.run_path(str(REPO / script), run_name="not_main")
    old = sys.argv
    try:
        return module["main"](argv=list(args))
    finally:
        sys.argv = old


@pytest.mark.parametrize("what", ["missing", "empty", "videos", "zero"])
def test_pretrain_recipe_refuses_bad_data_paths(what, cases, folder, empty, tmp_path, capsys):
    target = {"missing": tmp_path / "nope", "empty": empty, "videos": folder, "zero": cases["zero_bytes"].path}[what]
    run = tmp_path / "run"
    rc = run_script("recipes/pretrain.py", "--config", "tiny", f"data.path=[{target}]", "train.max_steps=1",
                    f"train.output_dir={run}")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and str(target) in err and "extract" in err, err
    assert not run.exists()


@pytest.mark.parametrize("script", ["finetune/retrieval.py", "finetune/classification.py"])
def test_finetune_recipes_refuse_a_missing_or_empty_init(script, empty, tmp_path, capsys):
    for init in (tmp_path / "nope", empty):
        rc = run_script(script, "--init", str(init), f"train.output_dir={tmp_path / 'run'}")
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.count("\n") == 0 and str(init) in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", ["eval/retrieval.py", "eval/classification.py"])
def test_eval_scripts_refuse_a_missing_checkpoint(script, model_dir, tmp_path, capsys):
    rc = run_script(script, "--checkpoint", str(tmp_path / "nope"), f"data.path=[{tmp_path / 'nodata'}]")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "nope" in err, err


def test_extract_recipe_entry_point_on_bad_media(cases, folder, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "data"
    res = subprocess.run([sys.executable, str(REPO / "recipes/extract.py"), str(folder), "--out", str(out),
                          *EXTRACT_FAST], cwd=REPO, capture_output=True, text=True, check=False)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    failed = {json.loads(line)["id"] for line in (out / "failures.jsonl").read_text().splitlines()}
    assert failed == {c.path.stem for c in cases.values() if not c.usable}


def test_search_queries_prompts_and_edits_with_bad_files(cases, folder, model_dir, tmp_path, capsys):
    index = tmp_path / "index"
    assert vab_main(["embed", str(cases["mono_16k"].path), "--checkpoint", str(model_dir), "--out", str(index)]) == 0
    capsys.readouterr()
    for name in ("zero_bytes", "text", "truncated", "audio_only"):
        case = cases[name]
        assert vab_main(["search", str(index), "--query", str(case.path), "--by", "video", "--in", "audio"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"error: {case.path}: ") and case.problem in err, err
    for name in ("one_frame", "uhd_4k", "rotated_90", "unicode_name"):  # awkward but usable queries
        assert vab_main(["search", str(index), "--query", str(cases[name].path), "--by", "video", "--in", "audio"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    gen = ["--checkpoint", str(model_dir), "--out", str(out), "--device", "cpu", *FAST_ARGS]
    assert vab_main(["generate", str(cases["mono_16k"].path), *gen, "--prompt", str(cases["text"].path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {cases['text'].path}: not a media file (cannot open container: Invalid data found when processing input)"
    # editing needs a soundtrack: the silent video fails, the other one is edited
    assert vab_main(["generate", str(cases["silent"].path), str(cases["stereo_44k"].path), *gen, "--edit", "0.2-0.5"]) == 1
    assert "no audio track to edit" in listed(capsys.readouterr().err, cases["silent"].path)
    assert sorted(visible(out)) == ["stereo_44k.mp4", "stereo_44k.wav"] and not hidden(out)
