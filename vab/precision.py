"""Number formats: which one `auto` picks on this machine, for generation and for training.

Generation (`--precision`): ``fp32``; ``bf16`` / ``fp16`` (autocast: matrix products in
half precision; the final norm, the token heads and the guidance arithmetic stay in fp32,
see :func:`vab.model.multiway.token_logits` and :func:`vab.generation.sampling.guide_logits`);
``int8`` (CPU only: the Transformer's linear layers quantized at load time,
:mod:`vab.model.quantize`); ``auto`` = the GPU's native half format (below), bf16 on a CPU
with native bf16 matrix units, fp32 on any other CPU.

Training (`train.precision`, Accelerate's names): ``no`` (fp32), ``bf16``, ``fp16``;
``auto`` = the GPU's native half format (below), and bf16 on a CPU with native bf16 matrix
units for models of :data:`CPU_BF16_MIN_PARAMS` parameters or more; "no" elsewhere.  On such CPUs bf16 matrix
products run several times faster than fp32, but a tiny model's step is dominated by
casts and small operations and runs slower (docs/BENCHMARKS.md, "Number formats").

"Native bf16" is read from the processor at run time (:func:`torch.cpu.get_capabilities`):
x86 ``avx512_bf16`` or ``amx_bf16``, ARM ``bf16`` (BFMMLA; Apple M2 and later, Graviton 3).
Without them torch emulates bf16 matmuls, slower than fp32.

`auto` decides by the device that runs, never by another one's capability: a CUDA GPU has
native bf16 from compute capability 8 (Ampere) on; older ones (V100, T4) emulate it, and
fp16 on their tensor cores is the fast format, so `auto` picks fp16 there.  An Apple GPU
(mps) runs bf16 from macOS 14 on (what Accelerate also requires), else fp16 for generation
and fp32 for training (a GradScaler on mps needs torch 2.8).  The CPU's flags decide only
for the CPU.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from vab.errors import ConfigError, VabError

#: the floating-point formats by name: the one map from a precision name to a torch dtype
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: choices of `--precision` for generation
GENERATION_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: smallest model (parameters) `train.precision=auto` trains in bf16 on a CPU: measured on AMX, a
#: 1.4M-parameter step was 0.89x as fast in bf16 (casts cost more than the products save), a
#: 35M one 1.63x (docs/BENCHMARKS.md, "Number formats")
CPU_BF16_MIN_PARAMS = 10_000_000
#: CPU flags (as torch.cpu.get_capabilities() names them) that mean native bf16 matrix products
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a concrete generation format (None: the model runs as loaded,
    fp32 or int8 linear layers with fp32 activations)."""
    return DTYPES.get(precision) if precision in ("bf16", "fp16") else None


def cpu_capabilities() -> Mapping[str, object]:
    """The processor's features as torch detects them ({} when torch cannot tell)."""
    try:
        return torch.cpu.get_capabilities()
    except Exception:  # an old torch or an unknown architecture: assume nothing
        return {}


def cpu_has_native_bf16(capabilities: Mapping[str, object] | None = None) -> bool:
    """True if the CPU multiplies bf16 matrices in hardware (see the module docstring)."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    return any(bool(caps.get(flag)) for flag in BF16_FLAGS)


def gpu_half(device: torch.device | str) -> str:
    """The half format a GPU multiplies natively: ``bf16`` or ``fp16`` (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16"
    if device.type == "mps":
        return "bf16" if torch.backends.mps.is_macos_or_newer(14, 0) else "fp16"
    raise ValueError(f"{device}: not a GPU")


def training_device() -> torch.device:
    """The device Accelerate trains on (without `cpu=True`): a CUDA GPU, else an Apple GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_generation_precision(precision: str, device: torch.device | str) -> str:
    """The concrete generation format (fp32, bf16, fp16 or int8) for `precision` on `device`.

    Raises a one-line VabError for an unknown value or int8 on a GPU."""
    check_generation_precision(precision)
    kind = torch.device(device).type
    if precision == "auto":
        if kind in ("cuda", "mps"):
            return gpu_half(device)
        return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "int8" and kind != "cpu":
        raise VabError(f"--precision int8 runs on the CPU only (the device is {kind}); use bf16 or fp16 there")
    return precision


def resolve_training_precision(precision: str, choices: tuple[str, ...], parameters: int | None = None,
                               device: torch.device | str | None = None) -> str:
    """Accelerate's mixed_precision for `train.precision` (one of `choices`, "auto" included) on
    the `device` that trains (None: :func:`training_device`): auto -> the GPU's native half
    format (:func:`gpu_half`; fp32, "no", on an Apple GPU before macOS 14), or bf16 on a CPU with
    native bf16 when the model has at least :data:`CPU_BF16_MIN_PARAMS` `parameters` (None:
    size unknown, counts as large), else "no"."""
    if precision not in choices:
        raise ConfigError(f"train.precision={precision!r}: expected one of {', '.join(choices)}")
    if precision != "auto":
        return precision
    device = training_device() if device is None else torch.device(device)
    if device.type in ("cuda", "mps"):
        half = gpu_half(device)
        return "no" if device.type == "mps" and half == "fp16" else half
    big = parameters is None or parameters >= CPU_BF16_MIN_PARAMS
    return "bf16" if device.type == "cpu" and big and cpu_has_native_bf16() else "no"


def check_generation_precision(precision: str) -> str:
    """`precision` if it is one of :data:`GENERATION_PRECISIONS`, else a one-line VabError
    (commands call this before they create any output)."""
    if precision not in GENERATION_PRECISIONS:
        raise VabError(f"--precision must be one of {', '.join(GENERATION_PRECISIONS)}, got {precision!r}")
    return precision


def add_precision_option(parser: Any, default: str = "auto") -> None:
    """The `--precision` option of every command that generates (checked by
    :func:`check_generation_precision`, so a bad value is one line, not argparse's usage)."""
    parser.add_argument(
        "--precision", default=default, metavar="{" + ",".join(GENERATION_PRECISIONS) + "}",
        help="number format for generation: auto (bf16 on a GPU or on a CPU with native bf16 such as "
        "AVX512-BF16 / AMX / Apple M2+, else fp32), fp32, bf16, fp16, int8 (CPU: int8 Transformer weights) "
        f"(default {default})",
    )
