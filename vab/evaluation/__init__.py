"""The evaluation stage: how good generated soundtracks are (the paper's Table 1).

In: model directories and held-out clips (an extracted data set's split, a manifest or a
folder of videos).  Out: FAD, label KL and seconds per clip for each model, as JSON and a
Markdown table (`generation`).  `metrics` holds the Frechet distance and KL on arrays;
`scorers` the audio embedders and classifiers they read (log-mel offline, VGGish, PANNs
from local weights, the project's own fine-tuned classifier).  Retrieval and
classification numbers are fine-tuning's own (`vab.finetuning.metrics`).
"""
