"""The evaluation stage: how good generated soundtracks are (the paper's Table 1).

In: model directories and held-out clips (an extracted data set's split, a manifest or a
folder of videos).  Out: FAD, label KL, the weights-free sync score and seconds per clip for
each model, or the field's table (FD / KL with PaSST, PANNs, VGGish, IS ...), as JSON, CSV
and a Markdown table (`soundtracks`).  `metrics` holds the Frechet distance, KL and Inception
Score on arrays; `sync` the weights-free synchronisation score of audio against frames;
`scorers` the audio embedders and classifiers they read (log-mel offline, VGGish, PANNs,
PaSST from local weights, the project's own fine-tuned classifier) and the video-audio
scorers of the field's table (ImageBind's IB-score, Synchformer's DeSync).  Retrieval and
classification numbers are fine-tuning's own (`vab.finetuning.metrics`).
"""
