"""Baselines measured against VAB on the same codecs, data, engine and CLI.

`foleygen`: the autoregressive FoleyGen baseline (delay pattern, visual attention masks,
V-AURA-style concat conditioning as an option); trained by ``recipes/pretrain.py`` with
``model.type: foleygen`` (presets ``foleygen-tiny``, ``foleygen-encodec``) and used by
``vab generate`` like any model directory.
"""

from vab.baselines.delay import build_delay, delay_valid, revert_delay, shift_right
from vab.baselines.foleygen import FoleyGen, KVCache
from vab.baselines.objective import AutoregressiveObjective
from vab.baselines.sampling import sample_autoregressive
from vab.baselines.visual_masks import VISUAL_MASKS, frame_of_step, visual_attention_mask

__all__ = [
    "AutoregressiveObjective",
    "FoleyGen",
    "KVCache",
    "VISUAL_MASKS",
    "build_delay",
    "delay_valid",
    "frame_of_step",
    "revert_delay",
    "sample_autoregressive",
    "shift_right",
    "visual_attention_mask",
]
