"""The model stage: networks over codec tokens ``[B, K, T]`` and frame features ``[B, F, D]``.

In: a config (``model.*``, ``codec`` geometry, ``data.fps`` / ``data.duration``), the codec's
codebooks and the feature size.  Out: :class:`VAB` (the multiway Transformer and its logits
``[B, levels, T, codebook_size]``) and :class:`Coarse2Fine`; :class:`~vab.model.base.TokenModel`
is what every model type shares (the FoleyGen baseline too), :mod:`vab.model.quantize` the
load-time number formats for inference.  The networks only: model directories, Hub ids
and the registry of model types are :mod:`vab.checkpoint`'s, and nothing here knows
training, generation, baselines or commands.
"""

from vab.model.base import PARTS, TokenModel, alibi_bias, alibi_positions, alibi_slopes
from vab.model.coarse2fine import Coarse2Fine
from vab.model.multiway import MultiwayLayer
from vab.model.vab import VAB

