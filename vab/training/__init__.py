"""Building blocks of the training engine (`vab.train.Trainer`): one idea per module.

- `schedule`: half-cycle cosine learning-rate schedule with linear warm-up
- `optim`: AdamW with weight decay on matrices only
- `ema`: exponential moving average of the weights
- `sampler`: per-epoch seeded shuffling that can start mid-epoch
- `checkpoints`: naming, listing, atomic commit and pruning of checkpoint folders
- `rng`: seed derivation, engine-owned generators, RNG isolation for validation
- `console`: rich progress bar and log lines
"""
