"""The data stage: from media files to a stored, training-ready data set.

In: manifests (CSV / JSONL / VGGSound / AudioSet / a folder, `manifest`) naming videos or
audio files, a codec and a frame encoder.  Out: a data-set folder (`extract`, `store`):
audio tokens int16 ``[K, T]``, frame features float16 ``[F, D]``, labels and metadata,
read back as batches by `dataset`; `augment` holds the paired audio-visual augmentations
(temporal mixup, rolling) and `synthetic` the offline synthetic world behind `vab synth`
and `vab demo`.
"""
