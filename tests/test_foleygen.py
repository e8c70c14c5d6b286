"""The autoregressive baseline (vab/baselines): delay pattern, FoleyGen's visual attention
masks, key-value cache, training with recipes/pretrain.py and `vab generate`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.mediagen import make_video
from tests.synthdata import make_synthetic_dataset, tiny_overrides
from vab.checkpoint import load_model, save_model
from vab.baselines import FoleyGen, build_delay, delay_valid, revert_delay, shift_right, visual_attention_mask
from vab.baselines.sampling import sample_autoregressive
from vab.config import load_config
from vab.errors import ConfigError, VabError
from vab.model import VAB
from vab.generation.sampling import SamplingConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = ["model.width=32", "model.heads=2", "model.ffn=64", "model.layers=2", "data.duration=0.4", "data.fps=5"]


def small_model(*overrides: str, dim: int = 12) -> FoleyGen:
    """A 2-layer model over 4 levels x 20 frames (0.4 s at 50 Hz) and 2 frames, float64 so
    cached and uncached runs agree to the last bit of every sampled token."""
    cfg = load_config("foleygen-tiny", ["codec.codebook_size=32", *SMALL, *overrides])
    torch.manual_seed(0)
    model = FoleyGen.from_config(cfg, [torch.randn(32, 8) for _ in range(4)], dim, 50.0)
    assert isinstance(model, FoleyGen)
    return model.double().eval()


# ---------------------------------------------------------------------- delay pattern
@pytest.mark.parametrize("levels,frames", [(1, 1), (1, 7), (4, 1), (4, 9), (12, 5)])
def test_delay_pattern_round_trips_exactly(levels, frames):
    tokens = torch.randint(0, 1024, (3, levels, frames))
    delayed = build_delay(tokens, 1024)
    assert delayed.shape == (3, levels, frames + levels - 1)
    assert torch.equal(revert_delay(delayed), tokens)
    # the padding sits exactly where delay_valid says no frame is
    assert torch.equal(delayed != 1024, delay_valid(levels, frames + levels - 1).expand_as(delayed))
    # logits-shaped tensors revert the same way
    logits = torch.randn(2, levels, frames + levels - 1, 5)
    assert torch.equal(revert_delay(build_delay(revert_delay(logits).argmax(-1), -1)), revert_delay(logits).argmax(-1))


def test_delay_pattern_layout_and_shift():
    tokens = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    delayed = build_delay(tokens, 9)
    assert delayed.tolist() == [[[1, 2, 3, 9], [9, 4, 5, 6]]]
    assert shift_right(delayed, 9).tolist() == [[[9, 1, 2, 3], [9, 9, 4, 5]]]


# ---------------------------------------------------------------------- visual attention masks
def _rows(mask: torch.Tensor) -> list[str]:
    return ["".join("1" if x else "." for x in row) for row in mask.tolist()]


def test_visual_masks_follow_foleygen_figure_2():
    """2 frames at 1 fps, 4 audio steps at 2 Hz (FoleyGen Fig. 2): columns V0 V1 A0 A1 A2 A3."""
    visual_rows = ["1.....", "11...."]  # the prefix is causal among itself and never sees audio
    expected = {
        "all": ["111...", "1111..", "11111.", "111111"],
        "causal": ["1.1...", "1.11..", "11111.", "111111"],
        "frame": ["1.1...", "1.11..", ".1111.", ".11111"],
    }
    for kind, audio_rows in expected.items():
        mask = visual_attention_mask(kind, num_frames=2, steps=4, fps=1.0, frame_rate=2.0)
        assert _rows(mask) == visual_rows + audio_rows, kind


def test_visual_masks_at_the_tiny_geometry_and_in_the_delay_tail():
    # 2 fps, 50 Hz: steps 0..24 are frame 0, 25..49 frame 1; 8 frames cover 200 steps, the 3
    # delay-tail steps (200..202) belong to the last frame
    mask = visual_attention_mask("frame", num_frames=8, steps=203, fps=2.0, frame_rate=50.0)
    audio = mask[8:, :8]
    assert audio.sum(1).eq(1).all()
    assert audio[24].nonzero().item() == 0 and audio[25].nonzero().item() == 1 and audio[202].nonzero().item() == 7
    causal = visual_attention_mask("causal", num_frames=8, steps=203, fps=2.0, frame_rate=50.0)[8:, :8]
    assert causal.sum(1).tolist() == [min(s // 25 + 1, 8) for s in range(203)]
    with pytest.raises(ConfigError, match="model.visual_mask: 'future'"):
        visual_attention_mask("future", 2, 4, 1.0, 2.0)


def test_the_model_attends_only_where_the_mask_allows():
    """Changing frame 1 changes the logits of exactly the steps allowed to see it."""
    steps = 23  # 20 frames + 3 delay-tail steps; frame 1 starts at step 10 (5 fps, 50 Hz)
    inputs = shift_right(build_delay(torch.randint(0, 32, (1, 4, 20)), 32), 32)
    feats = torch.randn(1, 2, 12, dtype=torch.float64)
    other = feats.clone()
    other[:, 1] += 1.0
    for kind, affected in {"all": range(steps), "causal": range(10, steps), "frame": range(10, steps)}.items():
        model = small_model(f"model.visual_mask={kind}")
        changed = (model(inputs, feats) - model(inputs, other)).abs().amax(dim=(0, 1, 3)) > 1e-9
        assert changed.nonzero().flatten().tolist() == list(affected), kind
    # V-AURA concat: step s carries the frame of its own time, so frame 1 reaches steps >= 10 only
    model = small_model("model.conditioning=concat")
    changed = (model(inputs, feats) - model(inputs, other)).abs().amax(dim=(0, 1, 3)) > 1e-9
    assert changed.nonzero().flatten().tolist() == list(range(10, steps))
    # frame-specific, one layer (deeper, frame 0 reaches later steps indirectly, through the
    # audio states that saw it, as in FoleyGen): changing frame 0 changes only its own steps
    model = small_model("model.visual_mask=frame", "model.layers=1")
    first = feats.clone()
    first[:, 0] += 1.0
    changed = (model(inputs, feats) - model(inputs, first)).abs().amax(dim=(0, 1, 3)) > 1e-9
    assert changed.nonzero().flatten().tolist() == list(range(10))


# ---------------------------------------------------------------------- key-value cache
@pytest.mark.parametrize("overrides", [[], ["model.visual_mask=frame"], ["model.conditioning=concat"]])
def test_cached_logits_equal_teacher_forced_logits(overrides):
    model = small_model(*overrides)
    feats = torch.randn(2, 2, 12, dtype=torch.float64)
    inputs = shift_right(build_delay(torch.randint(0, 32, (2, 4, 20)), 32), 32)
    full = model(inputs, feats)
    cache = model.new_cache(2, inputs.shape[2])
    parts = [model(inputs[:, :, :5], feats, cache=cache)]
    parts += [model(inputs[:, :, i : i + 1], feats, cache=cache) for i in range(5, inputs.shape[2])]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("conditioning", ["prefix", "concat"])
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=0, guidance=3.0), SamplingConfig(guidance=3.0, top_k=8, seed=5)])
def test_generation_with_the_cache_equals_generation_without(conditioning, sampling):
    model = small_model(f"model.conditioning={conditioning}")
    feats = torch.randn(2, 2, 12, dtype=torch.float64)
    cached = sample_autoregressive(model, feats, cfg=sampling)
    plain = sample_autoregressive(model, feats, cfg=sampling, use_cache=False)
    assert cached.shape == (2, 4, 20) and cached.max() < 32
    assert torch.equal(cached, plain)
    # with a given prefix (a window's overlap): prefilled in one forward, still identical,
    # and the given tokens are kept
    given = torch.full((2, 4, 20), model.mask_id)
    given[:, :, :6] = torch.randint(0, 32, (2, 4, 6))
    cached = sample_autoregressive(model, feats, given=given, cfg=sampling)
    assert torch.equal(cached, sample_autoregressive(model, feats, given=given, cfg=sampling, use_cache=False))
    assert torch.equal(cached[:, :, :6], given[:, :, :6])


def test_sampling_is_seeded_per_example_and_guidance_matters():
    model = small_model()
    feats = torch.randn(3, 2, 12, dtype=torch.float64)
    cfg = SamplingConfig(guidance=3.0, seed=1)
    batch = sample_autoregressive(model, feats, cfg=cfg, seeds=[7, 8, 9])
    alone = sample_autoregressive(model, feats[1:2], cfg=cfg, seeds=[8])
    assert torch.equal(batch[1:2], alone)
    assert not torch.equal(batch[0], sample_autoregressive(model, feats[:1], cfg=cfg, seeds=[8])[0])
    greedy = [sample_autoregressive(model, feats, cfg=SamplingConfig(temperature=0, guidance=w)) for w in (0.0, 1.0, 3.0)]
    assert not torch.equal(greedy[0], greedy[2]) or not torch.equal(greedy[1], greedy[2])


# ---------------------------------------------------------------------- configuration errors
def test_mismatched_config_is_one_line_error():
    with pytest.raises(ConfigError) as err:
        small_model("model.visual_mask=diagonal")
    assert str(err.value).count("\n") == 0 and "model.visual_mask: 'diagonal' is not one of all, causal, frame" in str(err.value)
    with pytest.raises(ConfigError, match="model.conditioning: 'cross'"):
        small_model("model.conditioning=cross")
    with pytest.raises(ConfigError, match="given_levels must be 0"):
        small_model("model.given_levels=1")


# ---------------------------------------------------------------------- settings it honours or refuses
def test_the_baseline_weighs_levels_and_refuses_full_masking(tmp_path, capsys):
    """train.level_weights weigh its loss as they do the masked objective's; train.mask_full_prob,
    meaningless without masking, is refused in one line before any run folder.  Was: both
    silently ignored (the `tiny` preset sets mask_full_prob 0.3)."""
    from vab.baselines.objective import AutoregressiveObjective

    model = small_model().float().eval()
    torch.manual_seed(0)
    batch = {"tokens": torch.randint(0, 32, (3, 4, 20)), "features": torch.randn(3, 2, 12)}

    def loss(*overrides: str) -> float:
        objective = AutoregressiveObjective(load_config("foleygen-tiny", ["codec.codebook_size=32", *SMALL, *overrides]))
        with torch.no_grad():
            return objective(model, batch)[0].item()

    plain = loss()
    assert loss("train.level_weights=[1,1,1,1]") == pytest.approx(plain)
    first, last = loss("train.level_weights=[1,0,0,0]"), loss("train.level_weights=[0,0,0,1]")
    assert first != pytest.approx(last) and min(first, last) < plain < max(first, last)
    with pytest.raises(ConfigError, match="level_weights"):
        loss("train.level_weights=[1,1]")
    with pytest.raises(ConfigError, match="train.mask_full_prob=0.3: the autoregressive baseline"):
        loss("train.mask_full_prob=0.3")

    data = make_synthetic_dataset(tmp_path / "data", per_class={"train": 2, "valid": 1})
    run = tmp_path / "run"
    rc = _pretrain_recipe().main(argv=["--config", "foleygen-tiny", *tiny_overrides(data), f"train.output_dir={run}",
                                       "train.max_steps=2", "train.mask_full_prob=0.3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "set train.mask_full_prob=0" in err, err
    assert not run.exists()


# ---------------------------------------------------------------------- train, save, load, generate
def _pretrain_recipe():
    spec = importlib.util.spec_from_file_location("pretrain_recipe", REPO / "recipes" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_trains_saves_reloads_and_vab_generate_writes_outputs(tmp_path, capsys):
    from tests.test_pretrain_recipe import loss_curve
    from vab.cli import main as vab_main

    data = make_synthetic_dataset(tmp_path / "data", per_class={"train": 8, "valid": 2})
    run, out = tmp_path / "run", tmp_path / "model"
    args = ["--config", "foleygen-tiny", "--model-out", str(out), *tiny_overrides(data),
            f"train.output_dir={run}", "train.max_steps=12", "train.batch_size=8", "train.warmup_steps=2",
            "train.lr=3e-3", "train.log_every=1", "train.valid_every=6", "train.checkpoint_every=0",
            "model.width=64", "model.ffn=128", "model.layers=2"]
    assert _pretrain_recipe().main(argv=args) == 0
    losses = loss_curve(run)
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]) - 0.3, losses

    model = load_model(out, kind=FoleyGen)
    assert model.config.model.type == "foleygen" and model.visual_mask == "all"
    assert (out / "codec.safetensors").is_file()
    with pytest.raises(VabError, match="not a foleygen one"):
        load_model(_vab_dir(tmp_path / "vab"), kind=FoleyGen)

    video = make_video(tmp_path / "clip.mp4", seconds=5.0, fps=4, width=32, height=24)
    outdir = tmp_path / "out"
    rc = vab_main(["generate", str(video), "--checkpoint", str(out), "--out", str(outdir), "--cfg", "3",
                   "--top-k", "8", "--overlap", "1", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    from vab import media

    wav = media.read_audio(outdir / "clip.wav", 16000)
    assert abs(len(wav) / 16000 - 5.0) < 0.05 and wav.std() > 0
    assert media.probe(outdir / "clip.mp4").has_audio

    # a config edited to an unknown mask: a one-line error naming the file, no traceback
    text = (out / "config.yaml").read_text().replace("visual_mask: all", "visual_mask: diagonal")
    (out / "config.yaml").write_text(text)
    rc = vab_main(["generate", str(video), "--checkpoint", str(out), "--out", str(outdir), "--overwrite"])
    err = capsys.readouterr().err
    assert rc != 0 and "config.yaml" in err and "model.visual_mask: 'diagonal'" in err and "Traceback" not in err


def _vab_dir(path: Path) -> Path:
    cfg = load_config("tiny", ["codec.codebook_size=32", "model.width=32", "model.heads=2", "model.ffn=64",
                               "model.layers=2", "model.expert_layers=1"])
    save_model(VAB.from_config(cfg, [torch.randn(32, 8) for _ in range(4)], 12, 50.0), path)
    return path
