"""Audio scorers for generation metrics (FAD embeddings, KL label distributions).

Specs as the command line gives them:

==================  ====================================================================
``logmel``          weights-free log-mel statistics (:mod:`vab.evaluation.scorers.logmel`)
``vggish:PATH``     VGGish from a local weight file (:mod:`vab.evaluation.scorers.vggish`)
``panns:PATH``      PANNs Cnn14 (32 or 16 kHz) from a local weight file (:mod:`vab.evaluation.scorers.panns`)
``passt:PATH``      PaSST from a local weight file (:mod:`vab.evaluation.scorers.passt`)
==================  ====================================================================

``vggish``, ``panns`` and ``passt`` also take ``download`` for the path: the published file,
fetched once into the torch hub cache (:func:`vab.evaluation.scorers.weights.weights_file`).
``own:DIR``         the project's own audio classifier directory (:mod:`vab.evaluation.scorers.own`)
==================  ====================================================================
"""

from __future__ import annotations

import torch

from vab.errors import VabError
from vab.evaluation.scorers.base import AudioEmbedder, clip_distribution
from vab.evaluation.scorers.logmel import LogMelEmbedder
from vab.evaluation.scorers.own import OwnClassifier
from vab.evaluation.scorers.panns import PANNsEmbedder
from vab.evaluation.scorers.passt import PaSSTEmbedder
from vab.evaluation.scorers.vggish import VGGishEmbedder
from vab.evaluation.scorers.weights import weights_file

KINDS = ("logmel", "vggish", "panns", "passt", "own")


def build_scorer(spec: str, device: str | torch.device = "cpu") -> AudioEmbedder:
    """An :class:`AudioEmbedder` from a spec ``KIND`` or ``KIND:PATH`` (see the module doc)."""
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise VabError(f"audio scorer {spec!r}: expected one of logmel, vggish:PATH, panns:PATH, passt:PATH, own:DIR")
    if kind == "logmel":
        if path:
            raise VabError(f"audio scorer {spec!r}: logmel takes no path")

        return LogMelEmbedder()
    if not path:
        raise VabError(f"audio scorer {spec!r}: {kind} needs a local path ({kind}:PATH), or {kind}:download for "
                       "the published weights")
    if kind != "own":
        path = str(weights_file(path, kind))
    if kind == "vggish":
        return VGGishEmbedder.from_file(path, device)
    if kind == "panns":
        return PANNsEmbedder.from_file(path, device)
    if kind == "passt":
        return PaSSTEmbedder.from_file(path, device)

    return OwnClassifier(path, device)


def build_classifier(spec: str, device: str | torch.device = "cpu") -> AudioEmbedder:
    """Like :func:`build_scorer`, but the scorer must have a label space (for KL)."""
    scorer = build_scorer(spec, device)
    if not scorer.has_labels:
        raise VabError(f"audio scorer {spec!r} gives no label distribution; use panns:PATH, passt:PATH, own:DIR or logmel")
    return scorer


__all__ = ["KINDS", "AudioEmbedder", "build_classifier", "build_scorer", "clip_distribution"]
