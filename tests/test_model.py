"""The VAB model: shapes, modality experts, time ALiBi, model directories, presets, `vab info`."""

from __future__ import annotations

import copy
from pathlib import Path
import struct

import pytest
import torch
from safetensors.torch import save_file

from vab.checkpoint import build_model, load_model, save_model
from vab.config import load_config
from vab.errors import ConfigError, VabError
from vab.model import VAB, Coarse2Fine, alibi_bias, alibi_positions, alibi_slopes
from vab.model.multiway import MultiwayLayer
from vab.weights import tensors_digest
from vab.visual import visual_dim

TINY = [
    "model.width=32", "model.layers=3", "model.expert_layers=2", "model.heads=4", "model.ffn=64",
    "data.duration=2.0", "data.fps=2.0",
]


def make_model(*overrides: str, levels: int = 4, codebook_size: int = 16, dim: int = 6, visual_dim: int = 10,
               frame_rate: float = 50.0, seed: int = 0) -> VAB:
    cfg = load_config("tiny", TINY + [f"model.levels={levels}", *overrides])
    torch.manual_seed(seed)
    codebooks = [torch.randn(codebook_size, dim) * 5 for _ in range(levels)]
    return build_model(cfg, codebooks, visual_dim, frame_rate)  # the class model.type names


def batch(model: VAB, b: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.codebook_size + 1, (b, model.levels, model.num_audio_frames), generator=g)
    features = torch.randn(b, model.num_frames, model.visual_dim, generator=g).half()
    return tokens.short(), features


# ---------------------------------------------------------------- shapes and inputs
def test_forward_and_encoder_shapes():
    model = make_model()
    tokens, features = batch(model)
    b, t, f, w = 3, 100, 4, 32
    assert model(tokens, features).shape == (b, 4, t, 16)
    assert model.encode_audio(tokens).shape == (b, t, w)
    assert model.encode_visual(features).shape == (b, f, w)
    assert model.encode_joint(tokens, features).shape == (b, f + t, w)
    # extra stored codec levels are ignored; too few is a clear error
    extra = torch.cat([tokens, tokens[:, :2]], dim=1)
    assert torch.equal(model(extra, features), model(tokens, features))
    with pytest.raises(VabError, match="levels"):
        model(tokens[:, :2], features)
    with pytest.raises(VabError, match="visual features"):
        model(tokens, features[:, :, :5])


def test_null_visual_embedding():
    model = make_model()
    tokens, features = batch(model)
    uncond = model(tokens, None)
    dropped = model(tokens, features, drop_visual=torch.tensor([True, True, True]))
    torch.testing.assert_close(uncond, dropped)
    mixed = model(tokens, features, drop_visual=torch.tensor([False, True, False]))
    cond = model(tokens, features)
    torch.testing.assert_close(mixed[1], uncond[1])
    torch.testing.assert_close(mixed[0], cond[0])
    assert not torch.allclose(cond[1], uncond[1])


def test_mask_token_embedding_is_learned_per_level():
    model = make_model()
    tokens, features = batch(model)
    tokens[:, 2, 5] = model.mask_id
    out = model(tokens, features)
    out.sum().backward()
    assert model.mask_embed.grad[2].abs().sum() > 0
    assert model.codebooks.grad is None and not model.codebooks.requires_grad


# ---------------------------------------------------------------- modality experts
def _perturbed(model: VAB, which: str) -> VAB:
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if f".{which}." in name:
                p.add_(torch.randn_like(p))
    return other


def test_audio_never_passes_through_visual_experts():
    model = make_model()
    tokens, features = batch(model)
    changed = _perturbed(model, "ffn_visual")
    assert torch.equal(model.encode_audio(tokens), changed.encode_audio(tokens))
    assert not torch.allclose(model.encode_visual(features), changed.encode_visual(features))

    model.encode_audio(tokens).square().sum().backward()
    visual_grads = [p.grad for n, p in model.named_parameters() if ".ffn_visual." in n]
    audio_grads = [p.grad for n, p in model.named_parameters() if ".ffn_audio." in n]
    assert visual_grads and all(g is None or not g.any() for g in visual_grads)
    assert all(g is not None and g.abs().sum() > 0 for g in audio_grads)


def test_video_never_passes_through_audio_experts():
    model = make_model()
    tokens, features = batch(model)
    changed = _perturbed(model, "ffn_audio")
    assert torch.equal(model.encode_visual(features), changed.encode_visual(features))
    assert not torch.allclose(model.encode_audio(tokens), changed.encode_audio(tokens))

    model.encode_visual(features).square().sum().backward()
    audio_grads = [p.grad for n, p in model.named_parameters() if ".ffn_audio." in n]
    assert audio_grads and all(g is None or not g.any() for g in audio_grads)


def test_expert_layer_splits_joint_sequence_at_the_boundary():
    # in the joint sequence attention mixes modalities, but within one layer the FFN of
    # each position is its own modality's expert
    torch.manual_seed(0)
    layer = MultiwayLayer(16, 4, 32, experts=True)
    x = torch.randn(2, 3 + 7, 16)
    out = layer(x, 3, None)
    changed = copy.deepcopy(layer)
    with torch.no_grad():
        for p in changed.ffn_visual.parameters():
            p.add_(1.0)
    out2 = changed(x, 3, None)
    assert torch.equal(out[:, 3:], out2[:, 3:])
    assert not torch.allclose(out[:, :3], out2[:, :3])
    # the audio part of the joint output gets no gradient into the visual expert
    layer(x, 3, None)[:, 3:].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in layer.ffn_visual.parameters())
    assert all(p.grad.abs().sum() > 0 for p in layer.ffn_audio.parameters())


def test_shared_layers_above_experts():
    model = make_model()
    kinds = [layer.experts for layer in model.layers]
    assert kinds == [True, True, False]
    assert not hasattr(model.layers[2], "ffn_audio") and hasattr(model.layers[2], "ffn")


# ---------------------------------------------------------------- ALiBi
def test_alibi_slopes_are_standard():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(16)[0] == pytest.approx(2 ** -0.5)
    twelve = alibi_slopes(12)
    assert len(twelve) == 12 and torch.all(twelve > 0) and twelve[:8].equal(alibi_slopes(8))


def test_time_alibi_gives_zero_distance_at_the_same_instant():
    fps, rate, f, t = 2.0, 50.0, 4, 100
    bias = alibi_bias(alibi_positions(f, t, fps, rate, "time"), alibi_slopes(4))
    # visual frame 1 is shown at 0.75 s; audio frame 37 covers [0.74, 0.76) s, centre 0.75 s
    assert torch.all(bias[:, 1, f + 37] == 0) and torch.all(bias[:, f + 37, 1] == 0)
    # bias is -slope * distance in audio frames between the instants
    times = torch.cat([(torch.arange(f) + 0.5) / fps, (torch.arange(t) + 0.5) / rate]).double()
    expected = -alibi_slopes(4).double()[:, None, None] * ((times[:, None] - times[None]).abs() * rate)[None]
    torch.testing.assert_close(bias, expected.float())
    # index positions put the same pair far apart
    index = alibi_bias(alibi_positions(f, t, fps, rate, "index"), alibi_slopes(4))
    assert torch.all(index[:, 1, f + 37] < 0)


def test_time_alibi_centres_at_one_fps():
    # at 1 fps, 50 Hz the visual frame 0 (0.5 s) lies between audio frames 24 and 25
    bias = alibi_bias(alibi_positions(10, 500, 1.0, 50.0, "time"), torch.ones(1))
    row = bias[0, 0, 10:]
    assert row.argmax() in (24, 25) and row[24] == row[25] == -0.5
    assert bias[0, 3, 10 + 174] == bias[0, 3, 10 + 175] == -0.5  # frame 3 at 3.5 s


def test_model_alibi_modes():
    for mode in ("time", "index"):
        model = make_model(f"model.alibi={mode}")
        bias = model.attention_bias(model.num_frames, model.num_audio_frames)
        zero = bias[0, 1, model.num_frames + 37]
        assert (zero == 0) == (mode == "time")
    model = make_model("model.alibi=none")
    assert model.attention_bias(4, 100) is None
    tokens, features = batch(model)
    assert torch.isfinite(model(tokens, features)).all()
    with pytest.raises(ConfigError, match="alibi"):
        make_model("model.alibi=rope")


# ---------------------------------------------------------------- configuration checks
def test_mean_pooled_visual_input_gives_every_frame_the_clips_mean():
    frames, pooled = make_model(), make_model("model.visual_pool=mean")
    tokens, features = batch(model=frames)
    v = pooled.encode_visual(features)
    torch.testing.assert_close(v, v[:, :1].expand_as(v))  # no frame differs: no timing from the picture
    # the same weights, per frame, see the clip's mean feature at every position
    mean = features.float().mean(dim=1, keepdim=True).expand_as(features).contiguous()
    torch.testing.assert_close(v, frames.encode_visual(mean))
    assert not torch.allclose(frames.encode_visual(features), v)
    with pytest.raises(ConfigError, match="model.visual_pool: 'max'"):
        make_model("model.visual_pool=max")


def test_mlp_visual_projection_is_two_layers_and_checked():
    linear, mlp = make_model(), make_model("model.visual_proj=mlp")
    w = 32
    assert mlp.num_parameters() - linear.num_parameters() == w * w + w  # the second layer
    tokens, features = batch(mlp)
    v = mlp.embed_visual(features)
    assert v.shape == (3, mlp.num_frames, w) and torch.isfinite(v).all()
    x = features.float()
    torch.testing.assert_close(v, mlp.visual_proj[2](torch.nn.functional.gelu(mlp.visual_proj[0](x))) + mlp.modality[0])
    assert mlp(tokens, features).shape == linear(tokens, features).shape
    with pytest.raises(ConfigError, match="model.visual_proj: 'conv'"):
        make_model("model.visual_proj=conv")


def test_split_alibi_heads_tell_a_sound_start_from_its_end(tmp_path):
    """With every head looking both ways in time, a fully masked window is mirror-symmetric: the
    picture played backwards gives the same logits backwards, so the first syllable of a word
    cannot differ from its last.  model.alibi_direction=split (one-sided heads) breaks that,
    keeps every output finite, survives a model directory, and refuses nonsense in one line."""
    def mirrored_gap(model: VAB) -> float:
        _, features = batch(model)
        masked = torch.full((3, model.levels, model.num_audio_frames), model.mask_id, dtype=torch.long)
        with torch.no_grad():
            ahead, back = model.eval()(masked, features), model(masked, features.flip(1))
        assert bool(torch.isfinite(ahead).all())
        return float((ahead.flip(2) - back).abs().max())

    assert mirrored_gap(make_model("model.alibi_direction=both")) < 1e-4
    split = make_model("model.alibi_direction=split")
    assert mirrored_gap(split) > 1e-2
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 generation's attention
        masked = torch.full((1, 4, 100), split.mask_id)
        assert bool(torch.isfinite(split(masked, batch(split)[1][:1], where=masked == split.mask_id)).all())
    bias = split.attention_bias(4, 100)  # tiny: 4 heads; head 0 looks back, head 1 ahead, 2 and 3 both ways
    assert torch.isinf(bias[0]).sum() == torch.isinf(bias[1]).sum() > 0 and not torch.isinf(bias[2:]).any()
    # the first audio frame (row 4, at 0.01 s) looks back at itself alone, the last one (at 1.99 s)
    # ahead at itself alone: every frame of the picture is later / earlier
    assert torch.isfinite(bias[0, 4]).nonzero().flatten().tolist() == [4]
    assert torch.isfinite(bias[1, -1]).nonzero().flatten().tolist() == [103]
    save_model(split, tmp_path / "m")
    assert load_model(tmp_path / "m", kind=VAB).alibi_direction == "split"
    with pytest.raises(ConfigError, match="model.alibi_direction: 'sideways' is not one of both, split"):
        make_model("model.alibi_direction=sideways")
    # without positions (model.alibi=none) there is no bias, and no direction to give it
    assert make_model("model.alibi_direction=split", "model.alibi=none").attention_bias(4, 100) is None


def test_visual_add_gives_each_audio_position_the_frame_on_screen(tmp_path):
    """model.visual_add: audio position t (time t / 50 s) gets the projection of the frame shown
    then (2 fps: frame 0 for t < 25, ...); without features or for dropped examples it adds
    nothing; the option survives a model directory, and models without it have no such weights."""
    plain, added = make_model("model.visual_add=false"), make_model("model.visual_add=true")
    assert plain.visual_add is None and not any("visual_add" in k for k in plain.state_dict())
    tokens, features = batch(added)
    audio = added.embed_audio(tokens)
    with torch.no_grad():
        out = added.add_visual(audio, features)
        changed = features.clone()
        changed[:, 1] += 1.0  # frame 1 is on screen during [0.5, 1.0) s: audio frames 25..49
        moved = (added.add_visual(audio, changed) - out).abs().amax(dim=(0, 2))
    assert bool((moved[25:50] > 0).all()) and float(moved[:25].max()) == 0 and float(moved[50:].max()) == 0
    torch.testing.assert_close(out[:, 60] - audio[:, 60], added.visual_add(features[:, 2].float()))
    assert torch.equal(added.add_visual(audio, None), audio)
    dropped = added.add_visual(audio, features, torch.tensor([True, False, True]))
    assert torch.equal(dropped[0], audio[0]) and torch.equal(dropped[1], out[1])
    # the picture now reaches the audio positions before any attention: forward depends on it
    assert not torch.equal(added(tokens, features), added(tokens, changed))
    assert added.encode_joint(tokens, features).shape == plain.encode_joint(tokens, features).shape
    with pytest.raises(VabError, match="visual features"):
        added(tokens, features[:, :, :5])
    # model.visual_add_dropout leaves the added frames out of that share of training examples only
    always = make_model("model.visual_add=true", "model.visual_add_dropout=1.0")
    with torch.no_grad():
        always.train()
        assert torch.equal(always.add_visual(audio, features), audio)
        always.eval()
        assert not torch.equal(always.add_visual(audio, features), audio)
    with pytest.raises(ConfigError, match="visual_add_dropout"):
        make_model("model.visual_add=true", "model.visual_add_dropout=1.5")
    save_model(added, tmp_path / "m")
    loaded = load_model(tmp_path / "m", kind=VAB)
    assert loaded.visual_add is not None
    assert torch.equal(added(tokens, features), loaded(tokens, features))


def test_bad_configs_raise_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        make_model("model.heads=5")
    with pytest.raises(ConfigError, match="expert_layers"):
        make_model("model.expert_layers=7")
    with pytest.raises(ConfigError, match="given_levels"):
        make_model("model.given_levels=4")
    cfg = load_config("tiny", TINY)
    with pytest.raises(ConfigError, match="codebooks"):
        VAB.from_config(cfg, [torch.randn(16, 6)] * 3, 10, 50.0)
    with pytest.raises(ConfigError, match="model.type"):
        make_model("model.type=gpt")


def test_coarse2fine_predicts_only_fine_levels():
    model = make_model("model.type=coarse2fine", "model.expert_layers=0", "model.given_levels=4", levels=12)
    assert isinstance(model, Coarse2Fine)
    tokens, features = batch(model)
    assert model(tokens, features).shape == (3, 8, 100, 16)
    assert len(model.audio_proj) == 12 and len(model.heads) == 8
    assert model.num_parameters("experts") == 0 and model.num_parameters("expert_layers") == 0
    with pytest.raises(ConfigError, match="given_levels"):
        make_model("model.type=coarse2fine", "model.expert_layers=0", levels=12)


def test_parameter_counts_vab_encodec_match_the_paper():
    cfg = load_config("vab-encodec")
    codebooks = [torch.zeros(1024, 128)] * 4
    with torch.device("meta"):
        model = VAB.from_config(cfg, codebooks, 768, 75.0)
    counts = model.parameter_counts()
    # the paper: 403M / 253M (its EnCodec has 2048-entry codebooks, ours 1024); the README's numbers exactly
    assert counts["total"] == 408_582_144 and counts["expert_layers"] == 251_904_000
    w, ffn, layers, experts = 1024, 4096, 24, 12
    attention = 4 * (w * w + w) + 2 * w  # q, k, v, out + the attention norm
    block = 2 * w + w * ffn + ffn + ffn * w + w  # norm + two linears
    assert counts["expert_layers"] == experts * (attention + 2 * block)
    assert counts["attention"] == layers * attention
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    total, expert = f"{counts['total'] / 1e6:.1f}M", f"{counts['expert_layers'] / 1e6:.1f}M"
    assert (total, expert) == ("408.6M", "251.9M") and f"{total} parameters, {expert} of them" in readme
    parts = ("embeddings", "attention", "experts", "shared_ffn", "heads")
    assert sum(counts[p] for p in parts) == counts["total"]
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_presets_build():
    expected = {"vab-dac": (24, 1024, 12, 16), "vab-dac-test": (20, 768, 12, 8), "c2f-dac": (16, 1280, 0, 20),
                "tiny": (4, 128, 2, 4)}
    for name, (layers, width, experts, heads) in expected.items():
        cfg = load_config(name)
        m = cfg.model
        assert (m.layers, m.width, m.expert_layers, m.heads) == (layers, width, experts, heads)
        with torch.device("meta"):
            model = VAB.from_config(cfg, torch.zeros(m.levels, 8, 4), 16, 50.0)
        assert len(model.heads) == m.levels - m.given_levels
    assert load_config("c2f-dac").model.type == "coarse2fine"


# ---------------------------------------------------------------- model directories
def test_save_and_load_round_trip_bit_exact(tmp_path):
    model = make_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.yaml", "model.safetensors"]
    loaded = load_model(tmp_path / "m", kind=VAB)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert loaded.config == model.config
    assert all(p.requires_grad for p in loaded.parameters())
    tokens, features = batch(model)
    assert torch.equal(model(tokens, features), loaded(tokens, features))
    assert torch.equal(model.encode_audio(tokens), loaded.encode_audio(tokens))


def test_coarse2fine_round_trip(tmp_path):
    model = make_model("model.type=coarse2fine", "model.expert_layers=0", "model.given_levels=4", levels=12)
    loaded = load_model(save_model(model, tmp_path / "c2f"), kind=VAB)
    assert isinstance(loaded, Coarse2Fine) and loaded.given_levels == 4
    tokens, features = batch(model)
    assert torch.equal(model(tokens, features), loaded(tokens, features))


def test_load_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(VabError, match="not a model directory"):
        load_model(tmp_path / "nothing", kind=VAB)
    model = make_model()
    d = save_model(model, tmp_path / "m")
    weights = d / "model.safetensors"
    data = weights.read_bytes()

    (d / "config.yaml").rename(d / "c.bak")
    with pytest.raises(VabError, match="config.yaml: missing"):
        load_model(d, kind=VAB)
    (d / "c.bak").rename(d / "config.yaml")

    weights.unlink()
    with pytest.raises(VabError, match="model.safetensors: missing"):
        load_model(d, kind=VAB)

    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(VabError, match="truncated or corrupted"):
        load_model(d, kind=VAB)

    weights.write_bytes(b"\x00" * 7)
    with pytest.raises(VabError, match="truncated or corrupted"):
        load_model(d, kind=VAB)

    altered = bytearray(data)
    altered[-3] ^= 0xFF  # a byte of tensor data: safetensors does not notice, the digest does
    weights.write_bytes(bytes(altered))
    with pytest.raises(VabError, match="checksum mismatch"):
        load_model(d, kind=VAB)

    header_len = struct.unpack("<Q", data[:8])[0]
    broken = bytearray(data)
    broken[8 + header_len // 2] = ord("}")
    weights.write_bytes(bytes(broken))
    with pytest.raises(VabError, match=str(weights.name)):
        load_model(d, kind=VAB)


def _write(path, tensors):
    save_file(tensors, str(path), metadata={"format": "vab", "visual_dim": "10", "frame_rate": "50.0",
                                           "sha256": tensors_digest(tensors)})


def test_load_reports_missing_unexpected_and_misshaped_tensors(tmp_path):
    model = make_model()
    d = save_model(model, tmp_path / "m")
    weights = d / "model.safetensors"
    tensors = {k: v.clone() for k, v in model.state_dict().items()}

    _write(weights, {k: v for k, v in tensors.items() if k != "heads.1.weight"})
    with pytest.raises(VabError, match=r"missing tensors: heads\.1\.weight"):
        load_model(d, kind=VAB)

    _write(weights, {**tensors, "extra.weight": torch.zeros(2)})
    with pytest.raises(VabError, match=r"unexpected tensors: extra\.weight"):
        load_model(d, kind=VAB)

    _write(weights, {**tensors, "null_visual": torch.zeros(31)})
    with pytest.raises(VabError, match=r"wrong shapes: null_visual \(31,\) \(expected \(32,\)\)"):
        load_model(d, kind=VAB)

    # a config that no longer matches the weights
    save_model(model, d)
    text = (d / "config.yaml").read_text().replace("ffn: 64", "ffn: 48")
    (d / "config.yaml").write_text(text)
    with pytest.raises(VabError, match=r"wrong shapes: .*fc1\.weight"):
        load_model(d, kind=VAB)

    save_file(tensors, str(weights))  # no metadata: not written by save_pretrained
    with pytest.raises(VabError, match="not a VAB weights file"):
        load_model(d, kind=VAB)


def test_save_is_atomic(tmp_path, monkeypatch):
    model = make_model()
    d = save_model(model, tmp_path / "m")
    before = (d / "model.safetensors").read_bytes()
    import vab.checkpoint.saving

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(vab.checkpoint.saving, "save_file", boom)
    with pytest.raises(OSError):
        save_model(make_model(seed=3), d)
    assert (d / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "config.yaml", "model.safetensors"]


# ---------------------------------------------------------------- vab info
def test_vab_info_preset(capsys):
    from vab.cli import main

    assert main(["info", "tiny"]) == 0
    out = capsys.readouterr().out
    cfg = load_config("tiny")
    with torch.device("meta"):
        model = VAB.from_config(cfg, torch.zeros(4, 256, 513), visual_dim(cfg.visual), 50.0)
    assert f"{model.num_parameters():,}" in out
    assert f"{model.num_parameters('expert_layers'):,}" in out
    for word in ("codec:", "spectral", "expert layers", "shared FFN", "attention", "embeddings", "heads"):
        assert word in out


def test_vab_info_model_dir_and_errors(tmp_path, capsys):
    from vab.cli import main

    model = make_model()
    d = save_model(model, tmp_path / "m")
    assert main(["info", str(d), "--params-only"]) == 0
    out = capsys.readouterr().out
    assert f"{model.num_parameters():,}" in out and "codec:" not in out
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["info", "vab-encodec", "model.layers=12", "--params-only"]) == 0
    assert "expert layers (first 12)" in capsys.readouterr().out


@pytest.mark.parametrize("codec", ["encodec", "dac"])
def test_info_geometry_matches_the_real_codecs(codec):
    # `vab info` must not load codec weights, so it keeps a table; check it against the codecs
    from vab.codecs import build_codec
    from vab.commands.info import codec_geometry

    cfg = load_config(f"vab-{codec}", ["codec.pretrained=false"] + TINY)
    c = build_codec(cfg.codec)
    vectors = [c.codebook_vectors(k) for k in range(cfg.model.levels)]
    assert codec_geometry(cfg.codec) == (c.codebook_size, vectors[0].shape[1], c.frame_rate, c.num_codebooks)
    model = VAB.from_config(cfg, vectors, 768, c.frame_rate)
    assert torch.equal(model.codebooks[1], vectors[1].float())
    tokens = torch.randint(0, c.codebook_size, (1, 4, model.num_audio_frames))
    assert model(tokens, torch.randn(1, model.num_frames, 768)).shape == (1, 4, model.num_audio_frames, 1024)


def test_read_out_and_guidance_stay_in_fp32_under_half_precision_autocast():
    """Under bf16 autocast the final norm and the heads run in float32 and guidance combines
    float32 logits: the guided logits stay close to a float32 run (w = 5 multiplies any rounding)."""
    from vab.generation.sampling import guide_logits

    model = make_model().eval()
    torch.manual_seed(1)
    tokens = torch.randint(0, model.codebook_size, (2, model.levels, model.num_audio_frames))
    features = torch.randn(2, model.num_frames, model.visual_dim)
    drop = torch.tensor([False, True])
    with torch.inference_mode():
        reference = model(tokens, features, drop_visual=drop)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(tokens, features, drop_visual=drop)
    assert half.dtype == torch.float32
    guided, guided_ref = guide_logits(half[:1], half[1:], 5.0), guide_logits(reference[:1], reference[1:], 5.0)
    assert guided.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: the Transformer's rounding remains, the read-out adds none
    assert (guided - guided_ref).abs().max() < 0.25 * guided_ref.abs().max()


def test_blocked_attention_is_attention_and_ignores_its_batch():
    """The CPU's half-precision attention (explicit products over query blocks, one example at
    a time) computes what SDPA computes, with a shared or a per-example mask, and an example's
    result is the same alone and in a batch; the model takes it only where it pays."""
    import torch.nn.functional as F

    from vab.model.multiway import ATTENTION_BLOCK, blocked_attention, blocked_attention_pays

    g = torch.Generator().manual_seed(0)
    length = 2 * ATTENTION_BLOCK + 17  # a last block shorter than the others
    q, k, v = (torch.randn(3, 4, length, 16, generator=g, dtype=torch.float64) for _ in range(3))
    for mask in (None, torch.randn(1, 4, length, length, generator=g, dtype=torch.float64),
                 torch.randn(3, 4, length, length, generator=g, dtype=torch.float64)):
        got = blocked_attention(q, k, v, mask)
        torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        per_example = mask is not None and len(mask) > 1
        alone = blocked_attention(q[2:], k[2:], v[2:], mask[2:] if per_example else mask)
        assert torch.equal(alone, got[2:])
    half = q.to(torch.bfloat16)
    assert not blocked_attention_pays(q)  # float64 / float32: SDPA
    with torch.enable_grad():
        assert not blocked_attention_pays(half.clone().requires_grad_())  # training keeps SDPA's backward
