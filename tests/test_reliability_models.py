"""Untrusted model files (docs/RELIABILITY.md): a model directory is read as YAML +
safetensors only, and every broken or mismatched file is one clear error.

The "pickle bombs" below create a marker folder when unpickled; no command may create it.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.badmedia import make_video
from tests.synthdata import make_synthetic_dataset
from tests.test_generate import FAST_ARGS, make_model_dir
from vab.cli import main as vab_main

REPO = Path(__file__).resolve().parents[1]


class Bomb:
    """Unpickling this creates the folder `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.0, fps=4.0, width=32, height=24)


@pytest.fixture
def copy(model_dir, tmp_path):
    """A fresh copy of the model directory to damage."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def generate(model: Path, clip: Path, out: Path) -> int:
    return vab_main(["generate", str(clip), "--checkpoint", str(model), "--out", str(out), "--device", "cpu",
                     *FAST_ARGS])


def one_error_line(capsys) -> str:
    """The one `error:` line on stderr (a progress bar may precede it)."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def no_torch_load(monkeypatch) -> None:
    """Fail the test if anything calls torch.load (the only unpickler vab could reach)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load called on {args[:1]}")

    monkeypatch.setattr(torch, "load", refuse)


# ---------------------------------------------------------------------- pickle is never loaded
def pickle_file(path: Path, marker: Path, how: str) -> None:
    if how == "pickle":
        path.write_bytes(pickle.dumps(Bomb(marker)))
    else:  # torch's own zip format, what torch.load(weights_only=False) would run
        torch.save({"state_dict": Bomb(marker)}, path)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
@pytest.mark.parametrize("victim", ["model.safetensors", "codec.safetensors"])
def test_pickle_in_place_of_safetensors_is_refused_not_run(how, victim, copy, clip, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "PWNED"
    pickle_file(copy / victim, marker, how)
    no_torch_load(monkeypatch)
    assert generate(copy, clip, tmp_path / "out") == 2
    err = one_error_line(capsys)
    assert f"{copy / victim}:" in err and ("corrupted" in err or "not a readable .safetensors" in err)
    assert vab_main(["embed", str(clip), "--checkpoint", str(copy), "--out", str(tmp_path / "idx")]) == 2
    assert f"{copy / victim}" in one_error_line(capsys)
    assert not marker.exists()


def test_extra_pickle_files_in_a_model_directory_are_never_opened(copy, clip, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "PWNED"
    for name in ("model.pt", "pytorch_model.bin", "optimizer.bin", "codec.pt", "model.pkl", "random_states_0.pkl"):
        pickle_file(copy / name, marker, "torch.save")
    no_torch_load(monkeypatch)
    out = tmp_path / "out"
    assert generate(copy, clip, out) == 0
    assert (out / "clip.wav").is_file()
    assert vab_main(["info", str(copy)]) == 0
    assert vab_main(["embed", str(clip), "--checkpoint", str(copy), "--out", str(tmp_path / "idx")]) == 0
    assert not marker.exists()


def test_yaml_python_tags_are_not_constructed(copy, clip, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text + f"\nextra: !!python/object/apply:os.mkdir ['{marker}']\n")
    assert generate(copy, clip, tmp_path / "out") == 2
    err = one_error_line(capsys)
    assert "config.yaml" in err and "python/object" in err
    assert not marker.exists()


def test_library_codec_weights_from_a_config_are_loaded_weights_only(copy, clip, tmp_path, capsys):
    """A config may point codec.path at a library-native .pt: read with weights_only=True,
    so a pickle with code in it is refused and never run."""
    marker = tmp_path / "PWNED"
    bomb = tmp_path / "encodec.pt"
    pickle_file(bomb, marker, "torch.save")
    text = (copy / "config.yaml").read_text().replace("name: spectral", "name: encodec", 1)
    text = re.sub(r"(?m)^  path: .*$", f"  path: {bomb}", text, count=1)
    (copy / "config.yaml").write_text(text)
    (copy / "codec.safetensors").unlink()
    assert generate(copy, clip, tmp_path / "out") == 2
    err = one_error_line(capsys)
    assert f"codec.path={bomb}" in err and "does not unpickle" in err
    assert not marker.exists()


def call_arguments(text: str, start: int) -> str:
    """The text between the opening parenthesis before `start` and its matching close."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def test_no_unsafe_loader_in_the_code():
    """Every torch.load in vab/ and the scripts passes weights_only=True; no pickle / unsafe
    YAML / numpy-pickle loading at all.  (Accelerate's load_state for `--resume` reads the
    run's own checkpoints: see docs/RELIABILITY.md.)"""
    sources = [p for d in ("vab", "recipes", "finetune", "eval", "benchmarks") for p in (REPO / d).rglob("*.py")]
    assert len(sources) > 30
    offenders = []
    for path in sources:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            arguments = call_arguments(text, match.end())
            if "weights_only=True" not in arguments:
                offenders.append(f"{path}: torch.load({arguments})")
        for pattern in (r"\bpickle\.loads?\(", r"\bUnpickler\(", r"yaml\.unsafe_load", r"yaml\.load\(",
                        r"allow_pickle\s*=\s*True", r"\bdill\.", r"joblib\.load"):
            if re.search(pattern, text):
                offenders.append(f"{path}: {pattern}")
    assert not offenders, offenders


# ---------------------------------------------------------------------- damaged files
def test_truncated_and_altered_weights_through_the_cli(copy, clip, tmp_path, capsys):
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) * 2 // 3])
    assert generate(copy, clip, tmp_path / "out") == 2
    assert f"{weights}: cannot read weights, the file is truncated or corrupted" in one_error_line(capsys)
    altered = bytearray(data)
    altered[len(data) // 2] ^= 0x55  # inside the tensor data: only the digest notices
    weights.write_bytes(bytes(altered))
    assert generate(copy, clip, tmp_path / "out") == 2
    assert f"{weights}: checksum mismatch" in one_error_line(capsys)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_truncated_and_altered_codec(copy, clip, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    codec = copy / "codec.safetensors"
    original = codec.read_bytes()
    codec.write_bytes(original[: len(original) // 2])
    assert generate(copy, clip, tmp_path / "out") == 2
    assert f"{codec}: cannot read weights, the file is truncated or corrupted" in one_error_line(capsys)
    codec.write_bytes(original)
    tensors = load_file(str(codec))
    tensors["centroids"] = tensors["centroids"] * 1.01
    save_file(tensors, str(codec))
    assert generate(copy, clip, tmp_path / "out") == 2
    assert "level-0 codebook differs from the one the model was trained with" in one_error_line(capsys)


# ---------------------------------------------------------------------- config problems
def edit_config(model: Path, old: str, new: str) -> None:
    text = (model / "config.yaml").read_text()
    assert old in text, old
    (model / "config.yaml").write_text(text.replace(old, new, 1))


CONFIG_CASES = {
    # name: (old, new, what the one line must say)
    "unknown key": ("model:\n", "model:\n  wdith: 32\n", "Key 'wdith' not in 'VABModelConfig'"),
    "wrong type": ("width: 32", "width: wide", "Value 'wide' of type 'str' could not be converted to Integer"),
    "width vs weights": ("width: 32", "width: 64", "does not match config.yaml: wrong shapes: audio_proj.0.bias (32,) (expected (64,))"),
    "layers vs weights": ("layers: 2", "layers: 3", "missing tensors: layers.2."),
    "feature size": ("grid: 8", "grid: 4", "the hog-colour frame encoder gives 201-d features; the model reads 813-d"),
    "codebook size": ("codebook_size: 16", "codebook_size: 32", "codec.safetensors: fitted with other codec settings: codebook_size 16 (config: 32)"),
    "stft size": ("n_fft: 512", "n_fft: 1024", "codec.safetensors: fitted with other codec settings: n_fft 512 (config: 1024)"),
    "model type": ("type: vab", "type: gpt", "unknown model type 'gpt'"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_problems_say_what_differs(case, copy, clip, tmp_path, capsys):
    old, new, message = CONFIG_CASES[case]
    edit_config(copy, old, new)
    assert generate(copy, clip, tmp_path / "out") == 2
    err = one_error_line(capsys)
    assert message in err and str(copy) in err, err


# ---------------------------------------------------------------------- model vs data
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", per_class={"train": 2, "valid": 1, "test": 1})


def run_script(script: str, *args: str) -> int:
    import runpy

    return runpy.run_path(str(REPO / script), run_name="not_main")["main"](argv=list(args))


def test_model_and_data_with_other_codecs_are_refused(model_dir, synthetic, tmp_path, capsys):
    expected = "does not match the model config: codec.n_fft: data 1024, model 512; codec.codebook_size: data 32, model 16"
    assert run_script("finetune/retrieval.py", "--init", str(model_dir), f"data.path=[{synthetic}]",
                      "train.max_steps=1", f"train.output_dir={tmp_path / 'run'}") == 2
    assert expected in one_error_line(capsys)
    assert run_script("eval/retrieval.py", "--checkpoint", str(model_dir), f"data.path=[{synthetic}]") == 2
    assert expected in one_error_line(capsys)
    assert vab_main(["embed", str(synthetic), "--checkpoint", str(model_dir), "--out", str(tmp_path / "idx")]) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_data_of_another_offline_encoder_is_refused_with_the_overrides_that_fit(tmp_path, capsys):
    from tests.synthdata import tiny_overrides
    from vab.config import VisualConfig

    data = make_synthetic_dataset(tmp_path / "px", visual=VisualConfig(name="pixels", grid=8),
                                  per_class={"train": 2, "valid": 1, "test": 1})
    run = tmp_path / "run"
    common = ["--config", "tiny", *tiny_overrides(data), "train.max_steps=1", "train.batch_size=2",
              f"train.output_dir={run}"]
    assert run_script("recipes/pretrain.py", *common) == 2
    err = one_error_line(capsys)
    assert "visual.name: data 'pixels', model 'hog-colour'" in err
    assert "made with visual.name=pixels visual.grid=8: train with those overrides" in err
    assert not run.exists()
    # following the advice trains
    assert run_script("recipes/pretrain.py", *common, "visual.name=pixels", "visual.grid=8") == 0


def test_data_with_another_feature_size_is_refused_before_training(tmp_path, capsys):
    from tests.synthdata import tiny_overrides

    data = make_synthetic_dataset(tmp_path / "d48", dim=48, per_class={"train": 2, "valid": 1, "test": 1})
    run = tmp_path / "run"
    rc = run_script("recipes/pretrain.py", "--config", "tiny", *tiny_overrides(data), "train.max_steps=1",
                    "train.batch_size=2", f"train.output_dir={run}")
    assert rc == 2
    assert "features: data 48-d, the hog-colour encoder (visual.grid=8) gives 813-d" in one_error_line(capsys)
    assert not run.exists()


def test_training_checkpoint_with_a_pickle_is_refused_on_resume(synthetic, tmp_path, capsys):
    """`--resume` reads Accelerate's files with weights_only=True: code in them never runs."""
    from tests.synthdata import tiny_overrides

    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    argv = ["--config", "tiny", *tiny_overrides(synthetic), "model.width=32", "model.layers=2", "model.expert_layers=1",
            "model.heads=2", "model.ffn=64", "train.batch_size=2", "train.checkpoint_every=2", "train.valid_every=100",
            "train.tracker=none", f"train.output_dir={run}"]
    assert run_script("recipes/pretrain.py", *argv, "train.max_steps=2") == 0
    capsys.readouterr()
    checkpoint = run / "checkpoints" / "step_0000002"
    pickle_file(checkpoint / "optimizer.bin", marker, "torch.save")
    assert run_script("recipes/pretrain.py", *argv, "train.max_steps=4", "--resume") == 2
    err = one_error_line(capsys)
    assert f"{checkpoint}: cannot load the training state" in err and "not unpickled" in err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_damaged_objective_rng_file_is_one_error_naming_it(damage, tmp_path):
    from safetensors.torch import save_file

    from vab.errors import VabError
    from vab.training.rng import load_generator, save_generator

    path = tmp_path / "objective_rng.safetensors"
    save_generator(torch.Generator().manual_seed(3), path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        save_file({"weights": torch.zeros(3)}, str(path))
    with pytest.raises(VabError, match=re.escape(f"{path}: not a saved random-generator state")):
        load_generator(torch.Generator(), path)
