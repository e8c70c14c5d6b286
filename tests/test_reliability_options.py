"""Options as hostile input (issue 25, docs/RELIABILITY.md section 8): every command's
options are checked before anything is written, in one line; random values of every
option of every command give a result or one line, and nothing outside the output."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mediagen import make_video
from tests.test_generate import SMALL, make_model_dir
from tests.test_hub import script
from tests.test_reliability_configs import clip, model_dir  # noqa: F401  (module fixtures: a tiny model, a clip)
from vab.cli import main as vab_main


def one_line_or_result(rc: int, err: str) -> str:
    """The error line of a refused run (rc 2), '' for a result (rc 0 or 1: some inputs
    failed and were listed); never a traceback.  Progress bars drawn before a late refusal
    are not error lines."""
    assert "Traceback" not in err, err
    assert rc in (0, 1, 2), (rc, err)
    if rc != 2:
        return ""
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def exit_code(main, argv: list[str]) -> int:
    """What a command exits with, in-process: argparse refuses a value by SystemExit."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


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
        rc = exit_code(main, [*argv, "--device", device])
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
    (["--precision", "fp8"], "--precision must be one of"), (["--batch-size", "0"], "argument --batch-size: must be an integer in [1, 4096]"),
    (["--steps", "0"], "steps must be an integer in [1, 1000]"), (["--ar-top-k", "-1"], "top-k must be"),
])
def test_evaluation_checks_its_options_before_scoring_anything(model_dir, clip, tmp_path, capsys, bad, words):
    """Was: --precision / --batch-size refused only after the real audio was scored and recorded."""
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(model_dir), "--videos", str(clip.parent), "--out", str(out), "--device", "cpu", *bad]
    line = one_line_or_result(exit_code(script("eval/generation").main, argv), capsys.readouterr().err)
    assert words in line and not out.exists(), line


@pytest.mark.parametrize("bad, words", [
    (["--cfg", "1e308"], "guidance must be in [-100, 100]"), (["--temperature", "1e-300"], "temperature must be 0"),
    (["--steps", "1000000"], "steps must be an integer in [1, 1000]"), (["--seed", str(2**70)], "seed must be"),
    (["--mask-temperature", "inf"], "mask temperature must be"), (["--batch-size", "99999"], "argument --batch-size: must be an integer in [1, 4096]"),
])
def test_sampling_values_that_overflow_or_never_end_are_one_line(model_dir, clip, tmp_path, capsys, bad, words):
    """Was: --cfg 1e308 and --temperature 1e-300 failed every video ('unexpected RuntimeError: value
    cannot be converted to type float without overflow', 'index 16 is out of bounds'), and
    --steps 1000000 ran for days."""
    out = tmp_path / "gen"
    rc = exit_code(vab_main, ["generate", str(clip), "--checkpoint", str(model_dir), "--out", str(out), "--device", "cpu",
                              *bad])
    line = one_line_or_result(rc, capsys.readouterr().err)
    assert rc == 2 and words in line and not out.exists(), line


# ---------------------------------------------------------------------- random options of every command
# Values a hostile user (or a typo) gives an option, by the option's type; paths are relative to
# the example's own working folder, or the inputs' folders (never a system folder).
HOSTILE_INT = ["-1", "0", "1", "2", str(2**31), str(2**63), "-" + str(2**63 + 1), "1e3", "nan", "x", ""]
HOSTILE_FLOAT = ["nan", "inf", "-inf", "-1", "0", "1e-300", "1e308", "0.5", "2", "x", ""]
HOSTILE_TEXT = ["", " ", "-", "x", "ünï cødé 日本", "a\nb", "[red]x[/red]", "${oc.env:HOME}", "../escape", "%s%n",
                "new/deep/name"]
#: options whose valid values make work of that size: fuzzed with small valid values and invalid
#: ones only, so that an example that passes the checks still finishes in seconds
WORK_SIZE = {
    "--train": ["-1", "0", "1", "2", str(10**7), "x"], "--valid": ["-1", "0", "1", str(10**7)],
    "--test": ["-1", "0", "1", str(10**7)], "--seconds": ["nan", "inf", "-1", "0.5", "1", "2", "1e9"],
    "--size": ["-16", "0", "15", "16", "17", "32", "100000"], "--fps": ["nan", "inf", "-1", "0", "1e-9", "2", "4", "1e9"],
    "--steps": ["-1", "0", "1", "2", str(10**6), "x"], "--duration": ["nan", "inf", "-1", "0", "0.5", "1", "1e308"],
    "--limit": ["-1", "0", "1", "2", str(2**63)],
}
#: options not fuzzed: their valid values would start something that does not end (a server),
#: or a run of many minutes (the demo into a new folder)
FIXED = {"vab demo": {"--out"}, "vab app": {"--checkpoint"}}


@pytest.fixture(scope="module")
def fuzz_inputs(tmp_path_factory, model_dir) -> dict[str, Path]:
    """The inputs every fuzzed command reads: videos, a model, a data set and a model that fits it,
    an index, a folder holding a demo run of other settings, a text file and an empty folder."""
    import json
    import shutil

    from tests.synthdata import make_synthetic_dataset, tiny_overrides

    root = tmp_path_factory.mktemp("fuzz-inputs")
    clips = root / "clips"
    for i, freq in enumerate((300.0, 600.0)):
        make_video(clips / f"c{i}.mp4", seconds=1.0, freq=freq, **SMALL)
    data = make_synthetic_dataset(root / "data", per_class={"train": 2, "valid": 1, "test": 1})
    fitting = make_model_dir(root / "fitting", *[o for o in tiny_overrides(data) if not o.startswith("data.")])
    model = Path(shutil.copytree(model_dir, root / "model"))
    assert vab_main(["embed", str(clips), "--checkpoint", str(model), "--out", str(root / "index")]) == 0
    (root / "demo").mkdir()
    (root / "demo" / "demo.json").write_text(json.dumps({"name": "another demo"}))
    (root / "notes.txt").write_text("not a model, not a video")
    (root / "empty").mkdir()
    return {"root": root, "clips": clips, "clip": clips / "c0.mp4", "model": model, "data": data,
            "fitting": fitting, "index": root / "index", "demo": root / "demo", "text": root / "notes.txt",
            "empty": root / "empty"}


def test_fine_tuning_checks_the_data_against_the_model_it_starts_from(fuzz_inputs, tmp_path, capsys):
    """Found by the fuzz: `finetune/classification.py --init MODEL codec.codebook_size=32` checked
    the data against the overridden config and crashed in the embedding lookup (IndexError)
    when the model's own codebooks were smaller; both fine-tuning recipes now read the data
    at the settings the initial model was trained with."""
    from tests.synthdata import tiny_overrides

    for name in ("finetune/classification", "finetune/retrieval"):
        run = tmp_path / name.replace("/", "-")
        rc = script(name).main(["--init", str(fuzz_inputs["model"]), *tiny_overrides(fuzz_inputs["data"]),
                                "train.max_steps=1", "train.batch_size=4", f"train.output_dir={run}"])
        line = one_line_or_result(rc, capsys.readouterr().err)
        assert rc == 2 and "does not match the model config: codec.n_fft: data 1024, model 512" in line, line
        assert not run.exists()


def command_baselines(i: dict[str, Path]) -> dict[str, tuple]:
    """(runner, parser, argv) of every command: a valid, cheap run whose outputs are relative paths."""
    from tests.synthdata import tiny_overrides
    from vab.cli import build_parser

    train = [*tiny_overrides(i["data"]), "train.max_steps=1", "train.batch_size=4", "train.tracker=none",
             "train.valid_every=0", "train.checkpoint_every=0", "train.output_dir=run", "train.warmup_steps=0"]
    vab = {
        "synth": ["synth", "world", *SYNTH_OK],
        "extract": ["extract", str(i["clips"]), "--out", "data", "--duration", "1", "--fps", "2"],
        "generate": ["generate", str(i["clip"]), "--checkpoint", str(i["model"]), "--out", "gen", "--steps", "2",
                     "--device", "cpu"],
        "info": ["info", str(i["model"])],
        "embed": ["embed", str(i["clips"]), "--checkpoint", str(i["model"]), "--out", "index"],
        "search": ["search", str(i["index"]), "--query", str(i["clip"])],
        "curate": ["curate", str(i["index"]), "--threshold", "0", "--out", "kept.jsonl"],
        "demo": ["demo", "--out", str(i["demo"]), "--quick"],
        "app": ["app", "--checkpoint", "no-such-model"],
        "push": ["push", str(i["model"]), "org/name", "--dry-run"],
    }
    scripts = {
        "eval/generation": ["--checkpoint", str(i["model"]), "--videos", str(i["clips"]), "--out", "eval",
                            "--steps", "2", "--device", "cpu"],
        "eval/retrieval": ["--checkpoint", str(i["fitting"]), f"data.path=[{i['data']}]", "--device", "cpu"],
        "eval/classification": ["--checkpoint", str(i["fitting"]), f"data.path=[{i['data']}]"],
        "recipes/pretrain": ["--config", "tiny", *train, "model.width=32", "model.layers=2", "model.heads=2",
                             "model.ffn=64", "model.expert_layers=1"],
        "recipes/extract": [str(i["clips"]), "--out", "data", "--duration", "1", "--fps", "2"],
        "finetune/retrieval": ["--init", str(i["fitting"]), *train],
        "finetune/classification": ["--init", str(i["fitting"]), *train],
    }
    def command_parser(name: str) -> argparse.ArgumentParser:
        parser = build_parser(name)  # only the command about to run gets its real parser
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]

    runs = {f"vab {name}": (vab_main, command_parser(name), argv) for name, argv in vab.items()}
    for name, argv in scripts.items():
        module = script(name)
        built = module.parser() if hasattr(module, "parser") else None
        runs[f"{name}.py"] = (module.main, built, argv)
    return runs


def option_values(action: argparse.Action, i: dict[str, Path]) -> list[str | None]:
    """The values the fuzz gives one option (None: a flag given without a value)."""
    if action.nargs == 0:
        return [None]
    option = action.option_strings[-1]
    if option in WORK_SIZE:
        return WORK_SIZE[option]
    if action.choices:
        return [*map(str, action.choices), "nope", ""]
    if action.type is int:
        return HOSTILE_INT
    if action.type is float:
        return HOSTILE_FLOAT
    paths = [str(i[k]) for k in ("text", "empty", "clip", "model", "index", "data")]
    return [*HOSTILE_TEXT, *paths, "out-here"]


def script_parser(module) -> argparse.ArgumentParser:
    """The parser a script of recipes/, finetune/ or eval/ hands to `vab.cli.run_script`."""
    if hasattr(module, "parser"):
        return module.parser()
    captured = []
    real = module.run_script
    module.run_script = lambda parser, body, argv=None: captured.append(parser) or 0
    try:
        module.main([])
    finally:
        module.run_script = real
    return captured[0]


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime ns)} of every file under `folder`."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def with_options(argv: list[str], options: dict[str, str | None], parser: argparse.ArgumentParser) -> list[str]:
    """`argv` with each of `options` given the fuzzed value (its own value in `argv` removed)."""
    takes_value = {o: a.nargs != 0 for a in parser._actions for o in a.option_strings}
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in options:
            skip = takes_value.get(word, False)
            continue
        out.append(word)
    return out + [o if v is None else f"{o}={v}" for o, v in options.items()]


FUZZED = ["vab synth", "vab extract", "vab generate", "vab info", "vab embed", "vab search", "vab curate", "vab demo",
          "vab app", "vab push", "eval/generation.py", "eval/retrieval.py", "eval/classification.py",
          "recipes/pretrain.py", "recipes/extract.py", "finetune/retrieval.py", "finetune/classification.py"]
#: commands that train or generate on every example that passes the checks get fewer examples
HEAVY = {"vab extract", "eval/generation.py", "recipes/pretrain.py", "recipes/extract.py", "finetune/retrieval.py",
         "finetune/classification.py"}


#: examples per command; VAB_FUZZ_EXAMPLES=100 for a longer hunt than the suite's
FUZZ_EXAMPLES = int(os.environ.get("VAB_FUZZ_EXAMPLES", "10"))


@pytest.mark.parametrize("command", FUZZED)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_options_of_every_command_give_a_result_or_one_line(command, fuzz_inputs, tmp_path_factory,
                                                                   monkeypatch, data):
    """1-3 options of a command (every option it has, found from its parser) get hostile values
    (negative, zero, huge, NaN / inf, text, markup, interpolations, files and folders of the
    wrong kind, paths that escape); the run ends in a result or exactly one `error:` line (exit
    2), never a traceback; it writes nothing outside its working folder, leaves no temporary
    file, changes none of its inputs, and a refused run writes nothing at all."""
    import contextlib
    import io
    import shutil
    import tempfile

    if command in HEAVY and data.draw(st.integers(0, 9), label="budget") >= 6:
        return  # fewer examples for commands that do real work on valid values
    example = tmp_path_factory.mktemp("example")
    work, scratch = example / "cwd", example / "tmp"
    work.mkdir()
    scratch.mkdir()
    # each example reads its own copy of the inputs (a run may legitimately write where it is told)
    inputs = {k: example / "in" / v.relative_to(fuzz_inputs["root"]) for k, v in fuzz_inputs.items()}
    shutil.copytree(fuzz_inputs["root"], inputs["root"])
    runner, parser, argv = command_baselines(inputs)[command]
    parser = parser or script_parser(script(command.removesuffix(".py")))
    actions = [a for a in parser._actions
               if a.option_strings and a.dest != "help" and a.option_strings[-1] not in FIXED.get(command, ())]
    chosen = data.draw(st.lists(st.sampled_from(actions), min_size=1, max_size=3, unique_by=id), label="options")
    options = {a.option_strings[-1]: data.draw(st.sampled_from(option_values(a, inputs)), label=a.dest)
               for a in chosen}
    argv = with_options(argv, options, parser)
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    before = tree(inputs["root"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = exit_code(runner, argv)
    line = one_line_or_result(rc, err.getvalue())
    # no input changed and nothing written among them, except where an option said to write
    named = [str(Path(v).relative_to(inputs["root"])) for v in options.values()
             if v and Path(v).is_absolute() and Path(v).is_relative_to(inputs["root"])]
    after = tree(inputs["root"])
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(any(k == n or k.startswith(n + "/") for n in named) for k in changed), (argv, line, changed)
    assert {p.name for p in example.iterdir()} <= {"cwd", "tmp", "in", "escape"}, (argv, line)
    # no temporary left behind (torch's own compiler cache, made once per process, is torch's)
    left = [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")]
    assert not left, (argv, line, left)
    leftovers = [p for p in example.rglob("*") if ".tmp" in p.name]
    assert not leftovers, (argv, line, leftovers)
    if rc == 2:  # options are checked before anything is written
        written = [str(f.relative_to(example)) for folder in (work, example / "escape") if folder.exists()
                   for f in folder.rglob("*") if f.is_file()]
        assert not written and not changed, (argv, line, written, changed)
