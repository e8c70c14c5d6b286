"""The classifier: a VAB backbone plus a linear head on the mean-pooled output of its first
expert layers, and its directory.

A classifier directory is a VAB model directory (``config.yaml`` + ``model.safetensors``
with unchanged keys, loadable by ``vab.load_pretrained``) plus ``classifier.safetensors``
(``weight`` ``[C, W]``, ``bias`` ``[C]``) and ``classifier.yaml`` (mode, loss, classes,
label names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch import nn

from vab.checkpoint import load_model, save_model_dir
from vab.checkpoint.card import TrainingRecord
from vab.checkpoint.hub import resolve_model_dir
from vab.codecs import AudioCodec
from vab.errors import VabError
from vab.filenames import HEAD_CONFIG, HEAD_WEIGHTS
from vab.finetuning.pooling import MODES, pooled
from vab.model import VAB
from vab.utils import atomic_path
from vab.weights import load_state, read_safetensors


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


def save_classifier(
    classifier: Classifier, codec: AudioCodec, out: str | Path, loss: str, training: TrainingRecord | None = None
) -> Path:
    """Write the backbone as a VAB model directory (its card saying what the run knows,
    `training`) plus classifier.safetensors / classifier.yaml."""
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
    load_state(clf.head, read_safetensors(head_file)[1], f"{head_file}: not the head of this classifier")
    return clf.to(backbone.codebooks.device).eval(), meta

