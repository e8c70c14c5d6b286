"""The fine-tuning stage: a pretrained VAB backbone adapted to retrieval and classification.

In: a model directory (``--init``) and extracted data sets with labels.  Out: model
directories that still generate, plus a learned temperature (`contrastive`: two passes,
symmetric InfoNCE) or a classification head (audio, visual or audio-visual, linear probe:
`classifier` the head and its files, `classification_objective` the losses, `balanced` the
class-balanced sampling, `classification` the recipe and evaluation).  `pooling` turns the first expert layers into one vector per
clip, the embedding retrieval, search and classification read.
"""
