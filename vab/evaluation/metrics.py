"""Generation metrics: Frechet distance of embeddings (FAD) and the KL divergence of label
distributions, on arrays (numpy / torch), in float64."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from vab.errors import VabError

Array = np.ndarray | torch.Tensor


def _numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


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


def log_softmax(logits: Array, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax (float64)."""
    x = _numpy(logits).astype(np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def logit_kl(real_logits: Array, generated_logits: Array) -> float:
    """KL(real || generated) of the softmax of logits ``[N, C]``, averaged over clips, computed
    from log-softmax values (no floor), as av-benchmark's ``compute_kl`` (``kl_softmax``) does."""
    lp, lq = log_softmax(real_logits), log_softmax(generated_logits)
    if lp.shape != lq.shape or lp.ndim != 2:
        raise ValueError(f"real {lp.shape} and generated {lq.shape} logits must both be [N, C]")
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


IS_SPLITS = 10
IS_SEED = 2020


def inception_score(logits: Array, splits: int = IS_SPLITS, seed: int | None = IS_SEED) -> tuple[float, float]:
    """Inception score of generated clips' classifier logits ``[N, C]``: (mean, std over splits).

    As av-benchmark's ``compute_isc`` (from audioldm_eval): the rows are shuffled with
    ``numpy.random.RandomState(seed)`` (none when `seed` is None), cut into `splits` parts
    ``[i N // splits, (i + 1) N // splits)``, and each part scores
    ``exp(mean_i KL(p_i || mean_j p_j))`` with p the softmax of the logits."""
    x = _numpy(logits).astype(np.float64)
    if x.ndim != 2 or len(x) < splits:
        raise ValueError(f"logits must be [N, C] with N >= splits ({splits}), got {x.shape}")
    n = len(x)
    if seed is not None:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(x)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part, log_part = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        scores.append(float(np.exp((part * (log_part - np.log(marginal))).sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))
