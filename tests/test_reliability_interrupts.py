"""Interrupted runs and full or unwritable disks (docs/RELIABILITY.md).

- pretraining SIGKILLed at random points (mid-step, while writing a checkpoint, right
  after one) and resumed ends with exactly the weights of an uninterrupted run;
- a full disk (a write raising ENOSPC) during generation, extraction or a checkpoint is a
  one-line error, leaves no half-written file, and a re-run continues;
- an output folder that cannot be written is refused before any work.

Extraction killed and re-run: tests/test_extract.py::test_sigkill_halfway_then_rerun_gives_identical_data_set.
A killed `vab generate` batch: tests/test_generate.py::test_sigkilled_batch_resumes_without_half_written_files.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.mediagen import make_video
from tests.synthdata import make_synthetic_dataset, tiny_overrides
from tests.test_generate import FAST_ARGS, SMALL, make_model_dir
from vab.cli import main as vab_main

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 24, 3
TINY = ["model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64",
        "train.batch_size=4", f"train.max_steps={STEPS}", f"train.checkpoint_every={EVERY}", "train.keep_checkpoints=2",
        "train.valid_every=1000", "train.log_every=1", "train.tracker=none", "train.warmup_steps=2"]


def no_space(path: str | os.PathLike = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data",
                                  per_class={"train": 10, "valid": 1, "test": 1})


def pretrain_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "recipes/pretrain.py"), "--config", "tiny", *tiny_overrides(data), *TINY,
            f"train.output_dir={run}", *extra]


class Watched:
    """A subprocess whose merged output is collected line by line in a thread."""

    def __init__(self, cmd: list[str]):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.thread.start()

    def steps_logged(self) -> int:
        steps = [int(line.split()[1].split("/")[0]) for line in list(self.lines)
                 if line.startswith("step ") and "train/loss" in line]
        return max(steps, default=0)

    def finish(self, kill: bool) -> int:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self.thread.join()
        return rc


def complete_steps(run: Path) -> list[int]:
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name[5:]) for p in folder.iterdir() if p.name.startswith("step_"))


def test_sigkilled_pretraining_resumes_to_identical_weights(data, tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(pretrain_cmd(data, reference), cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    rng = random.Random(8)
    run = tmp_path / "killed"
    plans = ["mid-step", "while saving", "after a checkpoint"]
    rng.shuffle(plans)
    kills = []
    for plan in plans + ["to the end"]:
        proc = Watched(pretrain_cmd(data, run, "--resume", "auto"))
        start = max(complete_steps(run), default=0)
        target = start + rng.randint(1, EVERY - 1) if plan == "mid-step" else None
        killed = False
        while proc.proc.poll() is None and plan != "to the end":
            staging = [p for p in (run / "checkpoints").glob(".tmp-step_*")] if (run / "checkpoints").is_dir() else []
            if plan == "mid-step" and proc.steps_logged() >= target:
                time.sleep(rng.uniform(0.0, 0.02))  # somewhere inside the next step
                killed = True
            else:
                saving = plan == "while saving" and bool(staging)
                saved = plan == "after a checkpoint" and max(complete_steps(run), default=0) > start
                killed = saving or saved
            if killed:
                break
            time.sleep(0.001)
        rc = proc.finish(kill=killed)
        if killed:
            assert rc == -signal.SIGKILL, "".join(proc.lines)[-2000:]
            kills.append((plan, proc.steps_logged()))
            # whatever carries a final checkpoint name is complete
            for step in complete_steps(run):
                assert (run / "checkpoints" / f"step_{step:07d}" / "trainer_state.json").is_file()
        else:
            assert rc == 0, "".join(proc.lines)[-3000:]
            break
    assert len(kills) >= 2, kills  # the run was really interrupted, at different kinds of points
    assert (run / "model" / "model.safetensors").is_file()
    want = load_file(str(reference / "model" / "model.safetensors"))
    got = load_file(str(run / "model" / "model.safetensors"))
    assert sorted(got) == sorted(want)
    different = [k for k in want if not torch.equal(want[k], got[k])]
    assert not different, (kills, different)
    assert not list((run / "checkpoints").glob(".tmp-*"))


# ---------------------------------------------------------------------- disk full
def test_disk_full_while_generating_is_one_line_and_leaves_nothing_half_written(tmp_path, monkeypatch, capsys):
    from vab import media

    model = make_model_dir(tmp_path / "model")
    folder = tmp_path / "in"
    for name in ("one", "two", "three"):
        make_video(folder / f"{name}.mp4", seconds=1.0, **SMALL)
    out = tmp_path / "out"
    real, calls = media._pcm16, []

    def disk_fills_on_the_second_wav(wav):
        calls.append(1)
        if len(calls) == 2:  # the second wav: header written, samples do not fit
            raise no_space()
        return real(wav)

    monkeypatch.setattr(media, "_pcm16", disk_fills_on_the_second_wav)
    args = ["generate", str(folder), "--checkpoint", str(model), "--out", str(out), "--device", "cpu", *FAST_ARGS]
    assert vab_main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "No space left on device" in err[0] and str(out) in err[0], err
    # the first video is complete, the second left nothing (no wav, no mp4, no temporary)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".vab.json")) == ["one.mp4", "one.wav"]
    monkeypatch.setattr(media, "_pcm16", real)
    assert vab_main(args) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".vab.json")) == sorted(f"{n}.{s}" for n in ("one", "two", "three")
                                                           for s in ("mp4", "wav"))


def test_disk_full_while_extracting_then_rerun(tmp_path, monkeypatch, capsys):
    import vab.data.extract as extract_module
    from tests.test_extract import load_columns

    folder = tmp_path / "in"
    for i in range(4):
        make_video(folder / f"c{i}.mp4", seconds=1.0, fps=4, width=32, height=24, freq=200 + 100 * i)
    out = tmp_path / "data"
    args = ["extract", str(folder), "--out", str(out), "--duration", "1", "--fps", "2", "codec.codebook_size=16",
            "codec.n_fft=512", "extract.chunk_size=1", "extract.batch_size=1", "extract.num_workers=0"]
    real, calls = extract_module.write_part, []

    def disk_fills_on_the_third_part(directory, *a, **k):
        calls.append(directory)
        if len(calls) == 3:
            raise no_space(directory)
        return real(directory, *a, **k)

    monkeypatch.setattr(extract_module, "write_part", disk_fills_on_the_third_part)
    assert vab_main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("error: ") and "No space left on device" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (out / "data").exists()
    monkeypatch.setattr(extract_module, "write_part", real)
    assert vab_main(args) == 0
    ids = load_columns(out)["id"]
    assert sorted(ids) == ["c0", "c1", "c2", "c3"]


def test_disk_full_while_checkpointing_then_resume(data, tmp_path, monkeypatch, capsys):
    import vab.training.engine as train_module

    run = tmp_path / "run"
    real, calls = train_module.save_generator, []

    def disk_fills_at_the_second_checkpoint(gen, path):
        calls.append(path)
        if len(calls) == 2:
            raise no_space(path)
        return real(gen, path)

    script = str(REPO / "recipes/pretrain.py")
    argv = ["--config", "tiny", *tiny_overrides(data), *TINY, "train.max_steps=9", f"train.output_dir={run}"]
    import runpy

    main = runpy.run_path(script, run_name="not_main")["main"]
    monkeypatch.setattr(train_module, "save_generator", disk_fills_at_the_second_checkpoint)
    assert main(argv=argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert complete_steps(run) == [3]  # the failed step-6 checkpoint never got its final name
    monkeypatch.setattr(train_module, "save_generator", real)
    assert main(argv=[*argv, "--resume"]) == 0
    assert complete_steps(run)[-1] == 9 and (run / "model" / "model.safetensors").is_file()
    assert not list((run / "checkpoints").glob(".tmp-*"))


# ---------------------------------------------------------------------- unwritable outputs
@pytest.fixture
def blocker(tmp_path) -> Path:
    """A file where a folder is wanted (as root, permissions cannot make a folder unwritable)."""
    path = tmp_path / "file"
    path.write_text("x")
    return path


def test_unwritable_training_outputs_are_refused_before_training(data, blocker, tmp_path, capsys):
    import runpy

    main = runpy.run_path(str(REPO / "recipes/pretrain.py"), run_name="not_main")["main"]
    base = ["--config", "tiny", *tiny_overrides(data), *TINY]
    assert main(argv=[*base, f"train.output_dir={blocker / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {blocker / 'run'}: cannot write the run here ({blocker} is a file, not a folder)"
    run = tmp_path / "run"
    assert main(argv=[*base, f"train.output_dir={run}", "--model-out", str(blocker / "model")]) == 2
    assert "cannot write the model directory here" in capsys.readouterr().err
    assert not run.exists()  # refused before the first step
    model = make_model_dir(tmp_path / "model")
    for script in ("finetune/retrieval.py", "finetune/classification.py"):
        fmain = runpy.run_path(str(REPO / script), run_name="not_main")["main"]
        assert fmain(argv=["--init", str(model), "--model-out", str(blocker / "m"), f"data.path=[{data}]"]) == 2
        assert "directory here (" in capsys.readouterr().err


def test_unwritable_outputs_of_commands_are_refused_before_work(blocker, tmp_path, capsys):
    model = make_model_dir(tmp_path / "model")
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, **SMALL)
    assert vab_main(["embed", str(clip), "--checkpoint", str(model), "--out", str(blocker / "idx")]) == 2
    assert "cannot write the index here" in capsys.readouterr().err
    index = tmp_path / "index"
    assert vab_main(["embed", str(clip), "--checkpoint", str(model), "--out", str(index)]) == 0
    capsys.readouterr()
    assert vab_main(["curate", str(index), "--threshold", "0", "--out", str(blocker / "kept.jsonl")]) == 2
    assert "cannot write --out kept.jsonl here" in capsys.readouterr().err
    assert vab_main(["generate", str(clip), "--checkpoint", str(model), "--out", str(blocker / "o"), *FAST_ARGS]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
