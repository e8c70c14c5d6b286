"""Options as hostile input (issue 25, docs/RELIABILITY.md section 8): every command's
options are checked before anything is written, in one line; random values of every
option of every command give a result or one line, and nothing outside the output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.mediagen import make_video
from tests.test_generate import SMALL, make_model_dir
from vab.cli import main as vab_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.0, **SMALL)


def script(name: str):
    """A script of recipes/, finetune/ or eval/ loaded so its main(argv) runs in-process."""
    spec = importlib.util.spec_from_file_location(name.replace("/", "_"), REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_or_result(rc: int, err: str) -> str:
    """The error line of a refused run (rc 2), '' for a result (rc 0 or 1: some inputs
    failed and were listed); never a traceback."""
    assert "Traceback" not in err, err
    assert rc in (0, 1, 2), (rc, err)
    if rc != 2:
        return ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ---------------------------------------------------------------------- one device check
def device_commands(model_dir: Path, clip: Path, out: Path) -> dict[str, tuple]:
    """(runner, argv) of every command and script with a --device option; each writes under `out`."""
    return {
        "vab generate": (vab_main, ["generate", str(clip), "--checkpoint", str(model_dir), "--out", str(out / "gen")]),
        "vab embed": (vab_main, ["embed", str(clip), "--checkpoint", str(model_dir), "--out", str(out / "index")]),
        "vab search": (vab_main, ["search", str(out / "no-index"), "--query", str(clip),
                                  "--checkpoint", str(model_dir)]),
        "vab curate": (vab_main, ["curate", str(out / "no-data"), "--checkpoint", str(model_dir),
                                  "--threshold", "0", "--out", str(out / "kept.jsonl")]),
        "vab extract": (vab_main, ["extract", str(clip.parent), "--out", str(out / "data")]),
        "vab app": (vab_main, ["app", "--checkpoint", str(model_dir)]),
        "eval/generation.py": ("eval/generation", ["--checkpoint", str(model_dir), "--videos", str(clip.parent),
                                                   "--out", str(out / "eval")]),
        "eval/retrieval.py": ("eval/retrieval", ["--checkpoint", str(model_dir), f"data.path=[{out / 'no-data'}]"]),
        "eval/classification.py": ("eval/classification", ["--checkpoint", str(model_dir),
                                                           f"data.path=[{out / 'no-data'}]"]),
        "recipes/extract.py": ("recipes/extract", [str(clip.parent), "--out", str(out / "data2")]),
    }


@pytest.mark.parametrize("device, words", [
    ("cuda", "no CUDA GPU"), ("cuda:3", "no CUDA GPU"), ("mps", "no Apple GPU"),
    ("cdua", "not a device"), ("meta", "not a device vab runs on"), ("", "not a device"),
])
def test_every_command_refuses_an_absent_device_in_one_line_before_any_output(model_dir, clip, tmp_path, capsys,
                                                                              device, words):
    """Was: a traceback in eval/generation.py, vab embed, vab search and vab curate, and
    evaluation wrote its records before it failed."""
    out = tmp_path / "out"
    out.mkdir()
    for name, (runner, argv) in device_commands(model_dir, clip, out).items():
        main = script(runner).main if isinstance(runner, str) else runner
        rc = main([*argv, "--device", device])
        line = one_line_or_result(rc, capsys.readouterr().err)
        assert rc == 2 and "--device" in line and words in line, (name, line)
        assert files_under(out) == set(), (name, files_under(out))


# ---------------------------------------------------------------------- vab synth
SYNTH_OK = ["--classes", "2", "--train", "2", "--valid", "0", "--test", "0", "--seconds", "1", "--fps", "2",
            "--size", "16"]


@pytest.mark.parametrize("bad, words", [
    (["--seed", "-1"], "--seed must be in [0,"), (["--seed", str(2**70)], "--seed must be in [0,"),
    (["--seconds", "nan"], "--seconds must be a finite number"), (["--seconds", "inf"], "--seconds must be a finite"),
    (["--seconds", "1e12"], "--seconds must be in [1, 3600]"), (["--fps", "-2"], "--fps must be in (0, 240]"),
    (["--fps", "1e-300"], "at least one"), (["--size", "100000"], "--size must be in [16, 4096]"),
    (["--size", "17"], "--size must be even"), (["--train", str(10**12)], "--train must be in [1, 1000000]"),
    (["--test", "-1"], "--test must be in [0,"),
    (["--seconds", "3600", "--fps", "240", "--size", "1024"], "GiB per clip"),
])
def test_synth_edge_values_are_one_line_before_the_folder_exists(tmp_path, capsys, bad, words):
    """Was: tracebacks or memory errors, and a negative seed left a folder whose world.json
    refused the corrected re-run ("made with other parameters")."""
    out = tmp_path / "world"
    rc = vab_main(["synth", str(out), *SYNTH_OK, *bad])
    line = one_line_or_result(rc, capsys.readouterr().err)
    assert rc == 2 and words in line, line
    assert not out.exists()
    assert vab_main(["synth", str(out), *SYNTH_OK]) == 0  # the corrected run is not blocked
    assert (out / "manifest.csv").is_file()


# ---------------------------------------------------------------------- outputs named wrongly, options checked first
def test_an_output_folder_that_is_a_file_is_one_line_before_any_work(model_dir, clip, tmp_path, capsys):
    """Was: `vab demo --out FILE` and `eval/generation.py --out FILE` were tracebacks (the
    latter after scoring the real audio); `eval/retrieval.py --json DIR` and
    `eval/classification.py --csv DIR` failed only after the evaluation."""
    taken = tmp_path / "taken"
    taken.write_text("mine")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    data = tmp_path / "no-data"
    runs = {
        "vab demo": (vab_main, ["demo", "--out", str(taken), "--quick"], "is a file"),
        "vab demo (under a file)": (vab_main, ["demo", "--out", str(taken / "sub"), "--quick"], "is a file"),
        "vab synth": (vab_main, ["synth", str(taken), *SYNTH_OK], "is a file"),
        "eval/generation.py": ("eval/generation", ["--checkpoint", str(model_dir), "--videos", str(clip.parent),
                                                   "--out", str(taken), "--device", "cpu"], "is a file"),
        "eval/retrieval.py": ("eval/retrieval", ["--checkpoint", str(model_dir), f"data.path=[{data}]",
                                                 "--json", str(folder)], "--json takes a file name"),
        "eval/classification.py --csv": ("eval/classification", ["--checkpoint", str(model_dir),
                                                                 f"data.path=[{data}]", "--csv", str(folder)],
                                         "--csv takes a file name"),
        "eval/classification.py --json": ("eval/classification", ["--checkpoint", str(model_dir),
                                                                  f"data.path=[{data}]", "--json",
                                                                  str(taken / "m.json")], "is a file"),
    }
    for name, (runner, argv, words) in runs.items():
        main = script(runner).main if isinstance(runner, str) else runner
        line = one_line_or_result(main(argv), capsys.readouterr().err)
        assert line and words in line, (name, line)
    assert taken.read_text() == "mine" and files_under(tmp_path) == {"taken", "a_folder"}


@pytest.mark.parametrize("bad, words", [
    (["--precision", "fp8"], "--precision must be one of"), (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--steps", "0"], "steps must be an integer >= 1"), (["--ar-top-k", "-1"], "top-k must be"),
])
def test_evaluation_checks_its_options_before_scoring_anything(model_dir, clip, tmp_path, capsys, bad, words):
    """Was: --precision / --batch-size refused only after the real audio was scored and recorded."""
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(model_dir), "--videos", str(clip.parent), "--out", str(out), "--device", "cpu", *bad]
    line = one_line_or_result(script("eval/generation").main(argv), capsys.readouterr().err)
    assert words in line and not out.exists(), line
