"""The VAB multiway Transformer and the coarse-to-fine model."""

from vab.model.coarse2fine import Coarse2Fine
from vab.model.multiway import MultiwayLayer, alibi_bias, alibi_positions, alibi_slopes
from vab.model.vab import PARTS, VAB, model_class

__all__ = [
    "VAB",
    "Coarse2Fine",
    "MultiwayLayer",
    "PARTS",
    "alibi_bias",
    "alibi_positions",
    "alibi_slopes",
    "model_class",
]
