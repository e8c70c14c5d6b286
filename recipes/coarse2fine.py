"""Coarse-to-fine model for DAC (paper section 3.3; VampNet-style): no modality
experts, all 12 levels in, the 4 coarse levels given, the 8 fine levels masked
and predicted.  Same engine and options as recipes/pretrain.py:

    accelerate launch recipes/coarse2fine.py --config c2f-dac data.path=[data/audioset,data/vggsound]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pretrain import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_config="c2f-dac", doc=__doc__))
