"""The generation stage: silent video(s) -> soundtrack(s).

In: a model directory (and a coarse-to-fine one for DAC), videos of any length or stored
features ``[F, D]``, sampling settings.  Out: tokens ``[K, T]``, waveforms and the files
of `vab generate`.  One idea per module:

- `sampling`: MaskGIT decoding with classifier-free guidance, coarse-to-fine
- `generator`: windows of the trained length stitched over a video, batches, the Python API
- `windows`: window plans; `features`: per-window frame features from a video or an array
- `conditions`: edit spans and prompts (tokens kept bit-identical)
- `codec_chunks`: chunked codec encode / decode with flat memory
- `inputs`: videos from paths, folders and globs; `outputs`: the files one video gets;
  `plot`: frames over the spectrogram
"""
