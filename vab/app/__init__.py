"""`vab app`: a local web page over the library's generation, search and classification.

In: model directories (the generation model, optionally a coarse-to-fine model, an embedding
index from `vab embed`, classifier directories from ``finetune/classification.py``), an
address and limits (concurrent jobs, queue length, upload size, video length, how long
results are kept).  Out: a Gradio page, on 127.0.0.1 unless told otherwise, with Generate,
Edit, Continue, Search and Classify tabs; uploads in, soundtracks (wav / flac, muxed mp4,
frames-over-spectrogram PNG), matches and label probabilities out, all kept in one
temporary folder that is emptied after the time limit and removed when the server stops.

`backend` does the work with the library's own Generator, search and classifier code and
knows nothing of Gradio; `jobs` queues the model-bound work (a slot per running job, held
until its work has ended; a stop flag per job; estimates that count the queue); `uploads`
checks an uploaded file and turns any failure into one line; `workspace` owns the temporary
folder (the server process's own temporary folder too); `widgets` makes the page's parts
(status lines, settings from SamplingConfig with their hints, fields, buttons); `page` lays
the tabs out and wires them; `server` launches it with nothing fetched from the internet (no
analytics, share links or remote assets).
"""
