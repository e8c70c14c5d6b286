"""`vab demo`: the whole system on a synthetic world, end to end, on a CPU.

synthesise (vab.data.synthetic) -> extract (vab.data.extract: spectral codec fitted on
the training clips; the `tiny` preset's hog-colour frame encoder) -> pretrain
(vab.training.run.pretrain, the `tiny` preset with :attr:`DemoSettings.overrides`) ->
generate for held-out clips (vab.generation.generator.Generator: wav, muxed mp4, PNG
plots) and score the soundtracks (vab.demo.quality) -> retrieval fine-tuning and
evaluation (vab.finetuning.contrastive) -> an embedding index of the held-out clips
(vab.search, for `vab search` and `vab app`) -> classification fine-tuning and evaluation
in audio, visual and audio-visual modes (vab.finetuning.classification) -> a summary
table, DIR/report.md and the `vab app` command for the demo's models (vab.demo.report).

Every stage is the library's own code; this module only wires them together.

Resuming: each finished stage leaves ``DIR/stages/<stage>.json`` (its results and wall
time), and a re-run skips finished stages (the library's own resumption covers a stage
that was interrupted: synthesis and extraction skip finished clips, training resumes
from its last checkpoint).  ``DIR/demo.json`` records the settings; a folder made with
other settings (e.g. ``--quick`` vs the full run) is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.progress import Progress

from vab.config import load_config
from vab.data.extract import extract
from vab.data.manifest import read_manifest
from vab.data.synthetic import MANIFEST, iter_split, read_truth, synthesize
from vab.demo.probe import visual_probe
from vab.demo.soundtracks import generate_and_score
from vab.errors import VabError
from vab.finetuning.classification import evaluate_classifier, finetune_classifier
from vab.finetuning.contrastive import evaluate_retrieval, finetune_retrieval
from vab.generation.sampling import SamplingConfig
from vab.search import Embedder
from vab.training.run import pretrain
from vab.utils import atomic_path, check_writable_dir

MODES = ("audio", "visual", "audio-visual")
#: the demo's --precision choices
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: `vab generate`'s sampling defaults, which the demo's generation stage uses
SAMPLING_DEFAULTS = SamplingConfig()
STAGES = ("synth", "extract", "pretrain", "generate", "retrieval", "index", "classify")
#: the classifier `vab app` gets (one of the three modes)
APP_CLASSIFIER = "classify-audio-visual"


@dataclass
class DemoSettings:
    """What the demo builds and how long it trains (clip counts, steps, model overrides)."""

    name: str = "full"
    world: str = "demo"  # vab.data.synthetic.WORLDS: demo (colour + shape + fixed sound) | shapes (harder)
    classes: int = 8
    train: int = 512
    valid: int = 32
    test: int = 64
    seconds: float = 4.0
    fps: float = 8.0  # the world's video rate = the rate features are stored and read at
    size: int = 64  # pixels, square frames
    seed: int = 0
    # 500 since tiny's train.mask_full_prob 0.3 (issue 15): every target met, the whole demo 1.7x faster than with the
    # 1200 steps that mask_full_prob 0 needed (600 steps had given class agreement 0.48); docs/BENCHMARKS.md
    pretrain_steps: int = 500
    retrieval_steps: int = 200
    classify_steps: int = 60
    batch_size: int = 32
    plots: int = 8  # PNGs for the first held-out clips (every held-out clip gets wav + mp4)
    # sampling of the generation stage: `vab generate`'s defaults (SamplingConfig), chosen on these worlds
    # (docs/BENCHMARKS.md): temperature 0.5 named the class more often than the paper's 1.0 for all five
    # demo models compared, on both worlds (e.g. 0.828 -> 0.875), and guidance 2 more often than the
    # paper's 5 (with T 0.5: demo 0.891 -> 0.922, shapes 0.828 -> 0.875)
    temperature: float = SAMPLING_DEFAULTS.temperature
    guidance: float = SAMPLING_DEFAULTS.guidance
    # on top of the `tiny` preset: see the README of the demo in the report
    overrides: list[str] = field(default_factory=lambda: list(TINY_OVERRIDES))

    def config_overrides(self, data_dir: Path) -> list[str]:
        return self.overrides + [
            f"data.fps={self.fps}", f"extract.fps={self.fps}", f"data.duration={self.seconds}",
            f"extract.duration={self.seconds}", f"data.path=[{data_dir}]", f"train.batch_size={self.batch_size}",
            f"train.seed={self.seed}", "train.tracker=none", "extract.num_workers=0",
        ]


#: Why these differ from `tiny`: 25 audio tokens / s (not 50) and 64-entry codebooks (not
#: 256) halve the sequence and shrink the output layers, so a CPU trains the model in
#: minutes; timing is still resolved to 40 ms, finer than the 125-ms video frames.  A mean
#: mask ratio of 0.75 (not 0.55) makes more training examples answerable only from the
#: picture, which is what generation needs: a short run otherwise learns to fill audio in
#: from the audio around it and ignores the video.
TINY_OVERRIDES = (
    "codec.frame_rate=25", "codec.codebook_size=64", "train.warmup_steps=50", "train.lr=2e-3",
    "train.mask_mean=0.75", "train.log_every=50",
)

FULL = DemoSettings()
#: 3-s clips make each step ~1.5x cheaper than 4-s ones, which buys 450 steps in the time
#: budget: class agreement comes late in pretraining (250 steps of 4-s clips gave 0.22-0.28,
#: barely above the test's bound of twice chance; 450 steps of 3-s clips gave 0.47)
QUICK = replace(
    FULL, name="quick", train=192, valid=16, test=32, seconds=3.0, pretrain_steps=450, retrieval_steps=80,
    classify_steps=30, plots=4,
)
#: the harder world (issue 15, `vab demo --world shapes`): the class is only the shape drawn; the
#: `tiny` preset's hog-colour encoder sees it (a linear probe on 8 x 8 colour grids names 25% of the
#: test clips, on hog-colour features 91%); the coarse levels weigh more in the loss (0.78 against
#: 0.72 class agreement at 400 steps); 1200 steps gave no more than 400 (0.72 both); sampling at
#: temperature 0.5 named the class more often for both models (0.75 / 0.84): docs/BENCHMARKS.md
SHAPES = replace(
    FULL, name="shapes", world="shapes", train=320, valid=32, test=64, seconds=3.0, pretrain_steps=400,
    overrides=list(TINY_OVERRIDES),
)
SHAPES_QUICK = replace(
    SHAPES, name="shapes-quick", train=192, valid=16, test=32, pretrain_steps=300, retrieval_steps=80,
    classify_steps=30, plots=4,
)


def demo_settings(world: str = "demo", quick: bool = False) -> DemoSettings:
    """The settings `vab demo [--quick] [--world W]` runs with."""
    if world == "shapes":
        return SHAPES_QUICK if quick else SHAPES
    if world != "demo":
        raise VabError(f"--world {world}: unknown world (choose from demo, shapes)")
    return QUICK if quick else FULL


@dataclass
class StageRecord:
    name: str
    seconds: float
    results: dict[str, Any]
    skipped: bool = False  # finished by an earlier run


@dataclass
class DemoResult:
    out: Path
    settings: DemoSettings
    stages: dict[str, StageRecord]
    seconds: float  # wall time of this run


class Demo:
    """The demo in folder `out` with `settings`; :meth:`run` does every stage not done yet.

    `log(text)` receives one line per stage start / finish.  `precision` (one of
    :data:`PRECISIONS`): the number format of training (train.precision) and generation,
    see :func:`demo_precisions`."""

    def __init__(
        self, out: str | Path, settings: DemoSettings = FULL, log: Callable[[str], None] = print,
        precision: str = "auto",
    ):
        self.train_precision, self.generate_precision = demo_precisions(precision)
        self.out = Path(out)
        self.settings = settings
        self.log = log
        self.world = self.out / "world"
        self.data = self.out / "data"
        self.model = self.out / "model"
        self.retrieval_model = self.out / "retrieval"
        self.index = self.out / "index"
        self.generated = self.out / "generated"
        self.runs = self.out / "runs"
        self.stage_dir = self.out / "stages"

    # ------------------------------------------------------------------ bookkeeping
    def config(self, extra: list[str] | None = None):
        overrides = self.settings.config_overrides(self.data) + [f"train.precision={self.train_precision}"]
        return load_config("tiny", overrides + list(extra or []))

    def claim(self) -> None:
        """Create the folder or check it holds a demo with the same settings."""
        check_writable_dir(self.out, "the demo")  # an --out that is a file, or under one
        path = self.out / "demo.json"
        wanted = asdict(self.settings)
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                raise VabError(f"{path}: unreadable; remove {self.out} or use another --out") from None
            old.setdefault("world", "demo")  # folders made before worlds existed
            old.setdefault("temperature", 1.0)
            old.setdefault("guidance", 5.0)  # folders made before the demo's own sampling settings
            if old != wanted:
                diff = [k for k in wanted if old.get(k) != wanted[k]]
                raise VabError(
                    f"{self.out}: holds a demo run with other settings ({old.get('name')}, differs in "
                    f"{', '.join(diff)}); use another --out or remove it"
                )
            return
        if self.out.exists() and any(self.out.iterdir()):
            raise VabError(f"{self.out}: exists and is not a demo folder; use another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(wanted, indent=1))
        except OSError as exc:
            raise VabError(f"{self.out}: cannot write here ({exc.strerror or exc})") from None

    def _done(self, stage: str) -> StageRecord | None:
        path = self.stage_dir / f"{stage}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged record: redo the stage
        return StageRecord(stage, record["seconds"], record["results"], skipped=True)

    def _finish(self, stage: str, seconds: float, results: dict[str, Any]) -> StageRecord:
        with atomic_path(self.stage_dir / f"{stage}.json") as tmp:
            tmp.write_text(json.dumps({"seconds": seconds, "results": results}, indent=1, default=_jsonable))
        return StageRecord(stage, seconds, results)

    def run(self, stages: tuple[str, ...] = STAGES) -> DemoResult:
        started = time.perf_counter()
        self.claim()
        records: dict[str, StageRecord] = {}
        for stage in stages:
            record = self._done(stage)
            if record is not None:
                self.log(f"stage {stage}: done earlier ({record.seconds:.0f} s), skipped")
            else:
                self.log(f"stage {stage} ...")
                t0 = time.perf_counter()
                results = getattr(self, f"stage_{stage}")()
                record = self._finish(stage, time.perf_counter() - t0, results)
                self.log(f"stage {stage}: finished in {record.seconds:.0f} s")
            records[stage] = record
        return DemoResult(self.out, self.settings, records, time.perf_counter() - started)

    # ------------------------------------------------------------------ stages
    def stage_synth(self) -> dict[str, Any]:
        s = self.settings
        summary = synthesize(
            self.world, classes=s.classes, train=s.train, valid=s.valid, test=s.test, seconds=s.seconds,
            fps=s.fps, width=s.size, height=s.size, seed=s.seed, world=s.world, progress=_bar("synthesising clips"),
        )
        return {"clips": summary.clips, "classes": summary.classes, "manifest": str(summary.manifest)}

    def stage_extract(self) -> dict[str, Any]:
        cfg = self.config()
        manifest = read_manifest(self.world / MANIFEST)
        summary = extract(manifest, self.data, cfg.codec, cfg.visual, cfg.extract)
        if summary.failed or summary.failed_before:
            raise VabError(f"{self.data}: {summary.failed + summary.failed_before} synthetic clips failed to extract "
                           f"(see {self.data}/failures.jsonl)")
        return {"clips": summary.total, "seconds": summary.seconds}

    def stage_pretrain(self) -> dict[str, Any]:
        s = self.settings
        cfg = self.config([
            f"train.output_dir={self.runs / 'pretrain'}", f"train.max_steps={s.pretrain_steps}",
            f"train.valid_every={s.pretrain_steps}", f"train.checkpoint_every={max(100, s.pretrain_steps // 2)}",
        ])
        out = pretrain(cfg, resume="auto", model_out=self.model)
        return {"model": str(out), "steps": s.pretrain_steps, "precision": self.train_precision}

    def stage_generate(self) -> dict[str, Any]:
        results = generate_and_score(self.model, self.world, self.generated, plots=self.settings.plots,
                                     sampling=SamplingConfig(temperature=self.settings.temperature,
                                                             guidance=self.settings.guidance),
                                     precision=self.generate_precision)
        # the visual ceiling: what the stored frame features alone tell of the class
        results["visual_ceiling"] = visual_probe(self.data, self.world)["accuracy"]
        return results

    def stage_retrieval(self) -> dict[str, Any]:
        s = self.settings
        cfg = self.config([
            f"train.output_dir={self.runs / 'retrieval'}", f"train.max_steps={s.retrieval_steps}",
            "train.lr=1e-3", "train.warmup_steps=20",
            f"train.valid_every={s.retrieval_steps}", f"train.checkpoint_every={max(100, s.retrieval_steps)}",
        ])
        out = finetune_retrieval(cfg, self.model, resume="auto", model_out=self.retrieval_model)
        metrics = evaluate_retrieval(out, [str(self.data)], split="test", device="cpu")
        return {"model": str(out), **metrics}

    def stage_index(self) -> dict[str, Any]:
        """Embed the held-out clips with the retrieval model: the index `vab search` and `vab app` query."""
        index = Embedder(self.retrieval_model, device="cpu").embed_dataset(self.data, "test")
        index.save(self.index)
        return {"index": str(self.index), "clips": len(index)}

    def stage_classify(self) -> dict[str, Any]:
        s = self.settings
        results: dict[str, Any] = {}
        for mode in MODES:
            overrides = self.settings.config_overrides(self.data) + [
                f"train.precision={self.train_precision}", f"train.output_dir={self.runs / f'classify-{mode}'}", f"train.max_steps={s.classify_steps}",
                "train.lr=1e-3", "train.warmup_steps=10",
                f"train.valid_every={s.classify_steps}", f"train.checkpoint_every={max(100, s.classify_steps)}",
            ]
            out = finetune_classifier(
                self.retrieval_model, mode, overrides, balanced=True, resume="auto",
                model_out=self.out / f"classify-{mode}",
            )
            metrics, _ = evaluate_classifier(out, [str(self.data)], split="test")
            results[mode] = {"model": str(out), **metrics}
        return results


def demo_precisions(precision: str) -> tuple[str, str]:
    """(train.precision, generation --precision) for the demo's `--precision`.

    auto: what `train.precision=auto` and `vab generate` pick (for the demo's 1.4M-parameter
    model: fp32 training, as bf16 measured slower at that size, and bf16 generation on a CPU
    with native bf16; docs/BENCHMARKS.md, "Number formats").  fp32 / bf16: both; int8: fp32
    training, int8 generation."""
    choices = {"auto": ("auto", "auto"), "fp32": ("no", "fp32"), "bf16": ("bf16", "bf16"), "int8": ("no", "int8")}
    if precision not in choices:
        raise VabError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return choices[precision]


def app_command(out: str | Path) -> str:
    """The `vab app` command for the models of the demo in `out` (those that exist)."""
    out = Path(out)
    words = ["vab", "app", "--checkpoint", str(out / "model")]
    if (out / "index").is_dir():
        words += ["--index", str(out / "index")]
    if (out / APP_CLASSIFIER).is_dir():
        words += ["--classifier", str(out / APP_CLASSIFIER)]
    return " ".join(words)


@dataclass(frozen=True)
class Example:
    """A held-out clip of the demo that the web page offers: its file, its class, and a time
    (s) when its object is in view (the page's thumbnail: some clips open on a dark frame)."""

    path: Path
    label: str
    in_view: float


def held_out_examples(model_dir: str | Path, count: int = 4) -> list[Example]:
    """The first `count` held-out (test split) videos of the demo whose model is `model_dir`
    (``DIR/model`` of a `vab demo` folder), one per class while classes last; [] for any
    other model directory."""
    folder = Path(model_dir).parent
    if Path(model_dir).name != "model" or not (folder / "demo.json").is_file():
        return []
    try:
        rows = sorted(iter_split(read_truth(folder / "world"), "test"), key=lambda r: r.id)
    except VabError:
        return []
    picked, seen = [], set()
    for row in rows:  # different classes first: the examples should not all sound alike
        if row.label not in seen and row.path.is_file():
            a, b = max(row.intervals, key=lambda span: span[1] - span[0]) if row.intervals else (0.0, 0.0)
            picked.append(Example(row.path, row.label, (a + b) / 2))  # the middle of its longest time in view
            seen.add(row.label)
    return picked[:count]


def held_out_clips(model_dir: str | Path, count: int = 4) -> list[Path]:
    """The files of :func:`held_out_examples`."""
    return [example.path for example in held_out_examples(model_dir, count)]


def _bar(title: str) -> Callable[[int, int], None]:
    """progress(done, total) drawing a rich bar that closes itself at the end."""
    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = Progress(transient=False)
            state["bar"].start()
            state["task"] = state["bar"].add_task(title, total=total)
        state["bar"].update(state["task"], completed=done)
        if done >= total:
            state.pop("bar").stop()

    return progress


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
