"""Dynamic int8 quantization of a token model's Transformer for CPU inference.

Every ``nn.Linear`` inside ``model.layers`` (attention projections, the FFNs and the
modality experts) becomes a dynamically quantized linear layer: int8 weights, one scale
per output channel, activations quantized on the fly (one scale per call), int8 x int8 products
accumulated in int32 (VNNI / AMX on x86).  Everything else stays in float: the audio and
visual input projections and the learned embeddings, the norms and the token heads (their
rounding would reach the sampler multiplied by the guidance scale).

Kernel: ``torch.ao.quantization.quantize_dynamic`` (deprecated in torch 2.14 but shipped).
torchao's ``quantize_(Int8DynamicActivationInt8WeightConfig())`` was measured beside it
and ran no faster than fp32 in eager mode on this project's CPUs (docs/BENCHMARKS.md,
"Number formats"), so torchao is not a dependency.

Quantized models exist only in memory: they are built from the float checkpoint at load
time and :meth:`vab.model.base.TokenModel.save_pretrained` refuses them.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def quantized_linears(model: nn.Module) -> list[str]:
    """Names of the dynamically quantized linear layers in `model`."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return [name for name, module in model.named_modules() if isinstance(module, DynamicLinear)]


def is_quantized(model: nn.Module) -> bool:
    """True if any layer of `model` holds quantized weights."""
    return bool(quantized_linears(model))


def quantize_int8(model: nn.Module, inplace: bool = False) -> nn.Module:
    """`model` with the linear layers of ``model.layers`` dynamically quantized to int8
    (a copy unless `inplace`); the model must be on the CPU and is put in eval mode."""
    if not hasattr(model, "layers"):
        raise TypeError(f"{type(model).__name__} has no `layers` to quantize")
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch.ao deprecation notice
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # per-channel weight scales: same speed as one scale per tensor, a little less error
        target.layers = quantize_dynamic(target.layers, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    return target
