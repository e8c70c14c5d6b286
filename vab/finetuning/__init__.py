"""Fine-tuning the pretrained VAB backbone: retrieval (contrastive) and classification."""
