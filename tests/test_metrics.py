"""Retrieval, mAP and accuracy metrics against hand-computed and scikit-learn values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score

from vab.finetuning.metrics import (
    accuracy,
    both_directions,
    mean_average_precision,
    partner_ranks,
    per_class_subset,
    retrieval_metrics,
)


def test_ranks_and_recall_by_hand():
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # partner best -> rank 1
            [0.8, 0.5, 0.1, 0.0],  # one better -> rank 2
            [0.3, 0.4, 0.2, 0.1],  # two better -> rank 3
            [0.5, 0.6, 0.7, 0.1],  # three better -> rank 4
        ]
    )
    assert partner_ranks(sim).tolist() == [1, 2, 3, 4]
    m = retrieval_metrics(sim, ks=(1, 2, 10))
    assert m == {"R@1": 0.25, "R@2": 0.5, "R@10": 1.0, "MedR": 2.5, "MeanR": 2.5}


def test_ties_are_pessimistic():
    # query 0: partner ties with candidate 2 -> rank 2 (not 1); query 1: all equal -> rank 3
    sim = np.array([[0.7, 0.1, 0.7], [0.2, 0.2, 0.2], [0.0, 0.0, 1.0]])
    assert partner_ranks(sim).tolist() == [2, 3, 1]
    m = retrieval_metrics(sim, ks=(1, 2))
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@2"] == pytest.approx(2 / 3)
    assert m["MedR"] == 2.0


def test_constant_similarity_never_scores():
    m = retrieval_metrics(torch.zeros(5, 5), ks=(1, 4, 5))
    assert m["R@1"] == 0.0 and m["R@4"] == 0.0 and m["R@5"] == 1.0 and m["MedR"] == 5.0


def test_more_candidates_than_queries_and_bad_shapes():
    sim = np.array([[0.5, 0.1, 0.9], [0.0, 0.4, 0.3]])
    assert partner_ranks(sim).tolist() == [2, 1]
    with pytest.raises(ValueError):
        partner_ranks(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        partner_ranks(np.zeros(3))


def test_both_directions_uses_cosine_and_transposes():
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # video 0 is closest to audio 2 (not its partner); otherwise partners align
    video = torch.tensor([[3.0, 2.9], [0.0, 5.0], [2.0, 2.0]])
    out = both_directions(audio, video)
    # video->audio: v0 ranks a2 first (cos ~1), a0 second -> rank 2; v1 -> a1 rank 1; v2 ties a2 only -> 1
    assert out["video->audio"]["R@1"] == pytest.approx(2 / 3)
    # audio->video: a0 -> v0 (cos .72) vs v2 (.707), v1 (0) -> rank 1; a1 -> v1 rank 1; a2 -> v2 (1.0) rank 1
    assert out["audio->video"]["R@1"] == 1.0
    # scaling an embedding does not change anything (cosine)
    assert both_directions(audio * 7, video) == out


def test_both_directions_swapping_inputs_swaps_directions():
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    x, y = both_directions(a, v), both_directions(v, a)
    assert x["video->audio"] == y["audio->video"] and x["audio->video"] == y["video->audio"]


def test_map_matches_sklearn_with_ties_and_skips_empty_classes():
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 5)) < 0.3).astype(np.float32)
    targets[:, 3] = 0  # a class without positives
    scores = np.round(rng.random((40, 5)), 1)  # many tied scores
    mean, per_class = mean_average_precision(targets, scores)
    assert np.isnan(per_class[3])
    for c in (0, 1, 2, 4):
        assert per_class[c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]))
    assert mean == pytest.approx(np.mean([per_class[c] for c in (0, 1, 2, 4)]))
    # sklearn's own macro average agrees on the classes with positives
    keep = [0, 1, 2, 4]
    assert mean == pytest.approx(average_precision_score(targets[:, keep], scores[:, keep], average="macro"))


def test_map_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.0]])
    # class 0: ranking 0.9(+), 0.8(-), 0.3(+), 0.1(-) -> AP = (1/1 + 2/3) / 2
    # class 1: ranking 0.7(-), 0.2(+), ... -> AP = 1/2
    mean, per_class = mean_average_precision(torch.tensor(targets), torch.tensor(scores))
    assert per_class.tolist() == pytest.approx([5 / 6, 0.5])
    assert mean == pytest.approx((5 / 6 + 0.5) / 2)
    with pytest.raises(ValueError):
        mean_average_precision(targets, scores[:, :1])


def test_accuracy_single_label_matches_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.random((30, 4))
    labels = rng.integers(0, 4, 30)
    assert accuracy(labels, scores) == pytest.approx(accuracy_score(labels, scores.argmax(1)))
    one_hot = np.eye(4)[labels]
    assert accuracy(torch.tensor(one_hot), torch.tensor(scores)) == pytest.approx(accuracy(labels, scores))


def test_accuracy_multi_hot_hit_if_argmax_positive():
    targets = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    scores = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.1, 0.7]])
    assert accuracy(targets, scores) == pytest.approx(1 / 3)


def test_per_class_subset_is_deterministic_and_balanced():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    a = per_class_subset(labels, 5, seed=3)
    assert a.tolist() == per_class_subset(labels.tolist(), 5, seed=3).tolist()
    assert a.tolist() == sorted(a.tolist())
    counts = np.bincount(labels[a], minlength=3)
    assert counts.tolist() == [5, 3, 5]  # class 1 keeps all it has
    assert len(set(a.tolist())) == len(a)
    others = {tuple(per_class_subset(labels, 5, seed=s)) for s in range(6)}
    assert len(others) > 1  # the seed matters
    with pytest.raises(ValueError):
        per_class_subset(labels, 0)
