"""The one training engine every vab recipe uses (Hugging Face Accelerate).

Usage::

    trainer = Trainer(cfg.train, model, objective, train_set, valid_set, collate_fn=collate,
                      config=cfg, num_workers=cfg.data.num_workers)
    model = trainer.fit(resume=args.resume)     # False | True | "auto" | a checkpoint folder

The same script runs as `python script.py` (one process) or under
`accelerate launch --multi_gpu --num_processes N script.py` (DDP; on a machine
without GPUs the engine makes Accelerate use the CPU with gloo — note that
`accelerate launch --cpu` starts a single process in accelerate 1.x).

Contract with the caller
------------------------
objective(model, batch, generator=gen) -> (loss, logs)
    `loss` is a scalar tensor, `logs` a dict of floats (averaged and logged as
    `train/<key>`).  `model` is the *prepared* model (DDP-wrapped on several
    processes): call it (`model(...)`) so gradient hooks run, and reach
    attributes through `getattr(model, "module", model)`.  `batch` is whatever
    `collate_fn` returns, moved to the device; the engine never looks inside
    it (audio-only batches are fine).  Randomness must come from `generator`
    (a torch.Generator on `trainer.device`, seeded per process, saved in every
    checkpoint) or from torch's global RNG (dropout), which Accelerate saves.
validate(model, loader) -> dict[str, float]
    Called on every process with the evaluation model (the EMA copy when EMA is
    on) in eval mode, under no_grad and autocast, with this process's shard of
    `valid_set` (None without one).  The returned numbers are averaged over
    processes, which is exact for per-example means over equal shards; metrics
    that need the whole set (recall@k, mAP) should gather through
    `trainer.accelerator.gather_for_metrics` and return the global value.
    Without `validate`, the engine reports the objective's loss and logs on
    `valid_set`, drawn with a fixed generator so runs are comparable.
    Validation never moves the training RNG streams.

Semantics
---------
- Batch: `cfg.batch_size` items per process per micro-step; one optimizer
  step uses batch_size x grad_accum x processes items.  Steps count optimizer
  steps (skipped non-finite steps do not count).
- Data: map-style data sets only.  The training order of epoch e is a
  permutation seeded by (cfg.seed, e); incomplete last batches are dropped;
  Accelerate deals batches round-robin to processes (disjoint shards).  The
  data position (epoch, batches consumed) is checkpointed and a resumed run
  starts exactly there.  Data-set code must not draw from global RNGs for
  resumption to stay bit-exact (do random augmentation in the objective).
- Precision: `cfg.precision` auto = bf16 on a CUDA GPU, and on a CPU with native bf16
  matrix units (AVX512-BF16 / AMX, ARM BF16) for models of 10M parameters or more (smaller
  ones train slower in bf16 there), fp32 ("no") elsewhere (:mod:`vab.precision`);
  bf16 on a CPU runs through Accelerate's CPU autocast; fp16 uses Accelerate's GradScaler and
  needs a GPU.
- Optimizer: AdamW, weight decay on matrices only (`vab.training.optim`);
  schedule: linear warm-up then half-cycle cosine to 0 at `max_steps`
  (`vab.training.schedule`); gradient clipping at `clip_grad` (0 disables; the
  norm is logged either way).
- EMA (`cfg.ema` > 0): updated after every optimizer step, checkpointed;
  validation and the model returned by `fit` use the EMA weights
  (`trainer.model` keeps the raw weights, `trainer.ema_model` the average).
- Non-finite loss (any process, any micro-batch; with bf16/fp32 also a
  non-finite gradient norm): the step is skipped (gradients zeroed, no update)
  with a warning; after `cfg.max_nonfinite` in a row a checkpoint is saved and
  `NonFiniteLossError` (a VabError) is raised.  The count restarts on resume.
- Stopping on a plateau: `monitor` (a validation number, higher is better, e.g.
  "valid/acc@0.55") is followed over validations (:class:`vab.training.stopping.Plateau`);
  a line after each validation says how it compares with its best.  With `cfg.patience`
  > 0 the run stops once that many validations in a row brought no new best, and
  `fit` returns the weights of the best validation (kept in RUN/best.safetensors, so a
  resumed run still has them).  With patience 0 the run goes to `max_steps` and ends
  with its last weights.
- Ctrl-C / SIGTERM: the current optimizer step is finished, a checkpoint saved
  and `TrainingInterrupted` (a VabError) raised; a second Ctrl-C aborts at once.
- Run directory RUN (`run_dir` or `cfg.output_dir`): RUN/config.yaml,
  RUN/logs (trackers), RUN/checkpoints/step_XXXXXXX (Accelerate `save_state`
  plus `trainer_state.json`, `objective_rng_<rank>.safetensors`,
  `ema.safetensors`), written to a staging folder and renamed when complete;
  the newest `keep_checkpoints` are kept (<= 0 keeps all).  A checkpoint is
  written every `checkpoint_every` steps (<= 0: only at the end, on Ctrl-C and
  on a non-finite stop).  Several processes must share the file system.
- Resume: exact (weights, optimizer, scheduler, grad scaler, EMA, python /
  numpy / torch RNGs, the objective generator, step, data position) with the
  same number of processes and batch size.  Changed lr / weight decay / betas /
  schedule lengths in the config take effect on resume.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    GradientAccumulationPlugin,
    ProjectConfiguration,
    gather_object,
    set_seed,
)
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vab.config import save_config
from vab.errors import ConfigError, VabError
from vab.precision import resolve_training_precision
from vab.training import checkpoints as ckpt
from vab.training.console import TrainConsole, format_line
from vab.training.ema import EMA
from vab.training.epoch_order import EpochSampler
from vab.training.optim import apply_hyperparameters, build_adamw
from vab.training.rng import derive_seed, isolated_rng, load_generator, make_generator, save_generator
from vab.training.schedule import cosine_schedule, restart_from
from vab.training.stopping import BEST_FILE, Plateau
from vab.utils import atomic_path, check_writable_dir, launched_processes, launched_without_gpu
from vab.workers import start_workers

Objective = Callable[..., "tuple[Tensor, dict[str, float]]"]
Validate = Callable[[nn.Module, "DataLoader | None"], "dict[str, float]"]

PRECISIONS = ("auto", "no", "bf16", "fp16")


class NonFiniteLossError(VabError):
    """Training stopped after too many non-finite losses in a row (a checkpoint was saved)."""


class TrainingInterrupted(VabError):
    """Training stopped by Ctrl-C or SIGTERM after saving a checkpoint."""


class NonFiniteLossWarning(RuntimeWarning):
    """A step was skipped because its loss (or gradient norm) was not finite."""


@dataclass
class TrainState:
    """Counters saved as RUN/checkpoints/step_X/trainer_state.json."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` consumed by each process
    nonfinite_in_row: int = 0
    world_size: int = 1
    batch_size: int = 0
    grad_accum: int = 1
    seed: int = 0
    plateau: dict | None = None  # Plateau.state() of the monitored validation number

    def position(self) -> tuple[int, int, int]:
        return (self.step, self.epoch, self.batch_in_epoch)


def resolve_precision(precision: str, parameters: int | None = None, device: torch.device | str | None = None) -> str:
    """auto -> the native half format of the GPU that trains (bf16, or fp16 on CUDA GPUs before
    Ampere), or bf16 on a CPU with native bf16 matrix units for a model of `parameters` >=
    :data:`vab.precision.CPU_BF16_MIN_PARAMS`, else "no" (fp32); `device`: where it trains
    (None: where Accelerate would); see :func:`vab.precision.resolve_training_precision`."""
    return resolve_training_precision(precision, PRECISIONS, parameters, device)


def _check_inputs(cfg: Any, run_dir: Path, train_set: Dataset) -> None:
    """Refuse bad settings, an unwritable run folder and a data set the loop cannot index,
    before any step (not at the first checkpoint)."""
    _check_config(cfg)
    check_writable_dir(run_dir, "the run")
    if isinstance(train_set, IterableDataset) or not hasattr(train_set, "__len__"):
        raise TypeError("Trainer needs a map-style training set (with __len__ and __getitem__)")


def _batches_per_epoch(items: int, batch_size: int, processes: int) -> int:
    batches = items // (batch_size * processes)
    if batches < 1:
        raise VabError(f"training set has {items} items, fewer than one batch "
                       f"(train.batch_size={batch_size} x {processes} processes)")
    return batches


def _freeze(model: nn.Module, trainable: Callable[[str, nn.Parameter], bool] | None) -> None:
    """Freeze every parameter `trainable` rejects (parameters already frozen stay frozen)."""
    if trainable is not None:
        for name, param in model.named_parameters():
            if not trainable(name, param):
                param.requires_grad_(False)


class Trainer:
    """Accelerate training loop shared by every recipe (see the module docstring).

    `trainable(name, param) -> bool` freezes every parameter it rejects
    (e.g. linear probing); parameters already frozen by the caller stay frozen.
    `config` (the full VABConfig) is saved as RUN/config.yaml and logged as
    hyper-parameters.  `accelerator_kwargs` are passed on to `Accelerator`; by
    default DDP runs with `find_unused_parameters=True` (batches may leave some
    parameters without gradients) unless a DistributedDataParallelKwargs handler
    is given.  `num_workers`: data-loading worker processes (e.g. cfg.data.num_workers).
    The constructor seeds python / numpy / torch from `cfg.seed` (plus the process index).
    `monitor`: the validation number (e.g. "valid/acc@0.55", higher is better) followed for
    stopping on a plateau (`cfg.patience`); None: no number is followed and patience is refused.
    """

    def __init__(
        self,
        cfg: Any,
        model: nn.Module,
        objective: Objective,
        train_set: Dataset,
        valid_set: Dataset | None = None,
        collate_fn: Callable | None = None,
        validate: Validate | None = None,
        run_dir: str | Path | None = None,
        accelerator_kwargs: dict | None = None,
        trainable: Callable[[str, nn.Parameter], bool] | None = None,
        config: Any = None,
        num_workers: int = 0,
        monitor: str | None = None,
    ):
        self.cfg = cfg
        self.objective = objective
        self.validate_fn = validate
        self.run_dir = Path(run_dir if run_dir is not None else cfg.output_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        patience = int(getattr(cfg, "patience", 0))
        if patience > 0 and not (monitor and (valid_set is not None or validate is not None)):
            raise ConfigError(f"train.patience={patience}: this run has no validation number to follow "
                              "(it needs a monitored validation and a validation set)")
        _check_inputs(cfg, self.run_dir, train_set)

        parameters = sum(p.numel() for p in model.parameters())
        self.accelerator = _make_accelerator(cfg, self.run_dir, accelerator_kwargs or {}, parameters)
        acc = self.accelerator
        self.device = acc.device
        self.rank = acc.process_index
        self.world_size = acc.num_processes
        set_seed(int(cfg.seed), device_specific=True)
        self.batches_per_epoch = _batches_per_epoch(len(train_set), cfg.batch_size, self.world_size)

        _freeze(model, trainable)
        self.model = model
        self.ema = EMA(model, float(cfg.ema), device=self.device) if cfg.ema > 0 else None
        optimizer = build_adamw(model, cfg.lr, cfg.weight_decay, cfg.betas)
        scheduler = cosine_schedule(optimizer, cfg.warmup_steps, cfg.max_steps)
        self._raw_optimizer, self._raw_scheduler = optimizer, scheduler

        train_loader, valid_loader = self._loaders(train_set, valid_set, collate_fn, num_workers)
        self._model, self.optimizer, self.train_loader, self.scheduler = acc.prepare(
            model, optimizer, train_loader, scheduler
        )
        self.valid_loader = acc.prepare(valid_loader) if valid_loader is not None else None

        self.generator = make_generator(self.device, derive_seed(cfg.seed, "objective", self.rank))
        self.state = TrainState(
            world_size=self.world_size, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, seed=cfg.seed
        )
        self.history: list[dict[str, float]] = []  # logged rows (main process)
        self._config = config
        self._stop_signal: str | None = None
        self._saved_at: tuple[int, int, int] | None = None
        self._lr = float(cfg.lr)
        self._validated_at: int | None = None
        self._status = ""  # short text next to the progress bar
        self.plateau = Plateau(monitor, patience) if monitor else None
        self._reset_accumulators()
        self._console = TrainConsole(acc.is_main_process, cfg.max_steps, 0)

    def _loaders(
        self, train_set: Dataset, valid_set: Dataset | None, collate_fn: Callable | None, num_workers: int
    ) -> tuple[DataLoader, DataLoader | None]:
        """The training loader (epoch order of :class:`EpochSampler`, a loader-owned generator)
        and the validation loader (in order), before Accelerate prepares them."""
        cfg = self.cfg
        self.sampler = EpochSampler(len(train_set), int(cfg.seed))
        self._train_set = train_set
        # Data sets with set_epoch() draw their random choices from (seed, epoch, item);
        # persistent workers would keep a stale copy of the epoch, so they are not used then.
        self._epoch_aware = callable(getattr(train_set, "set_epoch", None))
        # A loader-owned generator keeps DataLoader.__iter__ from drawing on torch's global RNG.
        self._loader_generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "workers", self.rank))
        pin = self.device.type == "cuda"
        train_loader = DataLoader(
            train_set, batch_size=cfg.batch_size, sampler=self.sampler, drop_last=True, collate_fn=collate_fn,
            num_workers=num_workers, persistent_workers=num_workers > 0 and not self._epoch_aware, pin_memory=pin,
            generator=self._loader_generator,
        )
        if valid_set is None:
            return train_loader, None
        return train_loader, DataLoader(valid_set, batch_size=cfg.batch_size, shuffle=False, drop_last=False,
                                        collate_fn=collate_fn, num_workers=num_workers, pin_memory=pin)

    # ------------------------------------------------------------------ public API
    @property
    def ema_model(self) -> nn.Module | None:
        return self.ema.module if self.ema is not None else None

    @property
    def eval_model(self) -> nn.Module:
        """The weights used for validation and returned by `fit`: EMA when on, else the raw model."""
        return self.ema.module if self.ema is not None else self.model

    def fit(self, resume: bool | str | Path = False) -> nn.Module:
        """Train to `cfg.max_steps`; return `eval_model` in eval mode.

        resume: False = fresh run (refused when RUN/checkpoints already holds one);
        True = the latest complete checkpoint (error if none); "auto" = the latest
        if any, else fresh; a path = that checkpoint folder.
        """
        acc = self.accelerator
        start = self._resolve_resume(resume)  # a bad --resume is refused before the run folder is written
        if acc.is_main_process:
            _save_run_config(self.run_dir / "config.yaml", self._config, self.cfg)
            ckpt.clean_staging(self.checkpoint_dir)
        acc.wait_for_everyone()
        acc.init_trackers("train", config=_flat_hparams(self._config, self.cfg))
        if start is not None:
            self._load(start)
        self._console = TrainConsole(acc.is_main_process, self.cfg.max_steps, self.state.step)
        self._print_header(start)
        previous = self._install_signal_handlers()
        try:
            with self._console:
                self._train()
                self._finish()
        finally:
            self._restore_signal_handlers(previous)
            # Not `end_training()`: it also destroys the process group, which a
            # following Trainer in the same process (pretrain, then fine-tune) needs.
            for tracker in acc.trackers:
                tracker.finish()
            acc.trackers = []
        return self.eval_model.eval()

    def save_checkpoint(self) -> Path:
        """Write RUN/checkpoints/step_XXXXXXX atomically (all processes must call it)."""
        acc = self.accelerator
        step = self.state.step
        final = self.checkpoint_dir / ckpt.checkpoint_name(step)
        staging = ckpt.staging_dir(self.checkpoint_dir, step)
        if acc.is_main_process:
            ckpt.clean_staging(self.checkpoint_dir)
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        save_generator(self.generator, staging / f"objective_rng_{self.rank}.safetensors")
        if acc.is_main_process:
            if self.ema is not None:
                self.ema.save(staging)
            saved = TrainState(**asdict(self.state))
            saved.plateau = self.plateau.state() if self.plateau is not None else None
            if saved.batch_in_epoch >= self.batches_per_epoch:
                saved.epoch, saved.batch_in_epoch = saved.epoch + 1, 0
            (staging / ckpt.STATE_FILE).write_text(json.dumps(asdict(saved), indent=2))
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.commit(staging, final)
            ckpt.prune(self.checkpoint_dir, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self._saved_at = self.state.position()
        return final

    def run_validation(self) -> dict[str, float]:
        """Validate `eval_model` now; returns (and logs) `valid/...` metrics, identical on all processes."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        with isolated_rng(self.device), torch.no_grad(), self.accelerator.autocast():
            if self.validate_fn is not None:
                loader = None if self.valid_loader is None else _FetchOutsideAutocast(self.valid_loader, self.device)
                local = dict(self.validate_fn(model, loader))
            else:
                local = self._objective_validation(model)
        model.train(was_training)
        merged = _mean_of(gather_object([local]))
        metrics = {(k if k.startswith("valid/") else f"valid/{k}"): v for k, v in merged.items()}
        self._validated_at = self.state.step
        self._record(metrics)
        if self.plateau is not None:
            if self.plateau.update(self.state.step, metrics) and self.plateau.patience > 0:
                self._save_best()
            self._console.print(self.plateau.describe(self.state.step))
        return metrics

    def _save_best(self) -> None:
        """RUN/best.safetensors: the evaluation weights of the best validation (main process)."""
        if self.accelerator.is_main_process:
            with atomic_path(self.run_dir / BEST_FILE) as tmp:
                save_model(self.eval_model, str(tmp))
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ the loop
    def _train(self) -> None:
        cfg, state = self.cfg, self.state
        step_items = cfg.batch_size * self.world_size
        inside = False
        try:
            while state.step < cfg.max_steps and not self._plateaued:
                self.sampler.set_position(state.epoch, state.batch_in_epoch * step_items)
                self.train_loader.set_epoch(state.epoch)
                if self._epoch_aware:  # data-set randomness keyed by (seed, epoch, item)
                    self._train_set.set_epoch(state.epoch)
                inside = True
                for batch in start_workers(self.train_loader):
                    state.batch_in_epoch += 1
                    self._micro_items += step_items
                    if self._micro_step(batch) and (state.step >= cfg.max_steps or self._plateaued):
                        return
                inside = False
                state.epoch += 1
                state.batch_in_epoch = 0
        finally:
            if inside:
                # Leaving mid-epoch: unregister the loader from Accelerate's process-wide
                # GradientState, as the end of an epoch would, so later loops start clean.
                with contextlib.suppress(ValueError):
                    self.train_loader.end()

    def _micro_step(self, batch: Any) -> bool:
        """Forward/backward one micro-batch; at an accumulation boundary run the
        optimizer step and the periodic work.  True when an optimizer step was done."""
        acc = self.accelerator
        with acc.accumulate(self._model):
            loss, logs = self.objective(self._model, batch, generator=self.generator)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise TypeError("the objective must return (scalar loss tensor, dict of floats)")
            finite = bool(torch.isfinite(loss.detach()).item())
            acc.backward(loss)
            if finite:
                self._add("loss", float(loss.detach()))
                for key, value in logs.items():
                    if key != "loss":  # objectives often echo their loss; ours is the reference
                        self._add(key, float(value))
            else:
                self._bad_micro += 1
            if not acc.sync_gradients:
                return False
            return self._optimizer_step()

    def _optimizer_step(self) -> bool:
        acc, cfg, state = self.accelerator, self.cfg, self.state
        flags = torch.tensor([float(self._bad_micro > 0), float(self._stop_signal is not None)], device=self.device)
        flags = acc.reduce(flags, "sum")
        skip, stop = bool(flags[0] > 0), bool(flags[1] > 0)
        self._bad_micro = 0
        grad_norm = math.nan
        if not skip:
            max_norm = cfg.clip_grad if cfg.clip_grad > 0 else math.inf
            norm = acc.clip_grad_norm_(self._model.parameters(), max_norm)
            grad_norm = float(norm) if norm is not None else math.nan
            # With fp16 the GradScaler owns overflow handling (it skips and lowers the scale).
            skip = not math.isfinite(grad_norm) and acc.scaler is None and norm is not None
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            state.nonfinite_in_row += 1
            self._skipped += 1
            self._warn_nonfinite()
        else:
            self._lr = float(self._raw_optimizer.param_groups[0]["lr"])  # the rate this step uses
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            state.step += 1
            state.nonfinite_in_row = 0
            if math.isfinite(grad_norm):
                self._add("grad_norm", grad_norm)
            self._after_step()
        if cfg.max_nonfinite > 0 and state.nonfinite_in_row >= cfg.max_nonfinite:
            path = self.save_checkpoint()
            raise NonFiniteLossError(
                f"training stopped: {state.nonfinite_in_row} non-finite losses in a row at step {state.step}; "
                f"lower train.lr or check the data (state saved in {path})"
            )
        if stop and state.step < cfg.max_steps:  # at the last step the normal end saves anyway
            path = self.save_checkpoint()
            raise TrainingInterrupted(
                f"training interrupted at step {state.step} ({self._stop_signal or 'signal on another process'}); "
                f"state saved in {path}; run again with resume to continue"
            )
        return not skip

    def _after_step(self) -> None:
        cfg, step = self.cfg, self.state.step
        self._console.update(step, self._status)
        last = step >= cfg.max_steps
        if (cfg.log_every > 0 and step % cfg.log_every == 0) or last:
            self._log_train()
        if not last and self._validates and cfg.valid_every > 0 and step % cfg.valid_every == 0:
            self._timed(self.run_validation)
        if not last and cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
            self._timed(self._save_and_report)

    @property
    def _plateaued(self) -> bool:
        return self.plateau is not None and self.plateau.should_stop

    def _finish(self) -> None:
        if self._validates and self._validated_at != self.state.step:
            self.run_validation()
        if self._saved_at != self.state.position():
            self._save_and_report()
        if self.plateau is not None and self.plateau.patience > 0 and self.plateau.best_step >= 0:
            load_model(self.eval_model, str(self.run_dir / BEST_FILE))
            stopped = "stopped" if self._plateaued else "ended"
            self._console.print(
                f"step {self.state.step}: {stopped}; the model returned is the one of step {self.plateau.best_step} "
                f"({self.plateau.monitor} {self.plateau.best:.4g}, the best validation)")

    # ------------------------------------------------------------------ logging
    def _reset_accumulators(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._bad_micro = 0
        self._skipped = 0
        self._micro_items = 0
        self._clock = time.perf_counter()

    def _add(self, key: str, value: float) -> None:
        if not math.isfinite(value):  # e.g. an accuracy over zero masked tokens
            return
        self._sums[key] = self._sums.get(key, 0.0) + value
        self._counts[key] = self._counts.get(key, 0) + 1

    def _log_train(self) -> None:
        elapsed = max(time.perf_counter() - self._clock, 1e-9)
        # Every process contributes its sums; the items counter is the same on all of them.
        parts = gather_object([{"sums": self._sums, "counts": self._counts, "skipped": self._skipped}])
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for part in parts:
            for key, value in part["sums"].items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + part["counts"][key]
        metrics = {f"train/{k}": sums[k] / counts[k] for k in sums}
        metrics["train/lr"] = self._lr
        metrics["train/items_per_s"] = self._micro_items / elapsed
        metrics["train/epoch"] = self.state.epoch + self.state.batch_in_epoch / self.batches_per_epoch
        if parts[0]["skipped"]:
            metrics["train/skipped_steps"] = float(parts[0]["skipped"])
        loss = metrics.get("train/loss")
        self._status = f"loss {loss:.4g}" if loss is not None else ""
        self._record(metrics)
        self._reset_accumulators()

    def _record(self, metrics: dict[str, float]) -> None:
        step = self.state.step
        self.accelerator.log(metrics, step=step)
        if self.accelerator.is_main_process:
            self.history.append({"step": step, **metrics})
            self._console.print(format_line(step, self.cfg.max_steps, metrics))

    def _timed(self, work: Callable[[], Any]) -> None:
        """Run periodic work without counting its time against training throughput."""
        begin = time.perf_counter()
        work()
        self._clock += time.perf_counter() - begin

    def _save_and_report(self) -> None:
        path = self.save_checkpoint()
        self._console.print(f"step {self.state.step}: saved {path}")

    def _warn_nonfinite(self) -> None:
        if self.accelerator.is_main_process:
            message = (
                f"step {self.state.step + 1}: non-finite loss or gradient, step skipped "
                f"({self.state.nonfinite_in_row} in a row, limit {self.cfg.max_nonfinite})"
            )
            warnings.warn(message, NonFiniteLossWarning, stacklevel=2)
            self._console.print(message, style="yellow")

    def _print_header(self, start: Path | None) -> None:
        cfg = self.cfg
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        self._console.print(
            f"training {trainable:,} of {total:,} parameters on {self.world_size} process(es), "
            f"{self.device.type}, precision {self.accelerator.mixed_precision}; "
            f"{cfg.batch_size} x {cfg.grad_accum} x {self.world_size} = "
            f"{cfg.batch_size * cfg.grad_accum * self.world_size} items per step; "
            f"run {self.run_dir}" + (f"; resuming from {start}" if start is not None else "")
        )

    # ------------------------------------------------------------------ validation
    @property
    def _validates(self) -> bool:
        return self.valid_loader is not None or self.validate_fn is not None

    def _objective_validation(self, model: nn.Module) -> dict[str, float]:
        """Item-weighted mean of the objective's loss and logs over the validation shards."""
        if self.valid_loader is None:
            return {}
        gen = make_generator(self.device, derive_seed(self.cfg.seed, "valid", self.rank))
        sums: dict[str, float] = {}
        weights: dict[str, int] = {}
        for batch in _FetchOutsideAutocast(self.valid_loader, self.device):
            loss, logs = self.objective(model, batch, generator=gen)
            items = _batch_items(batch) or self.cfg.batch_size
            for key, value in {**logs, "loss": loss}.items():
                value = float(value)
                if math.isfinite(value):
                    sums[key] = sums.get(key, 0.0) + value * items
                    weights[key] = weights.get(key, 0) + items
        merged: dict[str, float] = {}
        total: dict[str, int] = {}
        for part_sums, part_weights in gather_object([(sums, weights)]):
            for key, value in part_sums.items():
                merged[key] = merged.get(key, 0.0) + value
                total[key] = total.get(key, 0) + part_weights[key]
        return {key: merged[key] / total[key] for key in merged}

    # ------------------------------------------------------------------ resume
    def _resolve_resume(self, resume: bool | str | Path) -> Path | None:
        latest = ckpt.latest_checkpoint(self.checkpoint_dir)
        if resume is False or resume is None:
            if latest is not None:
                raise VabError(
                    f"{self.checkpoint_dir} already holds checkpoints (latest {latest.name}); "
                    "resume the run or choose another output directory"
                )
            return None
        if resume is True or resume == "auto":
            if latest is None and resume is True:
                raise VabError(f"{self.checkpoint_dir}: no complete checkpoint to resume from")
            return latest
        folder = Path(resume)
        if not ckpt.is_complete(folder):
            raise VabError(f"{folder}: not a complete training checkpoint (no {ckpt.STATE_FILE})")
        return folder

    def _load(self, folder: Path) -> None:
        cfg = self.cfg
        try:
            saved = TrainState(**json.loads((folder / ckpt.STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise VabError(f"{folder / ckpt.STATE_FILE}: unreadable training state ({exc})") from None
        if saved.world_size != self.world_size or saved.batch_size != cfg.batch_size:
            raise VabError(
                f"{folder}: written by {saved.world_size} process(es) with train.batch_size={saved.batch_size}; "
                f"resume with the same (now {self.world_size} and {cfg.batch_size})"
            )
        rng_file = folder / f"objective_rng_{self.rank}.safetensors"
        if not rng_file.exists():
            raise VabError(f"{folder}: missing {rng_file.name}")
        if self.ema is not None and not (folder / "ema.safetensors").exists():
            raise VabError(f"{folder}: has no EMA weights (it was written with train.ema=0)")
        try:
            self.accelerator.load_state(str(folder))
        except Exception as exc:  # damaged or foreign files (pickles with code are refused: weights_only)
            reason = (str(exc).strip().splitlines() or [""])[0][:160]
            if "Weights only load failed" in reason:
                reason = "a file holds objects other than tensors, which are not unpickled"
            raise VabError(
                f"{folder}: cannot load the training state ({type(exc).__name__}: {reason}); "
                "resume from an earlier checkpoint folder with --resume FOLDER"
            ) from None
        load_generator(self.generator, rng_file)
        if self.ema is not None:
            self.ema.load(folder)
        apply_hyperparameters(self._raw_optimizer, cfg.lr, cfg.weight_decay, cfg.betas)
        restart_from(self._raw_scheduler, cfg.lr)
        if self.plateau is not None and saved.plateau:
            self.plateau.load(saved.plateau)
        saved.nonfinite_in_row = 0
        saved.grad_accum, saved.seed = cfg.grad_accum, cfg.seed
        self.state = saved
        self._saved_at = saved.position()

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        self._stop_signal = None
        return previous

    def _restore_signal_handlers(self, previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt  # second signal: abort now, the last checkpoint stays
        # No printing here: a handler may interrupt a console write in progress.
        self._stop_signal = signal.Signals(signum).name


# ---------------------------------------------------------------------- helpers
class _FetchOutsideAutocast:
    """A data loader whose batches are loaded and collated with autocast off: validation runs
    under autocast, and with no worker processes collation would otherwise run inside it (on a
    CPU under bf16 autocast `torch.stack` of float16 features fails)."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device_type = loader, device.type

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches = start_workers(self.loader)
        while True:
            with torch.autocast(self.device_type, enabled=False):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def _check_config(cfg: Any) -> None:
    problems = []
    if cfg.batch_size < 1:
        problems.append(f"train.batch_size={cfg.batch_size} must be >= 1")
    if cfg.grad_accum < 1:
        problems.append(f"train.grad_accum={cfg.grad_accum} must be >= 1")
    if cfg.max_steps < 1:
        problems.append(f"train.max_steps={cfg.max_steps} must be >= 1")
    if cfg.warmup_steps < 0:
        problems.append(f"train.warmup_steps={cfg.warmup_steps} must be >= 0")
    if not 0 <= cfg.ema < 1:
        problems.append(f"train.ema={cfg.ema} must be in [0, 1)")
    if len(cfg.betas) != 2:
        problems.append(f"train.betas={list(cfg.betas)} must have two values")
    if problems:
        raise ConfigError("; ".join(problems))
    resolve_precision(cfg.precision)


def _make_accelerator(cfg: Any, run_dir: Path, extra: dict, parameters: int | None = None) -> Accelerator:
    on_cpu = bool(extra.get("cpu")) or launched_without_gpu() or _env_true("ACCELERATE_USE_CPU")
    precision = resolve_precision(cfg.precision, parameters, "cpu" if on_cpu else None)
    tracker = None if str(cfg.tracker).lower() in ("none", "", "null") else str(cfg.tracker)
    kwargs: dict[str, Any] = dict(
        mixed_precision=precision,
        # Accumulation windows run across epoch ends, so every step has exactly grad_accum micro-batches.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.grad_accum, sync_with_dataloader=False, adjust_scheduler=False
        ),
        # Our schedule counts optimizer steps; Accelerate would otherwise step it once per process.
        step_scheduler_with_optimizer=False,
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    kwargs.update(extra)
    handlers = list(kwargs.get("kwargs_handlers") or [])
    if not any(isinstance(h, DistributedDataParallelKwargs) for h in handlers):
        # Batches may leave parameters without gradients (audio-only batches skip the
        # visual experts, unimodal passes skip the upper layers); DDP must tolerate it.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    kwargs["kwargs_handlers"] = handlers
    launched = launched_processes()
    if "cpu" not in kwargs and launched_without_gpu():
        kwargs["cpu"] = True
    try:
        acc = Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" not in str(exc):
            raise
        # A previous Trainer in this process used another precision: the process-wide
        # AcceleratorState must be rebuilt (the distributed PartialState is kept).
        AcceleratorState._reset_state()
        acc = Accelerator(**kwargs)
    if launched > 1 and acc.num_processes != launched:
        raise VabError(
            f"{launched} processes were launched but Accelerate formed a group of {acc.num_processes}; "
            "on a machine without GPUs launch with `accelerate launch --multi_gpu --num_processes N` "
            "or set ACCELERATE_USE_CPU=1"
        )
    if acc.num_processes > 1:
        _close_group_at_exit()
    if acc.mixed_precision == "fp16" and acc.scaler is None and acc.device.type == "cpu":
        raise ConfigError("train.precision=fp16 needs a GPU (on a CPU it would silently run in fp32); use bf16 or no")
    config = acc.dataloader_config
    if config.split_batches or config.dispatch_batches:
        raise ConfigError("the training engine needs Accelerate's split_batches=False and dispatch_batches=False")
    return acc


@functools.cache
def _close_group_at_exit() -> None:
    """Take the process group down when the process ends (registered once): one whose gloo
    group is still up at interpreter exit can abort there ("terminate called without an
    active exception", SIGABRT) after its work is done, and the launcher reports the run
    failed.  Not sooner: a following Trainer in the same process (pretrain, then fine-tune)
    keeps using it."""
    atexit.register(_destroy_group)


def _destroy_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _save_run_config(path: Path, config: Any, train_cfg: Any) -> None:
    if config is None:
        config = OmegaConf.create({"train": _to_container(train_cfg)})
    elif not isinstance(config, DictConfig):
        config = OmegaConf.structured(config)
    save_config(config, path)


def _to_container(cfg: Any) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def _flat_hparams(config: Any, train_cfg: Any) -> dict[str, Any]:
    """Scalar hyper-parameters for trackers (TensorBoard accepts no lists or nesting)."""
    tree = _to_container(config) if config is not None else {"train": _to_container(train_cfg)}
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        elif isinstance(node, (bool, int, float, str)):
            flat[prefix[:-1]] = node
        else:
            flat[prefix[:-1]] = str(node)

    walk("", tree)
    return flat


def _mean_of(parts: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for part in parts for key in part})
    return {key: sum(float(p[key]) for p in parts if key in p) / sum(key in p for p in parts) for key in keys}


def _batch_items(batch: Any) -> int | None:
    """Leading size of the first non-scalar tensor in a (nested) batch, None without one."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            found = _batch_items(item)
            if found is not None:
                return found
    return None
