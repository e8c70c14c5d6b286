"""The masked-token objective: loss on masked tokens only, masking per model type,
visual dropout, validation accuracy, and a tiny model that overfits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vab.config import load_config
from vab.model import VAB
from vab.training.objective import PretrainObjective, masked_accuracy, masked_correct, masked_loss
from vab.training.validation import pretraining_validation

SMALL = [
    "model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=4", "model.ffn=64",
    "data.duration=2.0", "data.fps=2.0",
]


def make(*overrides: str, levels: int = 4, codebook_size: int = 16, visual_dim: int = 10):
    cfg = load_config("tiny", SMALL + [f"model.levels={levels}", *overrides])
    torch.manual_seed(0)
    model = VAB.from_config(cfg, [torch.randn(codebook_size, 6) for _ in range(levels)], visual_dim, 50.0)
    return cfg, model


def data(model, b: int = 4, k: int | None = None, seed: int = 0, features: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    k = k or model.levels
    out = {
        "tokens": torch.randint(0, model.codebook_size, (b, k, model.num_audio_frames), generator=g).short(),
        "features": torch.randn(b, model.num_frames, model.visual_dim, generator=g).half() if features else None,
        "labels": torch.zeros(b, 3),
        "id": [f"clip{i}" for i in range(b)],
    }
    return out


class Spy(torch.nn.Module):
    """Records what the objective feeds the model; `fake` skips the model (zero logits)."""

    def __init__(self, model, fake: bool = False):
        super().__init__()
        self.module = model
        self.fake = fake
        self.calls = []

    def forward(self, tokens, features=None, drop_visual=None):
        self.calls.append((tokens.clone(), None if features is None else features.clone(), drop_visual))
        if self.fake:
            m = self.module
            shape = (tokens.shape[0], m.levels - m.given_levels, tokens.shape[2], m.codebook_size)
            return torch.zeros(shape, requires_grad=True)
        return self.module(tokens, features, drop_visual)


# ---------------------------------------------------------------- the loss
def test_loss_counts_masked_tokens_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, 11, generator=g)
    tokens = torch.randint(0, 11, (2, 3, 7), generator=g)
    mask = torch.rand(2, 3, 7, generator=g) < 0.4
    loss, correct, counts = masked_loss(logits, tokens, mask, 0)
    manual = F.cross_entropy(logits.permute(0, 3, 1, 2), tokens, reduction="none")[mask].mean()
    torch.testing.assert_close(loss, manual)
    assert counts.tolist() == mask.sum(dim=(0, 2)).tolist()
    # anything at unmasked positions is irrelevant
    logits2, tokens2 = logits.clone(), tokens.clone()
    logits2[~mask] = torch.randn(int((~mask).sum()), 11) * 100
    tokens2[~mask] = (tokens2[~mask] + 3) % 11
    loss2, correct2, _ = masked_loss(logits2, tokens2, mask, 0)
    assert loss2 == loss and torch.equal(correct2, correct)
    # a masked position matters
    i = mask.nonzero()[0]
    logits2[tuple(i)] += torch.randn(11) * 10
    assert masked_loss(logits2, tokens2, mask, 0)[0] != loss


def test_loss_with_given_levels_reads_only_predicted_levels():
    logits = torch.randn(2, 2, 5, 9)  # 2 predicted levels after 3 given
    tokens = torch.randint(0, 9, (2, 5, 5))
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[:, 3:, :2] = True
    loss, _, counts = masked_loss(logits, tokens, mask, 3)
    manual = F.cross_entropy(logits[:, :, :2].reshape(-1, 9), tokens[:, 3:, :2].reshape(-1))
    torch.testing.assert_close(loss, manual)
    assert counts.tolist() == [4, 4]


# ---------------------------------------------------------------- the objective
def test_objective_masks_exactly_and_feeds_the_model():
    cfg, model = make("train.mixup_prob=0", "train.roll_prob=0", "train.visual_dropout=0")
    spy = Spy(model)
    batch = data(model, b=5, k=6)  # the data set stores more levels than the model reads
    loss, logs = PretrainObjective(cfg)(spy, batch, torch.Generator().manual_seed(0))
    tokens, features, drop = spy.calls[0]
    assert tokens.shape == (5, 4, 100) and tokens.dtype == torch.long and features.dtype == torch.float32
    masked = tokens == model.mask_id
    original = batch["tokens"][:, :4].long()
    assert torch.equal(tokens[~masked], original[~masked])
    n = masked.sum(dim=(1, 2)).float()
    assert n.min() >= 1 and abs((n / 400).mean().item() - logs["mask_ratio"]) < 1.5 / 400
    assert drop is None
    assert math.isfinite(loss.item()) and loss.requires_grad
    assert {"loss", "mask_ratio", "acc", "acc/level0", "acc/level3"} <= logs.keys()
    loss.backward()
    assert model.heads[0].weight.grad is not None


def test_objective_is_reproducible_with_a_generator():
    cfg, model = make()
    batch = data(model, b=6)
    objective = PretrainObjective(cfg)
    a = objective(model, batch, torch.Generator().manual_seed(4))[0]
    b = objective(model, batch, torch.Generator().manual_seed(4))[0]
    c = objective(model, batch, torch.Generator().manual_seed(5))[0]
    assert a == b and a != c


def test_visual_dropout_flags():
    cfg, model = make("train.visual_dropout=1.0")
    spy = Spy(model, fake=True)
    objective = PretrainObjective(cfg)
    objective(spy, data(model), torch.Generator().manual_seed(0))
    assert spy.calls[-1][2].all()
    cfg, model = make("train.visual_dropout=0.1")
    spy = Spy(model, fake=True)
    objective = PretrainObjective(cfg)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        objective(spy, data(model, b=20), g)
    rate = torch.stack([c[2] for c in spy.calls]).float().mean().item()
    assert 0.05 < rate < 0.16
    objective(spy, data(model, features=False), g)  # audio-only data: the null embedding for all
    assert spy.calls[-1][1] is None


def test_eval_mode_objective_has_no_augmentation_or_dropout():
    cfg, model = make("train.visual_dropout=1.0", "train.mixup_prob=1.0", "train.roll_prob=1.0")
    spy = Spy(model, fake=True)
    batch = data(model, b=6)
    objective = PretrainObjective(cfg)
    objective(spy, batch, torch.Generator().manual_seed(0))
    tokens, _, drop = spy.calls[-1]
    kept = tokens != model.mask_id
    assert drop.all() and not torch.equal(tokens[kept], batch["tokens"].long()[kept])
    model.eval()
    objective(spy, batch, torch.Generator().manual_seed(0))
    tokens, features, drop = spy.calls[-1]
    kept = tokens != model.mask_id
    assert drop is None and torch.equal(tokens[kept], batch["tokens"].long()[kept])
    assert torch.equal(features, batch["features"].float())


def test_coarse2fine_never_masks_given_levels():
    cfg, model = make("model.type=coarse2fine", "model.expert_layers=0", "model.given_levels=4", levels=12)
    spy = Spy(model)
    batch = data(model, b=4)
    loss, logs = PretrainObjective(cfg)(spy, batch, torch.Generator().manual_seed(0))
    tokens = spy.calls[0][0]
    assert not (tokens[:, :4] == model.mask_id).any() and (tokens[:, 4:] == model.mask_id).any()
    assert "acc/level4" in logs and "acc/level11" in logs and "acc/level3" not in logs
    correct, counts = masked_correct(model, batch, 0.5, torch.Generator().manual_seed(0))
    assert counts.sum().item() == 4 * round(0.5 * 8 * 100)


def test_masked_accuracy_at_fixed_ratio():
    cfg, model = make()
    batch = data(model, b=3)
    for ratio in (0.3, 0.55, 0.9):
        correct, counts = masked_correct(model, batch, ratio, torch.Generator().manual_seed(1))
        assert counts.sum().item() == 3 * round(ratio * 400)
        acc = masked_accuracy(model, batch, ratio, torch.Generator().manual_seed(1))
        assert acc.shape == (4,) and torch.allclose(acc, correct.double() / counts)


def test_validation_losses_are_summed_over_the_split_and_match_the_objective():
    """`loss@<r>` is the cross-entropy per masked token at ratio r, summed over batches, not
    averaged per batch, so a split's numbers do not depend on how it is batched."""
    _, model = make()
    model.eval()
    batches = [data(model, b=3, seed=1), data(model, b=2, seed=2)]
    numbers = pretraining_validation(ratios=(0.55,))(model, batches)
    gen = torch.Generator().manual_seed(1234)
    summed = total = 0.0
    per_batch = []
    for batch in batches:
        c, n, loss = masked_correct(model, batch, 0.55, gen, with_loss=True)
        summed, total = summed + loss.item(), total + n.sum().item()
        per_batch.append(loss.item() / n.sum().item())
    assert numbers["loss@0.55"] == pytest.approx(summed / total)
    assert numbers["loss@0.55"] != pytest.approx(sum(per_batch) / 2, abs=1e-9)
    assert numbers["loss@0.55"] > 0 and numbers["full"] > 0


# ---------------------------------------------------------------- overfitting
def test_tiny_model_overfits_16_clips():
    """Tokens are a deterministic function of the visual frame covering them; the model must
    reach 95% masked-token accuracy and must be using the video to do it."""
    cfg = load_config("tiny", [
        "data.duration=2.0", "data.fps=2.0", "model.width=64", "model.layers=2", "model.expert_layers=1",
        "model.heads=4", "model.ffn=128", "train.mixup_prob=0", "train.roll_prob=0", "train.visual_dropout=0",
    ])
    torch.manual_seed(0)
    model = VAB.from_config(cfg, [torch.randn(32, 8) for _ in range(4)], 16, 50.0)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(16, 4, 16, generator=g)
    frame_tokens = torch.randint(0, 32, (16, 4, 4), generator=g)  # [clip, level, visual frame]
    tokens = frame_tokens.repeat_interleave(25, dim=2)  # 25 audio frames per visual frame
    batch = {"tokens": tokens.short(), "features": features.half(), "labels": torch.zeros(16, 1)}

    objective = PretrainObjective(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    before = pretraining_validation()(model.eval(), [batch])
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and robust to a busy machine
    try:
        for step in range(400):
            loss, _ = objective(model, batch, gen)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 20 == 19 and masked_accuracy(model, batch, 0.55, gen).min() >= 0.97:
                break
        acc = masked_accuracy(model, batch, 0.55, torch.Generator().manual_seed(123))
        assert acc.min().item() >= 0.95, (acc, step)
        # with all audio masked the tokens can only come from the video
        blind = dict(batch, features=None)
        with_video = masked_accuracy(model, batch, 1.0, torch.Generator().manual_seed(1)).mean()
        without = masked_accuracy(model, blind, 1.0, torch.Generator().manual_seed(1)).mean()
        assert with_video > without + 0.3, (with_video, without)
        # the label-free content signal: nats per token the picture saves with everything masked
        after = pretraining_validation()(model.eval(), [batch])
        assert after["picture"] > 1.0 and after["picture"] == pytest.approx(after["blind"] - after["full"])
        assert abs(before["picture"]) < 0.05  # an untrained model: the picture saves nothing yet
    finally:
        torch.set_num_threads(threads)
