"""Contrastive (retrieval) fine-tuning of the first expert layers (paper 3.4).

Audio alone and video alone pass through the first ``expert_layers`` layers
(two passes, tokens never masked), are mean-pooled and L2-normalised
(`vab.finetuning.pooling.embeddings`); the loss is the symmetric InfoNCE over
the batch similarity matrix divided by a learnable temperature.

The temperature is stored as ``log_temperature`` (so Adam moves it on a log
scale), initialised at log(0.07) and kept inside [TEMPERATURE_MIN,
TEMPERATURE_MAX] = [0.01, 1.0]: every training forward first clamps the stored
parameter in place (so it can never drift out, even with Adam momentum) and
the value used is clamped again (so the forward is always in bounds).

On several processes the embeddings of every process are gathered, with their
gradients (:func:`gather_with_grad`, as open_clip's ``gather_features(...,
gather_with_grad=True)``), so every clip of the global batch is a negative for
every other: N processes with batch b train exactly like one with batch N x b.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from vab.checkpoint import load_model, save_model_dir
from vab.checkpoint.card import TrainingRecord
from vab.checkpoint.hub import resolve_model_dir
from vab.codecs import AudioCodec
from vab.data.augment import augment
from vab.data.dataset import VABDataset, check_matches_config, collate, load_infos
from vab.errors import VabError
from vab.filenames import TEMPERATURE_FILE
from vab.files import refuse_input_folder
from vab.finetuning.metrics import both_directions, per_class_subset
from vab.finetuning.pooling import embeddings
from vab.model import VAB
from vab.training.engine import Trainer
from vab.training.objective import prepare_batch, unwrap
from vab.training.run import (
    build_datasets, check_same_codec_state, data_paths, load_codec_for, take_model_settings, training_record,
)
from vab.utils import atomic_path, check_writable_dir
from vab.weights import read_safetensors

TEMPERATURE_INIT = 0.07
TEMPERATURE_MIN = 0.01
TEMPERATURE_MAX = 1.0


def info_nce(audio: torch.Tensor, video: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: mean of the audio->video and video->audio cross-entropies.

    audio, video: ``[B, W]`` L2-normalised, row i of each from the same clip.
    """
    logits = audio @ video.T / temperature  # [B, B]
    target = torch.arange(audio.shape[0], device=audio.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class _GatherWithGrad(torch.autograd.Function):
    """All processes' ``[b_r, W]`` rows concatenated in rank order; backward hands each process
    the sum over processes of the gradient of its own rows (every process computes the same
    loss over the whole batch, and DDP then averages: the gradient of one process with it all)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]

        world, rank = dist.get_world_size(), dist.get_rank()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
        counts = [int(s.item()) for s in sizes]
        padded = x.new_zeros((max(counts), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.counts, ctx.rank = counts, rank
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's loss reads every row
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[b, W]`` on each process -> ``[sum of b, W]`` (rank order), differentiable; `x` itself
    when not running on several processes."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return x
    return _GatherWithGrad.apply(x)


class ContrastiveVAB(nn.Module):
    """A VAB plus its learnable temperature, trained together by the engine.

    Keys in ``state_dict``: ``vab.<VAB key>`` and ``log_temperature``;
    `save` writes the VAB directory unchanged plus ``retrieval.safetensors``.
    """

    def __init__(self, vab: nn.Module, temperature: float = TEMPERATURE_INIT):
        super().__init__()
        if not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
            raise ValueError(f"temperature {temperature} outside [{TEMPERATURE_MIN}, {TEMPERATURE_MAX}]")
        self.vab = vab
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature), device=vab.codebooks.device))

    @property
    def temperature(self) -> torch.Tensor:
        """The clamped temperature (a differentiable scalar)."""
        return self.log_temperature.clamp(math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX)).exp()

    def forward(
        self, tokens: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens ``[B, K, T]``, features ``[B, F, D]`` -> (audio ``[B, W]``, video ``[B, W]``, temperature)."""
        if self.training:
            with torch.no_grad():
                self.log_temperature.clamp_(math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX))
        audio, video = embeddings(self.vab, {"tokens": tokens, "features": features})
        return audio, video, self.temperature

    def trainable(self, name: str, param: nn.Parameter | None = None) -> bool:
        """Engine filter: the temperature, the embeddings and the first expert layers only."""
        if name == "log_temperature":
            return True
        name = name.removeprefix("vab.")
        if name.startswith("layers."):
            return int(name.split(".")[1]) < self.vab.expert_layers
        return self.vab.part_of(name) == "embeddings"

    def save(self, codec: AudioCodec, out: str | Path, training: TrainingRecord | None = None) -> Path:
        """Write the VAB model directory (generates as before; its card saying what the run
        knows, `training`) plus the temperature file."""
        out = save_model_dir(self.vab, codec, out, training)
        with atomic_path(out / TEMPERATURE_FILE) as tmp:
            save_file({"log_temperature": self.log_temperature.detach().cpu().reshape(1)}, str(tmp))
        return out


class ContrastiveObjective:
    """``objective(model, batch, generator) -> (loss, logs)`` for a `ContrastiveVAB`.

    Training-time temporal mixup and rolling (cfg.train.mixup_prob / roll_prob; Table 8
    retrieval: 0.5 / 0.1).  Mixup cuts audio and video of two clips at the same
    instant, so the mixed audio and mixed video still form a positive pair.
    On several processes the loss is over the global batch (:func:`gather_with_grad`).
    logs: loss, temperature, acc (share of in-batch top-1 matches, both directions).
    """

    def __init__(self, cfg: Any, augment: bool = True):
        self.mixup_prob = float(cfg.train.mixup_prob) if augment else 0.0
        self.roll_prob = float(cfg.train.roll_prob) if augment else 0.0

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        wrapper = unwrap(model)
        core = wrapper.vab
        if batch.get("features") is None:
            raise ValueError("contrastive fine-tuning needs visual features in every batch")
        tokens, features, labels = prepare_batch(core, batch)
        if wrapper.training:
            tokens, features, _ = augment(
                tokens, features, labels, mixup_prob=self.mixup_prob, roll_prob=self.roll_prob,
                frame_rate=core.frame_rate, fps=core.fps, generator=generator,
            )
        audio, video, temperature = model(tokens, features)
        audio, video = gather_with_grad(audio), gather_with_grad(video)  # every process's negatives
        loss = info_nce(audio.float(), video.float(), temperature)
        with torch.no_grad():
            sim = audio @ video.T
            target = torch.arange(sim.shape[0], device=sim.device)
            acc = 0.5 * ((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean())
        return loss, {"loss": loss.item(), "temperature": temperature.detach().item(), "acc": acc.item()}


@torch.no_grad()
def split_embeddings(
    model: nn.Module, loader: Any, gather: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio ``[N, W]``, video ``[N, W]``) for every batch of `loader` (no augmentation).

    `model`: a VAB or a ContrastiveVAB (possibly wrapped).  `gather` (e.g.
    ``accelerator.gather_for_metrics``) collects each batch from all processes so
    the result covers the whole split."""
    core = unwrap(model)
    core = getattr(core, "vab", core)
    audio, video = [], []
    for batch in loader or []:
        a, v = embeddings(core, batch)
        if gather is not None:
            a, v = gather(a.contiguous()), gather(v.contiguous())
        audio.append(a.float().cpu())
        video.append(v.float().cpu())
    if not audio:
        raise ValueError("no clips to embed")
    return torch.cat(audio), torch.cat(video)


def retrieval_validation(gather: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """validate(model, loader) -> {"v2a/R@1", ..., "a2v/MedR", "temperature"} over the whole split."""
    def validate(model: nn.Module, loader: Any) -> dict[str, float]:
        audio, video = split_embeddings(model, loader, gather)
        metrics = both_directions(audio, video)
        out: dict[str, float] = {}
        for direction, short in (("video->audio", "v2a"), ("audio->video", "a2v")):
            for key, value in metrics[direction].items():
                out[f"{short}/{key}"] = value
        temperature = getattr(unwrap(model), "temperature", None)
        if temperature is not None:
            out["temperature"] = float(temperature.detach())
        return out

    return validate


def load_temperature(directory: str | Path) -> float | None:
    """The fine-tuned temperature saved next to a model, or None when absent."""
    path = Path(directory) / TEMPERATURE_FILE
    if not path.is_file():
        return None
    tensors = read_safetensors(path)[1]
    if tensors.get("log_temperature") is None or tensors["log_temperature"].numel() != 1:
        raise VabError(f"{path}: not a retrieval temperature (no one-value log_temperature tensor)")
    return float(tensors["log_temperature"].exp().item())


def finetune_retrieval(
    cfg: Any, init: str | Path, resume: bool | str = False, model_out: str | Path | None = None
) -> Path:
    """Contrastive fine-tuning of the model directory or Hub id `init` on ``cfg.data.path`` with
    ``cfg.train`` settings; writes RUN and a model directory (default RUN/model).  Returns it."""
    if model_out is not None:  # written after training: refuse a bad place before it
        check_writable_dir(model_out, "the model directory")

    source, init = init, resolve_model_dir(init)
    refuse_input_folder(model_out or Path(cfg.train.output_dir) / "model", init, "--model-out")
    paths = data_paths(cfg)
    check_same_codec_state(paths)
    vab = load_model(init, kind=VAB)
    if int(vab.expert_layers) < 1:
        raise VabError(f"{init}: the model has no expert layers to fine-tune (model.expert_layers=0)")
    take_model_settings(cfg, vab)  # the data is read at the geometry the initial model was trained on
    train_set, valid_set, info = build_datasets(cfg, paths)
    if not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data has no visual features; retrieval fine-tuning needs videos")
    codec = load_codec_for(cfg, init)
    model = ContrastiveVAB(vab)
    trainer: Trainer | None = None

    def gather(x: torch.Tensor) -> torch.Tensor:
        return trainer.accelerator.gather_for_metrics(x) if trainer is not None else x

    trainer = Trainer(
        cfg.train, model, ContrastiveObjective(cfg), train_set, valid_set, collate_fn=collate,
        validate=retrieval_validation(gather), config=cfg, num_workers=cfg.data.num_workers,
        trainable=model.trainable,
    )
    trained = unwrap(trainer.fit(resume=resume))
    out = Path(model_out or Path(trainer.run_dir) / "model")
    if trainer.accelerator.is_main_process:
        trained.save(codec, out, training_record(trainer, train_set, "retrieval", init=source, details={
            "temperature": f"{trained.temperature.item():.4f}",
        }))
    trainer.accelerator.wait_for_everyone()
    return out


@torch.no_grad()
def evaluate_retrieval(
    model_dir: str | Path,
    paths: list[str],
    split: str = "test",
    per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
) -> dict[str, Any]:
    """Retrieval metrics of the model directory `model_dir` on `split` of the extracted data sets.

    per_class: keep k clips per class (first label of each clip; `vab.finetuning.metrics.per_class_subset`
    with `seed`).  Returns {"video->audio": {...}, "audio->video": {...}, "clips": N, "chance": 1/N}.
    """
    model = load_model(model_dir, device, kind=VAB).eval()
    cfg = model.config
    info = load_infos(paths)
    check_matches_config(info, cfg, source=", ".join(paths))
    if not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data has no visual features; retrieval needs videos")
    ds = VABDataset(paths, split, train=False, fps=cfg.data.fps, duration=cfg.data.duration, levels=cfg.model.levels)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    audio, video, labels = [], [], []
    for batch in loader:
        a, v = embeddings(model, batch)
        audio.append(a.float().cpu())
        video.append(v.float().cpu())
        labels.append(batch["labels"].argmax(dim=1))  # first positive label
    audio_t, video_t = torch.cat(audio), torch.cat(video)
    if per_class is not None:
        keep = torch.as_tensor(per_class_subset(torch.cat(labels).numpy(), per_class, seed))
        audio_t, video_t = audio_t[keep], video_t[keep]
    n = int(audio_t.shape[0])
    out: dict[str, Any] = dict(both_directions(audio_t, video_t))
    out["clips"] = n
    out["chance"] = float(np.float64(1.0) / n)
    return out
