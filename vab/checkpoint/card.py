"""The model card: a model directory's ``README.md``, as the Hugging Face Hub shows it.

YAML metadata (``library_name: vab``, license, tags, ``pipeline_tag``, and ``base_model``
when a model was fine-tuned from a Hub id), then a body made of what is known: the model
type and preset, parameter counts, the window, codec and frame encoder, how to use it, and,
when a training run wrote the model (:class:`TrainingRecord`), the data it read (paths,
clips, hours), its steps and its last validation numbers.

Nothing reads the card to load a model: a directory without one loads the same.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vab.checkpoint.hub import hub_id
from vab.config import list_presets, load_config
from vab.errors import VabError
from vab.filenames import CARD_FILE, CODEC_FILE, HEAD_CONFIG, HEAD_WEIGHTS, TEMPERATURE_FILE
from vab.model import TokenModel
from vab.utils import atomic_path

#: what the Hub's ``license`` says until the publisher sets it: weights carry their data's terms
DEFAULT_LICENSE = "other"

#: what each model type is, for the card's first line (another type: its class docstring)
DESCRIPTIONS = {
    "vab": "a VAB multiway Transformer (*From Vision to Audio and Beyond*): it generates a soundtrack for a video "
           "by parallel masked-token decoding, and its first expert layers embed audio and video for retrieval "
           "and classification",
    "coarse2fine": "a coarse-to-fine model: given the coarse codec levels a VAB model generated, it fills in the "
                   "fine ones (`vab generate --c2f-checkpoint`)",
    "foleygen": "the FoleyGen-style autoregressive baseline: it generates codec tokens one step at a time, "
                "conditioned on the video's frame features",
}

TITLES = {"vab": "VAB", "coarse2fine": "VAB coarse-to-fine", "foleygen": "FoleyGen baseline"}

#: the Hub task per fine-tuning task; the Hub has no video-to-audio task, and any-to-any is its
#: task for models that read several modalities (VAB reads video and audio); the tags say video-to-audio
PIPELINE_TAGS = {"retrieval": "feature-extraction", "pretraining": "any-to-any"}


@dataclass
class TrainingRecord:
    """What a training run knows about the model it wrote (the card's training section).

    `task`: pretraining | retrieval | classification; `data`: (path, training clips) per
    data set; `clip_seconds`: stored length of one clip; `steps`: optimizer steps taken;
    `validation`: the last validation numbers; `init`: the model directory or Hub id
    fine-tuning started from; `details`: task settings (mode, classes, loss ...)."""

    task: str = "pretraining"
    data: list[tuple[str, int]] = field(default_factory=list)
    clip_seconds: float | None = None
    steps: int | None = None
    validation: dict[str, float] = field(default_factory=dict)
    init: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def render_card(model: TokenModel, training: TrainingRecord | None = None, *, license: str = DEFAULT_LICENSE) -> str:
    """The card of `model` as markdown with Hub metadata."""
    from huggingface_hub import ModelCardData  # heavy (~0.3 s), and only a card needs it

    task = training.task if training is not None else "pretraining"
    cfg = model.config
    base = hub_id(training.init) if training is not None and training.init else None
    metadata = ModelCardData(
        library_name="vab", license=license, pipeline_tag=pipeline_tag(task, training),
        tags=card_tags(model, task, training), base_model=base.repo_id if base is not None else None,
    )
    lines = [
        "---", metadata.to_yaml(), "---", "",
        f"# {TITLES.get(str(cfg.model.type), str(cfg.model.type))} model"
        + (f", fine-tuned for {task}" if task != "pretraining" else ""), "",
        f"This is {DESCRIPTIONS.get(str(cfg.model.type), _docstring(model))}. "
        "It is a `vab` model directory: YAML and safetensors only, nothing that unpickles.", "",
        *_usage(model, task),
        "## Model", "", "| | |", "|---|---|", *_model_rows(model), "",
    ]
    if training is not None:
        lines += ["## Training", "", "| | |", "|---|---|", *_training_rows(training), ""]
        if training.validation:
            lines += ["Last validation:", "", "| measure | value |", "|---|---:|"]
            lines += [f"| {k} | {_number(v)} |" for k, v in sorted(training.validation.items())]
            lines.append("")
    lines += [
        "## Files", "", *_files(model, task), "",
        "## License", "",
        f"`license: {license}`" + (" (not set by the training run: weights carry the terms of the data they were "
                                   "trained on; set the field above before sharing)" if license == DEFAULT_LICENSE else ""),
        "",
    ]
    return "\n".join(lines)


def pipeline_tag(task: str, training: TrainingRecord | None = None) -> str:
    """The Hub task of a model fine-tuned for `task` (classification by its mode)."""
    if task == "classification":
        mode = (training.details.get("mode") if training is not None else None) or "audio-visual"
        return "audio-classification" if mode == "audio" else "video-classification"
    return PIPELINE_TAGS.get(task, PIPELINE_TAGS["pretraining"])


def card_tags(model: TokenModel, task: str, training: TrainingRecord | None = None) -> list[str]:
    """Hub tags: the library, the model type, the codec and what the model does."""
    cfg = model.config
    tags = ["vab", "audio-visual", str(cfg.model.type), f"codec-{cfg.codec.name}"]
    if task == "pretraining":
        tags += ["video-to-audio", "audio-generation", "foley"]
    elif task == "retrieval":
        tags += ["audio-visual-retrieval"]
    else:
        tags += [pipeline_tag(task, training)]
    return list(dict.fromkeys(tags))


def write_card(directory: str | os.PathLike, text: str) -> Path:
    """Write `text` as ``directory/README.md`` atomically (a reader never sees half a card)."""
    path = Path(directory) / CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def set_card_section(directory: str | os.PathLike, title: str, body: str) -> Path:
    """Put ``## title`` with `body` into the card of `directory`: replaced when the card has
    that section already (so a re-run does not repeat it), else appended."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        raise VabError(f"{path}: missing (the model directory has no card to add '{title}' to)")
    text = path.read_text()
    section = f"## {title}\n\n{body.strip()}\n"
    found = re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if found:
        text = text[: found.start()] + section + ("\n" if found.end() < len(text) else "") + text[found.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    return write_card(directory, text)


def matching_preset(config: Any) -> str | None:
    """The preset (``vab/configs/*.yaml``) whose model settings are `config`'s, if any."""
    mine = OmegaConf.to_container(config.model)
    for name in list_presets():
        if OmegaConf.to_container(load_config(name).model) == mine:
            return name
    return None


# ---------------------------------------------------------------------- sections
def _usage(model: TokenModel, task: str) -> list[str]:
    lines = ["## Use", "", "`MODEL` is this repository's id (`org/name`, or `org/name@revision` for a branch, tag or "
             "commit) or a local copy of this folder; ids are fetched once into the Hugging Face cache and read "
             "from there offline (`HF_HUB_OFFLINE=1`).", "", "```bash"]
    if task == "classification":
        lines.append("python eval/classification.py --checkpoint MODEL data.path=[DATA] --split test")
    elif task == "retrieval":
        lines += ["vab embed videos/ --checkpoint MODEL --out index/", "vab search index/ --query dog.mp4 --by video --in audio"]
    elif int(model.given_levels) > 0:
        lines.append("vab generate clip.mp4 --checkpoint COARSE_MODEL --c2f-checkpoint MODEL --out out/")
    else:
        lines.append("vab generate clip.mp4 --checkpoint MODEL --out out/")
    lines += ["```", "", "```python", "import vab", "", 'model = vab.load_pretrained("MODEL")']
    if task == "pretraining" and int(model.given_levels) == 0:
        lines.append('result = vab.generate(model, "clip.mp4")  # result.waveform, result.sample_rate')
    lines += ["```", ""]
    return lines


def _model_rows(model: TokenModel) -> list[str]:
    cfg = model.config
    m = cfg.model
    preset = matching_preset(cfg)
    counts = model.parameter_counts()
    parts = ", ".join(f"{name.replace('_', ' ')} {_millions(n)}" for name, n in counts.items()
                      if name not in ("total", "expert_layers") and n)
    rows = [
        ("model type", f"`{m.type}`"),
        ("preset", f"`{preset}`" if preset else "none (custom model settings, see `config.yaml`)"),
        ("layers", f"{m.layers} ({model.expert_layers} with audio / visual experts), width {m.width}, "
                   f"{m.heads} heads, FFN {m.ffn}, positions: ALiBi by {m.alibi}"),
        ("parameters", f"{counts['total']:,} ({_millions(counts['total'])}); expert layers "
                       f"{_millions(counts['expert_layers'])}; {parts}"),
        ("window", f"{model.duration:g} s: {model.num_frames} frames at {model.fps:g} fps and "
                   f"{model.num_audio_frames} audio frames at {model.frame_rate:g} Hz"),
        ("audio codec", _codec(model)),
        ("frame encoder", _visual(model)),
    ]
    return [f"| {k} | {v} |" for k, v in rows]


def _codec(model: TokenModel) -> str:
    c = model.config.codec
    reads = f"the model reads {model.levels} levels x {model.codebook_size} tokens"
    if model.given_levels:
        reads += f" (the first {model.given_levels} given, the rest predicted)"
    if c.name == "encodec":
        return f"EnCodec 24 kHz at {float(c.bandwidth):g} kbps (the `encodec` package's weights); {reads}"
    if c.name == "dac":
        return f"DAC 16 kHz (`descript-audio-codec` weights); {reads}"
    if c.name == "spectral":
        return (f"spectral (vab's own: STFT log-magnitude, n_fft {c.n_fft}, residual k-means at {int(c.sample_rate)} Hz), "
                f"fitted on the training data; {reads}")
    return f"{c.name}; {reads}"


def _visual(model: TokenModel) -> str:
    v = model.config.visual
    if v.name == "clip":
        weights = f"pretrained `{v.pretrained}`" if v.pretrained and not v.path else "a local weights file"
        return f"open_clip `{v.model}` ({weights}), {model.visual_dim}-d features"
    if v.name == "pixels":
        return f"pixels ({v.grid} x {v.grid} x 3 = {model.visual_dim} values per frame, no weights)"
    if v.name in ("hog", "hog-colour"):
        colour = " plus a colour grid" if v.name == "hog-colour" else ""
        return (f"{v.name} (gradient-orientation histograms on a {v.grid} x {v.grid} pyramid{colour}, "
                f"{model.visual_dim}-d, no weights)")
    return f"{v.name}, {model.visual_dim}-d features"


def _training_rows(training: TrainingRecord) -> list[str]:
    rows = [("task", training.task)]
    if training.init:
        rows.append(("started from", f"`{training.init}`"))
    for path, clips in training.data:
        hours = f", {clips * training.clip_seconds / 3600:.2f} h" if training.clip_seconds else ""
        rows.append(("data", f"`{path}`: {clips:,} training clips{hours}"))
    if training.steps is not None:
        rows.append(("steps", f"{training.steps:,}"))
    rows += [(str(k), str(v)) for k, v in training.details.items()]
    return [f"| {k} | {v} |" for k, v in rows]


def _files(model: TokenModel, task: str) -> list[str]:
    files = ["- `config.yaml`: everything needed to rebuild and run the model (data, not code)",
             "- `model.safetensors`: the weights, with a SHA-256 of the tensors in its metadata"]
    if model.config.codec.name == "spectral":
        files.append(f"- `{CODEC_FILE}`: the fitted spectral codec (without it, the codec is rebuilt from the "
                     "codebooks the weights hold)")
    if task == "retrieval":
        files.append(f"- `{TEMPERATURE_FILE}`: the learned contrastive temperature")
    if task == "classification":
        files.append(f"- `{HEAD_WEIGHTS}`, `{HEAD_CONFIG}`: the classification head and its label names")
    return files


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _docstring(model: TokenModel) -> str:
    doc = (type(model).__doc__ or type(model).__name__).strip().splitlines()[0]
    return f"a `{type(model).__name__}` model ({doc.rstrip('.')})"
