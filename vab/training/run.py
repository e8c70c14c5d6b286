"""From a config to a training run: data sets, codec, model, engine, model directory.

The recipes (`recipes/pretrain.py`, `recipes/coarse2fine.py`, the fine-tuning
scripts) are thin wrappers around these functions, so every run is built the
same way and checked the same way (data metadata against the model config).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from vab.checkpoint import build_model as build_token_model
from vab.checkpoint import save_model_dir
from vab.checkpoint.card import TrainingRecord
from vab.codecs import AudioCodec, build_codec
from vab.data.dataset import VABDataset, check_matches_config, collate, load_infos
from vab.errors import VabError
from vab.filenames import CODEC_FILE
from vab.model import TokenModel
from vab.training.engine import Trainer
from vab.training.objective import PretrainObjective, unwrap
from vab.training.validation import CONTENT_SIGNAL, pretraining_validation
from vab.utils import check_writable_dir


def recipe_parser(description: str, default_config: str | None = None) -> argparse.ArgumentParser:
    """The command line every training recipe shares: --config, --resume, --model-out, key=value overrides."""
    p = argparse.ArgumentParser(
        description=description,
        epilog="Any other word of the form key=value overrides the config, e.g. "
        "data.path=[data/vggsound,data/audioset] train.batch_size=60 train.lr=2e-4",
    )
    p.add_argument("--config", default=default_config, help="preset name, YAML file or model directory")
    p.add_argument(
        "--resume", nargs="?", const="true", default="false",
        help="continue the run in train.output_dir from its latest checkpoint (or a given checkpoint folder); "
        "'auto' resumes when a checkpoint exists",
    )
    p.add_argument("--model-out", help="model directory to write (default: RUN/model)")
    p.set_defaults(overrides=[])
    return p


def resume_arg(value: str) -> bool | str:
    return {"true": True, "false": False}.get(value.lower(), value) if isinstance(value, str) else value


def data_paths(cfg: Any) -> list[str]:
    paths = list(cfg.data.path)
    if not paths:
        raise VabError("no training data: set data.path=DIR (a `vab extract` output) or data.path=[DIR1,DIR2]")
    return paths


def load_codec_for(cfg: Any, data_dir: str | Path | None) -> AudioCodec:
    """The codec the data was tokenized with (the fitted spectral codec lives in the data / model dir)."""
    return build_codec(cfg.codec, directory=data_dir)


def check_same_codec_state(paths: list[str]) -> None:
    """Data sets tokenized by separately fitted spectral codecs cannot be mixed."""
    files = [Path(p) / CODEC_FILE for p in paths]
    present = [f for f in files if f.exists()]
    if present and (len(present) != len(files) or len({f.read_bytes() for f in present}) > 1):
        raise VabError(
            f"{', '.join(paths)}: tokenized by different fitted codecs; extract them with one codec "
            "(pass codec.path=FIRST_DIR/codec.safetensors to `vab extract` for the others)"
        )


def build_datasets(cfg: Any, paths: list[str]):
    """(train set, validation set or None) at the model's fps, duration and levels."""
    info = load_infos(paths)
    check_matches_config(info, cfg, source=", ".join(paths))
    common = dict(fps=cfg.data.fps, duration=cfg.data.duration, levels=cfg.model.levels)
    train_set = VABDataset(paths, cfg.data.train_split, train=True, seed=cfg.train.seed, **common)
    try:
        valid_set = VABDataset(paths, cfg.data.valid_split, train=False, **common)
    except VabError:
        valid_set = None
    return train_set, valid_set, info


def take_model_settings(cfg: Any, model: Any) -> None:
    """Fine-tuning reads data at the geometry its initial `model` was trained on: `cfg`'s codec,
    frame encoder, network and data fps / duration become the model's own (its weights fix
    them), so the data is checked against what the model really is."""
    for key in ("fps", "duration"):
        cfg.data[key] = model.config.data[key]
    cfg.model = model.config.model
    cfg.codec = model.config.codec
    cfg.visual = model.config.visual


def build_model(cfg: Any, codec: AudioCodec, visual_dim: int) -> TokenModel:
    """The model ``cfg.model.type`` names, over `codec`'s codebooks, initialised from ``train.seed``."""
    levels = cfg.model.levels
    if levels > codec.num_codebooks:
        raise VabError(f"model.levels={levels} but the codec has {codec.num_codebooks} codebooks")
    # initialised from train.seed: two runs of one config (or a run and its resumed twin) start alike
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.train.seed))
        return build_token_model(cfg, [codec.codebook_vectors(k) for k in range(levels)], visual_dim, codec.frame_rate)


def pretrain(cfg: Any, resume: bool | str = False, model_out: str | Path | None = None) -> Path:
    """Masked-token pretraining (VAB or coarse-to-fine, by ``cfg.model.type``; next-token training for
    the autoregressive ``foleygen`` baseline) on the data sets
    in ``cfg.data.path``; writes RUN (checkpoints, logs) and a model directory.  Returns the latter."""
    if model_out is not None:  # written after training: refuse a bad place before it
        check_writable_dir(model_out, "the model directory")
    paths = data_paths(cfg)
    check_same_codec_state(paths)
    train_set, valid_set, info = build_datasets(cfg, paths)
    if not info.has_visual:
        raise VabError(f"{paths[0]}: audio-only data has no visual features; pretraining needs videos")
    codec = load_codec_for(cfg, paths[0])
    model = build_model(cfg, codec, info.visual_dim)
    if model.objective is not None:  # a model type's own (the baseline's next-token loss), validated on that loss
        objective, validate, monitor = model.objective(cfg), None, None
    else:
        objective, validate, monitor = PretrainObjective(cfg), pretraining_validation(), f"valid/{CONTENT_SIGNAL}"
    trainer = Trainer(
        cfg.train, model, objective, train_set, valid_set,
        collate_fn=collate, validate=validate, config=cfg, num_workers=cfg.data.num_workers, monitor=monitor,
    )
    trained = trainer.fit(resume=resume)
    out = Path(model_out or Path(trainer.run_dir) / "model")
    if trainer.accelerator.is_main_process:
        save_model_dir(unwrap(trained), codec, out, training_record(trainer, train_set))
    trainer.accelerator.wait_for_everyone()
    return out


def training_record(trainer: Any, train_set: Any, task: str = "pretraining", *, init: str | Path | None = None,
                    details: dict[str, Any] | None = None) -> TrainingRecord:
    """What the model card says of a finished run: each data set's path and training clips,
    the steps taken and the validation numbers of the weights written (main process: the one
    holding them): the last validation, or the best one when the run kept its best weights."""
    data = getattr(train_set, "base", train_set)  # the class-balanced view wraps the data set
    validations = [row for row in trainer.history if any(k.startswith("valid/") for k in row)]
    last = validations[-1] if validations else {}
    plateau = getattr(trainer, "plateau", None)
    details = dict(details or {})
    if plateau is not None and plateau.patience > 0 and plateau.best_step >= 0:
        last = next((row for row in validations if row["step"] == plateau.best_step), {})
        details["weights of step"] = plateau.best_step
        details[f"best {plateau.monitor}"] = round(plateau.best, 6)
    return TrainingRecord(
        task=task,
        data=[(str(path), sum(1 for n, _ in data.index if n == i)) for i, path in enumerate(data.paths)],
        clip_seconds=float(data.info.duration),
        steps=int(trainer.state.step),
        validation={k.removeprefix("valid/"): float(v) for k, v in last.items() if k.startswith("valid/")},
        init=None if init is None else str(init),
        details=details,
    )
