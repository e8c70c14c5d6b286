"""Fine-tuning metrics: cross-modal retrieval, mAP, accuracy, per-class subsets (fine-tuning
validation and ``eval/retrieval.py`` / ``eval/classification.py`` read the same numbers).

Retrieval follows CAV-MAE: for each query, rank all candidates by cosine
similarity; the rank of the true partner (1-based) gives R@k (share of
queries with rank <= k), median and mean rank.

Ties are counted **pessimistically**: the rank of the true partner is
1 + the number of *other* candidates whose similarity is >= its own. A
degenerate model that scores everything equal therefore gets rank N (not 1),
so ties can never inflate recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import average_precision_score

Array = np.ndarray | torch.Tensor


def _numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def partner_ranks(similarity: Array) -> np.ndarray:
    """1-based rank of the true partner per query, ties pessimistic.

    similarity: [Nq, Nc] with Nq <= Nc, the true partner of query i is candidate i.
    Returns [Nq] int ranks in 1..Nc.
    """
    sim = _numpy(similarity).astype(np.float64)
    if sim.ndim != 2 or sim.shape[0] > sim.shape[1]:
        raise ValueError(f"similarity must be [Nq, Nc] with Nq <= Nc, got {sim.shape}")
    n = sim.shape[0]
    true = sim[np.arange(n), np.arange(n)][:, None]
    at_least = (sim >= true).sum(axis=1)  # includes the partner itself
    return at_least.astype(np.int64)


def retrieval_metrics(similarity: Array, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k (fractions in [0, 1]), MedR and MeanR from [Nq, Nc] similarities (partner on diagonal)."""
    ranks = partner_ranks(similarity)
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = float(ranks.mean())
    return out


def cosine_similarity(a: Array, b: Array) -> torch.Tensor:
    """[Na, W] x [Nb, W] -> [Na, Nb] cosine similarities (inputs need not be normalised)."""
    a_t = torch.as_tensor(_numpy(a), dtype=torch.float64)
    b_t = torch.as_tensor(_numpy(b), dtype=torch.float64)
    a_t = torch.nn.functional.normalize(a_t, dim=-1)
    b_t = torch.nn.functional.normalize(b_t, dim=-1)
    return a_t @ b_t.T


def both_directions(
    audio_emb: Array, video_emb: Array, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, dict[str, float]]:
    """Retrieval metrics both ways from paired [N, W] embeddings (row i of each is one clip).

    "video->audio": video queries, audio candidates; "audio->video": the reverse.
    """
    sim = cosine_similarity(video_emb, audio_emb)  # [N video, N audio]
    return {
        "video->audio": retrieval_metrics(sim, ks),
        "audio->video": retrieval_metrics(sim.T, ks),
    }


def mean_average_precision(targets: Array, scores: Array) -> tuple[float, np.ndarray]:
    """Macro mAP over classes with scikit-learn's average_precision_score.

    targets: [N, C] multi-hot (0/1); scores: [N, C]. Classes without any
    positive are skipped (AP undefined): their entry in the returned
    per-class array is NaN and they do not enter the mean.
    Returns (mAP, per-class AP [C]).
    """
    y = _numpy(targets)
    s = _numpy(scores).astype(np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise ValueError(f"targets {y.shape} and scores {s.shape} must both be [N, C]")
    ap = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        if y[:, c].sum() > 0:
            ap[c] = average_precision_score(y[:, c] > 0, s[:, c])
    valid = ~np.isnan(ap)
    mean = float(ap[valid].mean()) if valid.any() else float("nan")
    return mean, ap


def accuracy(targets: Array, scores: Array) -> float:
    """Top-1 accuracy. targets: [N] class ids, or [N, C] (multi-)hot where a hit
    means the argmax of scores is one of the positives. scores: [N, C]."""
    y = _numpy(targets)
    pred = _numpy(scores).argmax(axis=1)
    if y.ndim == 1:
        return float((pred == y).mean())
    return float((y[np.arange(len(pred)), pred] > 0).mean())


def per_class_subset(labels: Sequence[int] | Array, k: int, seed: int = 0) -> np.ndarray:
    """Indices of up to k clips per class, drawn without replacement, deterministic in seed.

    labels: [N] class ids. Classes with fewer than k clips keep all of theirs.
    Returns sorted int indices.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lab = _numpy(labels)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        chosen.append(rng.permutation(idx)[:k] if len(idx) > k else idx)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def classification_metrics(labels: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """accuracy (top-1 is a positive) and mAP (macro, scikit-learn) from ``[N, C]`` arrays."""
    m_ap, _ = mean_average_precision(labels, scores)
    return {"accuracy": accuracy(labels, scores), "mAP": m_ap}

