"""The training stage: one Accelerate engine and the masked-token objective it optimises.

In: a config and extracted data sets.  Out: a run folder (checkpoints, logs) and a model
directory.  One idea per module:

- `engine`: the one training loop every recipe uses (`Trainer`: Accelerate, precision,
  accumulation, validation, resumable checkpoints)
- `objective`: masked audio-token prediction (augment, mask, drop the picture, cross-entropy
  on masked tokens) and its accuracy logs
- `masking`: the mask-ratio distribution and mask construction
- `run`: from a config to a run (data sets, codec, model, engine, model directory)
- `schedule`: half-cycle cosine learning-rate schedule with linear warm-up
- `optim`: AdamW with weight decay on matrices only
- `ema`: exponential moving average of the weights
- `epoch_order`: per-epoch seeded shuffling that can start mid-epoch (the data order, not the
  token sampler of `vab.generation.sampling`)
- `checkpoints`: naming, listing, atomic commit and pruning of checkpoint folders
- `rng`: seed derivation, engine-owned generators, RNG isolation for validation
- `console`: rich progress bar and log lines
"""
