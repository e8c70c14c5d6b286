"""`vab demo`: the whole system end to end on a synthetic audio-visual world, offline.

In: an output folder and a size (full or ``--quick``).  Out: the world's media, an extracted
data set, a pretrained tiny model, generated soundtracks for held-out clips, fine-tuned
retrieval and classification models, and a report (`report`) of every number beside its
chance level.  `pipeline` runs the stages (resumable), `soundtracks` generates and scores
the held-out clips, `quality` holds the judges (class and timing agreement).
"""
