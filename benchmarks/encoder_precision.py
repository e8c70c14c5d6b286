"""The CLIP frame encoder in bf16 against fp32: feature cosine, time, and what generation does
with the features.

    python benchmarks/encoder_precision.py --frames-from /tmp/demo/world --out /tmp/encoder
    python benchmarks/encoder_precision.py --frames-from /tmp/demo/world --out /tmp/encoder \
        --generation /tmp/demo --check-model ViT-S-32 --steps 500

1. Features: EVA02-L-14 (the paper preset's encoder; random weights, as no download is
   possible offline: the check is of the arithmetic, not of what the weights know) encodes
   `--clips` x 10 frames of real video (the first test clips of a synthetic world, 1 frame per
   second as vab-encodec reads them) in fp32 and in bf16 (`visual.precision`: matrix-product
   weights stored in bf16, autocast, norms in fp32); cosine of every frame's feature to fp32's,
   and the CPU seconds of each (one torch thread, the best of --repeat).
2. Generation (`--generation DEMO`, a finished `vab demo` folder whose world and data are used):
   the world extracted again with a CLIP encoder (`--check-model`, random weights saved once to
   OUT/clip.safetensors so that extraction and generation use the same network) in fp32, the
   `tiny` model pretrained on those features with the demo's settings, then every held-out clip
   generated (bf16 generation, the demos' guidance 2 and temperature 0.5) with the encoder in
   fp32 and in bf16 (same model, same seeds) and scored with the demo's judge: class and timing
   agreement, FAD (log-mel) against the real audio (`sampling_quality.WorldScorer`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sampling_quality import WorldScorer, generate  # noqa: E402
from vab import media  # noqa: E402
from vab.config import VisualConfig, load_config  # noqa: E402
from vab.data.store import META_FILE, DataInfo  # noqa: E402
from vab.data.synthetic import iter_split, read_truth  # noqa: E402
from vab.demo.pipeline import TINY_OVERRIDES  # noqa: E402
from vab.demo.soundtracks import GENERATE_BATCH  # noqa: E402
from vab.generation.generator import Generator  # noqa: E402
from vab.generation.sampling import SamplingConfig  # noqa: E402
from vab.training.run import pretrain  # noqa: E402
from vab.visual.clip import ClipEncoder, load_clip_visual  # noqa: E402


def world_frames(world: Path, clips: int, fps: float = 1.0) -> torch.Tensor:
    """uint8 ``[clips x frames, H, W, 3]``: the frames of the first test clips at `fps`."""
    rows = sorted(iter_split(read_truth(world), "test"), key=lambda r: r.id)[:clips]
    frames = [torch.as_tensor(media.read_frames(r.path, fps, 0.0, None)[0]) for r in rows]
    return torch.cat(frames)


def feature_check(frames: torch.Tensor, model: str, repeat: int) -> dict:
    """Cosine of bf16 features to fp32 ones and the CPU seconds of each (one thread)."""
    torch.manual_seed(0)
    visual, pcfg, dim = load_clip_visual(VisualConfig(name="clip", model=model, pretrained=None))
    state = {k: v.clone() for k, v in visual.state_dict().items()}
    out, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        visual.load_state_dict(state)
        encoder = ClipEncoder(visual.float(), pcfg, dim, precision=precision)
        encoder.encode(frames[:1])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            out[precision] = encoder.encode(frames)
            best = min(best, time.process_time() - t0)
        seconds[precision] = best
    cos = torch.nn.functional.cosine_similarity(out["bf16"], out["fp32"])
    return {"model": model, "frames": len(frames), "cosine_min": cos.min().item(), "cosine_mean": cos.mean().item(),
            "fp32_cpu_s": seconds["fp32"], "bf16_cpu_s": seconds["bf16"], "speedup": seconds["fp32"] / seconds["bf16"]}


def generation_check(demo: Path, out: Path, model: str, steps: int) -> dict:
    """Extract `demo`'s world with a random-weight CLIP `model` in fp32, pretrain on it, generate
    with the encoder in fp32 and bf16; the scores of each."""
    import open_clip

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "clip.safetensors"
    if not weights.is_file():
        torch.manual_seed(0)
        save_file({k: v.contiguous() for k, v in open_clip.create_model(model).state_dict().items()}, str(weights))
    info = DataInfo.load(demo / "data")
    visual = ["visual.name=clip", f"visual.model={model}", f"visual.path={weights}", "visual.pretrained=null",
              "visual.precision=fp32"]
    data = out / "data"
    if not (data / META_FILE).is_file():
        subprocess.run([sys.executable, "-m", "vab", "extract", str(demo / "world" / "manifest.csv"), "--out", str(data),
                        "--config", "tiny", *TINY_OVERRIDES, "--duration", str(info.duration), "--fps", str(info.fps),
                        *visual], check=True)
    model_dir = out / "model"
    if not (model_dir / "config.yaml").is_file():
        cfg = load_config("tiny", [
            *TINY_OVERRIDES, f"data.path=[{data}]", f"data.fps={info.fps}", f"extract.fps={info.fps}",
            f"data.duration={info.duration}", f"extract.duration={info.duration}", *visual, "train.batch_size=32",
            "train.tracker=none", "data.num_workers=0", f"train.output_dir={out / 'run'}", f"train.max_steps={steps}",
            f"train.valid_every={steps}", f"train.checkpoint_every={steps}",
        ])
        pretrain(cfg, resume="auto", model_out=model_dir)
    # the same model with the encoder in bf16: its config names the encoder's format
    bf16_dir = out / "model-bf16-encoder"
    if not bf16_dir.is_dir():
        shutil.copytree(model_dir, bf16_dir)
        config = OmegaConf.load(bf16_dir / "config.yaml")
        config.visual.precision = "bf16"
        OmegaConf.save(config, bf16_dir / "config.yaml")
    sampling = SamplingConfig(guidance=2.0, temperature=0.5)  # the demos'
    results, scorer = {}, None
    for name, folder in (("fp32", model_dir), ("bf16", bf16_dir)):
        generator = Generator.from_pretrained(folder, device="cpu", batch_size=GENERATE_BATCH)
        assert generator.visual.precision == name
        if scorer is None:
            scorer = WorldScorer(demo / "world", generator.codec, float(generator.model.duration))
        results[name] = scorer.score(generate(generator, scorer, sampling))
        print(f"  encoder {name}: {results[name]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames-from", type=Path, required=True, help="a synthetic world (vab synth / vab demo DIR/world)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="EVA02-L-14", help="open_clip model of the feature check")
    p.add_argument("--clips", type=int, default=4, help="test clips whose frames (1 per second) are encoded")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--generation", type=Path, help="a finished `vab demo` folder: also run the generation check")
    p.add_argument("--check-model", default="ViT-S-32", help="open_clip model of the generation check")
    p.add_argument("--steps", type=int, default=500, help="pretraining steps of the generation check")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {"features": feature_check(world_frames(args.frames_from, args.clips), args.model, args.repeat)}
    print(json.dumps(results["features"], indent=1), flush=True)
    if args.generation is not None:
        results["generation"] = generation_check(args.generation, args.out, args.check_model, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoder_precision.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
