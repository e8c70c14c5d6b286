"""Number formats: what `auto` picks (processor capability mocked), int8 generation, bf16
training on the CPU, and the errors a user sees for a bad `--precision`."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.mediagen import make_video
from tests.test_generate import FAST, FAST_ARGS, SMALL, make_model_dir
from vab.checkpoint import save_model
from vab import precision
from vab.cli import main
from vab.errors import ConfigError, VabError
from vab.generation.generator import Generator, Request
from vab.model.quantize import is_quantized, prepare_for_inference, quantized_linears
from vab.training.engine import resolve_precision

TRAIN_CHOICES = ("auto", "no", "bf16", "fp16")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the processor has (True) or lacks (False) native bf16 matrix units."""

    def set_to(native: bool) -> None:
        caps = {"avx2": True, "avx512_f": True, "avx512_bf16": native, "amx_bf16": False}
        monkeypatch.setattr(precision, "cpu_capabilities", lambda: caps)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return set_to


# ---------------------------------------------------------------------- what auto picks
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(bf16_cpu):
    bf16_cpu(True)
    assert precision.resolve_generation_precision("auto", "cpu") == "bf16"
    assert resolve_precision("auto", parameters=400_000_000) == "bf16"
    assert resolve_precision("auto", parameters=1_400_000) == "no"  # measured slower in bf16 (tiny)
    assert resolve_precision("bf16", parameters=1_400_000) == "bf16"
    bf16_cpu(False)
    assert precision.resolve_generation_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", parameters=400_000_000) == "no"
    # explicit choices are kept whatever the processor
    for value in ("fp32", "bf16", "int8"):
        assert precision.resolve_generation_precision(value, "cpu") == value


@pytest.fixture
def gpu(monkeypatch):
    """Pretend the machine trains on a CUDA GPU of a compute capability, or on an Apple GPU of
    a macOS version; its CPU has native bf16 (as an Apple M2's does), which must not matter."""

    def set_to(kind: str, capability: tuple[int, int] = (8, 0), macos14: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: kind == "cuda")
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: kind == "mps")
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14)
        monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"bf16": True, "neon": True})

    return set_to


@pytest.mark.parametrize("kind, capability, macos14, training, generation", [
    ("cuda", (8, 0), True, "bf16", "bf16"),  # A100
    ("cuda", (9, 0), True, "bf16", "bf16"),  # H100
    ("cuda", (7, 0), True, "fp16", "fp16"),  # V100: bf16 emulated, fp16 tensor cores
    ("cuda", (7, 5), True, "fp16", "fp16"),  # T4
    ("mps", (0, 0), True, "bf16", "bf16"),  # Apple GPU, macOS 14+
    ("mps", (0, 0), False, "no", "fp16"),  # Apple GPU, macOS 13: no bf16, no fp16 GradScaler
])
def test_auto_decides_by_the_device_that_runs(gpu, kind, capability, macos14, training, generation):
    """Was: bf16 on every CUDA GPU, and on an Apple GPU from the CPU's bf16 flag."""
    gpu(kind, capability, macos14)
    assert resolve_precision("auto", parameters=400_000_000) == training
    assert resolve_precision("auto", parameters=1_000) == training  # a GPU's choice does not hang on the size
    assert precision.resolve_generation_precision("auto", kind) == generation
    # told to train on the CPU (Accelerate's cpu=True), the CPU's own flags decide
    assert resolve_precision("auto", parameters=400_000_000, device="cpu") == "bf16"
    assert resolve_precision("auto", parameters=1_000, device="cpu") == "no"


def test_capability_flags_of_each_architecture():
    assert precision.cpu_has_native_bf16({"amx_bf16": True})
    assert precision.cpu_has_native_bf16({"bf16": True, "neon": True})  # ARM BFMMLA (Apple M2+, Graviton 3)
    assert not precision.cpu_has_native_bf16({"avx512_f": True, "avx512_vnni": True, "avx512_bf16": False})
    assert not precision.cpu_has_native_bf16({})


def test_generator_uses_the_resolved_format(model_dir, bf16_cpu):
    bf16_cpu(True)
    assert Generator.from_pretrained(model_dir, device="cpu").precision == "bf16"
    bf16_cpu(False)
    generator = Generator.from_pretrained(model_dir, device="cpu")
    assert (generator.precision, generator.dtype) == ("fp32", None)


# ---------------------------------------------------------------------- int8
def test_int8_quantizes_the_transformer_linears_only(model_dir):
    generator = Generator.from_pretrained(model_dir, device="cpu", precision="int8")
    model = generator.model
    names = quantized_linears(model)
    layers = model.config.model.layers
    # per layer: qkv and out of the attention, fc1 and fc2 of each FFN (two experts in expert layers)
    experts = model.config.model.expert_layers
    assert len(names) == 2 * layers + 2 * (layers + experts)
    assert all(name.startswith("layers.") for name in names)
    # embeddings, input projections, norms and heads stay float
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            assert module.weight.dtype == torch.float32, name
    assert isinstance(model.visual_proj, nn.Linear) and all(isinstance(h, nn.Linear) for h in model.heads)
    assert not model.training


def test_int8_generates_close_to_fp32(model_dir):
    fp32 = Generator.from_pretrained(model_dir, device="cpu", precision="fp32")
    int8 = Generator.from_pretrained(model_dir, device="cpu", precision="int8")
    torch.manual_seed(0)
    features = torch.randn(8, fp32.model.visual_dim)
    a = fp32.generate(features, sampling=FAST)
    b = int8.generate(features, sampling=FAST)
    assert a.tokens.shape == b.tokens.shape and b.waveform.shape == a.waveform.shape
    assert math.isfinite(float(abs(b.waveform).max()))
    tokens = torch.randint(0, fp32.model.codebook_size, (2, fp32.model.levels, fp32.model.num_audio_frames))
    feats = torch.randn(2, fp32.model.num_frames, fp32.model.visual_dim)
    with torch.inference_mode():
        ref, quant = fp32.model(tokens, feats), int8.model(tokens, feats)
    sqnr = 10 * torch.log10(ref.pow(2).mean() / (quant - ref).pow(2).mean())
    assert sqnr > 20  # dB: int8 rounding, not a broken layer


def test_int8_leaves_the_callers_model_float_and_nothing_quantized_is_saved(model_dir, tmp_path):
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()}
    float_model = Generator.from_pretrained(model_dir, device="cpu", precision="fp32").model
    generator = Generator(float_model, directory=model_dir, precision="int8")
    assert is_quantized(generator.model) and not is_quantized(float_model)
    with pytest.raises(VabError, match="converted for inference"):
        save_model(generator.model, tmp_path / "q")
    assert not (tmp_path / "q").exists()
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, **SMALL)
    out = tmp_path / "out"
    assert main(["generate", str(video), "--checkpoint", str(model_dir), "--out", str(out), *FAST_ARGS,
                 "--device", "cpu", "--precision", "int8"]) == 0
    assert (out / "clip.wav").is_file()
    # the model directory is untouched: no quantized file beside the safetensors
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()} == digest


def test_quantize_copies_unless_inplace(model_dir):
    model = Generator.from_pretrained(model_dir, device="cpu", precision="fp32").model
    copy = prepare_for_inference(model, "int8")
    assert copy is not model and not is_quantized(model)
    assert prepare_for_inference(model, "int8", inplace=True) is model and is_quantized(model)


def test_bf16_loads_transformer_weights_in_bf16_and_keeps_norms_heads_embeddings_float(model_dir, tmp_path):
    generator = Generator.from_pretrained(model_dir, device="cpu", precision="bf16")
    model = generator.model
    assert generator.dtype == torch.bfloat16
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            expected = torch.bfloat16 if name.startswith("layers.") else torch.float32
            assert module.weight.dtype == expected, name
        elif isinstance(module, nn.LayerNorm):
            assert module.weight.dtype == torch.float32, name
    assert model.null_visual.dtype == model.mask_embed.dtype == torch.float32
    result = generator.generate(torch.randn(8, model.visual_dim), sampling=FAST)
    assert result.waveform.dtype.name == "float32" and bool(torch.isfinite(torch.from_numpy(result.waveform)).all())
    with pytest.raises(VabError, match="converted for inference"):
        save_model(model, tmp_path / "half")
    # a caller's model stays as it is: bf16 runs it under autocast
    float_model = Generator.from_pretrained(model_dir, device="cpu", precision="fp32").model
    assert Generator(float_model, directory=model_dir, precision="bf16").model is float_model
    assert float_model.layers[0].attn.qkv.weight.dtype == torch.float32


@pytest.fixture(scope="module")
def foleygen_dir(tmp_path_factory) -> Path:
    """The autoregressive baseline at the tiny test model's size, with that model's codec."""
    from safetensors.torch import load_file

    from vab.baselines.foleygen import FoleyGen
    from vab.config import load_config
    from vab.visual import build_visual_encoder

    source = make_model_dir(tmp_path_factory.mktemp("source") / "tiny")
    cfg = load_config("foleygen-tiny", ["codec.codebook_size=16", "codec.n_fft=512", "codec.griffin_lim_iters=2",
                                        "model.width=32", "model.layers=2", "model.heads=2", "model.ffn=64",
                                        "data.duration=1.0"])  # 50 tokens a window: it decodes one at a time
    codebooks = load_file(str(source / "model.safetensors"))["codebooks"]
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("foleygen") / "model"
    dim = build_visual_encoder(cfg.visual).dim
    save_model(FoleyGen.from_config(cfg, list(codebooks), visual_dim=dim, frame_rate=50.0), directory)
    (directory / "codec.safetensors").write_bytes((source / "codec.safetensors").read_bytes())
    return directory


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "fp16", "int8"])
def test_no_format_lets_a_soundtrack_depend_on_its_batch(model_dir, foleygen_dir, fmt):
    """A video's tokens are the same alone and batched with others, in every format, for VAB and
    the autoregressive baseline.  Was: under int8 one activation scale per call mixed the
    videos of a batch (a loud video changed its neighbours' tokens)."""
    for directory in (model_dir, foleygen_dir):
        batched = Generator.from_pretrained(directory, device="cpu", precision=fmt, batch_size=3)
        alone = Generator.from_pretrained(directory, device="cpu", precision=fmt)
        torch.manual_seed(0)
        # very different magnitudes: with a shared activation scale the quiet ones lose their precision
        frames = batched.model.num_frames  # one window each
        features = [torch.randn(frames, batched.model.visual_dim) * scale for scale in (1.0, 40.0, 0.02)]
        together = {o.request.key: o.result.tokens for o in batched.run(
            [Request(f, key=i) for i, f in enumerate(features)], FAST)}
        for i, f in enumerate(features):
            assert torch.equal(alone.generate(f, sampling=FAST).tokens, together[i]), (directory.name, fmt, i)


# ---------------------------------------------------------------------- errors
def test_bad_precision_is_one_line_before_any_output(model_dir, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, **SMALL)
    out = tmp_path / "out"
    code = main(["generate", str(video), "--checkpoint", str(model_dir), "--out", str(out), "--precision", "fp8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err == "error: --precision must be one of auto, fp32, bf16, fp16, int8, got 'fp8'"
    assert not out.exists()
    with pytest.raises(VabError, match="int8 runs on the CPU only"):
        precision.resolve_generation_precision("int8", "cuda")
    with pytest.raises(ConfigError, match="train.precision='int8'"):
        resolve_precision("int8")


def test_demo_refuses_a_bad_precision_before_writing(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--precision", "int4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--precision" in err and "int4" in err
    assert not (tmp_path / "demo").exists()


# ---------------------------------------------------------------------- bf16 training on the CPU
def test_pretraining_in_bf16_on_the_cpu(tmp_path, monkeypatch):
    """train.precision=bf16 runs the real pretraining path through Accelerate on a CPU: the
    Trainer's accelerator autocasts to bf16, losses are finite, and the saved model is float."""
    from tests.synthdata import make_synthetic_dataset, tiny_overrides
    from vab.config import load_config
    from vab.checkpoint import load_model as load_pretrained
    from vab.training.run import pretrain

    data = make_synthetic_dataset(tmp_path / "data", per_class={"train": 4, "valid": 1})
    cfg = load_config("tiny", tiny_overrides(data) + [
        "model.width=32", "model.layers=2", "model.expert_layers=1", "model.heads=2", "model.ffn=64",
        "train.tracker=none", "train.batch_size=8", "train.checkpoint_every=0", "train.valid_every=0",
        "train.max_steps=3", "train.warmup_steps=1", "train.precision=bf16", f"train.output_dir={tmp_path / 'run'}",
    ])
    seen = []
    original = torch.autocast.__init__

    def spy(self, device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("dtype", args[0] if args else None)))
        original(self, device_type, *args, **kwargs)

    monkeypatch.setattr(torch.autocast, "__init__", spy)
    out = pretrain(cfg, model_out=tmp_path / "model")
    monkeypatch.undo()
    assert ("cpu", torch.bfloat16) in seen
    model = load_pretrained(out)
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in model.parameters())
