"""Evaluation metrics: cross-modal retrieval, mAP, accuracy, per-class subsets.

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


# ---------------------------------------------------------------------- generation: FAD and KL
def gaussian_statistics(embeddings: Array) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, float64) of embeddings ``[N, D]``, N >= 2."""
    x = _numpy(embeddings).astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings must be [N, D] with N >= 2, got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(
    mu1: Array, sigma1: Array, mu2: Array, sigma2: Array, *, eps: float = 1e-6, max_imaginary: float = 1e-3
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    The square root of the (non-symmetric) product comes from scipy's ``sqrtm``.  When it is
    not finite, or has an imaginary part above `max_imaginary` (singular covariances, e.g.
    fewer clips than dimensions, make sqrtm unstable), it is retried once with `eps` added to
    both diagonals.  If the retry still has a large imaginary part the covariances are not
    usable (not positive semi-definite): VabError rather than a meaningless number.
    """
    from vab.errors import VabError

    m1, m2 = _numpy(mu1).astype(np.float64).ravel(), _numpy(mu2).astype(np.float64).ravel()
    s1, s2 = np.atleast_2d(_numpy(sigma1).astype(np.float64)), np.atleast_2d(_numpy(sigma2).astype(np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(f"shapes differ: mu {m1.shape} / {m2.shape}, sigma {s1.shape} / {s2.shape}")
    covmean = _sqrtm(s1 @ s2)
    if not _usable_root(covmean, max_imaginary):
        offset = np.eye(m1.size) * eps
        covmean = _sqrtm((s1 + offset) @ (s2 + offset))
        if not np.isfinite(covmean).all():
            raise VabError("Frechet distance: the covariance square root is not finite even with a diagonal offset")
    if np.iscomplexobj(covmean):
        worst = float(np.max(np.abs(covmean.imag)))
        if worst > max_imaginary:
            raise VabError(
                f"Frechet distance: the covariance square root has an imaginary part of {worst:.3g} "
                f"(> {max_imaginary:g}); the covariances are not positive semi-definite"
            )
        covmean = covmean.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # singular products are expected; the caller checks the result
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def _usable_root(root: np.ndarray, max_imaginary: float) -> bool:
    if not np.isfinite(root).all():
        return False
    return not np.iscomplexobj(root) or float(np.max(np.abs(root.imag))) <= max_imaginary


def frechet_audio_distance(real: Array, generated: Array, **kwargs) -> float:
    """FAD between two sets of embeddings ``[N1, D]`` and ``[N2, D]`` (kwargs: :func:`frechet_distance`)."""
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(generated), **kwargs)


def softmax(logits: Array, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float64)."""
    x = _numpy(logits).astype(np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def kl_divergence(p_real: Array, p_generated: Array, eps: float = 1e-10) -> float:
    """Mean over clips of KL(real || generated) = sum_c p log(p / q), in nats.

    p_real, p_generated: label distributions ``[N, C]`` (rows sum to 1, e.g. the softmax of a
    classifier's logits), row i of each from the same clip.  `eps` keeps log finite where q is 0.
    """
    p = _numpy(p_real).astype(np.float64)
    q = _numpy(p_generated).astype(np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"p_real {p.shape} and p_generated {q.shape} must both be [N, C]")
    terms = np.where(p > 0, p * (np.log(np.maximum(p, eps)) - np.log(np.maximum(q, eps))), 0.0)
    return float(terms.sum(axis=1).mean())


def label_kl(real_logits: Array, generated_logits: Array) -> float:
    """KL(real || generated) between the softmax distributions of logits ``[N, C]``, averaged over clips."""
    return kl_divergence(softmax(real_logits), softmax(generated_logits))
