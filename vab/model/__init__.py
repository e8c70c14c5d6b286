"""The model stage: networks over codec tokens ``[B, K, T]`` and frame features ``[B, F, D]``.

In: a config (``model.*``, ``codec`` geometry, ``data.fps`` / ``data.duration``), the codec's
codebooks and the feature size; or a model directory.  Out: :class:`VAB` (the multiway
Transformer and its logits ``[B, levels, T, codebook_size]``), :class:`Coarse2Fine`, and
model directories (``config.yaml`` + ``model.safetensors``).  :class:`~vab.model.base.TokenModel`
is what every model type shares; :mod:`vab.model.registry` maps ``model.type`` to a class,
so types defined by later stages (the FoleyGen baseline) plug in without this package
importing them.  Nothing here knows training, generation, baselines or commands.
"""

from vab.model.base import PARTS, TokenModel, load_pretrained
from vab.model.coarse2fine import Coarse2Fine
from vab.model.multiway import MultiwayLayer, alibi_bias, alibi_positions, alibi_slopes
from vab.model.registry import model_class, model_types, register_model_type
from vab.model.vab import VAB

__all__ = [
    "VAB",
    "Coarse2Fine",
    "MultiwayLayer",
    "PARTS",
    "TokenModel",
    "alibi_bias",
    "alibi_positions",
    "alibi_slopes",
    "load_pretrained",
    "model_class",
    "model_types",
    "register_model_type",
]
