"""recipes/pretrain.py end to end on a tiny extracted data set (one and two processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import free_port

from tests.mediagen import make_video
from vab.checkpoint import load_model
from vab.cli import main as vab_main

REPO = Path(__file__).resolve().parents[1]
SMALL_CODEC = ["codec.codebook_size=32", "codec.n_fft=512", "codec.griffin_lim_iters=4"]
TRAIN = ["train.batch_size=4", "train.warmup_steps=2", "train.log_every=1", "train.valid_every=4",
         "train.checkpoint_every=4", "train.tracker=none", "train.lr=3e-3"] + SMALL_CODEC


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pre")
    rows = []
    for i in range(20):
        p = make_video(root / "v" / f"c{i:02d}.mp4", seconds=4, fps=4, width=32, height=24, freq=200 + 60 * (i % 5))
        rows.append({"path": str(p), "label": f"k{i % 5}", "split": "train" if i < 16 else "valid"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "data"
    assert vab_main(["extract", str(root / "m.jsonl"), "--out", str(out), "--config", "tiny", *SMALL_CODEC]) == 0
    return out


def run_recipe(args: list[str], launcher: list[str] | None = None, script: bool = True) -> subprocess.CompletedProcess:
    """recipes/pretrain.py with `args` (`script=False`: `args` start with the script to run)."""
    cmd = [sys.executable, *(launcher or []), *([str(REPO / "recipes/pretrain.py")] if script else []), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def test_pretrain_writes_a_model_that_loads_and_validates(tiny_data, tmp_path):
    from vab.model import VAB
    from vab.training.run import pretrain
    from vab.config import load_config

    cfg = load_config("tiny", [f"data.path=[{tiny_data}]", f"train.output_dir={tmp_path / 'run'}", "train.max_steps=8",
                               *TRAIN, "train.tracker=tensorboard"])
    out = pretrain(cfg)
    model = load_model(out, kind=VAB)
    assert model.levels == 4 and (out / "codec.safetensors").exists()
    assert (tmp_path / "run" / "checkpoints").exists()

    # validation: masked-token accuracy of every level at mask ratios 0.3, 0.55 and 0.9 (README), on
    # the valid split, of the weights the run ends with (recomputed here from the saved model)
    import torch
    from vab.data.dataset import VABDataset, collate
    from vab.training.validation import pretraining_validation

    logged = {tag.removeprefix("valid/"): values[8] for tag, values in scalars(tmp_path / "run").items()
              if tag.startswith("valid/")}
    ratios, levels = ("0.3", "0.55", "0.9"), range(4)
    accuracies = {f"acc@{r}" for r in ratios} | {f"acc@{r}/level{k}" for r in ratios for k in levels}
    # and the label-free content signal: full-mask loss with and without the picture, what it saves
    content = {f"{name}{level}" for name in ("full", "blind", "picture") for level in ["", *(f"/level{k}" for k in levels)]}
    losses = {f"loss@{r}" for r in ratios}  # cross-entropy at each fixed ratio
    assert set(logged) == accuracies | content | losses
    assert all(logged[k] > 0 for k in losses)
    assert all(0.0 <= logged[k] <= 1.0 for k in accuracies) and all(logged[k] > 0 for k in content if "picture" not in k)
    assert logged["picture"] == pytest.approx(logged["blind"] - logged["full"], abs=1e-5)
    valid = VABDataset([tiny_data], "valid", fps=model.fps, duration=model.duration, train=False, levels=model.levels)
    assert len(valid) == 4
    loader = torch.utils.data.DataLoader(valid, batch_size=4, shuffle=False, collate_fn=collate)
    again = pretraining_validation()(model.eval(), loader)
    for key, value in logged.items():
        assert value == pytest.approx(again[key], abs=1e-6), key
    # the fitted codec travels with the model: the same codebooks as the data's codec
    from vab.codecs import build_codec

    codec = build_codec(cfg.codec, directory=out)
    assert codec.codebook_vectors(0).shape[0] == 32


def test_pretrain_refuses_data_that_does_not_match(tiny_data, tmp_path):
    res = run_recipe(["--config", "tiny", f"data.path=[{tiny_data}]", "data.duration=8", f"train.output_dir={tmp_path}", *TRAIN])
    assert res.returncode == 2
    assert "data.duration 8.0 s > stored clips of 4.0 s" in res.stderr and "Traceback" not in res.stderr
    res = run_recipe(["--config", "tiny", f"data.path=[{tiny_data}]", "codec.name=dac", f"train.output_dir={tmp_path}", *TRAIN])
    assert res.returncode == 2 and "codec.name" in res.stderr


# recipes/pretrain.py with the mask draws of a micro-batch seeded from its clip ids: two processes
# then draw exactly the masks of one process's two accumulated micro-batches
SHARED_MASKS = r"""
import runpy, sys, zlib
import torch
from vab.training import objective
from vab.training.rng import derive_seed

call = objective.PretrainObjective.__call__

def shared(self, model, batch, *args, generator=None, **kwargs):
    keys = [zlib.crc32(str(i).encode()) for i in batch["id"]]
    own = torch.Generator().manual_seed(derive_seed(0, "mask", *keys))
    return call(self, model, batch, *args, generator=own, **kwargs)

objective.PretrainObjective.__call__ = shared
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_process_with_double_accumulation(tiny_data, tmp_path):
    """Same items per optimizer step and, with the mask draws seeded per micro-batch (shared
    mask seeds), the same masks: 2 processes x batch 2 give one process's weights with
    batch 2 x 2 accumulation (only the float summation order differs: losses to 1e-5, weights to
    1% of one optimizer step)."""
    from safetensors.torch import load_file

    wrapper = tmp_path / "shared_masks.py"
    wrapper.write_text(SHARED_MASKS)
    common = ["--config", "tiny", f"data.path=[{tiny_data}]", "train.max_steps=6", *TRAIN, "train.batch_size=2",
              "train.tracker=tensorboard", "train.mixup_prob=0", "train.roll_prob=0", "train.visual_dropout=0"]
    one = run_recipe([str(wrapper), str(REPO / "recipes/pretrain.py"), *common, "train.grad_accum=2",
                      f"train.output_dir={tmp_path / 'one'}"], script=False)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_recipe([str(wrapper), str(REPO / "recipes/pretrain.py"), *common, "train.grad_accum=1",
                      f"train.output_dir={tmp_path / 'two'}"],
                     ["-m", "accelerate.commands.launch", "--main_process_port", str(free_port()), "--multi_gpu",
                      "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
                     script=False)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = loss_curve(tmp_path / "one"), loss_curve(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, abs=1e-5)
    wa = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert sorted(wa) == sorted(wb)
    # Adam divides by the root of a running mean of squared gradients, so where a gradient is
    # near zero the summation order shows up magnified in the step: allow 1% of one step (lr
    # 3e-3; seen: up to 1.4e-5 with 813-d hog-colour features). A real difference (gradients
    # not averaged, other masks or items) moves weights by whole steps, 100x more.
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=0.01 * 3e-3), key


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from the run's tensorboard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for f in sorted((run_dir / "logs").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, {}).update({ev.step: ev.value for ev in acc.Scalars(tag)})
    return out


def loss_curve(run_dir: Path) -> list[float]:
    """train/loss per step from the tensorboard event files."""
    values = scalars(run_dir).get("train/loss", {})
    return [values[k] for k in sorted(values)]


SEEN_IDS = r"""
import json, runpy, sys
from vab.training import objective

call = objective.PretrainObjective.__call__
record = sys.argv[1]

def recording(self, model, batch, *args, **kwargs):
    if model.training:
        with open(record, "a") as f:
            f.write(json.dumps(list(batch["id"])) + "\n")
    return call(self, model, batch, *args, **kwargs)

objective.PretrainObjective.__call__ = recording
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_several_data_sets_train_as_one_through_the_recipe(tiny_data, tmp_path):
    """recipes/pretrain.py data.path=[A,B]: one run over the clips of both (their train splits, every
    clip within the first epoch), the model card naming each with its clip count; a data set
    tokenized by another fitted codec is refused in one line."""
    rows = []
    for i in range(10):
        p = make_video(tmp_path / "v" / f"d{i:02d}.mp4", seconds=4, fps=4, width=32, height=24, freq=700 + 50 * i)
        rows.append({"path": str(p), "label": f"m{i % 2}", "split": "train" if i < 8 else "valid"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    more = tmp_path / "more"
    assert vab_main(["extract", str(tmp_path / "m.jsonl"), "--out", str(more), "--config", "tiny", *SMALL_CODEC,
                     f"codec.path={tiny_data / 'codec.safetensors'}"]) == 0
    wrapper, seen = tmp_path / "seen_ids.py", tmp_path / "seen.jsonl"
    wrapper.write_text(SEEN_IDS)
    run = run_recipe([str(wrapper), str(seen), str(REPO / "recipes/pretrain.py"), "--config", "tiny",
                      f"data.path=[{tiny_data},{more}]", "train.max_steps=6", *TRAIN, f"train.output_dir={tmp_path / 'run'}"],
                     script=False)
    assert run.returncode == 0, run.stderr[-3000:]
    batches = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    train_ids = {f"c{i:02d}" for i in range(16)} | {f"d{i:02d}" for i in range(8)}
    assert set(sum(batches, [])) == train_ids  # 24 clips, 6 x 4 draws: exactly the first epoch
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert f"`{tiny_data}`: 16 training clips" in card and f"`{more}`: 8 training clips" in card

    other = tmp_path / "other"  # its own fitted codec
    assert vab_main(["extract", str(tmp_path / "m.jsonl"), "--out", str(other), "--config", "tiny", *SMALL_CODEC]) == 0
    refused = run_recipe(["--config", "tiny", f"data.path=[{tiny_data},{other}]", "train.max_steps=1", *TRAIN,
                          f"train.output_dir={tmp_path / 'run2'}"])
    assert refused.returncode == 2 and "tokenized by different fitted codecs" in refused.stderr
    assert "Traceback" not in refused.stderr


def readme_commands(start: str) -> list[list[str]]:
    """The README's commands that start with `start`, backslash continuations joined, split in words."""
    lines = (REPO / "README.md").read_text().splitlines()
    commands, k = [], 0
    while k < len(lines):
        line = lines[k].strip()
        if line.startswith(start):
            while line.endswith("\\") and k + 1 < len(lines):
                k += 1
                line = line[:-1] + " " + lines[k].strip()
            commands.append(line.split())
        k += 1
    return commands


def test_the_readmes_tiny_pretraining_commands_name_a_model_that_builds(capsys):
    # a user copies these; an override the config schema no longer knows (or a depth the experts
    # do not fit) would otherwise fail only after they have extracted their data
    commands = readme_commands("python recipes/pretrain.py --config tiny")
    assert len(commands) >= 2
    for words in commands:
        overrides = [w for w in words if "=" in w and not w.startswith("data.path=")]
        assert vab_main(["info", "tiny", *overrides, "--params-only"]) == 0, words
        assert "parameters" in capsys.readouterr().out.lower()
