"""vab: Vision to Audio and Beyond.

The small public API (imported lazily, so ``import vab`` stays cheap for the CLI)::

    import vab
    model = vab.load_pretrained("runs/tiny/model")        # any model directory
    model = vab.load_pretrained("org/vab-encodec@v1")     # or a Hugging Face Hub id [@revision]
    vab.save_pretrained(model, "my-model")                 # config.yaml + model.safetensors + README.md
    result = vab.generate(model, "clip.mp4")               # GenerationResult: waveform [N], sample_rate, tokens [K, T]
    cfg = vab.load_config("tiny", ["train.lr=1e-4"])       # a preset, YAML file or model directory + overrides
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "VAB": ("vab.model", "VAB"),
    "generate": ("vab.generation.generator", "generate"),
    "Generator": ("vab.generation.generator", "Generator"),
    "SamplingConfig": ("vab.generation.sampling", "SamplingConfig"),
    "load_config": ("vab.config", "load_config"),
    "save_pretrained": ("vab.checkpoint", "save_model"),
    "VabError": ("vab.errors", "VabError"),
}


def load_pretrained(directory: str | Path, device: str = "cpu", *, local_files_only: bool = False) -> Any:
    """The model in a model directory (``config.yaml`` + ``model.safetensors``) or in the one a
    Hugging Face Hub id names (``org/name`` or ``org/name@revision``; a local path of that
    spelling wins), of the class its ``model.type`` names; only YAML and safetensors are read.
    `local_files_only` (or ``HF_HUB_OFFLINE=1``): use the Hugging Face cache, never the network."""
    from vab.checkpoint import load_model  # `import vab` stays light: torch comes with the first model

    return load_model(directory, device, local_files_only=local_files_only)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'vab' has no attribute {name!r}")


__all__ = ["__version__", "load_pretrained", *_LAZY]
