"""Load-time number formats of a token model's Transformer for inference: int8 and bf16.

``int8``: every ``nn.Linear`` inside ``model.layers`` (attention projections, the FFNs and
the modality experts) becomes a dynamically quantized linear layer: int8 weights, one scale
per output channel, activations quantized on the fly, int8 x int8 products accumulated in
int32 (VNNI / AMX on x86).  The kernel takes one activation scale per call, from the
largest value in its input; called on a whole batch, one video's loud frame would coarsen
every other video's rounding, and a soundtrack would depend on its batch (411 of 800
tokens changed in a review's test).  So :class:`PerExampleInt8Linear` calls it once per
example (row of dim 0): the scale comes from that example alone, and an example's output
is bit-identical alone or in any batch, as in fp32 and bf16.  The calls cost 1.06-1.33x the
CPU time of one batched call (docs/BENCHMARKS.md, "int8, one scale per example"); a kernel
with one scale per row (``torch._int_mm`` with the rows quantized in Python) was slower still.

``bf16`` / ``fp16``: the weights and biases of the same linear layers are stored in that
dtype once, so autocast does not convert ~400M fp32 weights on every forward (a fifth of a
bf16 forward of vab-encodec went to those copies); generation still runs under autocast.

Everything else stays in float32 either way: the audio and visual input projections and the
learned embeddings, every LayerNorm and the token heads (their rounding would reach the
sampler multiplied by the guidance scale).

int8 kernel: ``torch.ao.quantization.quantize_dynamic`` (deprecated in torch 2.14 but
shipped).  torchao's ``quantize_(Int8DynamicActivationInt8WeightConfig())`` was measured
beside it and ran slower than fp32 in eager mode on this project's CPUs (docs/BENCHMARKS.md,
"Number formats"), so torchao is not a dependency.

These models exist only in memory: they are built from the float checkpoint at load time,
and :func:`vab.checkpoint.save_model` refuses them.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from vab.precision import DTYPES

#: formats :func:`prepare_for_inference` builds (fp32 is the model as loaded)
FORMATS = ("fp32", "bf16", "fp16", "int8")


class PerExampleInt8Linear(nn.Module):
    """A dynamically quantized linear layer applied to each example of a batch on its own.

    ``x [B, ..., in]`` -> ``[B, ..., out]``: example b (``x[b]``, all its rows) is quantized
    with its own activation scale, so its output never depends on the other examples."""

    def __init__(self, quantized: nn.Module):
        super().__init__()
        self.quantized = quantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[0] == 1:
            return self.quantized(x)
        return torch.cat([self.quantized(x[b : b + 1]) for b in range(x.shape[0])])


def quantized_linears(model: nn.Module) -> list[str]:
    """Names of the dynamically quantized linear layers in `model`."""
    return [name for name, module in model.named_modules() if isinstance(module, DynamicLinear)]


def inference_format(model: nn.Module) -> str:
    """The format :func:`prepare_for_inference` gave `model` ("fp32" if none)."""
    return getattr(model, "_inference_format", "fp32")


def is_quantized(model: nn.Module) -> bool:
    """True if `model` was converted for inference (int8 layers or half-precision weights):
    such a model must not be saved as a checkpoint."""
    return inference_format(model) != "fp32" or bool(quantized_linears(model))


def prepare_for_inference(model: nn.Module, precision: str, inplace: bool = False) -> nn.Module:
    """`model` with the linear layers of ``model.layers`` in `precision` (one of :data:`FORMATS`),
    in eval mode; a copy unless `inplace`.  A model already in that format is returned as is."""
    if precision not in FORMATS:
        raise ValueError(f"unknown inference format {precision!r} (expected one of {', '.join(FORMATS)})")
    current = inference_format(model)
    if precision == current:
        return model.eval()
    if current != "fp32":
        raise ValueError(f"the model is already converted to {current}; start from the float model")
    if not hasattr(model, "layers"):
        raise TypeError(f"{type(model).__name__} has no `layers` to convert")
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    if precision == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torch.ao deprecation notice
            # imported here, under the filter: torch.ao warns on import that it is deprecated
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # per-channel weight scales: same speed as one scale per tensor, a little less error
            target.layers = quantize_dynamic(target.layers, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        _per_example(target.layers)
    else:
        for module in target.layers.modules():
            if isinstance(module, nn.Linear):
                module.to(DTYPES[precision])
    target._inference_format = precision
    return target



def _per_example(module: nn.Module) -> None:
    """Wrap every dynamically quantized linear layer under `module` in :class:`PerExampleInt8Linear`."""
    for name, child in module.named_children():
        if isinstance(child, DynamicLinear):
            setattr(module, name, PerExampleInt8Linear(child))
        elif not isinstance(child, PerExampleInt8Linear):
            _per_example(child)
