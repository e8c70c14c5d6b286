"""The Accelerate training engine (vab.training.engine) on a toy problem: a small MLP with
dropout, inputs masked at random from the engine's generator, shuffled data."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vab.config import TrainConfig
from vab.errors import ConfigError, VabError
from vab.training.engine import NonFiniteLossError, NonFiniteLossWarning, Trainer, TrainingInterrupted
from vab.training import checkpoints as ckpt
from vab.training.optim import is_decayed, param_groups
from vab.training.schedule import cosine_with_warmup

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- toy problem
class ToyData(Dataset):
    """`n` items {"x": [dim], "y": [dim], "index": []}: y = x @ W for one fixed W."""

    def __init__(self, n: int = 64, dim: int = 8, seed: int = 0, offset: int = 0):
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(dim, dim, generator=gen) / dim**0.5
        x = torch.randn(offset + n, dim, generator=gen)[offset:]
        self.x, self.y = x, x @ weight

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": torch.tensor(i)}


class ToyNet(nn.Module):
    def __init__(self, dim: int = 8, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = torch.where(mask, self.mask_token.expand_as(x), x)
        return self.out(self.drop(F.gelu(self.norm(self.inp(x)))))


def toy_objective(model, batch, generator=None, mask_prob: float = 0.25):
    """MSE on features masked with probability `mask_prob`, drawn from the engine's generator."""
    x = batch["x"]
    mask = None
    if mask_prob > 0:
        mask = torch.rand(x.shape, generator=generator, device=x.device) < mask_prob
    loss = F.mse_loss(model(x, mask).float(), batch["y"])
    return loss, {"masked": float(mask.float().mean()) if mask is not None else 0.0}


def deterministic_objective(model, batch, generator=None):
    """No randomness: every 4th feature masked, the pattern shifted by the item index."""
    x = batch["x"]
    mask = (batch["index"][:, None] + torch.arange(x.shape[1], device=x.device)) % 4 == 0
    loss = F.mse_loss(model(x, mask).float(), batch["y"])
    return loss, {"masked": float(mask.float().mean())}


def toy_config(run: Path, **overrides) -> TrainConfig:
    base = dict(
        output_dir=str(run),
        seed=0,
        batch_size=8,
        grad_accum=1,
        lr=1e-2,
        weight_decay=1e-2,
        warmup_steps=3,
        max_steps=10,
        clip_grad=1.0,
        precision="no",
        ema=0.0,
        log_every=1,
        valid_every=0,
        checkpoint_every=0,
        keep_checkpoints=0,
        max_nonfinite=5,
        tracker="none",
    )
    base.update(overrides)
    return TrainConfig(**base)


def make_trainer(run: Path, objective=toy_objective, init_seed: int = 0, dropout: float = 0.1, **kwargs) -> Trainer:
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    torch.manual_seed(init_seed)
    model = ToyNet(dropout=dropout)
    return Trainer(toy_config(run, **overrides), model, objective, ToyData(), run_dir=run, **kwargs)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def scramble_global_rng() -> None:
    """Stand-in for a new process: every global RNG in another state."""
    random.seed(12345)
    np.random.seed(12345)
    torch.manual_seed(12345)


def train_losses(trainer: Trainer) -> dict[int, float]:
    return {row["step"]: row["train/loss"] for row in trainer.history if "train/loss" in row}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matmuls on a shared 2-core machine: OpenMP thread hand-offs cost far more than the math.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- learning and logging
def test_loss_decreases_and_run_directory(tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(
        run, max_steps=80, log_every=10, valid_every=40, checkpoint_every=40, tracker="tensorboard", warmup_steps=5,
        valid_set=ToyData(16, offset=64),
    )
    model = trainer.fit()
    losses = train_losses(trainer)
    assert sorted(losses) == list(range(10, 81, 10))
    assert losses[80] < 0.5 * losses[10]
    valid = [row for row in trainer.history if "valid/loss" in row]
    assert [row["step"] for row in valid] == [40, 80]
    row = [row for row in trainer.history if "train/loss" in row][-1]
    for key in ("train/lr", "train/grad_norm", "train/items_per_s", "train/masked", "train/epoch"):
        assert key in row and math.isfinite(row[key])
    assert not model.training
    assert (run / "config.yaml").read_text().strip().startswith("train:")
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no tensorboard event file"
    assert [step for step, _ in ckpt.complete_checkpoints(run / "checkpoints")] == [40, 80]


def test_default_validation_is_the_item_weighted_objective_mean(tmp_path):
    valid = ToyData(20, offset=64)  # batches of 8, 8 and 4 items
    trainer = make_trainer(tmp_path / "run", objective=deterministic_objective, max_steps=2, valid_set=valid)
    model = trainer.fit()
    with torch.no_grad():
        everything = {key: torch.stack([valid[i][key] for i in range(20)]) for key in ("x", "y", "index")}
        expected_loss, expected_logs = deterministic_objective(model, everything)
    row = trainer.history[-1]
    assert row["step"] == 2
    assert row["valid/loss"] == pytest.approx(float(expected_loss), rel=1e-5)
    assert row["valid/masked"] == pytest.approx(expected_logs["masked"], rel=1e-5)


def test_lr_schedule_values():
    warm, total = 4, 12
    assert [cosine_with_warmup(s, warm, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine_with_warmup(4, warm, total) == 1.0
    assert cosine_with_warmup(8, warm, total) == pytest.approx(0.5)  # half-way through the decay
    assert cosine_with_warmup(12, warm, total) == pytest.approx(0.0, abs=1e-12)
    assert cosine_with_warmup(20, warm, total) == pytest.approx(0.0, abs=1e-12)
    decay = [cosine_with_warmup(s, warm, total) for s in range(4, 13)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert cosine_with_warmup(0, 0, 10) == 1.0  # no warm-up (fine-tuning recipes)
    assert cosine_with_warmup(5, 10, 10) == 0.6  # warm-up only


def test_trainer_uses_schedule_per_optimizer_step(tmp_path):
    trainer = make_trainer(tmp_path / "run", grad_accum=2, warmup_steps=3, max_steps=8)
    trainer.fit()
    lrs = {row["step"]: row["train/lr"] for row in trainer.history if "train/lr" in row}
    assert lrs == {s: pytest.approx(1e-2 * cosine_with_warmup(s - 1, 3, 8)) for s in range(1, 9)}


def test_accumulation_windows_run_across_epoch_ends(tmp_path):
    calls = []

    def counting(model, batch, generator=None):
        calls.append(batch["index"].shape[0])
        return toy_objective(model, batch, generator)

    # 8 batches per epoch, 3 micro-batches per step: steps 3 and 6 straddle epoch ends.
    trainer = make_trainer(tmp_path / "run", objective=counting, grad_accum=3, max_steps=6)
    trainer.fit()
    assert len(calls) == 18 and set(calls) == {8}
    assert (trainer.state.step, trainer.state.epoch, trainer.state.batch_in_epoch) == (6, 2, 2)
    assert trainer.history[-1]["train/items_per_s"] > 0


def test_ema_weights_are_validated_and_returned(tmp_path):
    entries = []

    def recording(model, batch, generator=None):
        entries.append(weights(model))
        return toy_objective(model, batch, generator)

    validated = []
    trainer = make_trainer(
        tmp_path / "run", objective=recording, ema=0.75, max_steps=3, validate=lambda m, _: validated.append(m) or {}
    )
    returned = trainer.fit()
    assert returned is trainer.ema_model is validated[-1] and returned is not trainer.model
    # EMA: first update copies, then w_ema <- 0.75 w_ema + 0.25 w.
    w1, w2, w3 = entries[1], entries[2], weights(trainer.model)
    for key in w3:
        expected = 0.75 * (0.75 * w1[key] + 0.25 * w2[key]) + 0.25 * w3[key]
        assert torch.allclose(returned.state_dict()[key], expected, atol=1e-6), key


def test_weight_decay_grouping():
    class Model(ToyNet):
        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(10, 4)
            self.null = nn.Parameter(torch.zeros(1, 1, 8))
            self.special = nn.Linear(4, 4, bias=False)
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)

        def no_weight_decay(self):
            return ["special.weight"]

    decay, keep = param_groups(Model(), 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert sorted(decay["names"]) == ["inp.weight", "out.weight", "table.weight"]
    assert sorted(keep["names"]) == [
        "inp.bias", "mask_token", "norm.bias", "norm.weight", "null", "out.bias", "special.weight",
    ]
    assert is_decayed(torch.zeros(3, 4)) and not is_decayed(torch.zeros(1, 4)) and not is_decayed(torch.zeros(4))


def test_trainable_predicate_freezes_the_rest(tmp_path):
    trainer = make_trainer(tmp_path / "run", max_steps=3, trainable=lambda name, p: name.startswith("out."))
    before = weights(trainer.model)
    trainer.fit()
    after = weights(trainer.model)
    names = [n for g in trainer.optimizer.param_groups for n in g["names"]]
    assert sorted(names) == ["out.bias", "out.weight"]
    assert torch.equal(before["inp.weight"], after["inp.weight"])
    assert not torch.equal(before["out.weight"], after["out.weight"])


# ---------------------------------------------------------------- exact resume
@pytest.mark.parametrize(
    "grad_accum,ema,workers",
    [(1, 0.0, 0), (2, 0.0, 0), (2, 0.9, 0), (1, 0.0, 1)],
    ids=["plain", "accum2", "ema", "worker"],
)
def test_resume_gives_identical_weights(tmp_path, grad_accum, ema, workers):
    # 10 steps straight; a checkpoint at step 5 lands mid-epoch (8 batches per epoch).
    straight = make_trainer(tmp_path / "a", grad_accum=grad_accum, ema=ema, checkpoint_every=5, num_workers=workers)
    final_a = weights(straight.fit())
    raw_a = weights(straight.model)

    scramble_global_rng()
    resumed = make_trainer(tmp_path / "b", init_seed=99, grad_accum=grad_accum, ema=ema, num_workers=workers)
    assert not torch.equal(resumed.model.inp.weight, straight.model.inp.weight)
    final_b = weights(resumed.fit(resume=tmp_path / "a" / "checkpoints" / "step_0000005"))

    assert resumed.state.step == 10
    assert_identical(raw_a, weights(resumed.model))
    assert_identical(final_a, final_b)  # the EMA copy when EMA is on
    assert (ema > 0) == (resumed.ema_model is not None)
    losses_a, losses_b = train_losses(straight), train_losses(resumed)
    assert sorted(losses_b) == list(range(6, 11))
    assert all(losses_a[s] == losses_b[s] for s in losses_b)


def test_ctrl_c_saves_and_resume_is_exact(tmp_path):
    straight = make_trainer(tmp_path / "a", grad_accum=2)
    expected = weights(straight.fit())

    calls = {"n": 0}

    def interrupting(model, batch, generator=None):
        calls["n"] += 1
        if calls["n"] == 7:  # first micro-batch of step 4: that step still completes
            os.kill(os.getpid(), signal.SIGINT)
        return toy_objective(model, batch, generator)

    run = tmp_path / "b"
    trainer = make_trainer(run, objective=interrupting, grad_accum=2)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 4"):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    assert [s for s, _ in ckpt.complete_checkpoints(run / "checkpoints")] == [4]

    scramble_global_rng()
    again = make_trainer(run, init_seed=7, grad_accum=2)
    assert_identical(expected, weights(again.fit(resume=True)))


def test_validation_does_not_change_training(tmp_path):
    plain = make_trainer(tmp_path / "a")
    expected = weights(plain.fit())

    seen = []

    def validate(model, loader):
        torch.rand(100)  # draws on the global RNG must not leak into training
        random.random()
        assert not model.training and loader is None
        seen.append(1)
        return {"score": 1.5}

    checked = make_trainer(tmp_path / "b", validate=validate, valid_every=2)
    assert_identical(expected, weights(checked.fit()))
    assert [row["step"] for row in checked.history if "valid/score" in row] == [2, 4, 6, 8, 10]
    assert len(seen) == 5


# ---------------------------------------------------------------- checkpoints
def test_keeps_last_k_and_ignores_incomplete(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, max_steps=8, checkpoint_every=2, keep_checkpoints=2).fit()
    root = run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_0000006", "step_0000008"]

    # A kill in the middle of saving step 10 leaves the staging folder; a foreign
    # folder with a checkpoint name but no engine state must be ignored as well.
    staging = ckpt.staging_dir(root, 10)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"partial")
    (root / "step_0000012").mkdir()
    assert ckpt.latest_checkpoint(root) == root / "step_0000008"

    trainer = make_trainer(run, max_steps=10, checkpoint_every=2, keep_checkpoints=2)
    trainer.fit(resume=True)
    assert min(train_losses(trainer)) == 9  # continued after step 8
    assert not staging.exists()
    assert [s for s, _ in ckpt.complete_checkpoints(root)] == [8, 10]


def test_resume_arguments(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(VabError, match="no complete checkpoint"):
        make_trainer(run, max_steps=2).fit(resume=True)
    make_trainer(run, max_steps=2).fit(resume="auto")  # nothing to resume: fresh run
    with pytest.raises(VabError, match="already holds checkpoints"):
        make_trainer(run, max_steps=2).fit()
    with pytest.raises(VabError, match="not a complete training checkpoint"):
        make_trainer(tmp_path / "other", max_steps=2).fit(resume=tmp_path)
    with pytest.raises(VabError, match="train.batch_size=8"):
        make_trainer(tmp_path / "c", max_steps=2, batch_size=4).fit(resume=run / "checkpoints" / "step_0000002")
    with pytest.raises(VabError, match="has no EMA weights"):
        make_trainer(tmp_path / "d", max_steps=2, ema=0.9).fit(resume=run / "checkpoints" / "step_0000002")
    # Hyper-parameters of the new config win over the checkpoint's (e.g. a lowered lr).
    lowered = make_trainer(tmp_path / "e", max_steps=4, lr=1e-3)
    lowered.fit(resume=run / "checkpoints" / "step_0000002")
    assert lowered.history[0]["step"] == 3
    assert lowered.history[0]["train/lr"] == pytest.approx(1e-3 * cosine_with_warmup(2, 3, 4))
    done = make_trainer(run, max_steps=2)
    done.fit(resume=True)  # already finished: returns at once
    assert done.state.step == 2 and train_losses(done) == {}


# ---------------------------------------------------------------- non-finite losses
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_nonfinite_loss_skips_the_step(tmp_path, grad_accum):
    calls = []

    def flaky(model, batch, generator=None):
        calls.append(weights(model))
        loss, logs = toy_objective(model, batch, generator)
        if len(calls) == 2 * grad_accum + 1:  # first micro-batch of the third step
            loss = loss * float("nan")
        return loss, logs

    trainer = make_trainer(tmp_path / "run", objective=flaky, grad_accum=grad_accum, max_steps=4)
    with pytest.warns(NonFiniteLossWarning, match="non-finite loss"):
        trainer.fit()
    # Weights before the bad step's micro-batches equal those before the retried step.
    assert_identical(calls[2 * grad_accum], calls[3 * grad_accum])
    assert len(calls) == 5 * grad_accum and trainer.state.step == 4
    adam = trainer.optimizer.state[trainer.model.inp.weight]
    assert int(adam["step"]) == 4  # the optimizer never saw the skipped step
    assert any(row.get("train/skipped_steps") == 1.0 for row in trainer.history)
    assert all(math.isfinite(v) for row in trainer.history for v in row.values())


def test_nonfinite_losses_in_a_row_stop_cleanly(tmp_path):
    calls = {"n": 0}

    def diverging(model, batch, generator=None):
        calls["n"] += 1
        loss, logs = toy_objective(model, batch, generator)
        return (loss * math.inf if calls["n"] > 3 else loss), logs

    run = tmp_path / "run"
    # The periodic checkpoint of step 3 exists already; the stop replaces it (new data position).
    trainer = make_trainer(run, objective=diverging, max_nonfinite=3, checkpoint_every=3)
    with pytest.warns(NonFiniteLossWarning), pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    assert str(info.value).startswith(
        "training stopped: 3 non-finite losses in a row at step 3; lower train.lr or check the data"
    )
    folder = run / "checkpoints" / "step_0000003"
    state = json.loads((folder / ckpt.STATE_FILE).read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (3, 0, 6)  # past the bad batches
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000003"]


# ---------------------------------------------------------------- precision and configuration
def test_bf16_on_cpu_trains(tmp_path):
    trainer = make_trainer(tmp_path / "run", precision="bf16", max_steps=4)
    trainer.fit()
    assert trainer.accelerator.mixed_precision == "bf16"
    assert all(math.isfinite(v) for v in train_losses(trainer).values())
    assert trainer.model.inp.weight.dtype == torch.float32  # master weights stay fp32


def test_bad_configuration(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        make_trainer(tmp_path / "a", precision="fp16")
    with pytest.raises(ConfigError, match="train.precision='fp8x'"):
        make_trainer(tmp_path / "b", precision="fp8x")
    with pytest.raises(ConfigError, match="train.grad_accum=0"):
        make_trainer(tmp_path / "c", grad_accum=0)
    with pytest.raises(VabError, match="training set has 64 items, fewer than one batch"):
        make_trainer(tmp_path / "d", batch_size=100)


# ---------------------------------------------------------------- several processes
SCRIPT = """
import json, random, sys
import numpy as np
import torch
from tests.test_train import ToyData, ToyNet, deterministic_objective, toy_config, toy_objective
from vab.training.engine import Trainer

torch.set_num_threads(1)
out, runs = sys.argv[1], sys.argv[2]
seen = []

def recording(model, batch, generator=None):
    seen.append(batch["index"].tolist())
    return deterministic_objective(model, batch, generator)

def train(name, objective, dropout, init_seed=0, resume=False, **overrides):
    torch.manual_seed(init_seed)
    cfg = toy_config(f"{runs}/{name}", **{"max_steps": 12, **overrides})
    trainer = Trainer(cfg, ToyNet(dropout=dropout), objective, ToyData(), run_dir=f"{runs}/{name}")
    model = trainer.fit(resume=resume)
    return trainer, {k: v.clone() for k, v in model.state_dict().items()}

# A: deterministic, compared with one process and twice the accumulation.
trainer, weights = train("a", recording, dropout=0.0)
# B then C: dropout + random masking, 12 steps straight vs resumed at step 6 by a new Trainer.
_, straight = train("b", toy_objective, dropout=0.1, checkpoint_every=6)
random.seed(1); np.random.seed(1); torch.manual_seed(1)
_, resumed = train("c", toy_objective, dropout=0.1, init_seed=5, resume=f"{runs}/b/checkpoints/step_0000006")

# D: a parameter without gradient (the mask token is unused), as with audio-only batches.
train("d", lambda m, b, generator=None: toy_objective(m, b, generator, mask_prob=0.0), dropout=0.1, max_steps=2)

rank = trainer.accelerator.process_index
json.dump({
    "seen": seen, "world": trainer.world_size, "history": trainer.history,
    "weights": {k: v.tolist() for k, v in weights.items()},
    "resume_exact": all(torch.equal(straight[k], resumed[k]) for k in straight),
    "resume_weights": {k: v.tolist() for k, v in resumed.items()},
}, open(f"{out}.{rank}.json", "w"))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process_with_double_accumulation(tmp_path):
    """DDP on 2 CPU processes (gloo) vs 1 process with grad_accum 2: same data per step,
    same averaged gradients.  Tolerance: 1e-5 absolute on every logged loss and on the
    final weights (only the float summation order differs).  Also: exact resume under DDP.

    `accelerate launch --cpu` starts a single process in accelerate 1.x, so the
    multi-process launcher is used; the engine switches Accelerate to CPU/gloo
    when no GPU is present."""
    script = tmp_path / "train_toy.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), str(script), str(tmp_path / "out"), str(tmp_path / "runs"),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"out.{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2

    seen = []

    def recording(model, batch, generator=None):
        seen.append(batch["index"].tolist())
        return deterministic_objective(model, batch, generator)

    trainer = make_trainer(tmp_path / "run1", objective=recording, dropout=0.0, grad_accum=2, max_steps=12)
    single = weights(trainer.fit())

    # Each step: the two processes saw disjoint halves, exactly the two micro-batches of one process.
    for step in range(12):
        a, b = ranks[0]["seen"][step], ranks[1]["seen"][step]
        assert not set(a) & set(b)
        assert a + b == seen[2 * step] + seen[2 * step + 1]
    one = train_losses(trainer)
    two = {row["step"]: row["train/loss"] for row in ranks[0]["history"] if "train/loss" in row}
    assert sorted(two) == sorted(one) == list(range(1, 13))
    gap = max(abs(one[s] - two[s]) for s in one)
    print(f"largest loss difference, 2 processes vs 1 process x 2 accumulation: {gap:.2e}")
    assert gap < 1e-5
    for key, value in ranks[0]["weights"].items():
        assert torch.allclose(torch.tensor(value), single[key], atol=1e-5), key
    assert ranks[0]["weights"] == ranks[1]["weights"]  # replicas stay in sync
    assert ranks[0]["resume_exact"] and ranks[1]["resume_exact"]
    assert ranks[0]["resume_weights"] == ranks[1]["resume_weights"]


def test_vab_and_baseline_decay_exactly_their_weight_matrices():
    """The [MASK] ([levels, W]) and modality ([2, W]) vectors are 2-D yet not decayed; every bias and
    norm is kept; what decays is exactly the linear weights and embedding tables, also through a
    wrapper (the fine-tuning models hold the VAB as a sub-module)."""
    from tests.test_foleygen import small_model
    from tests.test_model import make_model

    for model in (make_model(), small_model(), small_model("model.conditioning=concat")):
        decay, keep = param_groups(model, 0.1)
        matrices = {f"{prefix}.weight" for prefix, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))}
        assert set(decay["names"]) == matrices, type(model).__name__
        kept = set(keep["names"])
        assert {"null_visual", "modality", "mask_embed", "pad_visual"} & set(dict(model.named_parameters())) <= kept
        assert all(n.endswith(".bias") or "norm" in n or "." not in n for n in kept), kept
        assert model.no_weight_decay() == kept
    vab = make_model()
    assert {"mask_embed", "modality", "null_visual", "final_norm.weight", "heads.0.bias"} <= vab.no_weight_decay()
    wrapper = nn.ModuleDict({"vab": vab, "head": nn.Linear(32, 3)})
    decay, keep = param_groups(wrapper, 0.1)
    assert {"vab.mask_embed", "vab.modality", "head.bias"} <= set(keep["names"])
    assert "vab.mask_embed" not in decay["names"] and "head.weight" in decay["names"]


# ---------------------------------------------------------------- stopping on a plateau
def scripted_validation(values: list[float], seen: list):
    """validate(model, loader): the next of `values` as "valid/score", remembering the weights it saw."""
    def validate(model, loader):
        seen.append(weights(model))
        return {"score": values[len(seen) - 1]}
    return validate


def test_patience_stops_on_a_plateau_and_returns_the_best_weights(tmp_path, capsys):
    seen: list = []
    trainer = make_trainer(tmp_path / "run", max_steps=20, valid_every=2, patience=2, monitor="valid/score",
                           validate=scripted_validation([1.0, 3.0, 2.5, 2.9, 9.0], seen))
    returned = trainer.fit()
    # validations at steps 2, 4, 6, 8: the best at step 4, then two without a new best -> stop at 8
    assert trainer.state.step == 8 and len(seen) == 4
    assert (trainer.plateau.best, trainer.plateau.best_step) == (3.0, 4)
    assert_identical(weights(returned), seen[1])
    out = capsys.readouterr().out
    assert "step 8: stopped; the model returned is the one of step 4 (valid/score 3, the best validation)" in out
    assert "not above its best 3 (step 4) for 2 validation(s) (stopping after 2)" in out
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_without_patience_the_run_goes_on_and_keeps_its_last_weights(tmp_path, capsys):
    seen: list = []
    trainer = make_trainer(tmp_path / "run", max_steps=8, valid_every=2, monitor="valid/score",
                           validate=scripted_validation([1.0, 3.0, 2.5, 2.9], seen))
    returned = trainer.fit()
    assert trainer.state.step == 8 and trainer.plateau.best_step == 4
    assert_identical(weights(returned), seen[-1])
    assert "step 4: valid/score 3, the best so far" in capsys.readouterr().out
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_a_resumed_run_remembers_its_best(tmp_path):
    values = [1.0, 3.0, 2.5, 2.9, 9.0, 9.0]
    seen: list = []
    trainer = make_trainer(tmp_path / "run", max_steps=6, valid_every=2, checkpoint_every=2, patience=2,
                           monitor="valid/score", validate=scripted_validation(values, seen))
    trainer.fit()  # validations at 2, 4, 6: best at 4, one without
    again: list = []
    resumed = make_trainer(tmp_path / "run", max_steps=20, valid_every=2, patience=2, monitor="valid/score",
                           validate=scripted_validation(values[3:], again))
    returned = resumed.fit(resume=True)
    assert resumed.state.step == 8 and resumed.plateau.best_step == 4  # the second miss comes at step 8
    assert_identical(weights(returned), seen[1])


def test_patience_needs_a_number_to_follow(tmp_path):
    with pytest.raises(ConfigError, match="train.patience=2: this run has no validation number"):
        make_trainer(tmp_path / "run", patience=2)
