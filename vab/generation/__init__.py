"""The pieces of `vab.generator`, one idea per module: window plans (`windows`), chunked
codec runs (`codec_chunks`), per-window features (`features`), edit / prompt conditions
(`conditions`), checked loading of codec, encoder and coarse-to-fine model (`loading`),
and command-line inputs (`inputs`)."""
