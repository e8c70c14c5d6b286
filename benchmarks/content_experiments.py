"""Why generated soundtracks lose the class: one change at a time, one table (issue 15).

Each variant pretrains the `tiny` preset with the demo's overrides (vab.demo.pipeline.TINY_OVERRIDES)
plus its own, on an extracted synthetic world, then generates a soundtrack for every test clip and
scores it with the demo's judge (vab.demo.soundtracks.generate_and_score).  Variants that only change
sampling reuse the trained model of the variant they name.  Every row carries the two ceilings: the
judge on the codec round trip of the real test audio (what the tokens can carry) and a linear probe
on the stored frame features (what the picture, as encoded, can tell).

    vab synth /tmp/w --world shapes --train 320 --valid 32 --test 64 --seconds 3
    vab extract /tmp/w/manifest.csv --out /tmp/d --config tiny codec.frame_rate=25 codec.codebook_size=64 \
        --duration 3 --fps 8 --visual hog visual.grid=8
    python benchmarks/content_experiments.py --world /tmp/w --data /tmp/d --out /tmp/exp --steps 400 \
        --only base,full0.3,levels

Results go to OUT/<variant>/result.json (a finished variant is skipped on a re-run) and the table
to OUT/table.md (and stdout).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

#: the demo's settings before issue 15 (no example masked entirely); every training variant names
#: its mask_full_prob, so rows stay comparable whatever the preset's default
OLD = ["train.mask_full_prob=0.0"]
NEW = ["train.mask_full_prob=0.3"]  # the `tiny` preset's default since issue 15
#: name -> (training overrides on top of the demo's, sampling settings, model of another variant to reuse)
VARIANTS: dict[str, tuple[list[str], dict, str | None]] = {
    "base": (OLD, {}, None),
    "mask0.55": ([*OLD, "train.mask_mean=0.55"], {}, None),
    "mask0.9": ([*OLD, "train.mask_mean=0.9"], {}, None),
    "levels": ([*OLD, "train.level_weights=[4,2,1,1]"], {}, None),
    "guidance0": ([], {"guidance": 0.0}, "base"),
    "guidance2": ([], {"guidance": 2.0}, "base"),
    "guidance10": ([], {"guidance": 10.0}, "base"),
    "full0.3": (NEW, {}, None),
    "full0.15": (["train.mask_full_prob=0.15"], {}, None),
    "full0.5": (["train.mask_full_prob=0.5"], {}, None),
    "full0.3+levels": ([*NEW, "train.level_weights=[4,2,1,1]"], {}, None),
    "full0.3+mask0.55": ([*NEW, "train.mask_mean=0.55"], {}, None),
    "full0.3+lr1e-3": ([*NEW, "train.lr=1e-3"], {}, None),
    "full0.3+wide": ([*NEW, "model.width=192", "model.ffn=768", "model.heads=6"], {}, None),
    "full0.3+deep": ([*NEW, "model.layers=6", "model.expert_layers=3"], {}, None),
    "full0.3+experts0": ([*NEW, "model.expert_layers=0"], {}, None),
    "full0.3+experts4": ([*NEW, "model.expert_layers=4"], {}, None),
    "full0.3+nodrop": ([*NEW, "train.visual_dropout=0.0"], {}, None),
    "full0.3+lr4e-3": ([*NEW, "train.lr=4e-3"], {}, None),
    "full0.3+pooled": ([*NEW, "model.visual_pool=mean"], {}, None),
    "full0.3+mlp": ([*NEW, "model.visual_proj=mlp"], {}, None),
    "full0.3+guidance1": ([], {"guidance": 1.0}, "full0.3"),
    "full0.3+guidance2": ([], {"guidance": 2.0}, "full0.3"),
    "full0.3+guidance10": ([], {"guidance": 10.0}, "full0.3"),
    "full0.3+temp0.5": ([], {"temperature": 0.5}, "full0.3"),
    "full0.3+guidance2+temp0.5": ([], {"guidance": 2.0, "temperature": 0.5}, "full0.3"),
    "full0.3+guidance3+temp0.5": ([], {"guidance": 3.0, "temperature": 0.5}, "full0.3"),
    "full0.3+levels+temp0.5": ([], {"temperature": 0.5}, "full0.3+levels"),
}


def last_validation(model_dir: Path) -> dict[str, float]:
    """The card's last validation numbers (``acc@0.9/level0`` ...)."""
    card = (model_dir / "README.md").read_text() if (model_dir / "README.md").is_file() else ""
    return {k: float(v) for k, v in re.findall(r"^\| (acc@[\d.]+(?:/level\d)?) \| ([\d.]+) \|", card, re.M)}


def run_variant(name: str, args: argparse.Namespace, probe: dict) -> dict:
    from vab.config import load_config
    from vab.demo.soundtracks import generate_and_score
    from vab.demo.pipeline import TINY_OVERRIDES
    from vab.data.store import DataInfo
    from vab.generation.sampling import SamplingConfig
    from vab.training.run import pretrain

    train_overrides, sampling, reuse = VARIANTS[name]
    folder = args.out / name
    model = args.out / (reuse or name) / "model"
    seconds = None
    if reuse is None:
        info = DataInfo.load(args.data)
        cfg = load_config("tiny", [
            *TINY_OVERRIDES, f"data.path=[{args.data}]", f"data.fps={info.fps}", f"extract.fps={info.fps}",
            f"data.duration={info.duration}", f"extract.duration={info.duration}", f"visual.name={info.visual['name']}",
            f"visual.grid={info.visual.get('grid', 8)}", f"train.batch_size={args.batch_size}", "train.tracker=none",
            "data.num_workers=0", f"train.output_dir={folder / 'run'}", f"train.max_steps={args.steps}",
            f"train.valid_every={args.steps}", f"train.checkpoint_every={args.steps}", f"train.seed={args.seed}",
            *train_overrides,
        ])
        t0 = time.perf_counter()
        pretrain(cfg, resume="auto", model_out=model)
        seconds = time.perf_counter() - t0
    elif not (model / "config.yaml").is_file():
        raise SystemExit(f"variant {name} reuses {reuse}: run that one first")
    scores = generate_and_score(model, args.world, folder / "generated", plots=0, split=args.split,
                                sampling=SamplingConfig(**sampling))
    return {
        "variant": name, "overrides": train_overrides, "sampling": sampling, "model_of": reuse or name,
        "steps": args.steps, "train_seconds": seconds, "visual_ceiling": probe["accuracy"],
        **{k: v for k, v in scores.items() if k != "examples"}, "validation": last_validation(model),
    }


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| variant | change | class agr. | / visual ceiling | timing | codec ceiling | visual ceiling | "
        "val acc@0.9 level 0 / 3 | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        change = " ".join(r["overrides"]) or (", ".join(f"{k}={v}" for k, v in r["sampling"].items()) or "demo defaults")
        if r["model_of"] != r["variant"]:
            change += f" (model of {r['model_of']})"
        v = r["validation"]
        lines.append(
            f"| {r['variant']} | `{change}` | {r['class_agreement']:.3f} | {r['class_agreement'] / r['visual_ceiling']:.0%} "
            f"| {r['timing_agreement']:.3f} | {r['judge_on_codec_test']:.3f} | {r['visual_ceiling']:.3f} | "
            f"{v.get('acc@0.9/level0', float('nan')):.3f} / {v.get('acc@0.9/level3', float('nan')):.3f} | "
            f"{_seconds(r['train_seconds'])} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True, help="the synthetic world (vab synth) the data came from")
    p.add_argument("--data", type=Path, required=True, help="its extracted data set (vab extract)")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--steps", type=int, default=400, help="pretraining steps per variant (default 400)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="split generated for and scored (default test)")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants, in order "
                   f"(default all: {', '.join(VARIANTS)})")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    from vab.demo.probe import visual_probe

    args.out.mkdir(parents=True, exist_ok=True)
    probe = visual_probe(args.data, args.world, test_split=args.split)
    rows = []
    for name in names:
        path = args.out / name / "result.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        row = run_variant(name, args, probe)
        path.write_text(json.dumps(row, indent=1))
        rows.append(row)
        text = "\n".join(table(rows))
        (args.out / "table.md").write_text(text + "\n")
        print(text, flush=True)


if __name__ == "__main__":
    main()
