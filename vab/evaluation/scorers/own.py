"""The project's own fine-tuned audio classifier as a scorer.

A classifier directory written by ``finetune/classification.py --mode audio`` holds the
VAB backbone, its codec and a linear head.  Audio is tokenized with that codec, cut
into windows of the model's trained length (the last one may be shorter), and each
window gives a label distribution (softmax of the head's logits) and an embedding (the
mean-pooled expert-layer output, as retrieval and classification use it).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from vab.checkpoint import load_codec
from vab.checkpoint.hub import resolve_model_dir
from vab.errors import VabError
from vab.evaluation.scorers.base import AudioEmbedder
from vab.finetuning.classifier import load_classifier
from vab.finetuning.pooling import pooled
from vab.generation.codec_chunks import encode_chunked


class OwnClassifier(AudioEmbedder):
    """Label distributions ``[N, C]`` (C = the classifier's classes) and embeddings ``[N, W]``
    per model-length window of a clip."""

    name = "own"

    def __init__(self, directory: str | os.PathLike, device: str | torch.device = "cpu"):
        self.directory = resolve_model_dir(directory)  # a folder or a Hugging Face Hub id
        self.classifier, _ = load_classifier(self.directory, device=device)
        self.device = torch.device(device)
        if self.classifier.mode != "audio":
            raise VabError(
                f"{self.directory}: a {self.classifier.mode} classifier; scoring audio needs one fine-tuned "
                "with finetune/classification.py --mode audio"
            )
        self.backbone = self.classifier.backbone
        self.codec = load_codec(self.backbone, self.directory)
        self.codec.to(self.backbone.codebooks.device)
        self.sample_rate = int(self.codec.sample_rate)
        self.label_names = list(self.classifier.label_names)

    def tokens(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """``[S]`` at the codec's rate -> token windows, each ``[1, levels, <= T]``."""
        hop = int(self.codec.hop_length)
        x = wav.float().cpu().numpy()
        x = np.pad(x, (0, (-len(x)) % hop)) if len(x) >= hop else np.pad(x, (0, hop - len(x)))
        tokens = encode_chunked(self.codec, x, int(self.backbone.levels))
        window = int(self.backbone.num_audio_frames)
        return [tokens[None, :, i : i + window] for i in range(0, tokens.shape[1], window)]

    @torch.no_grad()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled(self.backbone, {"tokens": t}, "audio") for t in self.tokens(wav)]).float().cpu()

    @torch.no_grad()
    def label_probs(self, wav: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([self.classifier({"tokens": t}) for t in self.tokens(wav)])
        return torch.softmax(logits.double(), dim=-1).float().cpu()
