"""The coarse-to-fine model (DAC; paper section 3.3, VampNet-style).

The same network as :class:`~vab.model.vab.VAB`, configured differently: no
modality experts (``expert_layers: 0``), all ``levels`` codec levels in, the
leading ``given_levels`` (coarse) levels always given as condition, and heads
only for the fine levels.  Visual features still condition every step.
"""

from __future__ import annotations

from vab.config import VABModelConfig
from vab.errors import ConfigError
from vab.model.base import Inputs
from vab.model.vab import VAB


class Coarse2Fine(VAB):
    """``forward`` returns logits ``[B, levels - given_levels, T, codebook_size]`` for the fine levels."""

    model_type = "coarse2fine"

    def __init__(self, m: VABModelConfig, inputs: Inputs):
        if m.given_levels < 1:
            raise ConfigError(
                "model.given_levels must be >= 1 for a coarse2fine model (the coarse levels it is conditioned on)"
            )
        super().__init__(m, inputs)
