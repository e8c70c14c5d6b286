"""Learning what to sound, on every world with one set of settings, one table (issue 30).

For each world (a `vab synth` folder and its `vab extract` data set) and one named variant
(the `tiny` preset as `recipes/pretrain.py --config tiny` runs it, plus the variant's overrides),
this pretrains ONE run with a checkpoint every ``--every`` steps, then at each step of ``--eval``:

* exports the checkpoint as a model directory (the EMA weights when the run keeps them);
* generates a soundtrack for every test clip and scores it with the demo's judge
  (:class:`vab.demo.soundtracks.WorldJudge`, fitted once per world): class agreement, timing;
* computes the label-free signals a user could read on the `valid` split: the trainer's own
  validation (:func:`vab.training.validation.pretraining_validation`: masked accuracy at 0.3 /
  0.55 / 0.9, full-mask loss with and without the picture, and what the picture saves), and a
  generation check (soundtracks for the valid clips compared with their real audio through a
  log-mel embedding: how often a generated clip is closer to its own clip's audio than to another's).

The table gives, per world: the ceilings, class agreement along the run, steps to 80% of the
run's final class agreement, and each signal's Spearman rank correlation with class agreement
over the checkpoints.  Everything resumes: a finished run, export or evaluation is skipped.

    python benchmarks/learning_curves.py --out /tmp/curves --variant tiny --steps 4000 --every 250 \\
        --eval 250,500,1000,1500,2000,3000,4000 \\
        --world demo=/tmp/demo:/tmp/demo-data --world words=/tmp/words:/tmp/words-data

Results: OUT/<world>/<variant>/eval/step_XXXXXXX[-<sampling>].json, the tables in OUT/table-<variant>.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr

from vab import media
from vab.checkpoint import load_model, save_model_dir
from vab.config import load_config
from vab.data.dataset import VABDataset, collate
from vab.data.store import DataInfo
from vab.data.synthetic import iter_split, read_truth
from vab.demo import quality
from vab.demo.soundtracks import fit_judge, generate_for
from vab.demo.probe import visual_probe
from vab.generation.generator import Generator
from vab.generation.sampling import SamplingConfig
from vab.training import checkpoints as ckpt
from vab.training.ema import EMA_FILE
from vab.training.run import build_model, load_codec_for, pretrain
from vab.training.stopping import Plateau
from vab.training.validation import pretraining_validation

#: name -> overrides on top of the `tiny` preset (the README's `recipes/pretrain.py --config tiny`)
VARIANTS: dict[str, list[str]] = {
    "tiny": [],  # the preset as it is
    "demo": ["codec.frame_rate=25", "codec.codebook_size=64", "train.warmup_steps=50", "train.lr=2e-3",
             "train.mask_mean=0.75"],  # vab demo's overrides (needs data extracted with its codec)
    "lr2e-3": ["train.lr=2e-3"],
    "lr2e-3+warm50": ["train.lr=2e-3", "train.warmup_steps=50"],
    "mask0.75": ["train.mask_mean=0.75"],
    "full0.5": ["train.mask_full_prob=0.5"],
    "levels": ["train.level_weights=[4,2,1,1]"],
    "batch32": ["train.batch_size=32"],
    "ema": ["train.ema=0.99"],
    "add": ["model.visual_add=true"],  # the frame on screen added to each audio position too
    "adddrop": ["model.visual_add=true", "model.visual_add_dropout=0.5"],  # ... left out of half the examples
    "split": ["model.alibi_direction=split"],  # one-sided heads: a quarter look only back in time, a quarter ahead
    "both": ["model.alibi_direction=both"],  # every head both ways (tiny before issue 30's fourth pass)
    "flat": ["train.coarse_weight=1"],  # every level weighs the same (tiny before issue 30's third pass)
    "fps8": ["data.fps=8"],  # every stored frame (8 / s) instead of one per 0.5 s
    "deep": ["model.layers=6", "model.expert_layers=3"],  # half as deep again, the same share of expert layers
    # tiny when issue 30 was filed (25025ec): 2 of the 8 stored frames per second, every level weighing the same,
    # every head looking both ways
    "filed": ["data.fps=2", "train.coarse_weight=1", "model.alibi_direction=both"],
    "codec25": ["codec.frame_rate=25", "codec.codebook_size=64"],  # data extracted with these
}
#: sampling settings by name: the paper's (vab generate before issue 30) and the demos' (issue 15)
SAMPLINGS = {
    "paper": {"guidance": 5.0, "temperature": 1.0},
    "g2t0.5": {"guidance": 2.0, "temperature": 0.5},
    "g1t0.5": {"guidance": 1.0, "temperature": 0.5},
    "g3t0.5": {"guidance": 3.0, "temperature": 0.5},
    "g2t0.75": {"guidance": 2.0, "temperature": 0.75},
    "g2t1": {"guidance": 2.0, "temperature": 1.0},
    "g3t0.75": {"guidance": 3.0, "temperature": 0.75},
    "g5t0.5": {"guidance": 5.0, "temperature": 0.5},
    # vab generate's defaults: 4 steps, guidance 2 on the first two, T 0.5 (3 steps guided on the first between
    # issue 30's seventh and eighth measurements, 8 steps before 972ffd0)
    "defaults": {},
    "s4-g2": {"steps": 4, "guidance_stop": 0.5},  # the defaults before: 4 steps, guidance on the first two
    "g2t0.5-16": {"guidance": 2.0, "temperature": 0.5, "steps": 16, "guidance_stop": 1.0},  # before issue 27
    "s4": {"steps": 4},  # 4 steps, guidance on the first quarter (the first one; before: the first two)
    "g5-s8": {"guidance": 5.0, "steps": 8},  # 8 steps, guidance 5 on the first half
    "s8": {"steps": 8},  # issue 27's first defaults
    "g3": {"guidance": 3.0},  # the defaults with guidance 3
    "g5": {"guidance": 5.0},  # the defaults with the paper's guidance 5
    "s2": {"steps": 2},  # 2 steps, guidance on the first: what VAB 4x ahead of FoleyGen would take
    "s2-linear": {"steps": 2, "schedule": "linear"},  # 2 steps settling half the tokens in the first
    "s2-square": {"steps": 2, "schedule": "square"},  # ... a quarter in the first
    "s2-cubic": {"steps": 2, "schedule": "cubic"},  # ... an eighth in the first
    "s2-t0.25": {"steps": 2, "temperature": 0.25},  # 2 steps drawing closer to the most likely token
    # guidance acts on step i of N when i / N < guidance_stop: with 3 steps 0.34 guides steps 0 AND 1 (1/3 < 0.34)
    "s3-g2": {"steps": 3, "guidance_stop": 0.34},  # 3 steps, guidance on the first two (5 forward rows)
    "s3-g1": {"steps": 3, "guidance_stop": 0.3},  # 3 steps, guidance on the first only (4 forward rows)
    "s3-g0": {"steps": 3, "guidance": 1.0},  # 3 steps, no guidance (3 forward rows: issue 27's 4x)
    "s4-g0": {"steps": 4, "guidance": 1.0},  # the defaults without guidance (4 forward rows)
    "s2-mt4.5": {"steps": 2, "mask_temperature": 4.5},  # 2 steps, less noise in which tokens stay
    "s2-mt0": {"steps": 2, "mask_temperature": 0.0},  # 2 steps, the most confident tokens stay
    "mt4.5": {"mask_temperature": 4.5},  # the defaults with less noise in which tokens stay
    "seed1": {"seed": 1},  # the defaults with other random draws: how much of a score is the draw
    "seed2": {"seed": 2},
}
#: label-free signals compared (higher = better: losses enter negated)
SIGNALS = ("picture", "-full", "-loss@0.55", "-loss@0.9", "acc@0.9", "acc@0.55", "gen_match")
GENERATE_BATCH = 16


def sampling_settings(name: str) -> dict:
    """The SamplingConfig fields of a sampling name: one of SAMPLINGS, with ``@K`` for its draws
    from seed K (``s2@1``: 2 steps, seed 1), so a score can be averaged over draws."""
    base, at, seed = name.partition("@")
    if base not in SAMPLINGS or (at and not seed.isdigit()):
        raise ValueError(f"unknown sampling {name!r}: one of {', '.join(SAMPLINGS)}, optionally with @SEED")
    return {**SAMPLINGS[base], **({"seed": int(seed)} if at else {})}


def sampling_of(name: str) -> SamplingConfig:
    return SamplingConfig(**sampling_settings(name))


def overrides(variant: str) -> list[str]:
    """The config overrides of a variant name: one of VARIANTS, or several joined by commas."""
    return [o for name in variant.split(",") for o in VARIANTS[name]]


def variant_name(text: str) -> str:
    """argparse type of --variant: the name, once every comma-joined part is known."""
    unknown = [name for name in text.split(",") if name not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return text


def run_config(world: str, data: Path, folder: Path, variant: str, args: argparse.Namespace):
    info = DataInfo.load(data)
    return load_config("tiny", [
        f"data.path=[{data}]", f"visual.name={info.visual['name']}", f"visual.grid={info.visual.get('grid', 8)}",
        f"train.output_dir={folder / 'run'}", f"train.max_steps={args.steps}", f"train.checkpoint_every={args.every}",
        "train.keep_checkpoints=0", "train.valid_every=0", "train.tracker=none", "data.num_workers=0",
        f"train.seed={args.seed}", *overrides(variant),
    ])


def export(cfg, checkpoint: Path, out: Path, data: Path) -> Path:
    """The model directory of one training checkpoint (its EMA weights when it has them)."""
    if (out / "model.safetensors").is_file():
        return out
    codec = load_codec_for(cfg, data)
    model = build_model(cfg, codec, DataInfo.load(data).visual_dim)
    ema = checkpoint / EMA_FILE
    if ema.is_file():
        state = {k.removeprefix("module."): v for k, v in load_file(str(ema)).items() if k.startswith("module.")}
    else:
        state = load_file(str(checkpoint / "model.safetensors"))
    model.load_state_dict(state)
    return save_model_dir(model.eval(), codec, out)


def embedding(wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """``[N, D]`` log-mel embeddings (the judge's features, no labels involved)."""
    return np.stack([quality.sound_features(w, sample_rate) for w in wavs])


def generation_match(generated: list[np.ndarray], real: list[np.ndarray], sample_rate: int) -> float:
    """How often a generated clip is closer (cosine, features standardised on the real clips) to
    its own clip's real audio than to another clip's: 0.5 = chance, 1 = always."""
    r, g = embedding(real, sample_rate), embedding(generated, sample_rate)
    mu, sd = r.mean(0), r.std(0) + 1e-6
    r, g = (r - mu) / sd, (g - mu) / sd
    r /= np.linalg.norm(r, axis=1, keepdims=True) + 1e-9
    g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-9
    sim = g @ r.T
    own = np.diag(sim)[:, None]
    others = ~np.eye(len(sim), dtype=bool)
    return float((own > sim)[others].mean())


def label_free(model_dir: Path, cfg, data: Path, world: Path, generator: Generator | None, sampling: SamplingConfig,
               out: Path) -> dict[str, float]:
    """The trainer's validation numbers and (with a `generator`) the generation check, on the valid split."""
    valid = VABDataset([str(data)], "valid", fps=cfg.data.fps, duration=cfg.data.duration, levels=cfg.model.levels,
                       train=False)
    loader = torch.utils.data.DataLoader(valid, batch_size=16, shuffle=False, collate_fn=collate)
    fp32 = load_model(model_dir, device="cpu").eval()  # validation as the trainer runs it (fp32)
    numbers = pretraining_validation()(fp32, loader)
    if generator is None:
        return numbers
    rows = sorted(iter_split(read_truth(world), "valid"), key=lambda r: r.id)
    gen = generate_for(generator, rows, out, sampling)
    sr, seconds = generator.sample_rate, float(generator.model.duration)
    real = [media.read_audio(r.path, sr, 0.0, seconds) for r in rows]
    numbers["gen_match"] = generation_match(gen, real, sr)
    return numbers


def model_dir_of(folder: Path, step: int) -> Path:
    """Where the checkpoint of `step` is exported as a model directory."""
    return folder / "models" / f"step_{step:07d}"


def available_steps(folder: Path) -> set[int]:
    """Steps with a complete checkpoint or an exported model directory (checkpoints may be pruned once exported)."""
    done = {step for step, _ in ckpt.complete_checkpoints(folder / "run" / "checkpoints")}
    exported = {int(p.parent.name.removeprefix("step_")) for p in (folder / "models").glob("step_*/model.safetensors")}
    return done | exported


def evaluate(name: str, world: Path, data: Path, folder: Path, variant: str, args: argparse.Namespace,
             judges: dict) -> None:
    cfg = run_config(name, data, folder, variant, args)
    run = folder / "run"
    done = available_steps(folder)
    for step in sorted(set(args.signal_steps) - set(args.eval_steps)):  # signals only, no generation
        path = folder / "eval" / f"signals_{step:07d}.json"
        if step in done and not path.is_file():
            model_dir = export(cfg, run / "checkpoints" / ckpt.checkpoint_name(step), model_dir_of(folder, step), data)
            row = {"world": name, "variant": variant, "step": step,
                   "signals": label_free(model_dir, cfg, data, world, None, SamplingConfig(), folder)}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=1))
    for step in args.eval_steps:
        if step not in done:
            continue
        for sname in args.samplings:
            path = folder / "eval" / f"step_{step:07d}-{sname}.json"
            if path.is_file():
                continue
            t0 = time.perf_counter()
            model_dir = export(cfg, run / "checkpoints" / ckpt.checkpoint_name(step), model_dir_of(folder, step), data)
            generator = Generator.from_pretrained(model_dir, device="cpu", batch_size=GENERATE_BATCH)
            key = str(data)
            if key not in judges:
                judges[key] = fit_judge(world, generator.codec, float(generator.model.duration), "test")
            judge = judges[key]
            sampling = sampling_of(sname)
            wavs = generate_for(generator, judge.held_out, folder / "generated" / f"{step}-{sname}", sampling)
            row = {"world": name, "variant": variant, "step": step, "sampling": sname, **judge.score(wavs),
                   "correct": clip_correct(judge, wavs)}
            if sname == args.samplings[0]:  # the label-free signals once per checkpoint
                row["signals"] = label_free(model_dir, cfg, data, world, generator, sampling,
                                            folder / "generated" / f"{step}-{sname}-valid")
            row["eval_seconds"] = time.perf_counter() - t0
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=1))
            print(f"{name} {variant} step {step} {sname}: class {row['class_agreement']:.3f} "
                  f"timing {row['timing_agreement']:.3f}", flush=True)


def clip_correct(judge, wavs: list[np.ndarray]) -> list[int]:
    """1 where the judge names the shown class of a held-out clip (in `judge.held_out` order), else 0."""
    predicted = judge.classifier.predict(wavs)
    return [int(p == r.label) for p, r in zip(predicted, judge.held_out)]


def rescore(name: str, world: Path, data: Path, folder: Path, judges: dict) -> None:
    """Add the per-clip judgements (``correct``) to evaluations written before they were kept,
    from the soundtracks they wrote (OUT/.../generated/<step>-<sampling>/<id>.wav)."""
    for path in sorted((folder / "eval").glob("step_*-*.json")):
        row = json.loads(path.read_text())
        if "correct" in row:
            continue
        if str(data) not in judges:
            model_dir = model_dir_of(folder, row["step"])
            generator = Generator.from_pretrained(model_dir, device="cpu", batch_size=GENERATE_BATCH)
            judges[str(data)] = fit_judge(world, generator.codec, float(generator.model.duration), "test")
        judge = judges[str(data)]
        paths = [folder / "generated" / f"{row['step']}-{row['sampling']}" / f"{r.id}.wav" for r in judge.held_out]
        missing = next((p for p in paths if not p.is_file()), None)
        if missing is not None:
            raise SystemExit(f"{missing}: missing, so {path.name} cannot be judged clip by clip (run it again)")
        wavs = [media.read_audio(p, judge.sample_rate, 0.0, None) for p in paths]
        row["correct"] = clip_correct(judge, wavs)
        if abs(np.mean(row["correct"]) - row["class_agreement"]) > 1e-9:  # the wav file's 16-bit rounding
            print(f"{path}: its written soundtracks score {np.mean(row['correct']):.3f}, "
                  f"{row['class_agreement']:.3f} when generated")
        path.write_text(json.dumps(row, indent=1))


def load_rows(folder: Path, sampling: str, draws: list[str] | None = None) -> list[dict]:
    """One row per evaluated step of `sampling`; with `draws` (other seeds of it, ``NAME@K``) its
    class agreement and timing are the means over the draws done at that step (``draws_done``)."""
    rows = [json.loads(p.read_text()) for p in sorted((folder / "eval").glob(f"step_*-{sampling}.json"))]
    for row in rows:
        scored = [row] + [json.loads(p.read_text()) for d in draws or []
                          if (p := folder / "eval" / f"step_{row['step']:07d}-{d}.json").is_file()]
        row["draws_done"] = len(scored)
        if all("correct" in r for r in scored):  # [draws, clips]
            row["correct_draws"] = np.array([r["correct"] for r in scored], dtype=float)
        for key in ("class_agreement", "timing_agreement"):
            row[key] = float(np.mean([r[key] for r in scored]))
    return sorted(rows, key=lambda r: r["step"])


def draws_of(samplings: list[str]) -> list[str]:
    """The samplings listed after the first that are other seeds of it (``defaults@1`` of ``defaults``)."""
    base = samplings[0].partition("@")[0]
    return [s for s in samplings[1:] if s.partition("@")[0] == base]


def steps_to(rows: list[dict], share: float, final: float) -> int | None:
    """First evaluated step whose class agreement reaches `share` of `final`."""
    return next((r["step"] for r in rows if r["class_agreement"] >= share * final), None)


def signal_value(signals: dict, name: str) -> float:
    """The value of a signal name (``-x``: x negated); KeyError if not logged."""
    return -signals[name[1:]] if name.startswith("-") else signals[name]


def has_signal(signals: dict, name: str) -> bool:
    try:
        signal_value(signals, name)
    except KeyError:
        return False
    return True


def table(worlds: list[tuple[str, Path, Path]], args: argparse.Namespace) -> list[str]:
    sname = args.samplings[0]
    lines = [
        f"Variant `{args.variant}` (`tiny` preset + {' '.join(overrides(args.variant)) or 'nothing'}), sampling "
        f"{sname} ({sampling_settings(sname)}), seed {args.seed}; class agreement and timing: the mean over "
        f"{1 + len(draws_of(args.samplings))} draw(s) of it ({', '.join([sname, *draws_of(args.samplings)])}).",
        "",
        "| world | visual ceiling | codec ceiling | class agreement at steps | final / visual ceiling | timing (final) | "
        "steps to 80% of final | " + " | ".join(f"Spearman {s}" for s in SIGNALS) + " |",
        "|---|---:|---:|---|---:|---:|---:|" + "---:|" * len(SIGNALS),
    ]
    curves = []
    for name, world, data in worlds:
        folder = args.out / name / args.variant
        rows = load_rows(folder, sname, draws_of(args.samplings))
        if not rows:
            continue
        probe = probes(world, data, args.out)
        final = rows[-1]
        curve = " / ".join(f"{r['step']}: {r['class_agreement']:.2f}" for r in rows)
        agreement = [r["class_agreement"] for r in rows]
        rho = []
        for s in SIGNALS:
            values = [signal_value(r["signals"], s) for r in rows if has_signal(r.get("signals", {}), s)]
            ok = len(values) == len(rows) > 2 and np.std(values) > 0 and np.std(agreement) > 0
            rho.append(f"{spearmanr(values, agreement).statistic:.2f}" if ok else "")
        lines.append(
            f"| {name} | {probe:.3f} | {final['judge_on_codec_test']:.3f} | {curve} | "
            f"{final['class_agreement'] / probe:.0%} | {final['timing_agreement']:.3f} | "
            f"{steps_to(rows, 0.8, final['class_agreement'])} | " + " | ".join(rho) + " |"
        )
        curves += [f"", f"{name}, `{args.variant}`:", "",
                   "| step | class agr. | timing | " + " | ".join(SIGNALS) + " |",
                   "|---:|---:|---:|" + "---:|" * len(SIGNALS)]
        only = [json.loads(p.read_text()) for p in (folder / "eval").glob("signals_*.json")]
        for r in sorted(rows + only, key=lambda r: r["step"]):
            sig = r.get("signals", {})
            scores = (f"{r['class_agreement']:.3f} | {r['timing_agreement']:.3f}" if "class_agreement" in r else " | ")
            curves.append(f"| {r['step']} | {scores} | " +
                          " | ".join(f"{signal_value(sig, s):.4g}" if has_signal(sig, s) else "" for s in SIGNALS)
                          + " |")
        curves += ["", *stopping_picks(sorted(rows + only, key=lambda r: r["step"]), rows, args.patience)]
        curves += ["", *noise_lines(rows, list(SIGNALS))]
    return lines + curves


def paired_difference(first: np.ndarray, second: np.ndarray, picks: np.ndarray) -> str:
    """second - first in the mean over clips (``[clips]`` each, the same clips), with its 90% interval
    over the clip resamples `picks` (``[resamples, clips]`` indices)."""
    diff = second[picks].mean(axis=1) - first[picks].mean(axis=1)
    return f"{second.mean() - first.mean():+.3f} ({np.percentile(diff, 5):+.3f} .. {np.percentile(diff, 95):+.3f})"


def noise_lines(rows: list[dict], signals: list[str], resamples: int = 2000, seed: int = 0) -> list[str]:
    """How much of a ranking of checkpoints the test clips and sampling draws can resolve.

    Resampling the test clips (the same clips for every checkpoint: paired) with their draws'
    mean judgement gives a class-agreement curve per resample; the Spearman of two independent
    resamples' curves is the best any signal can expect (the curve against itself), and each
    signal's Spearman against the resampled curves gives its interval."""
    if len(rows) < 3 or not all("correct_draws" in r for r in rows):
        return []
    clips = np.stack([r["correct_draws"].mean(axis=0) for r in rows])  # [checkpoints, clips]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, clips.shape[1], size=(resamples, clips.shape[1]))
    curves = clips[:, picks].mean(axis=2).T  # [resamples, checkpoints]

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return float(spearmanr(a, b).statistic) if np.std(a) > 0 and np.std(b) > 0 else float("nan")

    retest = [rho(curves[i], curves[i + 1]) for i in range(0, resamples - 1, 2)]
    out = [f"Resampling the {clips.shape[1]} test clips ({resamples} times; {len(rows[0]['correct_draws'])} draws "
           f"each): class agreement ranks its own checkpoints with Spearman median {np.nanmedian(retest):.2f} "
           f"(10-90%: {np.nanpercentile(retest, 10):.2f} .. {np.nanpercentile(retest, 90):.2f}); signals against the "
           "resampled curves, median (10-90%):", ""]
    for name in signals:
        if not all(has_signal(r.get("signals", {}), name) for r in rows):
            continue
        values = np.array([signal_value(r["signals"], name) for r in rows])
        rhos = [rho(values, c) for c in curves]
        out.append(f"- {name}: {np.nanmedian(rhos):.2f} ({np.nanpercentile(rhos, 10):.2f} .. "
                   f"{np.nanpercentile(rhos, 90):.2f})")
    best = int(np.argmax(clips.mean(axis=1)))
    out += ["", "Each checkpoint against the best one (step "
            f"{rows[best]['step']}), paired over clips: difference in class agreement, 90% interval:", ""]
    for k, r in enumerate(rows):
        out.append(f"- step {r['step']}: {paired_difference(clips[best], clips[k], picks)}")
    return out


def draws_at(folder: Path, step: int, sampling: str) -> list[dict]:
    """Every evaluation of `sampling` at `step`: its own and those of its other seeds (``NAME@K``)."""
    paths = [folder / "eval" / f"step_{step:07d}-{sampling}.json",
             *sorted((folder / "eval").glob(f"step_{step:07d}-{sampling}@*.json"))]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def compare_lines(folder: Path, first: str, second: str, resamples: int = 2000, seed: int = 0) -> list[str]:
    """Two samplings of the same checkpoints, paired over the held-out clips: at every step where
    both were judged clip by clip, each one's class agreement (the mean over all its draws) and
    timing, and the difference second - first with its 90% interval from resampling the clips
    (each clip's judgement averaged over its draws first, so draw noise is inside the interval)."""
    out = [f"{second} against {first}, paired over the test clips (class: mean over draws; difference "
           f"{second} - {first}, 90% interval from {resamples} clip resamples):", ""]
    rng = np.random.default_rng(seed)
    steps = sorted({int(p.name[5:12]) for p in (folder / "eval").glob("step_*-*.json")})
    for step in steps:
        a, b = draws_at(folder, step, first), draws_at(folder, step, second)
        if not a or not b or not all("correct" in r for r in a + b):
            continue
        clips_a = np.mean([r["correct"] for r in a], axis=0)  # [clips]
        clips_b = np.mean([r["correct"] for r in b], axis=0)
        picks = rng.integers(0, len(clips_a), size=(resamples, len(clips_a)))
        parts = [f"{name} {clips.mean():.3f} ({len(rows)} draws: "
                 f"{' / '.join(format(r['class_agreement'], '.3f') for r in rows)}), timing "
                 f"{np.mean([r['timing_agreement'] for r in rows]):.3f}"
                 for name, clips, rows in ((first, clips_a, a), (second, clips_b, b))]
        out.append(f"- step {step}: {'; '.join(parts)}; difference {paired_difference(clips_a, clips_b, picks)}")
    return out if len(out) > 2 else []


def stopping_picks(checkpoints: list[dict], scored: list[dict], patience: int) -> list[str]:
    """What `train.patience` would have done had the trainer followed each signal, replayed over
    the checkpoints whose signals are known (one validation each): where the run stops and the
    step whose weights it keeps, with that step's class agreement when it was scored."""
    agreement = {r["step"]: r["class_agreement"] for r in scored}
    best = max(scored, key=lambda r: r["class_agreement"])
    out = [f"Stopping replayed with patience {patience} over {len(checkpoints)} validations "
           f"(best scored checkpoint: step {best['step']}, class {best['class_agreement']:.3f}):", ""]
    for s in (s for s in SIGNALS if s != "gen_match"):  # the trainer's validation does not generate
        plateau, stopped = Plateau(s, patience), None
        for r in checkpoints:
            sig = r.get("signals", {})
            plateau.update(r["step"], {s: signal_value(sig, s)} if has_signal(sig, s) else {})
            if plateau.should_stop:
                stopped = r["step"]
                break
        if plateau.best_step < 0:
            continue
        kept = plateau.best_step
        score = f"class {agreement[kept]:.3f}" if kept in agreement else "not scored"
        out.append(f"- {s}: {'stops at ' + str(stopped) if stopped else 'runs to the end'}, keeps step {kept} ({score})")
    return out


def probes(world: Path, data: Path, out: Path) -> float:
    """The visual probe's test accuracy (cached in OUT/probes.json)."""
    path = out / "probes.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if str(data) not in known:
        known[str(data)] = visual_probe(data, world)["accuracy"]
        path.write_text(json.dumps(known, indent=1))
    return known[str(data)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", action="append", required=True, metavar="NAME=WORLD:DATA",
                   help="a synthetic world folder and its extracted data set (repeat for each world)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variant", default="tiny", type=variant_name,
                   help=f"one of {', '.join(VARIANTS)}, or several joined by commas (their overrides in turn)")
    p.add_argument("--steps", type=int, default=4000, help="training steps of the run (its schedule's length)")
    p.add_argument("--every", type=int, default=250, help="checkpoint every this many steps")
    p.add_argument("--eval", default="250,500,1000,1500,2000,3000,4000", help="steps evaluated (comma-separated)")
    p.add_argument("--signal-steps", default="", help="more steps at which only the label-free signals are "
                   "computed (no generation: no class agreement, no generation check)")
    p.add_argument("--samplings", default="g2t0.5", help=f"comma-separated, first = the one the table uses "
                   f"({', '.join(SAMPLINGS)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=8, help="the stopping rule replayed in the table: validations "
                   "without a new best (one per checkpoint with signals; the README's train.patience)")
    p.add_argument("--table-only", action="store_true", help="print the table of what is done, run nothing")
    p.add_argument("--compare", metavar="A,B", default="", help="two sampling names: print B against A at every "
                   "step both were evaluated, paired over the test clips, all draws of each (A, A@1, ...) averaged")
    p.add_argument("--rescore", action="store_true", help="first judge again, clip by clip, the soundtracks of "
                   "evaluations written before per-clip judgements were kept (for the table's noise lines)")
    args = p.parse_args()
    args.eval_steps = [int(s) for s in args.eval.split(",") if s]
    args.signal_steps = [int(s) for s in args.signal_steps.split(",") if s]
    args.samplings = [s for s in args.samplings.split(",") if s]
    if args.compare and (len(args.compare.split(",")) != 2 or "@" in args.compare):
        p.error(f"--compare {args.compare!r}: two sampling names without @SEED, e.g. s4-g2,s3-g1")
    args.compare = args.compare.split(",") if args.compare else []
    for name in args.samplings + args.compare:
        try:
            sampling_settings(name)
        except ValueError as e:
            p.error(str(e))
    worlds = []
    for spec in args.world:
        name, _, rest = spec.partition("=")
        world, _, data = rest.partition(":")
        worlds.append((name, Path(world), Path(data)))
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        judges: dict = {}
        for name, world, data in worlds:
            folder = args.out / name / args.variant
            run = folder / "run"
            trained = {step for step, _ in ckpt.complete_checkpoints(run / "checkpoints")}
            needed = set(args.eval_steps) | set(args.signal_steps)
            if max(trained, default=0) < args.steps and not needed <= available_steps(folder):
                t0 = time.perf_counter()
                pretrain(run_config(name, data, folder, args.variant, args), resume="auto", model_out=folder / "model")
                (folder / "train_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
            evaluate(name, world, data, folder, args.variant, args, judges)
    if args.rescore:
        judges = {}
        for name, world, data in worlds:
            rescore(name, world, data, args.out / name / args.variant, judges)
    text = "\n".join(table(worlds, args))
    if args.compare:
        first, second = args.compare
        for name, _, _ in worlds:
            lines = compare_lines(args.out / name / args.variant, first, second)
            text += "\n\n" + "\n".join([f"{name}, `{args.variant}`:", "", *lines] if lines else
                                         [f"{name}: no step has both {first} and {second} judged clip by clip"])
    (args.out / f"table-{args.variant}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
