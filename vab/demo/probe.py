"""The visual ceiling: how well the stored frame features alone name a clip's class.

A generated soundtrack can only be of the right class if the picture, *as the frame encoder
stored it*, tells the class.  :func:`visual_probe` measures that with a linear probe: each
clip's features ``[F, D]`` are pooled (mean and max) over the frames where the object is
visible (the synthetic world's ground truth; all frames for data without it), a standardised
logistic regression is fitted on the training split and scored on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vab.data.store import DATA_DIR, DataInfo, column_to_numpy, load_dataset_dir
from vab.data.synthetic import read_truth, visibility
from vab.errors import VabError

PROBE_C = 0.1  # inverse L2 strength of the probe (features are standardised)


def stored_features(data_dir: str | Path) -> dict[str, Any]:
    """An extracted data set's ``ids`` (list), ``split`` (list), ``labels`` (int ``[N]``, first
    label), ``features`` (float32 ``[N, F, D]``) and its ``fps``."""
    data_dir = Path(data_dir)
    info = DataInfo.load(data_dir)
    if not info.has_visual:
        raise VabError(f"{data_dir}: audio-only data set; the visual probe needs stored frame features")
    table = load_dataset_dir(data_dir / DATA_DIR).data
    labels = [row[0] if row else -1 for row in table.column("labels").to_pylist()]
    return {
        "ids": table.column("id").to_pylist(), "split": table.column("split").to_pylist(),
        "labels": np.asarray(labels), "features": column_to_numpy(table.column("features"), np.float32),
        "fps": info.fps,
    }


def pool_visible(features: np.ndarray, visible: np.ndarray | None) -> np.ndarray:
    """``[F, D]`` -> ``[2 D]``: mean and max over the `visible` frames (bool ``[F]``; all frames
    when None or when none is visible)."""
    if visible is not None and len(visible) == len(features) and visible.any():
        features = features[visible]
    return np.concatenate([features.mean(axis=0), features.max(axis=0)])


def visual_probe(
    data_dir: str | Path, world: str | Path | None = None, train_split: str = "train", test_split: str = "test",
) -> dict[str, Any]:
    """Accuracy of a linear probe on pooled stored frame features (see the module docstring).

    `world`: the synthetic world's folder (``manifest.csv`` with the visible spans), so
    that only frames showing the object are pooled.  Returns accuracy, chance (1 / classes
    seen in training), and the clip counts."""
    data = stored_features(data_dir)
    truth = read_truth(world) if world is not None else {}
    frames = data["features"].shape[1]
    pooled = []
    for clip_id, feats in zip(data["ids"], data["features"]):
        row = truth.get(clip_id)
        vis = visibility(row.intervals, frames, data["fps"]) if row is not None else None
        pooled.append(pool_visible(feats, vis))
    x = np.stack(pooled)
    y, split = data["labels"], np.asarray(data["split"])
    train, test = split == train_split, split == test_split
    if not train.any() or not test.any():
        raise VabError(f"{data_dir}: the visual probe needs {train_split} and {test_split} clips")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=3000))
    probe.fit(x[train], y[train])
    return {
        "accuracy": float((probe.predict(x[test]) == y[test]).mean()),
        "chance": 1.0 / len(np.unique(y[train])),
        "train_clips": int(train.sum()), "test_clips": int(test.sum()),
    }
