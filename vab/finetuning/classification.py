"""Classification fine-tuning (paper 3.5): the recipe, its validation and the evaluation of a
classifier directory.

Audio, video or both pass through the first ``expert_layers`` layers
(:func:`vab.finetuning.pooling.pooled`), the output is mean-pooled and a linear
head gives class logits ``[B, C]`` (:mod:`vab.finetuning.classifier`); the training
step and its losses are :mod:`vab.finetuning.classification_objective`, class-balanced
sampling :mod:`vab.finetuning.balanced`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vab.checkpoint import load_model
from vab.checkpoint.hub import resolve_model_dir
from vab.config import load_config
from vab.data.dataset import VABDataset, check_matches_config, collate, load_infos
from vab.errors import VabError
from vab.filenames import CONFIG_FILE
from vab.files import refuse_input_folder
from vab.finetuning.balanced import BalancedDataset, dataset_labels
from vab.finetuning.classification_objective import ClassificationObjective, resolve_loss, scores_from_logits
from vab.finetuning.classifier import Classifier, load_classifier, save_classifier
from vab.finetuning.metrics import classification_metrics, mean_average_precision
from vab.finetuning.pooling import MODES
from vab.model import VAB
from vab.safetext import csv_cell
from vab.training.engine import Trainer
from vab.training.objective import unwrap
from vab.training.run import (
    build_datasets, check_same_codec_state, data_paths, load_codec_for, take_model_settings, training_record,
)
from vab.utils import atomic_path, check_writable_dir

# Table 8 (classification column) where the pretraining config says otherwise.
FINETUNE_DEFAULTS = ["train.lr=1e-4", "train.warmup_steps=0"]


@torch.no_grad()
def predict(classifier: nn.Module, loader: Any, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores ``[N, C]``, labels ``[N, C]``) on the CPU over a loader of collated batches."""
    scores, labels = [], []
    for batch in loader or []:
        scores.append(scores_from_logits(classifier(batch), loss).cpu())
        labels.append(torch.as_tensor(batch["labels"]).float().cpu())
    if not scores:
        return torch.zeros(0, 0), torch.zeros(0, 0)
    return torch.cat(scores), torch.cat(labels)


def classification_validation(accelerator_ref: dict, loss: str):
    """validate(model, loader) -> {accuracy, mAP} over the whole (gathered) validation set."""

    def validate(model: nn.Module, loader: Any) -> dict[str, float]:
        acc = accelerator_ref.get("accelerator")
        scores, labels = [], []
        for batch in loader or []:
            s = scores_from_logits(model(batch), loss)
            y = torch.as_tensor(batch["labels"]).float().to(s.device)
            if acc is not None:
                s, y = acc.gather_for_metrics((s, y))
            scores.append(s.cpu())
            labels.append(y.cpu())
        if not scores:
            return {}
        return classification_metrics(torch.cat(labels), torch.cat(scores))

    return validate


def _label_map(data_names: Sequence[str], model_names: Sequence[str], source: str) -> np.ndarray:
    unknown = [n for n in data_names if n not in model_names]
    if unknown:
        raise VabError(f"{source}: labels the classifier does not know: {', '.join(unknown[:5])}")
    return np.array([list(model_names).index(n) for n in data_names], dtype=np.int64)


def evaluate_classifier(
    model_dir: str | Path, data_paths: Sequence[str | Path], split: str | None = "test",
    batch_size: int = 32, device: str = "cpu",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Accuracy and mAP of a classifier directory on `split` of extracted data sets.

    Returns (metrics {accuracy, mAP, clips}, per-class rows {class, ap, positives,
    top1_recall}); data labels are matched to the classifier's classes by name."""
    clf, meta = load_classifier(model_dir, device=device)
    cfg = clf.backbone.config
    paths = [str(p) for p in data_paths]
    info = load_infos(paths)
    check_matches_config(info, cfg, source=", ".join(paths))
    if clf.mode != "audio" and not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data cannot feed a {clf.mode} classifier")
    remap = _label_map(info.label_names, clf.label_names, ", ".join(paths))
    data = VABDataset(paths, split, train=False, fps=cfg.data.fps, duration=cfg.data.duration, levels=cfg.model.levels)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)
    scores, data_labels = predict(clf, loader, meta["loss"])
    labels = torch.zeros(len(data_labels), len(clf.label_names))
    labels[:, torch.as_tensor(remap)] = data_labels
    metrics = classification_metrics(labels, scores)
    metrics["clips"] = float(len(labels))
    _, ap = mean_average_precision(labels, scores)
    top1 = scores.argmax(dim=1)
    rows = []
    for c, name in enumerate(clf.label_names):
        positives = labels[:, c] > 0
        n = int(positives.sum())
        rows.append({
            "class": name, "ap": float(ap[c]), "positives": n,
            "top1_recall": float((top1[positives] == c).float().mean()) if n else float("nan"),
        })
    return metrics, rows


def write_per_class_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write per-class rows (as from :func:`evaluate_classifier`) as CSV, atomically; a
    class name starting with = + - @ is written with a leading ' (never run as a formula)."""
    path = Path(path)
    fields = ["class", "ap", "positives", "top1_recall"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)  # class names are user text
    return path


def finetune_classifier(
    init: str | Path,
    mode: str = "audio-visual",
    overrides: Sequence[str] = (),
    *,
    linear_probe: bool = False,
    balanced: bool = False,
    loss: str = "auto",
    smoothing: float = 0.1,
    resume: bool | str = False,
    model_out: str | Path | None = None,
) -> Path:
    """Fine-tune a classifier from the model directory or Hub id `init` on ``data.path`` (in `overrides`).

    The config is `init`'s, then :data:`FINETUNE_DEFAULTS`, then `overrides`; the run goes to
    ``train.output_dir`` (default ``runs/classify-<mode>``).  Returns the classifier directory."""
    if model_out is not None:  # written after training: refuse a bad place before it
        check_writable_dir(model_out, "the classifier directory")
    if mode not in MODES:
        raise VabError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    source, init = init, resolve_model_dir(init)
    if not (init / CONFIG_FILE).is_file():
        raise VabError(f"{init}: not a model directory (no config.yaml)")
    cfg = load_config(init, FINETUNE_DEFAULTS + [f"train.output_dir=runs/classify-{mode}"] + list(overrides))
    refuse_input_folder(model_out or Path(cfg.train.output_dir) / "model", init, "--model-out")
    paths = data_paths(cfg)
    check_same_codec_state(paths)
    backbone = load_model(init, kind=VAB)
    take_model_settings(cfg, backbone)  # data that does not fit the model is refused, not an IndexError
    train_set, valid_set, info = build_datasets(cfg, paths)
    if mode != "audio" and not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data has no visual features; use --mode audio")
    if not info.label_names:
        raise VabError(f"{paths[0]}: the data set has no labels to classify")
    loss = resolve_loss(loss, info.multi_label)
    with torch.random.fork_rng(devices=[]):  # the new head starts alike in every run of one config
        torch.manual_seed(int(cfg.train.seed))
        classifier = Classifier(backbone, len(info.label_names), mode, info.label_names)
    if balanced:
        train_set = BalancedDataset(train_set, dataset_labels(train_set), seed=cfg.train.seed)
    objective = ClassificationObjective(loss, smoothing, cfg.train.mixup_prob, cfg.train.roll_prob)
    ref: dict[str, Any] = {}
    trainer = Trainer(
        cfg.train, classifier, objective, train_set, valid_set, collate_fn=collate,
        validate=classification_validation(ref, loss), config=cfg, num_workers=cfg.data.num_workers,
        trainable=(lambda name, _: name.startswith("head.")) if linear_probe else None,
    )
    ref["accelerator"] = trainer.accelerator
    trained = unwrap(trainer.fit(resume=resume))
    out = Path(model_out or Path(trainer.run_dir) / "model")
    if trainer.accelerator.is_main_process:
        record = training_record(trainer, train_set, "classification", init=source, details={
            "mode": mode, "classes": len(info.label_names), "loss": loss, "linear probe": linear_probe,
            "class-balanced sampling": balanced,
        })
        save_classifier(trained, load_codec_for(cfg, init), out, loss, record)
    trainer.accelerator.wait_for_everyone()
    return out
