"""Sub-commands of the `vab` console script (one module each)."""
