"""MaskGIT decoding: per-example cosine schedule, given tokens, guidance, seeds,
batch invariance, argmax / top-k / top-p, coarse-to-fine."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given as hyp_given
from hypothesis import settings
from hypothesis import strategies as st
from torch import nn

from vab.config import load_config
from vab.errors import VabError
from vab.model import VAB, Coarse2Fine
from vab.generation.sampling import (
    SamplingConfig,
    coarse_to_fine,
    draw_tokens,
    SCHEDULES,
    filter_logits,
    guide_logits,
    guided_step,
    mask_noise_scale,
    mask_schedule,
    sample_tokens,
)

TINY = [
    "model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=4", "model.ffn=64",
    "data.duration=2.0", "data.fps=2.0",
]
ATTRS = ("levels", "given_levels", "mask_id", "codebook_size", "fps", "frame_rate", "num_frames", "num_audio_frames")


def make_model(*overrides: str, levels: int = 4, codebook_size: int = 16, seed: int = 0) -> VAB:
    cfg = load_config("tiny", TINY + [f"model.levels={levels}", *overrides])
    torch.manual_seed(seed)
    codebooks = [torch.randn(codebook_size, 6) for _ in range(levels)]
    model = VAB.from_config(cfg, codebooks, visual_dim=10, frame_rate=25.0)  # T = 50, F = 4
    # random init gives near-uniform logits; sharpen the heads so tokens depend on the input
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(100)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> VAB:
    return make_model()


def features_for(model: VAB, b: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, model.num_frames, model.visual_dim, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """Wraps a model; keeps each forward's tokens, drop_visual and logits."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        for name in ATTRS:
            setattr(self, name, getattr(inner, name))
        self.calls: list[dict] = []

    def forward(self, tokens, features=None, drop_visual=None):
        logits = self.inner(tokens, features, drop_visual)
        self.calls.append({"tokens": tokens.clone(), "drop": drop_visual, "features": features, "logits": logits})
        return logits


class OneHalf(nn.Module):
    """Answers a guided [cond ; uncond] forward with one half (computed on B rows) for both:
    `which="cond"` is sampling with the conditional forward only, `"uncond"` the null-visual one."""

    def __init__(self, inner: nn.Module, which: str):
        super().__init__()
        self.inner, self.which = inner, which
        for name in ATTRS:
            setattr(self, name, getattr(inner, name))

    def forward(self, tokens, features=None, drop_visual=None):
        b = tokens.shape[0] // 2
        drop = torch.full((b,), self.which == "uncond")
        half = self.inner(tokens[:b], features[:b], drop_visual=drop)
        return torch.cat([half, half])


class TableModel(nn.Module):
    """Stub whose logits are a fixed table ``[L, T, V]`` whatever the input."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)
        self.levels, self.given_levels = table.shape[0], 0
        self.codebook_size = self.mask_id = table.shape[2]
        self.fps, self.frame_rate, self.num_frames, self.num_audio_frames = 1.0, float(table.shape[1]), 1, table.shape[1]

    def forward(self, tokens, features=None, drop_visual=None):
        return self.table.expand(tokens.shape[0], *self.table.shape)


def masked_counts(tokens: torch.Tensor, mask_id: int) -> list[int]:
    return (tokens == mask_id).flatten(1).sum(1).tolist()


# ---------------------------------------------------------------- schedule
def test_mask_schedule_values():
    assert mask_schedule(100, 4).tolist() == [92, 70, 38, 0]  # floor(100 cos(pi/8 * (i+1)))
    expected = [math.floor(1000 * math.cos(math.pi / 2 * (i + 1) / 16)) for i in range(15)] + [0]
    assert mask_schedule(1000, 16).tolist() == expected
    # fewer tokens than steps: at least one committed per step, then nothing left
    assert mask_schedule(3, 16).tolist() == [2, 1] + [0] * 14
    assert mask_schedule(0, 5).tolist() == [0] * 5
    assert mask_schedule(7, 1).tolist() == [0]
    assert mask_schedule(10, 3).tolist() == [8, 5, 0]  # cos(pi/3) = 1/2 exactly: 5, not 4
    assert mask_schedule(84, 63)[41] == 42
    batched = mask_schedule(torch.tensor([100, 3, 0]), 16)
    assert batched.shape == (3, 16)
    for row, n0 in zip(batched.tolist(), (100, 3, 0)):
        assert row == mask_schedule(n0, 16).tolist()


def test_other_schedules():
    assert mask_schedule(100, 4, "linear").tolist() == [75, 50, 25, 0]
    assert mask_schedule(100, 4, "square").tolist() == [93, 75, 43, 0]
    assert mask_schedule(100, 4, "cubic").tolist() == [98, 87, 57, 0]
    assert mask_schedule(100, 4, "arccos").tolist() == [83, 66, 46, 0]  # floor(100 arccos(r) / (pi/2))
    assert mask_schedule(100, 4, "cosine").tolist() == mask_schedule(100, 4).tolist()
    for name in SCHEDULES:  # every schedule ends with nothing masked and commits each step
        sched = mask_schedule(torch.tensor([500, 3]), 8, name)
        assert (sched[:, -1] == 0).all() and (sched[:, 1:] <= sched[:, :-1]).all()
        assert sched[0, 0] < 500 and sched[1].tolist() == [2, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="schedule"):
        mask_schedule(10, 4, "exp")


def test_sampler_follows_the_schedule(model):
    rec = Recorder(model)
    sample_tokens(rec, features_for(model, 1), cfg=SamplingConfig(steps=4, schedule="linear"))
    n0 = model.levels * model.num_audio_frames  # 200
    assert [masked_counts(c["tokens"][:1], model.mask_id)[0] for c in rec.calls] == [n0, 150, 100, 50]


def test_mask_noise_scale_anneals_linearly_to_zero():
    assert [mask_noise_scale(20.0, i, 4) for i in range(4)] == [15.0, 10.0, 5.0, 0.0]
    assert mask_noise_scale(22.5, 0, 1) == 0.0
    assert mask_noise_scale(22.5, 0, 16) == pytest.approx(22.5 * 15 / 16)


@settings(max_examples=200, deadline=None)
@hyp_given(st.integers(0, 5000), st.integers(1, 64))
def test_mask_schedule_properties(n0, steps):
    sched = mask_schedule(n0, steps).tolist()
    assert sched[-1] == 0
    prev = n0
    for i, n in enumerate(sched):
        assert 0 <= n <= math.floor(n0 * math.cos(math.pi / 2 * (i + 1) / steps) + 1e-6) or n == 0
        assert n < prev or prev == 0 == n  # progress every step while tokens remain
        prev = n


def test_schedule_is_counted_per_example(model):
    b, t = 3, model.num_audio_frames
    given = torch.randint(0, model.codebook_size, (b, model.levels, t), generator=torch.Generator().manual_seed(0))
    given_mask = torch.zeros(b, model.levels, t, dtype=torch.bool)
    given_mask[1, :, :20] = True  # prompt continuation: 20 of 50 frames given
    given_mask[2] = torch.rand(model.levels, t, generator=torch.Generator().manual_seed(1)) < 0.9  # edit: ~10 % new
    rec = Recorder(model)
    steps_seen = []
    out = sample_tokens(rec, features_for(model, b), given=given, given_mask=given_mask,
                        cfg=SamplingConfig(steps=8, guidance_stop=1.0), progress=lambda i, n: steps_seen.append((i, n)))
    n0 = (~given_mask).flatten(1).sum(1)
    assert len(set(n0.tolist())) == 3
    sched = mask_schedule(n0, 8)
    assert steps_seen == [(i, 8) for i in range(1, 9)]
    assert len(rec.calls) == 8  # one batched [cond ; uncond] forward per step
    for i, call in enumerate(rec.calls):
        tokens = call["tokens"]
        assert tokens.shape[0] == 2 * b
        assert torch.equal(tokens[:b], tokens[b:])
        assert call["drop"].tolist() == [False] * b + [True] * b
        expected = n0.tolist() if i == 0 else sched[:, i - 1].tolist()
        assert masked_counts(tokens[:b], model.mask_id) == expected
    assert masked_counts(out, model.mask_id) == [0, 0, 0]


# ---------------------------------------------------------------- outputs and given tokens
def test_output_complete_and_given_tokens_kept(model):
    b, t = 2, model.num_audio_frames
    given = torch.randint(0, model.codebook_size, (b, model.levels, t))
    given_mask = torch.zeros(b, model.levels, t, dtype=torch.bool)
    given_mask[0, :, :10] = True  # prompt
    given_mask[1, :, :15] = given_mask[1, :, 35:] = True  # edit 15..35
    rec = Recorder(model)
    out = sample_tokens(rec, features_for(model, b), given=given, given_mask=given_mask, cfg=SamplingConfig(steps=6))
    assert out.shape == (b, model.levels, t) and out.dtype == torch.long
    assert (out >= 0).all() and (out < model.codebook_size).all()
    assert torch.equal(out[given_mask], given[given_mask])
    for call in rec.calls:  # given positions are never masked nor changed
        assert torch.equal(call["tokens"][:b][given_mask], given[given_mask])
    # without given_mask, mask_id marks what to generate
    holes = given.clone()
    holes[~given_mask] = model.mask_id
    same = sample_tokens(model, features_for(model, b), given=holes, cfg=SamplingConfig(steps=6))
    assert torch.equal(same, out)


def test_any_length_and_default_length(model):
    f = features_for(model, 1)
    assert sample_tokens(model, f, cfg=SamplingConfig(steps=4)).shape == (1, model.levels, model.num_audio_frames)
    for t in (7, 130):
        out = sample_tokens(model, f, num_frames=t, cfg=SamplingConfig(steps=4))
        assert out.shape == (1, model.levels, t) and (out < model.codebook_size).all()
    long_features = features_for(model, 1).repeat(1, 3, 1)  # 6 s of frames -> 150 audio frames at 25 Hz
    assert sample_tokens(model, long_features, cfg=SamplingConfig(steps=4)).shape[2] == 150
    unconditional = sample_tokens(model, None, cfg=SamplingConfig(steps=4))
    assert unconditional.shape == (1, model.levels, model.num_audio_frames)


def test_everything_given_returns_given(model):
    given = torch.randint(0, model.codebook_size, (2, model.levels, 20))
    rec = Recorder(model)
    assert torch.equal(sample_tokens(rec, features_for(model, 2), given=given), given)
    assert rec.calls == []


# ---------------------------------------------------------------- guidance
def test_guide_logits():
    c, u = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    assert torch.equal(guide_logits(c, u, 1.0), c)
    assert torch.equal(guide_logits(c, u, 0.0), u)
    torch.testing.assert_close(guide_logits(c, u, 5.0), u + 5 * (c - u))


def test_guidance_one_is_conditional_only_and_zero_unconditional_only(model):
    f = features_for(model, 2)
    rec = Recorder(model)
    w1 = sample_tokens(rec, f, cfg=SamplingConfig(steps=6, guidance=1.0))
    assert all(c["tokens"].shape[0] == 2 and c["drop"] is None for c in rec.calls)  # no unconditional pass
    assert torch.equal(w1, sample_tokens(OneHalf(model, "cond"), f, cfg=SamplingConfig(steps=6, guidance=5.0, guidance_stop=1.0)))
    rec = Recorder(model)
    w0 = sample_tokens(rec, f, cfg=SamplingConfig(steps=6, guidance=0.0, guidance_stop=1.0))
    assert all(c["tokens"].shape[0] == 2 and c["drop"].all() for c in rec.calls)
    assert torch.equal(w0, sample_tokens(OneHalf(model, "uncond"), f, cfg=SamplingConfig(steps=6, guidance=5.0, guidance_stop=1.0)))
    assert not torch.equal(w0, w1)
    guided = sample_tokens(model, f, cfg=SamplingConfig(steps=6, guidance=5.0, guidance_stop=1.0))
    assert not torch.equal(guided, w1) and not torch.equal(guided, w0)


def test_guidance_interval_skips_the_unconditional_rows_outside_it(model):
    f = features_for(model, 2)
    assert [guided_step(SamplingConfig(steps=8, guidance_stop=0.5), i) for i in range(8)] == [True] * 4 + [False] * 4
    assert [guided_step(SamplingConfig(steps=4, guidance_start=0.25, guidance_stop=0.75), i)
            for i in range(4)] == [False, True, True, False]
    assert not any(guided_step(SamplingConfig(steps=4, guidance=1.0), i) for i in range(4))
    rec = Recorder(model)
    early = sample_tokens(rec, f, cfg=SamplingConfig(steps=6, guidance_stop=0.5))
    rows = [c["tokens"].shape[0] for c in rec.calls]
    assert rows == [4, 4, 4, 2, 2, 2]  # [cond ; uncond] on the first half, the conditional rows alone after
    assert all(c["drop"] is None for c in rec.calls[3:])
    # the default interval is the first half (of the default 4 steps: the first two, 6 rows of 8);
    # an interval with no step in it is guidance 1
    assert torch.equal(sample_tokens(model, f, cfg=SamplingConfig(steps=6, guidance_start=0.0, guidance_stop=0.5)),
                       sample_tokens(model, f, cfg=SamplingConfig(steps=6)))
    assert [guided_step(SamplingConfig(), i) for i in range(SamplingConfig().steps)] == [True, True, False, False]
    never = sample_tokens(model, f, cfg=SamplingConfig(steps=6, guidance_start=0.9, guidance_stop=1.0))
    assert torch.equal(never, sample_tokens(model, f, cfg=SamplingConfig(steps=6, guidance=1.0)))
    everywhere = sample_tokens(model, f, cfg=SamplingConfig(steps=6, guidance_stop=1.0))
    assert not torch.equal(early, everywhere) and not torch.equal(early, never)


def test_logits_read_at_the_masked_positions_only_match_the_full_read(model):
    """The sampler asks the model for the masked positions' logits alone: the same numbers,
    in the order of logits[masked], as the full read-out."""
    tokens = torch.randint(0, model.codebook_size, (3, model.levels, model.num_audio_frames))
    where = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(2)) < 0.4
    tokens[where] = model.mask_id
    f = features_for(model, 3)
    drop = torch.tensor([False, True, False])
    with torch.no_grad():
        full = model(tokens, f, drop_visual=drop)
        rows = model(tokens, f, drop_visual=drop, where=where)
    torch.testing.assert_close(rows, full[where], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="where"):
        model(tokens, f, where=where[:, :2])


# ---------------------------------------------------------------- randomness
def test_seeds_reproduce_and_differ(model):
    f = features_for(model, 2)
    cfg = SamplingConfig(steps=6, seed=3)
    a = sample_tokens(model, f, cfg=cfg)
    assert torch.equal(a, sample_tokens(model, f, cfg=cfg))
    assert torch.equal(a, sample_tokens(model, f, cfg=SamplingConfig(steps=6), seeds=[3, 4]))
    b = sample_tokens(model, f, cfg=SamplingConfig(steps=6, seed=4))
    assert not torch.equal(a[0], b[0])
    swapped = sample_tokens(model, f.flip(0), cfg=cfg, seeds=[4, 3])  # an example keeps its seed's output
    assert torch.equal(swapped, a.flip(0))


def test_batch_invariance(model):
    b, t = 3, model.num_audio_frames
    f = features_for(model, b)
    given = torch.randint(0, model.codebook_size, (b, model.levels, t))
    given_mask = torch.zeros(b, model.levels, t, dtype=torch.bool)
    given_mask[1, :, :25] = True
    given_mask[2, 1:] = True  # only level 0 to fill
    cfg = SamplingConfig(steps=8)
    seeds = [11, 5, 7]
    batched = sample_tokens(model, f, given=given, given_mask=given_mask, cfg=cfg, seeds=seeds)
    for i in range(b):
        alone = sample_tokens(model, f[i : i + 1], given=given[i : i + 1], given_mask=given_mask[i : i + 1],
                              cfg=cfg, seeds=[seeds[i]])
        assert torch.equal(alone[0], batched[i]), f"example {i} depends on its batch"


# ---------------------------------------------------------------- argmax, top-k, top-p, temperature
def test_argmax_decoding_commits_most_confident(model):
    f = features_for(model, 2)
    cfg = SamplingConfig(steps=5, guidance=1.0, temperature=0.0, mask_temperature=0.0)
    rec = Recorder(model)
    out = sample_tokens(rec, f, cfg=cfg)
    assert torch.equal(out, sample_tokens(model, f, cfg=cfg, seeds=[123, 456]))  # no randomness left
    noisy = SamplingConfig(steps=5, guidance=1.0, temperature=0.0)  # random commit order only
    assert not torch.equal(sample_tokens(model, f, cfg=noisy, seeds=[1, 2]), sample_tokens(model, f, cfg=noisy))
    states = [c["tokens"] for c in rec.calls] + [out]
    for call, before, after in zip(rec.calls, states, states[1:]):
        masked = before == model.mask_id
        committed = masked & (after != model.mask_id)
        still = masked & (after == model.mask_id)
        logp = call["logits"].log_softmax(-1)
        best, argmax = logp.max(-1)
        assert committed.any()
        assert torch.equal(after[committed], argmax[committed])
        for i in range(2):  # per example: every committed token is at least as confident as any re-masked one
            if still[i].any():
                assert best[i][committed[i]].min() >= best[i][still[i]].max()


def test_top_k_one_and_temperature_zero_are_argmax():
    table = torch.randn(2, 40, 9, generator=torch.Generator().manual_seed(0))
    stub = TableModel(table)
    argmax = table.argmax(-1)[None]
    assert torch.equal(sample_tokens(stub, None, cfg=SamplingConfig(steps=4, top_k=1)), argmax)
    assert torch.equal(sample_tokens(stub, None, cfg=SamplingConfig(steps=4, temperature=0.0)), argmax)
    sampled = sample_tokens(stub, None, cfg=SamplingConfig(steps=4, temperature=1.0))
    assert not torch.equal(sampled, argmax)
    top2 = table.topk(2, dim=-1).indices[None]
    k2 = sample_tokens(stub, None, cfg=SamplingConfig(steps=4, top_k=2, temperature=3.0))
    assert ((k2[..., None] == top2).any(-1)).all() and not torch.equal(k2, argmax)


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    inf = float("-inf")
    assert torch.equal(filter_logits(logits), logits)
    k1 = filter_logits(logits, top_k=1)
    assert k1[0].tolist() == [inf, logits[0, 1].item(), inf]
    assert torch.isfinite(filter_logits(logits, top_k=2)).sum(1).tolist() == [2, 3]  # ties at the k-th kept
    assert torch.isfinite(filter_logits(logits, top_p=0.45)).sum(1).tolist() == [1, 1]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).sum(1).tolist() == [2, 2]
    kept = filter_logits(logits, top_p=0.7)[0]
    assert torch.isinf(kept[0]) and torch.isfinite(kept[1:]).all()
    assert torch.isfinite(filter_logits(logits, top_p=1e-6)).sum(1).tolist() == [1, 1]  # the best always stays


def test_draw_tokens_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    n = 20000
    logits = torch.log(probs).expand(n, -1)
    u = torch.rand(n, generator=torch.Generator().manual_seed(0))
    tokens, logp = draw_tokens(logits, u, SamplingConfig(temperature=1.0))
    freq = torch.bincount(tokens, minlength=5).float() / n
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    torch.testing.assert_close(logp, torch.log(probs)[tokens])
    # the extreme uniforms never pick a token without mass
    edge, _ = draw_tokens(logits[:3], torch.tensor([0.0, 1 - 2**-24, 0.99999994]), SamplingConfig(temperature=1.0))
    assert edge.tolist() == [0, 3, 3]
    # temperature 2 flattens: p ~ sqrt(probs); top-p 0.6 keeps the two best
    t2, _ = draw_tokens(logits[:, :4], u, SamplingConfig(temperature=2.0))
    flat = probs[:4].sqrt() / probs[:4].sqrt().sum()
    torch.testing.assert_close(torch.bincount(t2, minlength=4).float() / n, flat, atol=0.015, rtol=0)
    p, _ = draw_tokens(logits, u, SamplingConfig(temperature=1.0, top_p=0.6))
    assert set(p.tolist()) == {0, 1}


# ---------------------------------------------------------------- coarse-to-fine
def test_coarse_to_fine_keeps_coarse_and_fills_fine():
    c2f = make_model("model.type=coarse2fine", "model.expert_layers=0", "model.given_levels=4", levels=12)
    assert isinstance(c2f, Coarse2Fine)
    b, t = 2, 30
    coarse = torch.randint(0, c2f.codebook_size, (b, 4, t))
    rec = Recorder(c2f)
    steps_seen = []
    out = coarse_to_fine(rec, coarse, features_for(c2f, b), progress=lambda i, n: steps_seen.append(n))
    assert out.shape == (b, 12, t)
    assert torch.equal(out[:, :4], coarse)
    assert (out >= 0).all() and (out < c2f.codebook_size).all()
    assert steps_seen == [36] * 36  # 36 steps by default
    assert all(not (c["tokens"][:, :4] == c2f.mask_id).any() for c in rec.calls)
    assert masked_counts(rec.calls[0]["tokens"][:b], c2f.mask_id) == [8 * t] * b
    # the coarse levels are required
    with pytest.raises(VabError, match="coarse"):
        sample_tokens(c2f, features_for(c2f, 1), num_frames=t)
    partial = torch.zeros(1, 12, t, dtype=torch.bool)
    partial[:, :3] = True
    with pytest.raises(VabError, match="coarse"):
        sample_tokens(c2f, None, given=torch.zeros(1, 12, t, dtype=torch.long), given_mask=partial)
    with pytest.raises(VabError, match="levels"):
        coarse_to_fine(c2f, coarse[:, :3], None)


# ---------------------------------------------------------------- bad input
def test_bad_settings_and_inputs(model):
    for bad in ({"steps": 0}, {"top_p": 0.0}, {"top_p": 1.5}, {"temperature": -1.0}, {"top_k": -2},
                {"mask_temperature": -0.1}, {"guidance": float("nan")}, {"guidance_start": 0.5, "guidance_stop": 0.5},
                {"guidance_stop": 1.5}, {"guidance_start": -0.1}, {"schedule": "exp"}):
        with pytest.raises(VabError, match="sampling"):
            SamplingConfig(**bad)
    f = features_for(model, 2)
    t = model.num_audio_frames
    with pytest.raises(VabError, match="batch sizes differ"):
        sample_tokens(model, f, seeds=[1, 2, 3])
    with pytest.raises(VabError, match="batch sizes differ"):
        sample_tokens(model, f, given=torch.zeros(3, model.levels, t, dtype=torch.long))
    with pytest.raises(VabError, match="levels"):
        sample_tokens(model, f, given=torch.zeros(2, 2, t, dtype=torch.long))
    with pytest.raises(VabError, match="out of range"):
        sample_tokens(model, f, given=torch.full((2, model.levels, t), model.codebook_size + 3))
    with pytest.raises(VabError, match="num_frames"):
        sample_tokens(model, f, num_frames=10, given=torch.zeros(2, model.levels, t, dtype=torch.long))
    with pytest.raises(VabError, match="given_mask"):
        sample_tokens(model, f, given=torch.zeros(2, model.levels, t, dtype=torch.long),
                      given_mask=torch.ones(2, model.levels, 3, dtype=torch.bool))
    with pytest.raises(VabError, match="coarse"):
        coarse_to_fine(model, torch.zeros(1, 4, 5, dtype=torch.long), None)


def test_training_mode_restored_and_low_precision():
    m = make_model()
    m.train()
    sample_tokens(m, None, num_frames=5, cfg=SamplingConfig(steps=2))
    assert m.training
    half = make_model().to(torch.bfloat16)
    out = sample_tokens(half, features_for(half, 2), cfg=SamplingConfig(steps=4))
    assert out.dtype == torch.long and (out >= 0).all() and (out < half.codebook_size).all()


def test_sampling_options_are_declared_once_for_every_command():
    """`vab generate` and eval/generation.py take one option per SamplingConfig field, with its
    default, and parse back into the same settings."""
    import argparse
    import importlib.util
    from pathlib import Path

    from vab.cli import build_parser
    from vab.generation.sampling import add_sampling_arguments, sampling_from_args, sampling_options

    spec = importlib.util.spec_from_file_location("eval_generation", Path(__file__).parents[1] / "eval" / "generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generate = build_parser("generate")._subparsers._group_actions[0].choices["generate"]
    for parser in (generate, module.parser()):
        flags = {option for action in parser._actions for option in action.option_strings}
        assert {o.flag for o in sampling_options()} <= flags
        defaults = parser.parse_args(["x", "--checkpoint", "m"] if parser is generate else ["--checkpoint", "m"])
        assert sampling_from_args(defaults) == SamplingConfig()
    own = argparse.ArgumentParser()
    add_sampling_arguments(own)
    parsed = sampling_from_args(own.parse_args(["--cfg", "2", "--steps", "4", "--top-p", "0.9"]))
    assert parsed == SamplingConfig(steps=4, guidance=2.0, top_p=0.9)
    with pytest.raises(VabError, match="steps must be"):
        sampling_from_args(own.parse_args(["--steps", "0"]))
