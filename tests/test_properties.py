"""Property tests (hypothesis) on random shapes: masking, augmentation, the mask schedule
and the MaskGIT sampler (docs/RELIABILITY.md).  Fixed example counts keep them quick and
repeatable; tests/test_masking.py and tests/test_sampling.py hold the worked examples."""

from __future__ import annotations

import functools
import itertools
import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vab.data.augment import augment, temporal_mixup, temporal_roll
from vab.training.masking import apply_mask, level_mask, mask_counts, random_mask
from vab.generation.sampling import SamplingConfig, mask_schedule, sample_tokens

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**31 - 1)
# (audio frames per second, visual frames per second): the codecs' and extraction's rates
RATES = st.sampled_from([(50.0, 1.0), (50.0, 2.0), (75.0, 2.0), (75.0, 5.0), (40.0, 4.0), (25.0, 5.0)])


# ---------------------------------------------------------------------- masking
@FEW
@given(b=st.integers(1, 5), k=st.integers(1, 6), t=st.integers(1, 60), given_levels=st.integers(0, 5),
       ratios=st.lists(st.floats(1e-6, 1.0), min_size=5, max_size=5), seed=SEEDS)
def test_level_mask_masks_exactly_round_r_k_t_at_least_one(b, k, t, given_levels, ratios, seed):
    given_levels = min(given_levels, k - 1)
    r = torch.tensor(ratios[:b])
    mask = level_mask((b, k, t), r, given_levels, torch.Generator().manual_seed(seed))
    n = (k - given_levels) * t
    assert mask.shape == (b, k, t) and mask.dtype == torch.bool
    want = [min(n, max(1, round(x * n))) for x in r.double().tolist()]
    assert mask.sum(dim=(1, 2)).tolist() == want == mask_counts(r, n).tolist()
    assert not mask[:, :given_levels].any()  # given (coarse) levels are never masked


@FEW
@given(b=st.integers(1, 4), k=st.integers(1, 4), t=st.integers(1, 30), seed=SEEDS, data=st.data())
def test_random_mask_and_apply_mask(b, k, t, seed, data):
    counts = torch.tensor(data.draw(st.lists(st.integers(0, k * t), min_size=b, max_size=b)))
    mask = random_mask((b, k, t), counts, torch.Generator().manual_seed(seed))
    assert mask.sum(dim=(1, 2)).tolist() == counts.tolist()
    tokens = torch.randint(0, 7, (b, k, t), generator=torch.Generator().manual_seed(seed))
    masked = apply_mask(tokens, mask, 7)
    assert torch.equal(masked[~mask], tokens[~mask]) and bool((masked[mask] == 7).all())


# ---------------------------------------------------------------------- augmentation
def timed(b: int, k: int, seconds: int, rate: float, fps: float):
    """Tokens = clip * 1000 + audio frame; features = (clip, instant of the frame in s)."""
    t, f = int(seconds * rate), int(seconds * fps)
    clip = torch.arange(b)
    tokens = (clip[:, None, None] * 1000 + torch.arange(t)[None, None]).expand(b, k, t).clone()
    instants = ((torch.arange(f) + 0.5) / fps).double()
    features = torch.stack([clip[:, None].expand(b, f).double(), instants[None].expand(b, f)], dim=-1)
    labels = torch.nn.functional.one_hot(clip, b).float()
    return tokens, features, labels


def timeline(tokens_i: torch.Tensor, features_i: torch.Tensor, rate: float) -> list[tuple[float, int]]:
    """(instant, source clip) of every audio and visual frame of one example, in time order."""
    audio = [((int(x) % 1000 + 0.5) / rate, int(x) // 1000) for x in tokens_i[0]]
    visual = [(float(time), int(c)) for c, time in features_i.tolist()]
    return sorted(audio + visual)


@FEW
@given(b=st.integers(1, 6), k=st.integers(1, 3), seconds=st.integers(1, 4), rates=RATES, seed=SEEDS,
       p=st.sampled_from([0.0, 0.5, 1.0]))
def test_mixup_keeps_shapes_and_cuts_both_modalities_at_one_instant(b, k, seconds, rates, seed, p):
    rate, fps = rates
    tokens, features, labels = timed(b, k, seconds, rate, fps)
    out_t, out_f, out_l = temporal_mixup(tokens, features, labels, p=p, frame_rate=rate, fps=fps,
                                         generator=torch.Generator().manual_seed(seed))
    assert (out_t.shape, out_f.shape, out_l.shape) == (tokens.shape, features.shape, labels.shape)
    assert out_t.dtype == tokens.dtype and out_f.dtype == features.dtype
    assert torch.equal(out_t % 1000, tokens % 1000) and torch.equal(out_f[..., 1], features[..., 1])  # time kept
    assert all(torch.equal(out_t[:, 0], out_t[:, j]) for j in range(k))  # every level cut alike
    for i in range(b):
        sources = [s for _, s in timeline(out_t[i], out_f[i], rate)]
        changes = [(x, y) for x, y in itertools.pairwise(sources) if x != y]
        assert len(changes) <= 1  # one instant for both modalities
        assert sources[0] == i or len(set(sources)) == 1  # own clip first, unless cut at 0
        merged = {i, *sources}
        expect = labels[i].clone()
        for s in merged:
            expect = torch.maximum(expect, labels[s])
        if changes or sources[0] != i:
            assert torch.equal(out_l[i], expect)
    if p == 0.0:
        assert torch.equal(out_t, tokens) and torch.equal(out_f, features) and torch.equal(out_l, labels)


@FEW
@given(b=st.integers(1, 6), k=st.integers(1, 3), seconds=st.integers(1, 4), rates=RATES, seed=SEEDS,
       p=st.sampled_from([0.0, 0.3, 1.0]))
def test_roll_keeps_shapes_and_shifts_both_modalities_by_one_time(b, k, seconds, rates, seed, p):
    rate, fps = rates
    tokens, features, _ = timed(b, k, seconds, rate, fps)
    out_t, out_f = temporal_roll(tokens, features, p=p, frame_rate=rate, fps=fps,
                                 generator=torch.Generator().manual_seed(seed))
    assert out_t.shape == tokens.shape and out_f.shape == features.shape
    t, f = tokens.shape[2], features.shape[1]
    for i in range(b):
        assert sorted(out_t[i, 0].tolist()) == tokens[i, 0].tolist()  # a permutation of the clip itself
        a_shift = ((torch.arange(t) - out_t[i, 0] % 1000) % t).unique()
        v_index = (out_f[i, :, 1] * fps - 0.5).round().long()
        v_shift = ((torch.arange(f) - v_index) % f).unique()
        assert len(a_shift) == 1 and len(v_shift) == 1  # one circular shift per modality
        assert math.isclose(a_shift.item() / rate, v_shift.item() / fps, abs_tol=1e-9)  # the same time
        assert bool((out_f[i, :, 0] == i).all()) and bool((out_t[i] // 1000 == i).all())


@FEW
@given(b=st.integers(1, 5), seconds=st.integers(1, 3), rates=RATES, seed=SEEDS)
def test_augment_is_reproducible_and_keeps_dtypes(b, seconds, rates, seed):
    rate, fps = rates
    tokens, features, labels = timed(b, 2, seconds, rate, fps)
    run = lambda: augment(tokens.to(torch.int16), features.half(), labels, mixup_prob=0.5, roll_prob=0.5,
                          frame_rate=rate, fps=fps, generator=torch.Generator().manual_seed(seed))
    first, second = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    assert first[0].dtype == torch.int16 and first[1].dtype == torch.float16
    audio_only = augment(tokens, None, None, mixup_prob=0.5, roll_prob=0.5, frame_rate=rate, fps=fps,
                         generator=torch.Generator().manual_seed(seed))
    assert audio_only[0].shape == tokens.shape and audio_only[1] is None and audio_only[2] is None


# ---------------------------------------------------------------------- schedule
@settings(max_examples=60, deadline=None)
@given(n0=st.lists(st.integers(0, 3000), min_size=1, max_size=6), steps=st.integers(1, 40))
def test_schedule_per_example_is_monotone_ends_at_zero_and_commits_every_step(n0, steps):
    batch = mask_schedule(torch.tensor(n0), steps)
    assert batch.shape == (len(n0), steps) and batch.dtype == torch.long
    for row, n in zip(batch.tolist(), n0):
        assert row == mask_schedule(n, steps).tolist()  # a batch is scheduled example by example
        assert row[-1] == 0
        previous = n
        for i, m in enumerate(row):
            assert 0 <= m <= previous
            assert m < previous or previous == 0  # at least one committed while any remain
            assert m <= math.floor(n * math.cos(math.pi / 2 * (i + 1) / steps) + 1e-6)
            previous = m


# ---------------------------------------------------------------------- sampler
@functools.cache
def tiny_model(kind: str):
    """A tiny random VAB (4 levels) or coarse-to-fine model (6 levels, 2 given), T = 50, F = 4."""
    from vab.config import load_config
    from vab.model import VAB

    overrides = ["model.width=16", "model.layers=2", "model.heads=2", "model.ffn=32", "data.duration=2.0",
                 "data.fps=2.0"]
    if kind == "c2f":
        overrides += ["model.type=coarse2fine", "model.expert_layers=0", "model.given_levels=2", "model.levels=6"]
    else:
        overrides += ["model.expert_layers=1", "model.levels=4"]
    cfg = load_config("tiny", overrides)
    torch.manual_seed(0)
    codebooks = [torch.randn(8, 4) for _ in range(cfg.model.levels)]
    model = VAB.from_config(cfg, codebooks, visual_dim=6, frame_rate=25.0)
    with torch.no_grad():  # sharpen: tokens then depend on the input
        for head in model.heads:
            head.weight.mul_(50)
    return model.eval()


@FEW
@given(kind=st.sampled_from(["vab", "c2f"]), b=st.integers(1, 3), t=st.integers(1, 70), steps=st.integers(1, 6),
       guidance=st.sampled_from([0.0, 1.0, 3.0]), temperature=st.sampled_from([0.0, 1.0]),
       top_k=st.sampled_from([0, 2]), density=st.floats(0.0, 1.0), conditioned=st.booleans(), seed=SEEDS)
def test_sampler_keeps_given_tokens_and_leaves_no_mask(kind, b, t, steps, guidance, temperature, top_k, density,
                                                       conditioned, seed):
    model = tiny_model(kind)
    g = torch.Generator().manual_seed(seed)
    levels, first = model.levels, model.given_levels
    given_tokens = torch.randint(0, model.codebook_size, (b, levels, t), generator=g)
    given_mask = torch.rand(b, levels, t, generator=g) < density
    given_mask[:, :first] = True  # coarse levels are always given to a coarse-to-fine model
    frames = max(1, round(t / model.frame_rate * model.fps))
    features = torch.randn(b, frames, model.visual_dim, generator=g) if conditioned else None
    cfg = SamplingConfig(steps=steps, guidance=guidance, temperature=temperature, top_k=top_k, seed=seed % 1000)
    out = sample_tokens(model, features, given=given_tokens, given_mask=given_mask, cfg=cfg)
    assert out.shape == (b, levels, t) and out.dtype == torch.long
    assert not bool((out == model.mask_id).any())  # nothing masked after the last step
    assert bool(((out >= 0) & (out < model.codebook_size)).all())
    assert torch.equal(out[given_mask], given_tokens[given_mask])  # given tokens never change
    again = sample_tokens(model, features, given=given_tokens, given_mask=given_mask, cfg=cfg)
    assert torch.equal(out, again)  # same seeds, same tokens


def test_hypothesis_is_derandomized_in_ci():
    """With CI set (`.ci/run` exports CI=1) the property tests draw the same examples on every run,
    so a failure in CI replays; without it they stay random."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    assert "export CI=1" in (repo / ".ci" / "run").read_text()
    code = ("import tests.conftest; from tests.test_properties import FEW; from hypothesis import settings; "
            "print(FEW.derandomize, settings.default.derandomize, settings.default.database)")
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    runs = {}
    for name, extra in (("ci", {"CI": "1"}), ("local", {})):
        done = subprocess.run([sys.executable, "-c", code], cwd=repo, env={**base, **extra, "PYTHONPATH": str(repo)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = done.stdout.split()
    assert runs["ci"] == ["True", "True", "None"]
    assert runs["local"][:2] == ["False", "False"]
