"""The field table's metrics and extractors (issue 26): Inception Score and softmax KL against
direct re-implementations of av-benchmark's formulas on fixed arrays, PaSST's front end and
network against direct re-implementations, and every extractor with random weights saved to
a file and loaded back (shapes, batching)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vab.errors import VabError
from vab.evaluation.metrics import frechet_audio_distance, inception_score, log_softmax, logit_kl
from vab.evaluation.scorers import build_classifier, build_scorer
from vab.evaluation.scorers.panns import Cnn14, PANNsEmbedder
from vab.evaluation.scorers.passt import CLIP_SAMPLES, PaSSTEmbedder, PaSSTMel, PaSSTNet

TINY_PASST = {"dim": 16, "depth": 2, "heads": 2, "classes": 7}
TINY_CNN14 = {"widths": (4, 4, 8, 8, 8, 16), "classes": 5}


def fixed_logits(n: int = 40, c: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, c))


# ---------------------------------------------------------------------- IS and KL
def reference_is(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """av-benchmark's compute_isc, written out with torch."""
    features = torch.from_numpy(logits)[np.random.RandomState(seed).permutation(len(logits))].double()
    p, log_p = features.softmax(dim=1), features.log_softmax(dim=1)
    n, scores = len(features), []
    for i in range(splits):
        pc, lpc = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        q = pc.mean(dim=0, keepdim=True)
        scores.append((pc * (lpc - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_av_benchmark_formula():
    for n in (40, 37, 10):  # uneven splits too
        logits = fixed_logits(n)
        mean, std = inception_score(logits)
        want_mean, want_std = reference_is(logits)
        assert mean == pytest.approx(want_mean, rel=1e-5) and std == pytest.approx(want_std, rel=1e-5)
    # confident and varied labels score high (up to the class count); one repeated label scores 1
    sharp = np.eye(6)[np.arange(60) % 6] * 50.0
    assert inception_score(sharp, seed=None)[0] == pytest.approx(6.0, rel=1e-9)  # unshuffled: 10 of each per split
    assert inception_score(np.tile(sharp[:1], (60, 1)))[0] == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(ValueError):
        inception_score(fixed_logits(9))  # fewer clips than splits


def test_softmax_kl_matches_av_benchmark_direction_and_temperature():
    real, generated = fixed_logits(12, seed=1), fixed_logits(12, seed=2)
    # av-benchmark: F.kl_div(log_softmax(pred), log_softmax(gt), sum, log_target) / N = KL(gt || pred)
    want = F.kl_div(F.log_softmax(torch.from_numpy(generated), 1), F.log_softmax(torch.from_numpy(real), 1),
                    reduction="sum", log_target=True).item() / 12
    assert logit_kl(real, generated) == pytest.approx(want, rel=1e-5)
    # the direction matters, and the softmax has temperature 1 (scaled logits give another value)
    assert abs(logit_kl(generated, real) - want) > 1e-3
    assert abs(logit_kl(real * 2, generated * 2) - want) > 1e-3
    # stored probabilities give the same value through their logs (how the table computes it)
    p, q = np.exp(log_softmax(real)), np.exp(log_softmax(generated))
    assert logit_kl(np.log(p), np.log(q)) == pytest.approx(want, rel=1e-9)
    assert logit_kl(real, real) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_on_known_gaussians():
    # N(0, I) against N(m, s^2 I) in d dimensions: |m|^2 + d (1 - s)^2
    rng = np.random.default_rng(0)
    d, n = 4, 200_000
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) * 2.0 + 1.5
    assert frechet_audio_distance(a, b) == pytest.approx(d * 1.5**2 + d * (1 - 2.0) ** 2, rel=0.02)


# ---------------------------------------------------------------------- PaSST
def reference_mel(wav: np.ndarray) -> np.ndarray:
    """hear21passt's AugmentMelSTFT (eval mode), written out with numpy: pre-emphasis, centred
    reflect-padded frames, an 800-point symmetric Hann window centred in 1024 points, power,
    Kaldi mel banks (0 - 15 kHz), (log(mel + 1e-5) + 4.5) / 5."""
    import torchaudio

    x = wav[1:] - 0.97 * wav[:-1]
    x = np.pad(x, (512, 512), mode="reflect")
    window = np.zeros(1024)
    window[112:912] = np.hanning(800)
    frames = np.stack([x[i * 320:i * 320 + 1024] * window for i in range((len(x) - 1024) // 320 + 1)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, 513]
    banks, _ = torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000.0, 0.0, 15000.0, 100.0, -500.0, 1.0)
    banks = np.pad(banks.double().numpy(), ((0, 0), (0, 1)))
    return (np.log(banks @ power.T + 1e-5) + 4.5) / 5


def reference_passt(net: PaSSTNet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The published forward, with attention written out (softmax(q k^T / sqrt(d)) v)."""
    x = net.patch_embed.proj(spec)
    x = x + net.time_new_pos_embed[..., : x.shape[-1]] + net.freq_new_pos_embed
    x = x.flatten(2).transpose(1, 2)
    b, d = x.shape[0], x.shape[-1]
    x = torch.cat([net.cls_token.expand(b, -1, -1) + net.new_pos_embed[:, :1],
                   net.dist_token.expand(b, -1, -1) + net.new_pos_embed[:, 1:], x], dim=1)
    for block in net.blocks:
        h = block.norm1(x)
        heads = block.attn.heads
        q, k, v = block.attn.qkv(h).reshape(b, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(dim=-1)
        x = x + block.attn.proj((att @ v).transpose(1, 2).reshape(b, -1, d))
        x = x + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))
    x = net.norm(x)
    embedding = (x[:, 0] + x[:, 1]) / 2
    return net.head(embedding), embedding


def test_passt_front_end_matches_a_direct_reimplementation():
    wav = np.random.default_rng(0).normal(scale=0.1, size=32000).astype(np.float32)
    got = PaSSTMel()(torch.from_numpy(wav)[None])[0].double().numpy()
    want = reference_mel(wav.astype(np.float64))
    assert got.shape == want.shape == (128, 100)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_passt_network_matches_the_published_forward_and_batches():
    torch.manual_seed(0)
    net = PaSSTNet(**TINY_PASST).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    spec = torch.randn(2, 1, 128, 1000)
    with torch.no_grad():
        logits, embedding = net(spec)
        want_logits, want_embedding = reference_passt(net, spec)
        one_logits, one_embedding = net(spec[1:])
    assert logits.shape == (2, 7) and embedding.shape == (2, 16)
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(embedding, want_embedding, rtol=1e-5, atol=1e-5)
    # a clip's result does not depend on the other clips of its batch
    torch.testing.assert_close(one_logits[0], logits[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_embedding[0], embedding[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="time patches"):
        net(torch.randn(1, 1, 128, 1200))  # longer than the positions the network has


@pytest.mark.parametrize("layout", ["release", "wrapper", "safetensors"])
def test_passt_loads_saved_random_weights(tmp_path, layout):
    torch.manual_seed(1)
    net = PaSSTNet(**TINY_PASST).eval()
    state = net.state_dict()
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "passt.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "passt.pt"
        if layout == "wrapper":  # hear21passt's PasstBasicWrapper state dict
            state = {"device_proxy": torch.zeros(1), **{f"net.{k}": v for k, v in state.items()}}
        torch.save(state, path)
    loaded = PaSSTEmbedder.from_file(path, **TINY_PASST)
    wav = torch.from_numpy(np.random.default_rng(2).normal(scale=0.1, size=3 * 32000).astype(np.float32))
    embedding, probs = loaded.embed_and_label_probs(wav)
    assert embedding.shape == (1, 16) and probs.shape == (1, 7) and probs.dtype == torch.float64
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(embedding, PaSSTEmbedder(net).embed(wav))
    torch.testing.assert_close(loaded.label_probs(wav), probs)
    # av-benchmark: every clip is padded with zeros (or cut) to 10 s
    padded = torch.nn.functional.pad(wav, (0, CLIP_SAMPLES - len(wav)))
    torch.testing.assert_close(loaded.embed(padded), embedding)
    longer = torch.cat([padded, torch.ones(32000)])
    torch.testing.assert_close(loaded.embed(longer), embedding)
    batch_logits, _ = loaded.logits_and_embedding(torch.stack([padded, padded.flip(0)]))
    one_logits, _ = loaded.logits_and_embedding(padded[None])
    torch.testing.assert_close(batch_logits[:1], one_logits, rtol=1e-5, atol=1e-5)


def test_passt_specs_and_bad_files(tmp_path):
    with torch.device("meta"):  # the published layout, no weights
        state = {k: tuple(v.shape) for k, v in PaSSTNet().state_dict().items()}
    assert state["patch_embed.proj.weight"] == (768, 1, 16, 16)
    assert state["freq_new_pos_embed"] == (1, 768, 12, 1) and state["time_new_pos_embed"] == (1, 768, 1, 99)
    assert state["head.1.weight"] == (527, 768) and state["head_dist.weight"] == (527, 768)
    assert sum(np.prod(s) for s in state.values()) > 85_000_000  # PaSST-S: about 86M parameters
    with pytest.raises(VabError, match="no such PaSST weight file.*passt-s-f128-p16-s10-ap.476-swa.pt"):
        build_scorer(f"passt:{tmp_path / 'absent.pt'}")
    other = tmp_path / "other.pt"
    torch.save(Cnn14(**TINY_CNN14).state_dict(), other)
    with pytest.raises(VabError, match="not PaSST weights"):
        build_classifier(f"passt:{other}")


# ---------------------------------------------------------------------- PANNs at 16 kHz
def test_panns_16k_checkpoint_is_recognised_from_its_stft_kernel(tmp_path):
    torch.manual_seed(0)
    net = Cnn14(**TINY_CNN14, sample_rate=16000).eval()
    assert net.spectrogram_extractor.stft.conv_real.weight.shape == (257, 1, 512)
    assert net.logmel_extractor.melW.shape == (257, 64)
    path = tmp_path / "Cnn14_16k.pth"
    torch.save({"model": net.state_dict()}, path)
    loaded = PANNsEmbedder.from_file(path, **TINY_CNN14)
    assert loaded.sample_rate == 16000
    wav = torch.from_numpy(np.random.default_rng(0).normal(scale=0.1, size=24000).astype(np.float32))
    embedding, probs = loaded.embed_and_label_probs(wav)
    assert embedding.shape == (1, 16) and probs.shape == (1, 5) and probs.dtype == torch.float64
    torch.testing.assert_close(embedding, PANNsEmbedder(net).embed(wav))
    # audio at another rate is resampled to the network's own
    at_32k = loaded.embed_at(np.zeros(32000, dtype=np.float32), 32000)
    assert at_32k.shape == (1, 16) and math.isfinite(float(at_32k.sum()))


def test_download_spec_fetches_the_published_file_once_into_the_torch_hub_cache(tmp_path, monkeypatch):
    from vab.evaluation.scorers import weights

    source = tmp_path / "release" / "Cnn14_16k_mAP=0.438.pth"
    source.parent.mkdir()
    torch.save({"model": Cnn14(**TINY_CNN14, sample_rate=16000).state_dict()}, source)
    from urllib.parse import quote

    monkeypatch.setitem(weights.URLS, "panns", "file://" + quote(str(source)))  # '=' as %3D, as on Zenodo
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    got = weights.weights_file("download", "panns")
    assert got == hub / "checkpoints" / "Cnn14_16k_mAP=0.438.pth" and got.read_bytes() == source.read_bytes()
    source.unlink()  # a second run reads the cache, never the network
    assert weights.weights_file("download", "panns") == got
    assert PANNsEmbedder.from_file(got, **TINY_CNN14).sample_rate == 16000
    assert weights.weights_file(tmp_path / "mine.pth", "panns") == tmp_path / "mine.pth"  # a path is a path
    # no network (here: a missing source): one line saying what to do
    monkeypatch.setitem(weights.URLS, "vggish", (tmp_path / "nowhere" / "vggish-10086976.pth").as_uri())
    with pytest.raises(VabError, match=r"vggish download: .*could not be fetched.*give its path"):
        build_scorer("vggish:download")
