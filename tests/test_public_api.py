"""The top-level `vab` API: lazy names, load_pretrained dispatching on the model type."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import vab
from vab.checkpoint import save_model
from vab.config import load_config

SMALL = ["codec.codebook_size=32", "model.width=32", "model.layers=2", "model.expert_layers=1",
         "model.heads=2", "model.ffn=64"]


def test_import_is_light_and_names_resolve():
    code = "import sys, vab; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    import vab.generation.generator  # noqa: F401  (a loaded submodule must not shadow the public function)

    assert vab.VAB.__name__ == "VAB" and callable(vab.generate) and callable(vab.load_config)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vab.nothing  # noqa: B018


def test_load_pretrained_round_trip_and_errors(tmp_path):
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(0)
    model = vab.VAB.from_config(cfg, [torch.randn(32, 16) for _ in range(4)], 192, 50.0)
    assert vab.save_pretrained is save_model  # the public name of the one writer of model directories
    vab.save_pretrained(model, tmp_path / "m")
    loaded = vab.load_pretrained(tmp_path / "m")
    assert type(loaded) is vab.VAB
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(vab.VabError, match="no config.yaml"):
        vab.load_pretrained(tmp_path / "missing")
