"""Int8 fake quantization in PyTorch at the PTQ artifact's Q/DQ sites (docs/export.md "Quantization-aware fine-tuning").

* placement and activation scales are read from ``model.int8.onnx`` (after its sensitivity pass): every
  quantized Conv/Gemm/MatMul gets per-tensor symmetric int8 on its input and per-output-channel
  symmetric int8 on its weights (scale max|w|/127, recomputed each step as ONNX Runtime computes it at
  export), every residual Add gets it on both inputs; kept-float layers stay float. ONNX nodes are
  tied to PyTorch layers by their weight values, not by names;
* BatchNorm is frozen and folded into the weights it follows, as the ONNX export folds it, so the
  quantized weight is exactly the one the artifact quantizes;
* activation scales stay fixed at the PTQ calibration's (NVIDIA's QAT guidance: do not change the
  quantization scale during training); the straight-through estimator comes from
  ``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine``. Or, asked for,
  they are learned from the PTQ ones: LSQ's gradient (Esser et al., "Learned Step Size Quantization",
  ICLR 2020) on the log of each scale, so a scale stays positive and moves by ratios;
* :func:`write_scales` puts those scales into a re-quantized artifact after checking its placement.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.blocks import Bottleneck
from . import graph_checks

INT8_MIN, INT8_MAX = -128, 127  # QuantizeLinear's saturation range
WEIGHT_LEVELS = 127  # symmetric int8 weights: scale = max|w| / 127 per output channel
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

Site = tuple[str, str]  # (PyTorch module path, "input" of a layer | "output" of a residual branch)
Key = tuple[str, int]  # (ONNX node name, input index)


class QATError(ValueError):
    """A QAT request that cannot work, or a graph QAT cannot mirror; the message names the flag or node."""


# ---- fake quantization in PyTorch ----------------------------------------------------------------


def fold_batchnorm(layer: nn.Module, bn: nn.Module | None) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of ``layer`` with the eval-mode ``bn`` that follows it folded in (as the ONNX export folds it)."""
    weight, bias = layer.weight, layer.bias
    if bn is None:
        return weight, bias
    gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * gain
    weight = weight * gain.reshape(-1, *([1] * (weight.dim() - 1)))
    return weight, shift if bias is None else shift + bias * gain


def fake_quantize_weight(weight: Tensor) -> Tensor:
    """Symmetric int8 per output channel (axis 0), scale max|w|/127 from the current weights, straight-through gradient."""
    absmax = weight.detach().abs().flatten(1).amax(dim=1)
    scale = torch.where(absmax > 0, absmax / WEIGHT_LEVELS, torch.ones_like(absmax))
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, INT8_MIN, INT8_MAX)


def lsq_fake_quantize(x: Tensor, scale: Tensor) -> Tensor:
    """Symmetric int8 round-to-nearest-even of ``x`` at ``scale`` with LSQ's straight-through gradients.

    To ``x``: 1 inside the int8 range, 0 where it saturates. To ``scale``: ``round(x/s) - x/s`` inside,
    the saturation level outside, so the step size trades rounding error against clipping.
    """
    v = torch.clamp(x / scale, INT8_MIN, INT8_MAX)
    return (v + (v.round() - v).detach()) * scale


class ActivationQuantizer(nn.Module):
    """Per-tensor symmetric int8 fake quantization of an activation at a fixed scale, or a learned one (``learn``)."""

    def __init__(self, scale: float, learn: bool = False) -> None:
        super().__init__()
        if not scale > 0:
            raise QATError(f"activation scale must be > 0, got {scale}")
        self.initial = scale
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=True) if learn else None

    @property
    def scale(self) -> float:
        """The scale as the artifact's Q/DQ pair will hold it."""
        return self.initial if self.log_scale is None else float(self.log_scale.detach().exp())

    def forward(self, x: Tensor) -> Tensor:
        if self.log_scale is None:
            return torch.fake_quantize_per_tensor_affine(x, self.initial, 0, INT8_MIN, INT8_MAX)
        return lsq_fake_quantize(x, self.log_scale.exp())


class _FoldedLayer(nn.Module):
    """A Conv2d or Linear with its BatchNorm folded in (frozen statistics); with ``quantizer``, int8 fake-quantized.

    Frozen whatever the model's train/eval mode.
    """

    def __init__(self, layer: nn.Module, bn: nn.Module | None, quantizer: ActivationQuantizer | None) -> None:
        super().__init__()
        self.layer, self.bn, self.quantizer = layer, bn, quantizer

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = fold_batchnorm(self.layer, self.bn)
        if self.quantizer is not None:
            x = self.quantizer(x)
            weight = fake_quantize_weight(weight)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, bias)
        return self.layer._conv_forward(x, weight, bias)


class _QuantizedOutput(nn.Module):
    """A module whose output is int8 fake-quantized per tensor (one input of a residual Add)."""

    def __init__(self, module: nn.Module, quantizer: ActivationQuantizer) -> None:
        super().__init__()
        self.module, self.quantizer = module, quantizer

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(self.module(x))


@dataclasses.dataclass
class _Slot:
    """A Conv2d/Linear as a child ``name`` of ``parent``, with the BatchNorm that follows it in a Sequential, if any."""

    parent: nn.Module
    name: str
    bn: str | None

    def modules(self) -> tuple[nn.Module, nn.Module | None]:
        return getattr(self.parent, self.name), getattr(self.parent, self.bn) if self.bn else None


def _slots(model: nn.Module) -> dict[str, _Slot]:
    """Every Conv2d/Linear of ``model`` by path; every BatchNorm must follow one in a Sequential (else it could not freeze)."""
    slots: dict[str, _Slot] = {}
    paired: set[int] = set()
    for prefix, parent in model.named_modules():
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, (nn.Conv2d, nn.Linear)):
                continue
            after = children[i + 1] if isinstance(parent, nn.Sequential) and i + 1 < len(children) else None
            bn = after if after is not None and isinstance(after[1], BATCHNORMS) else None
            slots[f"{prefix}.{name}" if prefix else name] = _Slot(parent, name, bn[0] if bn else None)
            if bn is not None:
                paired.add(id(bn[1]))
    lone = [p for p, m in model.named_modules() if isinstance(m, BATCHNORMS) and id(m) not in paired]
    if lone:
        raise QATError(f"BatchNorm not after a conv/linear layer in a Sequential (cannot fold and freeze it): {', '.join(lone)}")
    return slots


@contextmanager
def fake_quantized(
    model: nn.Module, plan: dict[Site, float], learn_scales: bool = False, ties: list[tuple[Site, ...]] | None = None
) -> Iterator[dict[Site, ActivationQuantizer]]:
    """``model`` with every BatchNorm folded and frozen and int8 fake quantization at ``plan``'s sites; restored on exit.

    Yields each site's quantizer (its ``scale`` is the learned one with ``learn_scales``); the sites of
    each group in ``ties`` (:func:`tied_sites`: one Q/DQ pair in the artifact) share one quantizer. The
    weights are the model's own (trained in place); leaving the context puts the original modules back,
    so the model exports as before with its fine-tuned weights.
    """
    swaps: list[tuple[nn.Module, str, nn.Module]] = []

    def swap(parent: nn.Module, name: str, new: nn.Module) -> None:
        swaps.append((parent, name, getattr(parent, name)))
        setattr(parent, name, new)

    try:
        slots = _slots(model)
        unknown = [s for s in plan if (s[1] == "input" and s[0] not in slots) or s[1] not in ("input", "output")]
        if unknown:
            raise QATError(f"no PyTorch layer at the quantization site(s) {unknown}")
        quantizers = {site: ActivationQuantizer(scale, learn_scales) for site, scale in plan.items()}
        for group in ties or []:
            quantizers.update(dict.fromkeys(group, quantizers[group[0]]))
        for path, slot in slots.items():
            layer, bn = slot.modules()
            quantizer = quantizers.get((path, "input"))
            if bn is not None or quantizer is not None:
                swap(slot.parent, slot.name, _FoldedLayer(layer, bn, quantizer))
            if slot.bn is not None:
                swap(slot.parent, slot.bn, nn.Identity())
        for (path, role), quantizer in quantizers.items():
            if role == "output":
                parent_path, _, name = path.rpartition(".")
                parent = model.get_submodule(parent_path)
                swap(parent, name, _QuantizedOutput(getattr(parent, name), quantizer))
        yield quantizers
    finally:
        for parent, name, original in reversed(swaps):
            setattr(parent, name, original)


# ---- the PTQ artifact's placement, in PyTorch terms -----------------------------------------------


def match_layers(fp32: Any, model: nn.Module) -> dict[str, str]:
    """ONNX Conv/Gemm/MatMul node -> path of the one PyTorch layer whose weights (BatchNorm folded in) it holds."""
    from onnx import numpy_helper

    inits = {t.name: t for t in fp32.graph.initializer}
    with torch.no_grad():
        folded = {p: fold_batchnorm(*s.modules())[0].float().cpu().numpy() for p, s in _slots(model).items()}
    found: dict[str, str] = {}
    for node in fp32.graph.node:
        if node.op_type not in graph_checks.CONV_OPS | graph_checks.FC_OPS or node.input[1] not in inits:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        if node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b):
            weight = weight.T  # stored (in, out); PyTorch's Linear is (out, in)
        tol = 1e-5 * max(1.0, float(np.abs(weight).max()))
        hits = [p for p, w in folded.items() if w.shape == weight.shape and np.allclose(w, weight, rtol=1e-4, atol=tol)]
        if len(hits) == 1:
            found[node.name] = hits[0]
    return found


def _residual_keys(add: Any, producers: dict[str, Any], layer_of: dict[str, str], blocks: list[str]) -> dict[Key, Site]:
    """The two inputs of a residual Add as the outputs of its Bottleneck's ``body`` (ends in a conv) and ``shortcut``."""
    for k, tensor in enumerate(add.input):
        path = layer_of.get(producers[tensor].name, "") if tensor in producers else ""
        block = next((b for b in blocks if path.startswith(f"{b}.body.")), None)
        if block is not None:
            return {(add.name, k): (f"{block}.body", "output"), (add.name, 1 - k): (f"{block}.shortcut", "output")}
    raise QATError(f"{add.name}: a quantized Add that is not a residual block's; QAT cannot place its fake quantization")


def site_keys(fp32: Any, quantized: list[str], model: nn.Module) -> dict[Key, Site]:
    """Each quantized activation input (ONNX node, input index) of ``fp32``'s quantized nodes as a PyTorch site."""
    layer_of = match_layers(fp32, model)
    by_name = {n.name: n for n in fp32.graph.node}
    producers = {o: n for n in fp32.graph.node for o in n.output}
    blocks = [p for p, m in model.named_modules() if isinstance(m, Bottleneck)]
    keys: dict[Key, Site] = {}
    for name in quantized:
        node = by_name.get(name)
        if node is not None and node.op_type in graph_checks.CONV_OPS | graph_checks.FC_OPS and name in layer_of:
            keys[(name, 0)] = (layer_of[name], "input")
        elif node is not None and node.op_type == "Add":
            keys.update(_residual_keys(node, producers, layer_of, blocks))
        else:
            raise QATError(f"quantized node {name}: no PyTorch layer holds its weights (is the model the exported one?)")
    return keys


def _activation_qdq(int8: Any, key: Key) -> tuple[Any, Any]:
    """The DequantizeLinear that input ``key[1]`` of node ``key[0]`` reads, and the QuantizeLinear feeding it."""
    producers = {o: n for n in int8.graph.node for o in n.output}
    node = next(n for n in int8.graph.node if n.name == key[0])
    dq = producers.get(node.input[key[1]])
    q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if q is None or q.op_type != "QuantizeLinear":
        raise QATError(f"{key[0]} input {key[1]}: not read through a QuantizeLinear -> DequantizeLinear pair")
    return dq, q


def _quantized_inputs(int8: Any, fp32: Any, model: nn.Module) -> dict[Key, tuple[Site, Any]]:
    """Each quantized activation input of ``int8``: its PyTorch site and the DequantizeLinear it reads."""
    keys = site_keys(fp32, graph_checks.quantized_layers(int8), model)
    return {key: (site, _activation_qdq(int8, key)[0]) for key, site in keys.items()}


def read_plan(fp32_path: str | Path, int8_path: str | Path, model: nn.Module) -> dict[Site, float]:
    """Where ``int8_path`` (the TensorRT flavour of ``fp32_path``) quantizes activations: PyTorch site -> int8 scale."""
    import onnx
    from onnx import numpy_helper

    int8 = onnx.load(str(int8_path))
    inits = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    plan: dict[Site, float] = {}
    for key, (site, dq) in _quantized_inputs(int8, onnx.load(str(fp32_path)), model).items():
        scale, zero = inits[dq.input[1]], inits[dq.input[2]]
        if scale.size != 1 or zero.dtype != np.int8 or np.any(zero != 0):
            raise QATError(f"{key[0]} input {key[1]}: not per-tensor symmetric int8, not the TensorRT flavour")
        if plan.setdefault(site, float(scale)) != float(scale):
            raise QATError(f"{site[0]}: two different scales for one quantization site")
    return plan


def tied_sites(fp32_path: str | Path, int8_path: str | Path, model: nn.Module) -> list[tuple[Site, ...]]:
    """Groups of sites that read one scale in ``int8_path``: a tensor feeding several quantized layers (one Q/DQ pair).

    A residual block's body and projection shortcut read the same input, as do an inception unit's
    parallel convs; learned scales must stay equal across such a group, since the artifact holds one.
    """
    import onnx

    groups: dict[str, set[Site]] = {}
    for site, dq in _quantized_inputs(onnx.load(str(int8_path)), onnx.load(str(fp32_path)), model).values():
        groups.setdefault(dq.input[1], set()).add(site)
    return [tuple(sorted(group)) for group in groups.values() if len(group) > 1]


def write_scales(int8: Any, fp32: Any, model: nn.Module, plan: dict[Site, float]) -> None:
    """Give ``int8``'s activation Q/DQ pairs the scales of ``plan`` (in place), after checking it quantizes the same sites.

    Sites that share a Q/DQ pair (:func:`tied_sites`) must have one scale in ``plan``: refused otherwise.
    """
    from onnx import numpy_helper

    keys = site_keys(fp32, graph_checks.quantized_layers(int8), model)
    if set(keys.values()) != set(plan):
        diff = sorted(set(keys.values()) ^ set(plan))
        raise QATError(f"the QAT artifact's quantized sites differ from the PTQ artifact's: {diff[:5]}")
    inits = {t.name: t for t in int8.graph.initializer}
    written: dict[str, Site] = {}
    for key, site in keys.items():
        for node in _activation_qdq(int8, key):
            name = node.input[1]
            first = written.setdefault(name, site)
            if plan[first] != plan[site]:
                raise QATError(f"{name}: one scale in the artifact for {first[0]} and {site[0]}, which have two in the plan")
            inits[name].CopyFrom(numpy_helper.from_array(np.array(plan[site], dtype=np.float32), name))
