"""`vab demo`: the whole system end to end on a synthetic audio-visual world (see pipeline.py)."""
