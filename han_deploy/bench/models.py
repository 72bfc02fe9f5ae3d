"""The models a benchmark measures: where they come from, their FLOPs/params against the budget, their ONNX exports.

FLOPs follow the project's convention (2 x fvcore conv+linear MACs, :mod:`han_deploy.model.flops`);
for an ONNX file they come from its contract (``flops`` in the metadata) when present, else from the
network its contract describes, rebuilt and counted.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import METADATA_KEY, HANConfig
from .flops import BUDGETS, TOLERANCE

VARIANTS = ("small", "medium", "large")


@dataclass
class ModelInfo:
    """Name, cost and budget of one network at its input size (per image, batch 1)."""

    name: str
    input_size: tuple[int, int]
    macs: int | None
    flops: int | None  # 2 x macs
    params: int | None
    budget: float | None  # the paper's FLOPs budget, HAN only
    deviation: float | None
    within_budget: bool | None
    flops_source: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


def han_budget(cfg: HANConfig) -> float | None:
    """The paper's budget for a HAN config: Table 1 per variant (depthwise), Table 12 per block type (medium strides)."""
    if cfg.block == "depthwise":
        return BUDGETS.get(cfg.variant)
    return BUDGETS.get(cfg.block) if cfg.variant == "medium" else None


def model_info(model: Any, name: str) -> ModelInfo:
    """Count MACs (fvcore conv+linear) and parameters of an ``nn.Module`` with a ``cfg.preprocess`` contract."""
    from ..model.flops import count_macs, count_params

    size = tuple(model.cfg.preprocess.input_size)
    macs = count_macs(model, size)
    budget = han_budget(model.cfg) if isinstance(model.cfg, HANConfig) else None
    return _info(name, size, macs, count_params(model), budget, "fvcore conv+linear MACs x 2")


def _info(name: str, size: tuple[int, int], macs: int | None, params: int | None, budget: float | None, source: str) -> ModelInfo:
    flops = None if macs is None else 2 * macs
    dev = None if flops is None or not budget else (flops - budget) / budget
    return ModelInfo(name, size, macs, flops, params, budget, dev, None if dev is None else abs(dev) <= TOLERANCE, source)


def create_han(variant: str, **overrides: Any) -> Any:
    """The eval-mode HAN of ``variant`` (``small``/``medium``/``large`` or ``han_*``), random weights, seed 0."""
    import torch

    from ..model import create_model

    torch.manual_seed(0)
    return create_model(variant, **overrides).eval()


def onnx_contract(path: str | Path) -> tuple[dict[str, Any] | None, HANConfig | None, str]:
    """An ONNX file's han-deploy contract (None without one), its HAN config (None for another network) and
    the precision its metadata declares (``unspecified`` when it declares none)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    precision = meta.get("precision", "unspecified")
    if METADATA_KEY not in meta:
        return None, None, precision
    contract = json.loads(meta[METADATA_KEY])
    try:
        return contract, HANConfig.from_dict(contract.get("model", {})), precision
    except (TypeError, ValueError):  # a comparator or another network: no HAN to rebuild
        return contract, None, precision


def han_name(cfg: HANConfig) -> str:
    return f"han_{cfg.variant}" + ("" if cfg.block == "depthwise" else f"_{cfg.block}")


def info_from_contract(path: Path, contract: dict[str, Any] | None, cfg: HANConfig | None) -> ModelInfo:
    """FLOPs/params of an artifact (ONNX metadata or engine manifest): recorded in its contract when there,
    else counted on the HAN its config describes (rebuilt, random weights)."""
    if contract is None:
        return _info(path.stem, (0, 0), None, None, None, "unknown: no han-deploy contract")
    model_dict = contract.get("model", {})
    name = han_name(cfg) if cfg else str(model_dict.get("variant", path.stem))
    h, w = cfg.preprocess.input_size if cfg else model_dict.get("preprocess", {}).get("input_size", (0, 0))
    size = (int(h), int(w))
    budget = han_budget(cfg) if cfg else None
    params = contract.get("params")
    if cfg is None or ("flops" in contract and params is not None):
        macs = int(contract["flops"]) // 2 if "flops" in contract else None
        source = "contract metadata" if macs is not None else "unknown: no flops in the contract"
        return _info(name, size, macs, None if params is None else int(params), budget, source)
    from ..model import HAN
    from ..model.flops import count_params

    model = HAN(cfg).eval()
    if "flops" in contract:  # FLOPs recorded, parameters not: count those only
        return _info(name, size, int(contract["flops"]) // 2, count_params(model), budget, "contract metadata")
    return model_info(model, name)


def engine_info(path: Path) -> tuple[ModelInfo, str]:
    """FLOPs/params of a TensorRT engine from the contract in the manifest next to it, and the engine's precision
    (its entry in the manifest's ``engines``/``artifacts``; ``unspecified`` when not listed)."""
    from ..runtime.backends import ModelFileError, read_manifest_contract

    try:
        cfg, contract, manifest = read_manifest_contract(path)
    except ModelFileError:
        return info_from_contract(path, None, None), "unspecified"
    data = json.loads(manifest.read_text())
    entries = [e for key in ("engines", "artifacts") for e in data.get(key, []) if isinstance(e, dict)]
    precision = next((str(e["precision"]) for e in entries if e.get("file") == path.name and "precision" in e), "unspecified")
    return info_from_contract(path, contract, cfg), precision


def export_fp32(model: Any, path: Path, info: ModelInfo | None = None) -> Path:
    """FP32 ONNX through the project's exporter, with FLOPs and params in its contract when known."""
    from ..export import export_onnx

    extra: dict[str, Any] = {"flops": info.flops, "params": info.params} if info and info.flops else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, path, **extra)


def export_int8(fp32_path: Path, path: Path, model_cfg: Any, flavour: str = "cpu", calib_size: int = 64, seed: int = 0) -> Path:
    """INT8 Q/DQ ONNX with the export stage's quantizer (``cpu`` flavour for ONNX Runtime on x86), synthetic calibration.

    Random-weight models are calibrated here for timing only: INT8 accuracy needs trained weights (docs/export.md).
    """
    from ..export.calibration import CropCalibrationReader, synthetic_crops
    from ..export.quantize import quantize_int8

    reader = CropCalibrationReader(synthetic_crops(calib_size, seed=seed), model_cfg.preprocess)
    with contextlib.redirect_stdout(sys.stderr):  # the calibrator prints progress; stdout may carry han-bench's JSON
        quantize_int8(fp32_path, path, reader, flavour=flavour)
    return path


def export_fp16(fp32_path: Path, path: Path) -> Path:
    """FP16 ONNX (float32 I/O) with the export stage's converter: a GPU artifact, slower than FP32 on an x86 CPU."""
    from ..export.fp16 import convert_fp16

    return convert_fp16(fp32_path, path)
