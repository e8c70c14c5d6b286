"""The names of the files vab keeps beside its models and data, in one place.

A model directory (:mod:`vab.checkpoint`) holds :data:`CONFIG_FILE` and :data:`WEIGHTS_FILE`;
it may hold the fitted spectral codec (:data:`CODEC_FILE`, which an extracted data set
holds too), the model card and what fine-tuning adds.  Nothing else travels with a model.
"""

CONFIG_FILE = "config.yaml"  # everything needed to rebuild the model (data, not code)
WEIGHTS_FILE = "model.safetensors"  # the weights, with format metadata and a SHA-256 of the tensors
CODEC_FILE = "codec.safetensors"  # a fitted spectral codec (vab.codecs.spectral)
CARD_FILE = "README.md"  # the model card (Hub metadata + what is known of the model)
TEMPERATURE_FILE = "retrieval.safetensors"  # retrieval fine-tuning's temperature (vab.finetuning.contrastive)
HEAD_WEIGHTS = "classifier.safetensors"  # a classification head (vab.finetuning.classification)
HEAD_CONFIG = "classifier.yaml"  # the head's mode, loss and label names
