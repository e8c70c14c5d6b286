"""Data: manifests, extraction to a stored data set, and reading it back for training."""
