"""Classification fine-tuning of the first expert layers (paper 3.5, DESIGN section 5).

Audio, video or both pass through the first ``expert_layers`` layers
(:func:`vab.finetuning.pooling.pooled`), the output is mean-pooled and a linear
head gives class logits ``[B, C]``.  The training step (on the shared engine):
temporal mixup / rolling (labels merged by union) -> logits -> loss:

* BCE (multi-label, AudioSet): smoothed targets ``y * (1 - eps) + eps / 2``,
  i.e. every class target moves eps/2 toward 0.5.
* CE (single-label, VGGSound): the target distribution is the (mixup-merged)
  label set normalised to sum 1, smoothed by ``torch``'s ``label_smoothing=eps``
  (``p * (1 - eps) + eps / C``).

`auto` picks BCE when the data's metadata says ``multi_label``, else CE.
Class-balanced sampling (:class:`BalancedDataset`) re-draws the training items of
every epoch with weights ``sum over a clip's labels of 1 / count(label)``.

A classifier directory is a VAB model directory (``config.yaml`` +
``model.safetensors`` with unchanged keys, loadable by ``vab.load_pretrained``)
plus ``classifier.safetensors`` (``weight`` ``[C, W]``, ``bias`` ``[C]``) and
``classifier.yaml`` (mode, loss, classes, label names).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vab.errors import VabError
from vab.finetuning.pooling import MODES, pooled
from vab.checkpoint import load_model, save_model_dir
from vab.checkpoint.card import TrainingRecord
from vab.checkpoint.hub import resolve_model_dir
from vab.filenames import CONFIG_FILE, HEAD_CONFIG, HEAD_WEIGHTS
from vab.model import VAB
from vab.training.objective import prepare_batch, unwrap

LOSSES = ("auto", "bce", "ce")
# Table 8 (classification column) where the pretraining config says otherwise.
FINETUNE_DEFAULTS = ["train.lr=1e-4", "train.warmup_steps=0"]


class Classifier(nn.Module):
    """A VAB backbone + a linear head on the mean-pooled expert-layer output.

    ``forward(batch) -> logits [B, C]``; `batch` holds ``tokens`` ``[B, K, T]``
    and / or ``features`` ``[B, F, D]`` as the data set yields them."""

    def __init__(self, backbone: nn.Module, num_classes: int, mode: str, label_names: Sequence[str] = ()):
        super().__init__()
        if mode not in MODES:
            raise VabError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if num_classes < 1:
            raise VabError("a classifier needs at least one class (the data has no labels)")
        self.backbone = backbone  # not called `module`: unwrap() must stop at the Classifier
        self.head = nn.Linear(int(backbone.config.model.width), num_classes)
        self.mode = mode
        self.label_names = list(label_names) or [f"class{i}" for i in range(num_classes)]

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.head(pooled(self.backbone, batch, self.mode))


def smoothed_targets(labels: torch.Tensor, loss: str, eps: float) -> torch.Tensor:
    """Targets ``[B, C]`` for `loss`: BCE ``y (1 - eps) + eps / 2``; CE the label set normalised
    to a distribution (smoothing is left to ``F.cross_entropy``)."""
    if loss == "bce":
        return labels * (1.0 - eps) + eps / 2.0
    return labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-12)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str, eps: float = 0.1) -> torch.Tensor:
    """Mean loss of logits ``[B, C]`` against multi-hot labels ``[B, C]`` (``loss`` bce | ce)."""
    targets = smoothed_targets(labels.float(), loss, eps)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), targets)
    if loss == "ce":
        return F.cross_entropy(logits.float(), targets, label_smoothing=eps)
    raise VabError(f"loss {loss!r}: expected bce or ce")


def scores_from_logits(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """Class probabilities ``[B, C]``: sigmoid (BCE) or softmax (CE)."""
    return torch.sigmoid(logits.float()) if loss == "bce" else torch.softmax(logits.float(), dim=-1)


def resolve_loss(loss: str, multi_label: bool) -> str:
    if loss not in LOSSES:
        raise VabError(f"loss {loss!r}: expected one of {', '.join(LOSSES)}")
    return ("bce" if multi_label else "ce") if loss == "auto" else loss


class ClassificationObjective:
    """``objective(model, batch, generator) -> (loss, logs)`` for the engine.

    Mixup / rolling (``cfg.train.mixup_prob`` / ``roll_prob``) only while training."""

    def __init__(self, loss: str, smoothing: float = 0.1, mixup_prob: float = 0.5, roll_prob: float = 0.1):
        self.loss, self.smoothing = loss, float(smoothing)
        self.mixup_prob, self.roll_prob = float(mixup_prob), float(roll_prob)

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        from vab.data.augment import augment

        clf = unwrap(model)
        backbone = clf.backbone
        tokens, features, labels = prepare_batch(backbone, batch)
        if labels is None:
            raise VabError("classification needs labels in the data set")
        if clf.training:
            tokens, features, labels = augment(
                tokens, features, labels, mixup_prob=self.mixup_prob, roll_prob=self.roll_prob,
                frame_rate=backbone.frame_rate, fps=backbone.fps, generator=generator,
            )
        logits = model({"tokens": tokens, "features": features})
        loss = classification_loss(logits, labels, self.loss, self.smoothing)
        hit = labels.gather(1, logits.detach().argmax(-1, keepdim=True)) > 0
        return loss, {"loss": loss.item(), "acc": hit.float().mean().item()}


# ---------------------------------------------------------------------- balanced sampling
def dataset_labels(dataset: Any) -> np.ndarray:
    """Multi-hot labels ``[N, C]`` float32 of a VABDataset, read from the label column only."""
    out = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    columns = [table.column("labels").to_pylist() for table, _ in dataset.tables]
    for row, (n, i) in enumerate(dataset.index):
        ids = columns[n][i]
        if ids:
            out[row, dataset.tables[n][1][ids]] = 1.0
    return out


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-clip weights ``[N]``: the sum over a clip's labels of 1 / (clips with that label)."""
    labels = np.asarray(labels, dtype=np.float64)
    counts = labels.sum(axis=0)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return labels @ inverse


class BalancedDataset(torch.utils.data.Dataset):
    """Class-balanced view of `base`: epoch e draws ``len(base)`` items with replacement,
    with :func:`balanced_weights`, seeded by (seed, e) only (deterministic, resumable).

    The engine's own sampler permutes positions 0..N-1; this wrapper maps them to the
    drawn items, so the engine stays unchanged."""

    def __init__(self, base: Any, labels: np.ndarray, seed: int = 0):
        self.base = base
        self.seed = int(seed)
        self.weights = torch.as_tensor(balanced_weights(labels), dtype=torch.float64)
        if len(self.weights) != len(base):
            raise ValueError(f"labels for {len(self.weights)} clips, data set has {len(base)}")
        if not (self.weights > 0).any():
            raise VabError("class-balanced sampling: no training clip has a label")
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        from vab.training.rng import derive_seed

        if int(epoch) == self.epoch:
            return
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "balanced", self.epoch))
        self.indices = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.base[self.indices[item]]


# ---------------------------------------------------------------------- prediction and metrics
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


def classification_metrics(labels: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """accuracy (top-1 is a positive) and mAP (macro, scikit-learn) from ``[N, C]`` arrays."""
    from vab.finetuning.metrics import accuracy, mean_average_precision

    m_ap, _ = mean_average_precision(labels, scores)
    return {"accuracy": accuracy(labels, scores), "mAP": m_ap}


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


# ---------------------------------------------------------------------- directories
def save_classifier(
    classifier: Classifier, codec: Any, out: str | Path, loss: str, training: TrainingRecord | None = None
) -> Path:
    """Write the backbone as a VAB model directory (its card saying what the run knows,
    `training`) plus classifier.safetensors / classifier.yaml."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from vab.utils import atomic_path

    out = Path(out)
    save_model_dir(classifier.backbone, codec, out, training)
    head = {k: v.detach().contiguous().cpu() for k, v in classifier.head.state_dict().items()}
    with atomic_path(out / HEAD_WEIGHTS) as tmp:
        save_file(head, str(tmp), metadata={"format": "vab-classifier"})
    meta = {"mode": classifier.mode, "loss": loss, "classes": len(classifier.label_names),
            "label_names": list(classifier.label_names)}
    with atomic_path(out / HEAD_CONFIG) as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(meta)))
    return out


def load_classifier(directory: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """(Classifier in eval mode, classifier.yaml as a dict) from a classifier directory or Hub id."""
    from omegaconf import OmegaConf
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_model_dir(directory)
    head_cfg, head_file = directory / HEAD_CONFIG, directory / HEAD_WEIGHTS
    for path in (head_cfg, head_file):
        if not path.is_file():
            raise VabError(f"{path}: missing (not a classifier directory; run finetune/classification.py)")
    try:
        meta = OmegaConf.to_container(OmegaConf.load(head_cfg))
        mode, loss, names = meta["mode"], meta["loss"], list(meta["label_names"])
    except Exception as exc:
        raise VabError(f"{head_cfg}: unreadable classifier description ({type(exc).__name__})") from None
    if loss not in ("bce", "ce"):
        raise VabError(f"{head_cfg}: loss {loss!r} is not bce or ce")
    backbone = load_model(directory, device, kind=VAB)
    clf = Classifier(backbone, len(names), mode, names)
    try:
        tensors = load_file(str(head_file))
        clf.head.load_state_dict(tensors, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise VabError(f"{head_file}: cannot load the head ({str(exc).splitlines()[0][:200]})") from None
    return clf.to(backbone.codebooks.device).eval(), meta


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
    from vab.config import load_config
    from vab.data.dataset import VABDataset, check_matches_config, collate, load_infos
    from vab.finetuning.metrics import mean_average_precision

    model_dir = resolve_model_dir(model_dir)
    clf, meta = load_classifier(model_dir, device=device)
    cfg = load_config(model_dir)
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
    from vab.safetext import csv_cell
    from vab.utils import atomic_path

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


# ---------------------------------------------------------------------- the recipe
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
    from vab.config import load_config
    from vab.data.dataset import collate
    from vab.training.run import build_datasets, check_same_codec_state, data_paths, load_codec_for, training_record
    from vab.training.engine import Trainer
    from vab.files import refuse_input_folder
    from vab.utils import check_writable_dir

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
    train_set, valid_set, info = build_datasets(cfg, paths)
    if mode != "audio" and not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data has no visual features; use --mode audio")
    if not info.label_names:
        raise VabError(f"{paths[0]}: the data set has no labels to classify")
    loss = resolve_loss(loss, info.multi_label)
    backbone = load_model(init, kind=VAB)
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
