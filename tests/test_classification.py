"""Classification fine-tuning: losses, balanced sampling, the recipe on synthetic data, save / load."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.checkpoint import load_model
from vab.config import load_config
from vab.errors import VabError
from vab.finetuning.balanced import BalancedDataset, balanced_weights, dataset_labels
from vab.finetuning.classification import evaluate_classifier, finetune_classifier, write_per_class_csv
from vab.finetuning.classification_objective import classification_loss, resolve_loss
from vab.finetuning.classifier import load_classifier
from vab.model import VAB

# a small backbone so the whole file stays fast on 2 busy cores
SMALL = ["model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64"]
RUN = ["train.tracker=none", "train.batch_size=16", "train.checkpoint_every=0", "train.valid_every=0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data dir, pretrained model dir): synthetic data + a fitted codec, 10 pretraining steps."""
    from vab.codecs.spectral import SpectralCodec
    from vab.training.run import pretrain

    root = tmp_path_factory.mktemp("cls")
    data = make_synthetic_dataset(root / "data")
    cfg = load_config("tiny", tiny_overrides(data))
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000 * 2).astype(np.float32) * np.repeat(rng.uniform(0.01, 0.5, 20), 1600)
    SpectralCodec.from_config(cfg.codec).fit([noise]).save(data)
    model = pretrain(load_config("tiny", tiny_overrides(data) + SMALL + RUN + [
        "train.max_steps=10", "train.batch_size=8", "train.warmup_steps=2", "train.lr=2e-3",
        f"train.output_dir={root / 'pre'}",
    ]))
    return data, model


def _finetune(setup, tmp: Path, mode: str, steps: int, **kw) -> Path:
    data, model = setup
    return finetune_classifier(
        model, mode, tiny_overrides(data) + RUN + [f"train.max_steps={steps}", "train.lr=3e-3",
                                                   f"train.output_dir={tmp / mode}"], **kw)


@pytest.mark.parametrize("mode", ["audio", "visual", "audio-visual"])
def test_fine_tuning_reaches_90_percent(setup, tmp_path, mode):
    out = _finetune(setup, tmp_path, mode, 12)
    metrics, rows = evaluate_classifier(out, [setup[0]], "test")
    print(mode, metrics)
    assert metrics["clips"] == 16
    assert metrics["accuracy"] >= 0.9
    assert metrics["mAP"] >= 0.9
    assert [r["class"] for r in rows] == [f"class{c}" for c in range(4)]
    assert all(r["positives"] == 4 for r in rows)
    # still a VAB model directory with the pretrained keys
    backbone = load_model(out, kind=VAB)
    assert set(backbone.state_dict()) == set(load_model(setup[1], kind=VAB).state_dict())


def test_linear_probe_freezes_backbone_and_reload_matches(setup, tmp_path):
    from vab.data.dataset import VABDataset, collate

    out = _finetune(setup, tmp_path, "visual", 4, linear_probe=True)
    before = load_model(setup[1], kind=VAB).state_dict()
    after = load_model(out, kind=VAB).state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    clf, meta = load_classifier(out)
    assert meta["mode"] == "visual" and meta["loss"] == "ce" and meta["label_names"] == [f"class{c}" for c in range(4)]
    # predictions reproduce after a reload
    data = VABDataset([setup[0]], "test", train=False, fps=2.0, duration=4.0, levels=4)
    batch = collate([data[i] for i in range(8)])
    with torch.no_grad():
        a = load_classifier(out)[0](batch)
        b = clf(batch)
    assert torch.equal(a, b)
    metrics, rows = evaluate_classifier(out, [setup[0]], "test")
    path = write_per_class_csv(rows, tmp_path / "per_class.csv")
    with open(path) as fh:
        read = list(csv.DictReader(fh))
    assert [r["class"] for r in read] == [r["class"] for r in rows]
    assert float(read[0]["ap"]) == pytest.approx(rows[0]["ap"])
    # data whose labels the classifier does not know, or an absent split
    other = make_synthetic_dataset(tmp_path / "five", classes=5, per_class={"test": 1})
    with pytest.raises(VabError, match="class4"):
        evaluate_classifier(out, [other], "test")
    with pytest.raises(VabError, match="no clips"):
        evaluate_classifier(out, [setup[0]], "nosuchsplit")


def test_cli_balanced_bce(setup, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cls_recipe", Path(__file__).parents[1] / "finetune" / "classification.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    data, model = setup
    out = tmp_path / "clf"
    code = recipe.main(["--init", str(model), "--mode", "audio", "--balanced", "--loss", "bce",
                        "--model-out", str(out), *tiny_overrides(data), *RUN, "train.max_steps=2",
                        f"train.output_dir={tmp_path / 'run'}"])
    assert code == 0
    assert load_classifier(out)[1]["loss"] == "bce"
    assert recipe.main(["--init", str(tmp_path / "nope"), *tiny_overrides(data)]) == 2


def test_bad_directories(setup, tmp_path):
    with pytest.raises(VabError, match="classifier.yaml"):
        load_classifier(setup[1])  # a pretrained model, no head
    with pytest.raises(VabError, match="not a model directory"):
        finetune_classifier(tmp_path / "missing", "audio", tiny_overrides(setup[0]))
    with pytest.raises(VabError, match="mode"):
        finetune_classifier(setup[1], "smell", tiny_overrides(setup[0]))


def test_bce_with_smoothing():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    eps = 0.1
    want = labels * (1 - eps) + eps / 2  # [0.95, 0.05, 0.95]
    p = torch.sigmoid(logits)
    manual = -(want * p.log() + (1 - want) * (1 - p).log()).mean()
    assert classification_loss(logits, labels, "bce", eps).item() == pytest.approx(manual.item(), rel=1e-6)
    assert classification_loss(logits, labels, "bce", 0.0).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, labels).item())


def test_ce_with_smoothing_and_mixed_labels():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]])
    labels = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])  # second: mixup of two clips
    eps = 0.1
    target = labels / labels.sum(1, keepdim=True) * (1 - eps) + eps / 4
    manual = -(target * logits.log_softmax(-1)).sum(1).mean()
    assert classification_loss(logits, labels, "ce", eps).item() == pytest.approx(manual.item(), rel=1e-6)
    assert resolve_loss("auto", True) == "bce" and resolve_loss("auto", False) == "ce"
    assert resolve_loss("ce", True) == "ce"
    with pytest.raises(VabError):
        resolve_loss("hinge", False)


def test_balanced_weights_sum_inverse_counts():
    labels = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=np.float32)
    assert balanced_weights(labels) == pytest.approx([1 / 3, 1 / 3, 1 / 3 + 1, 0])


class _Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.epochs = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def set_epoch(self, e):
        self.epochs.append(e)


def test_balanced_dataset_draws_classes_uniformly():
    classes = np.repeat([0, 1, 2], [300, 60, 12])  # imbalanced 25 : 5 : 1
    labels = np.eye(3, dtype=np.float32)[classes]
    base = _Items(len(classes))
    ds = BalancedDataset(base, labels, seed=3)
    drawn = classes[[ds[i] for i in range(len(ds))]]
    ds.set_epoch(1)
    drawn = np.concatenate([drawn, classes[[ds[i] for i in range(len(ds))]]])
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.all(np.abs(share - 1 / 3) < 0.06), share
    assert base.epochs == [0, 1]
    # deterministic in (seed, epoch); epochs differ
    again = BalancedDataset(_Items(len(classes)), labels, seed=3)
    again.set_epoch(1)
    assert again.indices == ds.indices
    ds.set_epoch(0)
    assert ds.indices != again.indices
    with pytest.raises(VabError):
        BalancedDataset(_Items(2), np.zeros((2, 3), dtype=np.float32))


def test_dataset_labels_reads_label_column(setup):
    from vab.data.dataset import VABDataset

    data = VABDataset([setup[0]], "valid", train=False)
    labels = dataset_labels(data)
    assert labels.shape == (16, 4)
    assert np.array_equal(labels, np.stack([data[i]["labels"].numpy() for i in range(len(data))]))
