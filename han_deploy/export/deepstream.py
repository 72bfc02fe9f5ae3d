"""DeepStream tracker (NvDCF / NvDeepSORT) ReID block for a HAN artifact.

DeepStream preprocesses each crop as ``y = netScaleFactor * (x - offsets[c])`` on 0-255 pixels: one
scale for all channels. The contract's ``(x / 255 - mean[c]) / std[c]`` has a scale per channel, so
the recipe uses ``offsets = 255 * mean`` (exact) and ``netScaleFactor = 1 / (255 * mean(std))``; the
per-channel std differ by at most 2.2% from their mean for ImageNet statistics. The cosine that
approximation costs is measured by :func:`single_scale_cosine` and recorded in the manifest.

**Unverified here**: no DeepStream install; the field names follow NVIDIA's tracker configuration
(``config_tracker_NvDCF_*.yml``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import HANConfig

DEEPSTREAM_NAME = "config_tracker_reid.yml"
NETWORK_MODES = {"fp32": 0, "fp16": 1, "int8": 2}


def scale_and_offsets(cfg: HANConfig) -> tuple[float, list[float]]:
    """DeepStream's single ``netScaleFactor`` (mean std) and per-channel ``offsets`` (mean x 255)."""
    pre = cfg.preprocess
    pixels = 1.0 / pre.pixel_scale
    return 1.0 / (pixels * float(np.mean(pre.std))), [round(pixels * m, 4) for m in pre.mean]


def single_scale_cosine(embed: Callable[[np.ndarray], np.ndarray], crops_rgb: np.ndarray, cfg: HANConfig) -> dict[str, float]:
    """Cosine between embeddings of the exact per-channel normalisation and DeepStream's single scale.

    ``crops_rgb`` is (N, H, W, 3) uint8 at model size in the contract's channel order; ``embed`` maps
    an (N, 3, H, W) float32 batch to embeddings.
    """
    from .parity import cosine_rows

    pre = cfg.preprocess
    x = crops_rgb.astype(np.float32)
    exact = (x * pre.pixel_scale - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    scale, offsets = scale_and_offsets(cfg)
    approx = (x - np.asarray(offsets, np.float32)) * np.float32(scale)
    cos = cosine_rows(embed(exact.transpose(0, 3, 1, 2).copy()), embed(approx.transpose(0, 3, 1, 2).copy()))
    return {"mean": float(cos.mean()), "min": float(cos.min()), "samples": int(len(cos))}


def deepstream_reid_config(
    cfg: HANConfig,
    onnx_file: str,
    engine_file: str | None = None,
    precision: str = "fp16",
    batch_size: int = 32,
    workspace_mib: int = 1000,
) -> str:
    """The ``ReID:`` section of a DeepStream tracker config (YAML text) for this model."""
    if precision not in NETWORK_MODES:
        raise ValueError(f"precision must be one of {sorted(NETWORK_MODES)}, got {precision!r}")
    pre = cfg.preprocess
    h, w = pre.input_size
    scale, offsets = scale_and_offsets(cfg)
    lines = [
        "# HAN person re-id for the DeepStream tracker (NvDCF / NvDeepSORT). Written by han-export.",
        f"# Variant {cfg.variant}; preprocessing contract: {pre.channel_order}, {h}x{w} (HxW), mean {list(pre.mean)},",
        f"# std {list(pre.std)}. DeepStream takes one scale factor: 1/(255*mean(std)) (see export/README.md).",
        "ReID:",
        "  reidType: 2                    # 1: NvDeepSORT, 2: re-association, 3: both",
        "  outputReidTensor: 0",
        f"  batchSize: {batch_size}                  # must not exceed the engine profile's max batch",
        f"  workspaceSize: {workspace_mib}",
        f"  reidFeatureSize: {cfg.embedding_dim}           # {cfg.embedding_layout}",
        "  reidHistorySize: 100",
        f"  inferDims: [3, {h}, {w}]          # [C, H, W]",
        f"  networkMode: {NETWORK_MODES[precision]}                  # 0 fp32, 1 fp16, 2 int8 (INT8 comes from the Q/DQ ONNX)",
        "  inputOrder: 0                  # NCHW",
        f"  colorFormat: {0 if pre.channel_order == 'RGB' else 1}                  # 0 RGB, 1 BGR",
        f"  offsets: [{', '.join(f'{o:.4f}' for o in offsets)}]",
        f"  netScaleFactor: {scale:.8f}",
        "  keepAspc: 0                    # the contract stretches crops to HxW, like han_deploy.runtime",
        "  addFeatureNormalization: 0     # the embedding halves are already L2-normalised in the model",
        f'  onnxFile: "{onnx_file}"',
    ]
    if engine_file is not None:
        lines.append(f'  modelEngineFile: "{engine_file}"')
    return "\n".join(lines) + "\n"


def write_deepstream_recipe(out_dir: str | os.PathLike[str], text: str) -> Path:
    """Write the tracker ReID config under ``out_dir/deepstream/`` via a temporary name."""
    path = Path(out_dir) / "deepstream" / DEEPSTREAM_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
