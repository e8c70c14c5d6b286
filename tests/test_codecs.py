"""Audio codecs: library wrappers give the libraries' own codes, weights load from
local files, the offline spectral codec round-trips audio (log-spectral distance)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from vab.codecs import build_codec
from vab.config import CodecConfig
from vab.errors import ConfigError, VabError


def codec_cfg(**kwargs):
    return OmegaConf.structured(CodecConfig(**kwargs))


def noise(seconds: float, sample_rate: int, seed: int = 0, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, int(seconds * sample_rate), generator=g)


# ---------------------------------------------------------------------------- dispatch


def test_unknown_codec_lists_the_names():
    with pytest.raises(ConfigError, match="encodec, dac, spectral"):
        build_codec(codec_cfg(name="mp3"))


def test_importing_codecs_does_not_import_the_libraries():
    code = "import sys, vab.codecs; print('encodec' in sys.modules, 'dac' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- encodec


@pytest.fixture(scope="module")
def encodec_lib():
    """A library EnCodec with random weights and random (non-zero) codebooks, called directly."""
    from encodec import EncodecModel

    torch.manual_seed(1)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    for layer in model.quantizer.vq.layers:
        layer._codebook.embed.copy_(0.34 + 0.05 * torch.randn_like(layer._codebook.embed))
    model.set_target_bandwidth(3.0)
    return model.eval()


@pytest.fixture(scope="module")
def encodec_files(encodec_lib, tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("encodec")
    torch.save(encodec_lib.state_dict(), folder / "random.th")
    save_file({k: v.contiguous() for k, v in encodec_lib.state_dict().items()}, str(folder / "random.safetensors"))
    return folder


@pytest.mark.parametrize("name", ["random.th", "random.safetensors"])
def test_encodec_file_weights_give_library_codes(encodec_lib, encodec_files, name):
    codec = build_codec(codec_cfg(name="encodec", path=str(encodec_files / name)))
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (24000, 75.0, 4, 1024)
    wav = noise(0.4, 24000)
    codes = codec.encode(wav)
    with torch.no_grad():
        expected = encodec_lib.encode(wav)[0][0]
    assert codes.dtype == torch.long and codes.shape == (2, 4, 30)
    assert torch.equal(codes, expected)
    assert len(codes.unique()) > 1  # not the degenerate all-zero-codebook case
    with torch.no_grad():
        expected_wav = encodec_lib.decode([(codes[:, :2], None)])
    decoded = codec.decode(codes[:, :2])  # leading levels only
    assert decoded.shape == (2, 1, 30 * 320)
    assert torch.equal(decoded, expected_wav[..., : 30 * 320])
    assert codec.codebook_vectors(3).shape == (1024, 128)
    assert torch.equal(codec.codebook_vectors(0), encodec_lib.quantizer.vq.layers[0]._codebook.embed)


def test_encodec_repository_folder(encodec_lib, encodec_files, tmp_path, monkeypatch):
    import vab.codecs.encodec as module

    folder = tmp_path / "repo"
    folder.mkdir()
    with pytest.raises(VabError, match=r"codec.path=.*no encodec_24khz-d7cc33bc.th"):
        build_codec(codec_cfg(name="encodec", path=str(folder)))
    (folder / module.CHECKPOINT).write_bytes((encodec_files / "random.th").read_bytes())
    # random weights cannot carry the real file's sha256
    with pytest.raises(VabError, match=r"codec.path=.*not a valid EnCodec checkpoint: sha256"):
        build_codec(codec_cfg(name="encodec", path=str(folder)))
    monkeypatch.setattr(module, "check_sha256_prefix", lambda *args: None)
    codec = build_codec(codec_cfg(name="encodec", path=str(folder)))
    wav = noise(0.2, 24000, seed=3, batch=1)
    with torch.no_grad():
        assert torch.equal(codec.encode(wav), encodec_lib.encode(wav)[0][0])


def test_encodec_random_init_is_seeded_and_informative():
    a = build_codec(codec_cfg(name="encodec", pretrained=False, bandwidth=6.0))
    assert a.num_codebooks == 8
    wav = noise(0.4, 24000, seed=5, batch=1)
    codes = a.encode(wav)
    assert [len(codes[0, k].unique()) > 5 for k in range(8)] == [True] * 8
    # the library model with the wrapper's weights, called directly
    from encodec import EncodecModel

    lib = EncodecModel.encodec_model_24khz(pretrained=False)
    lib.load_state_dict(a.model.state_dict())
    lib.set_target_bandwidth(6.0)
    with torch.no_grad():
        assert torch.equal(codes, lib.encode(wav)[0][0])
    b = build_codec(codec_cfg(name="encodec", pretrained=False, bandwidth=6.0))
    assert torch.equal(b.encode(wav), codes)  # same tokens in every process


def test_encodec_errors(encodec_files, tmp_path, monkeypatch):
    with pytest.raises(VabError, match=r"^codec.path=.*nope.th: file not found$"):
        build_codec(codec_cfg(name="encodec", path=str(tmp_path / "nope.th")))
    (tmp_path / "bad.th").write_bytes(b"not a checkpoint")
    with pytest.raises(VabError, match=r"codec.path=.*bad.th: cannot read weights"):
        build_codec(codec_cfg(name="encodec", path=str(tmp_path / "bad.th")))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(VabError, match=r"codec.path=.*bad.safetensors: cannot read weights, the file is truncated"):
        build_codec(codec_cfg(name="encodec", path=str(tmp_path / "bad.safetensors")))
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.th")
    with pytest.raises(VabError, match=r"not a valid EnCodec checkpoint: missing tensors"):
        build_codec(codec_cfg(name="encodec", path=str(tmp_path / "other.th")))
    with pytest.raises(ConfigError, match="codec.bandwidth=5.0"):
        build_codec(codec_cfg(name="encodec", bandwidth=5.0, pretrained=False))

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(VabError) as info:
        build_codec(codec_cfg(name="encodec", pretrained=True))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not fetch EnCodec weights (OSError")
    assert message.endswith("set codec.path=/path/to/encodec_24khz-d7cc33bc.th")


# ---------------------------------------------------------------------------- dac

SMALL_DAC = dict(encoder_dim=8, decoder_dim=32)  # 16 kHz rates and codebooks, few channels


@pytest.fixture(scope="module")
def dac_small_pth(tmp_path_factory):
    """A small DAC saved by the library in its own .pth format (state_dict + metadata)."""
    import dac

    from vab.codecs.dac import DAC_16KHZ

    torch.manual_seed(2)
    model = dac.DAC(**{**DAC_16KHZ, **SMALL_DAC}).eval()
    path = tmp_path_factory.mktemp("dac") / "weights_small.pth"
    model.save(str(path), package=False)
    return model, path


def test_dac_pth_gives_library_codes(dac_small_pth):
    lib, path = dac_small_pth
    codec = build_codec(codec_cfg(name="dac", path=str(path)))
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (16000, 50.0, 12, 1024)
    wav = noise(0.6, 16000, seed=7)
    codes = codec.encode(wav)
    with torch.no_grad():
        expected = lib.encode(lib.preprocess(wav, 16000))[1]
        expected_wav = lib.decode(lib.quantizer.from_codes(codes[:, :4])[0])
    assert codes.dtype == torch.long and codes.shape == (2, 12, 30)
    assert torch.equal(codes, expected)
    decoded = codec.decode(codes[:, :4])
    assert decoded.shape == (2, 1, 30 * 320)
    n = min(decoded.shape[-1], expected_wav.shape[-1])
    assert torch.equal(decoded[..., :n], expected_wav[..., :n])
    assert torch.equal(codec.codebook_vectors(11), lib.quantizer.quantizers[11].codebook.weight)
    codec.train()  # a parent module's .train() must not switch on quantizer dropout
    assert not codec.model.training
    assert torch.equal(codec.encode(wav), codes)


def test_dac_random_init_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    codec = build_codec(codec_cfg(name="dac", pretrained=False))
    assert codec.codebook_vectors(0).shape == (1024, 8)
    path = tmp_path / "dac16.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(path))
    loaded = build_codec(codec_cfg(name="dac", path=str(path)))
    wav = noise(0.4, 16000, seed=9, batch=1)
    lib = codec.model  # the library's DAC object, called through its own API
    with torch.no_grad():
        expected = lib.encode(lib.preprocess(wav, 16000))[1]
    codes = loaded.encode(wav)
    assert codes.shape == (1, 12, 20)
    assert torch.equal(codes, expected)
    with torch.inference_mode():
        assert loaded.decode(codes).shape == (1, 1, 20 * 320)


def test_dac_errors(dac_small_pth, tmp_path, monkeypatch):
    import dac

    with pytest.raises(VabError, match=r"^codec.path=.*missing.pth: file not found$"):
        build_codec(codec_cfg(name="dac", path=str(tmp_path / "missing.pth")))
    (tmp_path / "corrupt.pth").write_bytes(dac_small_pth[1].read_bytes()[:1000])
    with pytest.raises(VabError, match=r"codec.path=.*corrupt.pth: cannot read weights"):
        build_codec(codec_cfg(name="dac", path=str(tmp_path / "corrupt.pth")))
    torch.save({"state_dict": {}, "metadata": _NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(VabError, match=r"codec.path=.*pickled.pth: holds objects other than tensors.*re-save its state dict as .safetensors"):
        build_codec(codec_cfg(name="dac", path=str(tmp_path / "pickled.pth")))
    lib = dac_small_pth[0]
    torch.save({"state_dict": lib.state_dict(), "metadata": {"kwargs": {**SMALL_DAC, "n_codebooks": 4}}},
               tmp_path / "mismatch.pth")
    with pytest.raises(VabError, match=r"not a valid DAC checkpoint: .*unexpected tensors"):
        build_codec(codec_cfg(name="dac", path=str(tmp_path / "mismatch.pth")))

    def offline(*args, **kwargs):
        raise ValueError("Could not download model. Received response code 404")

    monkeypatch.setattr(dac.utils, "download", offline)
    with pytest.raises(VabError) as info:
        build_codec(codec_cfg(name="dac", pretrained=True))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not fetch DAC weights (ValueError")
    assert message.endswith("set codec.path=/path/to/weights_16khz.pth")


class _NotATensor:
    """Anything `torch.load(weights_only=True)` refuses to unpickle."""


# ---------------------------------------------------------------------------- spectral

SR = 16000


def tone_mixture(seconds: float, gain: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    wave = sum(a * torch.sin(2 * math.pi * f * t) for f, a in [(440, 0.3), (660, 0.2), (1320, 0.1)])
    return gain * wave


def noise_burst(seed: int, low: float = 1000.0, high: float = 3000.0) -> torch.Tensor:
    """0.4 s silence, 0.4 s band-limited noise, 0.4 s silence."""
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.fft.rfft(torch.randn(int(0.4 * SR), generator=g))
    freqs = torch.fft.rfftfreq(int(0.4 * SR), 1 / SR)
    band = torch.fft.irfft(spectrum * ((freqs >= low) & (freqs <= high)), n=int(0.4 * SR))
    band = 0.2 * band / band.abs().max()
    silence = torch.zeros(int(0.4 * SR))
    return torch.cat([silence, band, silence])


def chirp(seconds: float, f0: float, f1: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))


def training_audio() -> list[torch.Tensor]:
    clips = [tone_mixture(1.0, gain) for gain in (0.5, 1.0, 2.0)]
    clips += [noise_burst(seed, low, high) for seed, (low, high) in enumerate([(1000, 3000), (200, 800), (3000, 6000)])]
    clips += [chirp(1.5, f0, f1) for f0, f1 in [(100, 2000), (3000, 500), (800, 7000)]]
    return clips


def spectral_cfg(**kwargs):
    return codec_cfg(name="spectral", levels=4, codebook_size=32, **kwargs)


@pytest.fixture(scope="module")
def spectral():
    codec = build_codec(spectral_cfg())
    assert not codec.is_fitted
    return codec.fit(training_audio())


def log_spectral_distance(codec, reference: torch.Tensor, decoded: torch.Tensor) -> float:
    """Mean over frames of the RMS (over frequency bins) dB difference; both floored at -80 dB."""
    decoded = decoded[..., : reference.shape[-1]]
    difference = codec.log_magnitude(reference) - codec.log_magnitude(decoded)
    return difference.pow(2).mean(-1).sqrt().mean().item()


def round_trip_lsd(codec, wav: torch.Tensor, levels: int | None = None) -> tuple[float, float]:
    """(LSD of encode->decode, LSD of decoding random codes of the same shape)."""
    wav = wav.view(1, 1, -1)
    codes = codec.encode(wav)[:, :levels]
    g = torch.Generator().manual_seed(0)
    random_codes = torch.randint(0, codec.codebook_size, codes.shape, generator=g)
    return (
        log_spectral_distance(codec, wav, codec.decode(codes)),
        log_spectral_distance(codec, wav, codec.decode(random_codes)),
    )


@pytest.mark.parametrize("signal", ["tones", "noise burst"])
def test_spectral_round_trip(spectral, signal):
    wav = tone_mixture(1.0) if signal == "tones" else noise_burst(seed=11)
    lsd, random_lsd = round_trip_lsd(spectral, wav)
    print(f"\nspectral codec {signal}: LSD {lsd:.2f} dB (random codes {random_lsd:.2f} dB)")
    assert lsd < (3.0 if signal == "tones" else 6.0)
    assert random_lsd > 2 * lsd + 5.0


def test_spectral_more_levels_are_better(spectral):
    wav = torch.cat([chirp(0.8, 300, 5000), noise_burst(seed=12, low=500, high=4000)]).view(1, 1, -1)
    codes = spectral.encode(wav)
    distances = [log_spectral_distance(spectral, wav, spectral.decode(codes[:, :k])) for k in (1, 2, 4)]
    print("\nspectral codec chirp+burst, 1/2/4 levels: " + " / ".join(f"{d:.2f}" for d in distances) + " dB")
    assert distances[0] > distances[1] > distances[2]
    # the quantisation error of the dB frames shrinks level by level
    frames = spectral.log_magnitude(wav)
    approx = torch.zeros_like(frames)
    errors = []
    for level in range(4):
        approx = approx + spectral.centroids[level][codes[:, level]]
        errors.append((frames - approx).pow(2).mean().item())
    assert errors == sorted(errors, reverse=True)


def test_spectral_shapes_and_determinism(spectral):
    wav = torch.stack([tone_mixture(0.5), noise_burst(3)[:8000]]).unsqueeze(1)
    wav = wav[..., :7900]  # not a multiple of the hop: padded up to whole frames
    codes = spectral.encode(wav)
    assert codes.shape == (2, 4, 25) and codes.dtype == torch.long
    with torch.inference_mode():
        decoded = spectral.decode(codes[:, :2])
    assert decoded.shape == (2, 1, 25 * 320)
    assert torch.equal(spectral.decode(codes[:, :2]), decoded)
    assert spectral.codebook_vectors(3).shape == (32, 513)
    assert (spectral.sample_rate, spectral.frame_rate, spectral.hop_length) == (16000, 50.0, 320)


def test_spectral_save_load_bit_exact(spectral, tmp_path):
    spectral.save(tmp_path)
    loaded = build_codec(spectral_cfg(), directory=tmp_path)
    assert loaded.is_fitted
    assert torch.equal(loaded.centroids, spectral.centroids)
    wav = noise_burst(seed=21).view(1, 1, -1)
    assert torch.equal(loaded.encode(wav), spectral.encode(wav))
    assert torch.equal(loaded.decode(spectral.encode(wav)), spectral.decode(spectral.encode(wav)))
    by_path = build_codec(spectral_cfg(path=str(tmp_path / "codec.safetensors")))
    assert torch.equal(by_path.centroids, spectral.centroids)
    # the directory's fitted codec wins over codec.path
    assert build_codec(spectral_cfg(path=str(tmp_path / "nope")), directory=tmp_path).is_fitted
    with pytest.raises(VabError, match=r"codec.safetensors: fitted with other codec settings: levels 4 \(config: 2\)"):
        build_codec(codec_cfg(name="spectral", levels=2, codebook_size=32), directory=tmp_path)
    with pytest.raises(VabError, match=r"^codec.path=.*nope.safetensors: file not found$"):
        build_codec(spectral_cfg(path=str(tmp_path / "nope.safetensors")))
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(VabError, match=r"codec.path=.*junk.safetensors: cannot read weights, the file is truncated"):
        build_codec(spectral_cfg(path=str(tmp_path / "junk.safetensors")))


def test_spectral_errors(spectral):
    unfitted = build_codec(spectral_cfg())
    assert unfitted.state_files() == {}
    with pytest.raises(VabError, match="not fitted: fit it"):
        unfitted.encode(torch.zeros(1, 1, 1600))
    with pytest.raises(VabError, match="too few to fit 32 centroids"):
        unfitted.fit([torch.zeros(1600)])
    with pytest.raises(VabError, match=r"expected a mono waveform \[B, 1, N\].*\[1600\]"):
        spectral.encode(torch.zeros(1600))
    with pytest.raises(VabError, match=r"expected a mono waveform"):
        spectral.encode(torch.zeros(1, 2, 1600))
    with pytest.raises(VabError, match=r"need 1..4 levels"):
        spectral.decode(torch.zeros(1, 5, 10, dtype=torch.long))
    with pytest.raises(VabError, match=r"code values must lie in \[0, 32\)"):
        spectral.decode(torch.full((1, 2, 10), 32))
    with pytest.raises(ConfigError, match="codec.frame_rate=48"):
        build_codec(codec_cfg(name="spectral", frame_rate=48.0))
