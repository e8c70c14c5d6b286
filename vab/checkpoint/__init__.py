"""The checkpoint stage: what a model directory is, and the only code that reads or writes one.

In: a folder or a Hugging Face Hub id ``org/name[@revision]``; a model to save.  Out: the
model of the class its ``model.type`` names, with the codec and frame encoder it was
trained with (:func:`load`), or a model directory (:func:`save_model_dir`).  One idea per module:

- `directory`: the format (``config.yaml`` + ``model.safetensors`` + the files that may
  travel with them) and its checks; the file names are :mod:`vab.filenames`'
- `registry`: ``model.type`` -> class (this package's networks, then entry points)
- `hub`: Hub ids -> cached snapshots, and uploads; `card`: the model card ``README.md``
- `loading`: model, codec and frame encoder, each checked against the model
- `saving`: the model directory written atomically
"""

from vab.checkpoint.loading import Checkpoint, build_model, load, load_codec, load_model, load_visual
from vab.checkpoint.saving import save_model, save_model_dir

