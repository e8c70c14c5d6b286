"""Mask ratios, exact mask counts, and the temporal augmentations (docs/ARCHITECTURE.md, "Algorithms")."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vab.data.augment import augment, roll_step, temporal_mixup, temporal_roll
from vab.training.masking import (
    apply_mask,
    level_mask,
    mask_counts,
    pretraining_mask,
    random_mask,
    sample_mask_ratio,
    truncated_normal_moments,
)


# ---------------------------------------------------------------- mask ratio
@pytest.mark.parametrize("mean,std", [(0.55, 0.25), (0.35, 0.25), (0.75, 0.1)])
def test_mask_ratio_matches_truncated_normal(mean, std):
    g = torch.Generator().manual_seed(0)
    r = sample_mask_ratio(10_000, mean, std, generator=g).double()
    dist = stats.truncnorm((0 - mean) / std, (1 - mean) / std, loc=mean, scale=std)
    assert truncated_normal_moments(mean, std) == pytest.approx((dist.mean(), dist.std()), rel=1e-9)
    # standard error of the mean is ~0.0022 for 10,000 draws; of the std about half that
    assert r.mean().item() == pytest.approx(dist.mean(), abs=0.01)
    assert r.std().item() == pytest.approx(dist.std(), abs=0.01)
    assert r.min() > 0 and r.max() <= 1
    # the whole shape, not only two moments
    assert stats.kstest(r.numpy(), dist.cdf).pvalue > 1e-3


def test_mask_ratio_is_reproducible_and_seed_dependent():
    a = sample_mask_ratio(8, generator=torch.Generator().manual_seed(5))
    b = sample_mask_ratio(8, generator=torch.Generator().manual_seed(5))
    c = sample_mask_ratio(8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- mask counts and positions
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), k=st.integers(1, 5), t=st.integers(1, 40), given_levels=st.integers(0, 4),
       seed=st.integers(0, 2**31))
def test_masked_counts_are_exact(b, k, t, given_levels, seed):
    given_levels = min(given_levels, k - 1)
    g = torch.Generator().manual_seed(seed)
    mask, ratios = pretraining_mask((b, k, t), 0.55, 0.25, given_levels, g)
    n = (k - given_levels) * t
    expected = [max(1, round(r * n)) for r in ratios.double().tolist()]
    assert mask.shape == (b, k, t) and mask.dtype == torch.bool
    assert mask.sum(dim=(1, 2)).tolist() == expected
    assert not mask[:, :given_levels].any()


def test_mask_counts_edges():
    assert mask_counts(torch.tensor([1e-6, 0.5, 1.0, 0.004, 0.006]), 100).tolist() == [1, 50, 100, 1, 1]
    assert mask_counts(torch.tensor([0.25]), 2).tolist() == [1]  # round half to even, floor of 1
    full = level_mask((2, 3, 5), torch.tensor([1.0, 1.0]))
    assert full.all()


def test_mask_positions_are_uniform():
    g = torch.Generator().manual_seed(0)
    counts = torch.full((4000,), 6)
    freq = random_mask((4000, 2, 12), counts, g).float().mean(0)  # expected 6/24 everywhere
    assert torch.allclose(freq, torch.full_like(freq, 0.25), atol=0.03)


def test_apply_mask():
    tokens = torch.arange(12).view(1, 2, 6)
    mask = torch.zeros(1, 2, 6, dtype=torch.bool)
    mask[0, 1, 2] = True
    out = apply_mask(tokens, mask, 99)
    assert out[0, 1, 2] == 99 and (out != 99).sum() == 11 and tokens[0, 1, 2] == 8


# ---------------------------------------------------------------- augmentations
RATE, FPS = 50.0, 2.0  # 25 audio frames per visual frame


def timed_batch(b: int = 8, seconds: float = 4.0, rate: float = RATE, fps: float = FPS, k: int = 2):
    """Tokens = clip * 1000 + audio frame index; features = (clip, time of the frame)."""
    t, f = int(seconds * rate), int(seconds * fps)
    clip = torch.arange(b)
    tokens = (clip[:, None, None] * 1000 + torch.arange(t)[None, None]).expand(b, k, t).clone()
    features = torch.stack(
        [clip[:, None].expand(b, f).double(), ((torch.arange(f) + 0.5) / fps)[None].expand(b, f)], dim=-1
    )
    labels = torch.nn.functional.one_hot(clip, b + 1).float()
    return tokens, features, labels


def sources(tokens, features, rate=RATE, fps=FPS):
    """Per example: (instant, source clip) of every audio and visual frame, sorted by time."""
    out = []
    for i in range(tokens.shape[0]):
        audio = [((tok % 1000 + 0.5) / rate, tok // 1000) for tok in tokens[i, 0].tolist()]
        visual = [(time, int(c)) for c, time in features[i].tolist()]
        out.append((audio, visual))
    return out


def test_mixup_cuts_both_modalities_at_one_instant():
    tokens, features, labels = timed_batch()
    g = torch.Generator().manual_seed(3)
    mixed_t, mixed_f, mixed_l = temporal_mixup(tokens, features, labels, p=1.0, frame_rate=RATE, fps=FPS, generator=g)
    # every level is cut identically
    assert torch.equal(mixed_t[:, 0], mixed_t[:, 1])
    n_mixed = 0
    for i, (audio, visual) in enumerate(sources(mixed_t, mixed_f)):
        # each frame still sits at its own instant (time is preserved)
        assert [a for a, _ in audio] == [(t + 0.5) / RATE for t in range(len(audio))]
        assert [v for v, _ in visual] == [(f + 0.5) / FPS for f in range(len(visual))]
        merged = sorted(audio + visual)
        srcs = [s for _, s in merged]
        assert srcs[0] == i or len(set(srcs)) == 1  # starts with the clip itself (unless cut at 0)
        # one cut: the sources over time are i...i then partner...partner
        changes = sum(1 for x, y in zip(srcs, srcs[1:]) if x != y)
        assert changes <= 1
        if changes:
            n_mixed += 1
            partner = srcs[-1]
            assert mixed_l[i, i] == 1 and mixed_l[i, partner] == 1 and mixed_l[i].sum() == 2
    assert n_mixed >= 4


def test_mixup_probability_zero_is_identity_and_labels_are_merged_only_when_mixed():
    tokens, features, labels = timed_batch()
    out = temporal_mixup(tokens, features, labels, p=0.0, frame_rate=RATE, fps=FPS)
    assert all(torch.equal(a, b) for a, b in zip(out, (tokens, features, labels)))
    g = torch.Generator().manual_seed(1)
    mixed_t, _, mixed_l = temporal_mixup(tokens, None, labels, p=0.5, frame_rate=RATE, fps=FPS, generator=g)
    for i in range(len(tokens)):
        srcs = set((mixed_t[i, 0] // 1000).tolist())
        assert set(torch.nonzero(mixed_l[i]).flatten().tolist()) >= srcs
    # the partner's part comes from the original, not an already mixed clip
    assert set((mixed_t // 1000).flatten().tolist()) <= set(range(len(tokens)))


@pytest.mark.parametrize("rate,fps,seconds", [(50.0, 2.0, 4.0), (50.0, 1.0, 10.0), (75.0, 2.0, 4.0)])
def test_roll_shifts_both_modalities_by_the_same_time(rate, fps, seconds):
    tokens, features, _ = timed_batch(seconds=seconds, rate=rate, fps=fps)
    g = torch.Generator().manual_seed(0)
    rolled_t, rolled_f = temporal_roll(tokens, features, p=1.0, frame_rate=rate, fps=fps, generator=g)
    t, f = tokens.shape[2], features.shape[1]
    shifts = set()
    for i in range(len(tokens)):
        # audio frame j now holds original frame (j - s) mod T: the audio shift in seconds
        a_shift = ((torch.arange(t) - rolled_t[i, 0] % 1000) % t).unique()
        v_time = rolled_f[i, :, 1]
        v_shift = (((torch.arange(f) + 0.5) / fps - v_time) * fps).round().long() % f
        assert len(a_shift) == 1 and len(v_shift.unique()) == 1
        assert a_shift.item() / rate == pytest.approx(v_shift[0].item() / fps)
        assert torch.equal(rolled_t[i, 0], rolled_t[i, 1])
        assert (rolled_t[i] // 1000 == i).all() and (rolled_f[i, :, 0] == i).all()
        shifts.add(a_shift.item())
    assert len(shifts) > 1


def test_roll_step_whole_in_both_modalities():
    assert roll_step(50.0, 1.0) == (1, 50)
    assert roll_step(75.0, 2.0) == (2, 75)  # 37.5 audio frames per visual frame: shift by 2 frames
    assert roll_step(50.0, 2.0) == (1, 25)


def test_roll_audio_only_and_probability_zero():
    tokens, features, _ = timed_batch()
    out_t, out_f = temporal_roll(tokens, features, p=0.0, frame_rate=RATE, fps=FPS)
    assert torch.equal(out_t, tokens) and torch.equal(out_f, features)
    g = torch.Generator().manual_seed(2)
    out_t, out_f = temporal_roll(tokens, None, p=1.0, frame_rate=RATE, fps=FPS, generator=g)
    assert out_f is None
    for i in range(len(tokens)):
        assert len(((torch.arange(200) - out_t[i, 0] % 1000) % 200).unique()) == 1


def test_augment_keeps_alignment_and_is_reproducible():
    tokens, features, labels = timed_batch(b=16)
    run = lambda seed: augment(tokens, features, labels, mixup_prob=0.5, roll_prob=0.5, frame_rate=RATE, fps=FPS,
                               generator=torch.Generator().manual_seed(seed))
    a, b = run(7), run(7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    out_t, out_f, _ = a
    for i in range(16):
        # every audio frame and the visual frame covering its instant come from the same clip,
        # except audio frames in the same visual interval as the cut
        a_src = out_t[i, 0] // 1000
        v_src = out_f[i, :, 0].long().repeat_interleave(25)
        assert (a_src != v_src).sum() < 25


# ---------------------------------------------------------------- issue 15: all-masked examples, level weights
def test_mask_full_prob_masks_whole_examples_and_zero_keeps_the_seeded_masks():
    from vab.training.masking import pretraining_mask

    shape = (64, 4, 20)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    base, _ = pretraining_mask(shape, 0.55, 0.25, generator=g())
    same, _ = pretraining_mask(shape, 0.55, 0.25, generator=g(), full_prob=0.0)
    assert torch.equal(base, same)
    every, ratios = pretraining_mask(shape, 0.55, 0.25, generator=g(), full_prob=1.0)
    assert every.all() and (ratios == 1).all()
    some, ratios = pretraining_mask(shape, 0.55, 0.25, generator=g(), full_prob=0.5)
    full = some.flatten(1).all(dim=1)
    assert 16 <= int(full.sum()) <= 48 and torch.equal(full, ratios == 1)


def test_level_weights_weigh_the_loss_and_bad_weights_are_refused():
    from types import SimpleNamespace

    from vab.errors import ConfigError
    from vab.training.objective import PretrainObjective, masked_loss

    torch.manual_seed(0)
    logits, tokens = torch.randn(2, 3, 5, 7), torch.randint(0, 7, (2, 3, 5))
    mask = torch.rand(2, 3, 5) < 0.6
    plain, _, _ = masked_loss(logits, tokens, mask, 0)
    equal, _, _ = masked_loss(logits, tokens, mask, 0, torch.ones(3))
    assert torch.allclose(plain, equal)
    only0, _, _ = masked_loss(logits, tokens, mask, 0, torch.tensor([1.0, 0.0, 0.0]))
    m0 = mask[:, 0]
    assert torch.allclose(only0, torch.nn.functional.cross_entropy(logits[:, 0][m0], tokens[:, 0][m0]))

    def cfg(**train):
        base = dict(mask_mean=0.55, mask_std=0.25, visual_dropout=0.1, mixup_prob=0.5, roll_prob=0.1)
        return SimpleNamespace(train=SimpleNamespace(**{**base, **train}),
                               model=SimpleNamespace(levels=4, given_levels=0))

    assert PretrainObjective(cfg(level_weights=[4, 2, 1, 1])).level_weights.tolist() == [4, 2, 1, 1]
    for bad in ([1, 1], [1, -1, 1, 1], [0, 0, 0, 0]):
        with pytest.raises(ConfigError, match="level_weights"):
            PretrainObjective(cfg(level_weights=bad))
    with pytest.raises(ConfigError, match="mask_full_prob"):
        PretrainObjective(cfg(mask_full_prob=1.5))


def test_coarse_weight_rule_follows_the_levels_of_any_preset_override():
    """tiny's coarse levels weigh more whatever model.levels / given_levels say (a fixed list would
    refuse those overrides); an explicit train.level_weights wins; a weight below 1 is refused."""
    from vab.config import load_config
    from vab.errors import ConfigError
    from vab.training.objective import level_weights

    def weights(*overrides):
        found = level_weights(load_config("tiny", list(overrides)))
        return None if found is None else found.tolist()

    assert weights() == [4, 2, 1, 1]
    assert weights("model.levels=8", "codec.levels=8") == [4, 2, 1, 1, 1, 1, 1, 1]
    assert weights("model.given_levels=1") == [2, 1, 1]
    assert weights("train.coarse_weight=1") is None
    assert weights("train.coarse_weight=8", "model.levels=2", "codec.levels=2") == [8, 4]
    assert weights("train.level_weights=[1,0,0,1]") == [1, 0, 0, 1]
    with pytest.raises(ConfigError, match="train.coarse_weight"):
        load_config("tiny", ["train.coarse_weight=0.5"])
